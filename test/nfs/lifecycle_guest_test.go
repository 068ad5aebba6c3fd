//go:build linux && nfsguest

package nfs

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// exitLimit is how long the agent may take to exit after SIGTERM, in any
// state (the httpbounds contract: 5 s whatever clients do).
const exitLimit = 5 * time.Second

// quietGoroutines is the agent's goroutine count when no check runs: the
// least of a few looks.
func quietGoroutines(a *agentProc) int {
	least := 1 << 30
	for i := 0; i < 5; i++ {
		least = min(least, a.goroutines())
		time.Sleep(150 * time.Millisecond)
	}
	return least
}

// assertGoroutines fails t when the agent runs more than base goroutines
// plus one per hung mount (the least of a few looks, so a check or an
// HTTP request in passing does not count).
func assertGoroutines(t *testing.T, a *agentProc, base, hung int) {
	t.Helper()
	g := quietGoroutines(a)
	t.Logf("goroutines: %d with %d hung mounts (%d when healthy)", g, hung, base)
	if g > base+hung {
		_, b, _ := a.get("/debug/pprof/goroutine?debug=1")
		t.Errorf("%d goroutines with %d hung mounts, more than %d healthy + one per hung mount:\n%.3000s", g, hung, base, b)
	}
}

// partitionSig cuts the sig server off and waits for the agent's sig
// mounts to be hung.
func partitionSig(t *testing.T, a *agentProc, mounts ...string) {
	t.Helper()
	netem(t, bed.servers["sig"], "loss", "100%")
	for _, m := range mounts {
		a.waitMount(15*time.Second, m, "hung", func(m mountJSON) bool { return m.State == "hung" })
	}
}

// healSig heals the sig server and waits until its mounts answer again.
func healSig(t *testing.T) {
	t.Helper()
	heal(t, bed.servers["sig"])
	awaitMountsAnswer(t, 90*time.Second, "sig1", "sig2")
}

// probeFiles lists the probe files and silly-renamed .nfs files in a
// server-side directory.
func probeFiles(dir string) ([]string, error) {
	found, err := probeFilesIn(dir)
	if err != nil {
		return nil, err
	}
	// And in the agent's probe directory, names relative to dir.
	in, err := probeFilesIn(filepath.Join(dir, probeDirName))
	for _, n := range in {
		found = append(found, filepath.Join(probeDirName, n))
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	sort.Strings(found)
	return found, nil
}

// probeFilesIn lists the probe files and .nfs files in dir itself.
func probeFilesIn(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var found []string
	for {
		names, err := f.Readdirnames(4096)
		for _, n := range names {
			if strings.HasPrefix(n, ".efs-health-probe-") || strings.HasPrefix(n, ".nfs") {
				found = append(found, n)
			}
		}
		if err != nil {
			break
		}
	}
	return found, nil
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// testSigtermHung: SIGTERM while two mounts are hung: the agent ran no
// more than one goroutine per hung mount beyond its healthy count, and
// exits 0 within the limit.
func testSigtermHung(t *testing.T) {
	a := startAgent(t, agentOpts{}, "sig1", "sig2")
	a.waitMount(30*time.Second, "sig1", "healthy", healthy)
	a.waitMount(30*time.Second, "sig2", "healthy", healthy)
	base := quietGoroutines(a)
	partitionSig(t, a, "sig1", "sig2")
	assertGoroutines(t, a, base, 2)
	took := a.stop(syscall.SIGTERM, exitLimit)
	t.Logf("exited %v after SIGTERM with two hung mounts, status %d", took.Round(time.Millisecond), a.exitCode())
	if c := a.exitCode(); c != 0 {
		t.Errorf("exit status %d after SIGTERM, want 0", c)
	}
	healSig(t)
}

// testSigtermMidCheck: SIGTERM lands while a check is in flight, five
// times: each exit within the limit, and no probe file left on the server.
func testSigtermMidCheck(t *testing.T) {
	netem(t, bed.servers["sig"], "delay", "50ms")
	dir := exportPath("sig")
	landed := 0
	for i := 0; i < 5; i++ {
		before, err := probeFiles(dir)
		if err != nil {
			t.Fatal(err)
		}
		a := startAgent(t, agentOpts{interval: "2s", timeout: "2s"}, "sig1")
		a.waitMount(30*time.Second, "sig1", "healthy", healthy)
		waitFor(t, 20*time.Second, "a check in flight", func() (bool, string) {
			v, _ := metric(a.metrics(), "efs_mount_checks_in_flight")
			return v >= 1, fmt.Sprint("in flight ", v)
		})
		took := a.stop(syscall.SIGTERM, exitLimit)
		landed++
		after, err := probeFiles(dir)
		if err != nil {
			t.Fatal(err)
		}
		// What an earlier round left is for the Leftovers scenario's
		// sweep; each round is judged on what it adds.
		var left []string
		for _, n := range after {
			if !contains(before, n) {
				left = append(left, n)
			}
		}
		t.Logf("SIGTERM %d mid-check: exited in %v, status %d, probe files it left on the server: %v", i+1, took.Round(time.Millisecond), a.exitCode(), left)
		if len(left) > 0 {
			t.Errorf("SIGTERM mid-check left %v on the server", left)
		}
	}
	if landed != 5 {
		t.Errorf("%d of 5 SIGTERMs landed mid-check", landed)
	}
	heal(t, bed.servers["sig"])
}

// testKillHung: kill -9 while hung, then a restart while still hung: the
// new agent reports the mounts hung (never healthy), runs no more than one
// goroutine per hung mount, and recovers once the partition heals.
func testKillHung(t *testing.T) {
	a := startAgent(t, agentOpts{}, "sig1", "sig2")
	a.waitMount(30*time.Second, "sig1", "healthy", healthy)
	a.waitMount(30*time.Second, "sig2", "healthy", healthy)
	base := quietGoroutines(a)
	partitionSig(t, a, "sig1", "sig2")
	took := a.stop(syscall.SIGKILL, 10*time.Second)
	t.Logf("killed (-9) while hung, gone in %v", took.Round(time.Millisecond))

	b := startAgent(t, agentOpts{}, "sig1", "sig2")
	w := watchEndpoints(b, func(ms map[string]mountJSON) string {
		for _, m := range []string{"sig1", "sig2"} {
			if st, ok := ms[mountPath(m)]; ok && st.IsHealthy {
				return m + " healthy while its server is cut off: " + st.String()
			}
		}
		return ""
	})
	for _, m := range []string{"sig1", "sig2"} {
		_, st := b.waitMount(15*time.Second, m, "hung after the restart", func(m mountJSON) bool { return m.State == "hung" })
		t.Logf("restarted agent: %s %s", m, st)
	}
	assertGoroutines(t, b, base, 2)
	w.stop(t)
	heal(t, bed.servers["sig"])
	healed := time.Now()
	for _, m := range []string{"sig1", "sig2"} {
		b.waitMount(90*time.Second, m, "healthy after the partition healed", healthy)
	}
	t.Logf("restarted agent healthy %v after the partition healed", time.Since(healed).Round(time.Millisecond))
	if took := b.stop(syscall.SIGTERM, exitLimit); b.exitCode() != 0 {
		t.Errorf("exit status %d after SIGTERM (%v)", b.exitCode(), took)
	}
}

// testLazyUnmount: a hung mount unmounted lazily (umount -l): a mount
// given with --mount is never reported healthy (the directory underneath
// is local disk) and is not_mounted once its stuck call returns; a
// discovered one is unregistered.
func testLazyUnmount(t *testing.T) {
	srv := bed.servers["sig"]
	static, found := mountPath("lazy"), "/tmp/lz/found"
	for _, mp := range []string{static, found} {
		if err := os.MkdirAll(mp, 0o755); err != nil {
			t.Fatal(err)
		}
		mustSh(t, "mount", "-t", "nfs4", "-o", efsOptions, srv.addr()+":/sig", mp)
		t.Cleanup(func() { _, _ = sh(20*time.Second, "umount", "-f", "-l", mp) })
	}
	a := startAgent(t, agentOpts{args: []string{"--discover-fstypes", "nfs4", "--discover-prefix", "/tmp/lz", "--discovery-interval", "1s"}}, "lazy")
	a.waitMount(30*time.Second, static, "healthy", healthy)
	a.waitMount(30*time.Second, found, "healthy", healthy)
	base := quietGoroutines(a)
	partitionSig(t, a, static, found)
	w := watchEndpoints(a, func(ms map[string]mountJSON) string {
		if st, ok := ms[static]; ok && st.IsHealthy {
			return "lazily unmounted hung mount reported healthy: " + st.String()
		}
		return ""
	})
	for _, mp := range []string{static, found} {
		mustSh(t, "umount", "-l", mp)
	}
	waitFor(t, 15*time.Second, "the discovered mount unregistered", func() (bool, string) {
		_, ok := a.mounts()[found]
		return !ok, "still registered"
	})
	assertGoroutines(t, a, base, 2)
	heal(t, srv)
	_, st := a.waitMount(90*time.Second, static, "not_mounted once its stuck call returned", func(m mountJSON) bool { return m.Reason == "not_mounted" })
	t.Logf("lazily unmounted: %s", st)
	w.stop(t)
	awaitMountsAnswer(t, 90*time.Second, "sig1")
	if took := a.stop(syscall.SIGTERM, exitLimit); a.exitCode() != 0 {
		t.Errorf("exit status %d after SIGTERM (%v)", a.exitCode(), took)
	}
}

// stepClock moves the guest's wall clock by d.
func stepClock(t *testing.T, d time.Duration) {
	t.Helper()
	ts := unix.NsecToTimespec(time.Now().Add(d).UnixNano())
	if err := unix.ClockSettime(unix.CLOCK_REALTIME, &ts); err != nil {
		t.Fatalf("clock_settime: %v", err)
	}
}

// testClockStep: the wall clock stepped forward an hour, then back two,
// then forward one again: no check fails, the mounts stay healthy and
// keep being checked, and no goroutine is left over.
func testClockStep(t *testing.T) {
	a := startAgent(t, agentOpts{}, "sig1", "sig2")
	a.waitMount(30*time.Second, "sig1", "healthy", healthy)
	a.waitMount(30*time.Second, "sig2", "healthy", healthy)
	base := quietGoroutines(a)
	var offset time.Duration
	t.Cleanup(func() {
		if offset != 0 {
			stepClock(t, -offset)
		}
	})
	w := watchEndpoints(a, func(ms map[string]mountJSON) string {
		for _, m := range []string{"sig1", "sig2"} {
			if st := ms[mountPath(m)]; !healthy(st) || st.ErrorCount != 0 {
				return m + " not healthy across a clock step: " + st.String()
			}
		}
		return ""
	})
	for _, d := range []time.Duration{time.Hour, -2 * time.Hour, time.Hour} {
		stepClock(t, d)
		offset += d
		n := a.checks()
		waitFor(t, 20*time.Second, fmt.Sprintf("three checks after a %v step", d), func() (bool, string) {
			c := a.checks()
			return c >= n+3, fmt.Sprint(c-n, " checks")
		})
	}
	w.stop(t)
	assertGoroutines(t, a, base, 0)
	if took := a.stop(syscall.SIGTERM, exitLimit); a.exitCode() != 0 {
		t.Errorf("exit status %d after SIGTERM (%v)", a.exitCode(), took)
	}
}

// bigEntries is how many entries the big root holds.
const bigEntries = 100_000

// testBigRoot: a mount root with 100,000 entries on a slow server: the
// agent's leftover sweep lists it, and no check fails because of that.
func testBigRoot(t *testing.T) {
	dir := exportPath("big")
	start := time.Now()
	if err := makeEntries(dir, bigEntries); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		start := time.Now()
		if err := removeEntries(dir, bigEntries); err != nil {
			t.Error(err)
		}
		t.Logf("entries removed in %v", time.Since(start).Round(time.Millisecond))
	})
	t.Logf("%d entries made on the server in %v", bigEntries, time.Since(start).Round(time.Millisecond))
	netem(t, bed.servers["big"], "delay", "20ms")
	a := startAgent(t, agentOpts{}, "big")
	a.waitMount(30*time.Second, "big", "healthy", healthy)
	registered := time.Now()
	w := watchEndpoints(a, func(ms map[string]mountJSON) string {
		if st := ms[mountPath("big")]; !st.IsHealthy || st.ErrorCount != 0 {
			return "a check failed while the agent swept the big root: " + st.String()
		}
		return ""
	})
	// The sweep lists the root once after the first successful check;
	// watch until it is over and a few checks more.
	waitFor(t, 60*time.Second, "the leftover sweep of the big root", func() (bool, string) {
		return strings.Contains(a.logText(), "leftover sweep stopped at its bound"), "no sweep log line yet"
	})
	t.Logf("sweep over %v after the first check", time.Since(registered).Round(time.Millisecond))
	n := a.checks()
	waitFor(t, 20*time.Second, "three checks after the sweep", func() (bool, string) { return a.checks() >= n+3, "" })
	w.stop(t)
	st, _ := a.mount("big")
	t.Logf("big root: %s", st)
}

// entryName is the name of the big root's entry i.
func entryName(i int) string { return fmt.Sprintf("entry-%06d-of-a-directory-with-many-files", i) }

// makeEntries makes n empty files in dir, server side, one mknodat each,
// on two goroutines (the guest has two CPUs).
func makeEntries(dir string, n int) error {
	return onEntries(dir, n, func(fd, i int) error {
		return unix.Mknodat(fd, entryName(i), unix.S_IFREG|0o644, 0)
	})
}

// removeEntries removes the entries makeEntries made.
func removeEntries(dir string, n int) error {
	return onEntries(dir, n, func(fd, i int) error {
		if err := unix.Unlinkat(fd, entryName(i), 0); err != nil && err != unix.ENOENT {
			return err
		}
		return nil
	})
}

func onEntries(dir string, n int, op func(fd, i int) error) error {
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	errs := make(chan error, 2)
	for w := 0; w < 2; w++ {
		go func() {
			for i := w; i < n; i += 2 {
				if err := op(fd, i); err != nil {
					errs <- fmt.Errorf("entry %d: %w", i, err)
					return
				}
			}
			errs <- nil
		}()
	}
	return errors.Join(<-errs, <-errs)
}

// opCounts are the RPC counts of one mount by NFS operation, from
// /proc/self/mountstats.
func opCounts(t *testing.T, mountpoint string) map[string]uint64 {
	t.Helper()
	f, err := os.Open("/proc/self/mountstats")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	counts := map[string]uint64{}
	in, ops := false, false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "device ") {
			in = strings.Contains(line, " mounted on "+mountpoint+" with ")
			ops = false
			continue
		}
		if !in {
			continue
		}
		if strings.TrimSpace(line) == "per-op statistics" {
			ops = true
			continue
		}
		if !ops {
			continue
		}
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			continue
		}
		if n, err := strconv.ParseUint(fields[0], 10, 64); err == nil {
			counts[name] = n
		}
	}
	if len(counts) == 0 {
		t.Fatalf("no per-op statistics for %s in /proc/self/mountstats", mountpoint)
	}
	return counts
}

// rpcChecks is how many checks the RPC measurement counts.
const rpcChecks = 20

// testRPCCost counts the NFS RPCs of one check by operation, over
// rpcChecks checks of a healthy mount no one else uses, and prints the
// table. The check's guarantees need at least one WRITE (the data reached
// the server), one READ (the read came from the server) and one REMOVE.
func testRPCCost(t *testing.T) {
	mp := mountPath("rpc")
	a := startAgent(t, agentOpts{interval: "1s", timeout: "1s"}, "rpc")
	a.waitMount(30*time.Second, "rpc", "healthy", healthy)
	// Past the first check's leftover sweep, then at the end of a check.
	first := a.checks()
	waitFor(t, 20*time.Second, "three checks", func() (bool, string) { return a.checks() >= first+3, "" })
	boundary := func() (float64, map[string]uint64) {
		c := a.checks()
		var after float64
		waitFor(t, 10*time.Second, "a check to end", func() (bool, string) {
			after = a.checks()
			return after > c, ""
		})
		return after, opCounts(t, mp)
	}
	c0, s0 := boundary()
	waitFor(t, 2*rpcChecks*time.Second, fmt.Sprintf("%d checks", rpcChecks), func() (bool, string) {
		return a.checks() >= c0+rpcChecks-1, ""
	})
	c1, s1 := boundary()
	n := c1 - c0
	var ops []string
	for op, v := range s1 {
		if v > s0[op] {
			ops = append(ops, op)
		}
	}
	sort.Strings(ops)
	var b strings.Builder
	total := 0.0
	fmt.Fprintf(&b, "NFS RPCs per check over %.0f checks (mountstats of %s):\n", n, mp)
	for _, op := range ops {
		per := float64(s1[op]-s0[op]) / n
		total += per
		fmt.Fprintf(&b, "  %-14s %6.2f\n", op, per)
	}
	fmt.Fprintf(&b, "  %-14s %6.2f\n", "total", total)
	t.Log(b.String())
	_ = os.WriteFile(filepath.Join(workDir, "rpcs.txt"), []byte(b.String()), 0o644)
	for _, op := range []string{"WRITE", "READ", "REMOVE"} {
		if per := float64(s1[op]-s0[op]) / n; per < 1 {
			t.Errorf("%s: %.2f RPCs per check, want at least 1", op, per)
		}
	}
}

// testLeftovers: after every scenario, an agent of the node on every
// mount still served sweeps what earlier agents left (kill -9, SIGTERM);
// then nothing is left on any server: no probe file, no .nfs file.
func testLeftovers(t *testing.T) {
	var names, writable, dirs []string
	for _, s := range servers {
		for _, e := range s.exports {
			dirs = append(dirs, filepath.Join(exportPath(e.name), e.sub))
			if e.name == "stale" {
				continue // its mount's root is gone for good
			}
			names = append(names, e.mounts...)
			if e.writable {
				writable = append(writable, e.mounts...)
			}
		}
	}
	a := startAgent(t, agentOpts{}, names...)
	// Leftovers are swept after a mount's first successful check.
	for _, m := range writable {
		a.waitMount(60*time.Second, m, "healthy", func(m mountJSON) bool { return m.IsHealthy })
	}
	left := func() (bool, string) {
		var all []string
		for _, d := range dirs {
			fs, err := probeFiles(d)
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range fs {
				all = append(all, filepath.Join(d, f))
			}
		}
		return len(all) == 0, strings.Join(all, " ")
	}
	// A leftover is removed once older than the leftover age (30 s);
	// the last scenario that could leave one ended longer ago than that.
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		// The times the sweep judges a leftover's age by, server side.
		for _, d := range dirs {
			fs, _ := probeFiles(d)
			for _, f := range fs {
				var st unix.Stat_t
				if unix.Lstat(filepath.Join(d, f), &st) == nil {
					t.Logf("left: %s/%s size %d mtime %s ctime %s atime %s (now %s)", d, f, st.Size,
						time.Unix(st.Mtim.Unix()).UTC().Format(time.RFC3339), time.Unix(st.Ctim.Unix()).UTC().Format(time.RFC3339),
						time.Unix(st.Atim.Unix()).UTC().Format(time.RFC3339), time.Now().UTC().Format(time.RFC3339))
				}
			}
		}
	})
	took := waitFor(t, 45*time.Second, "no probe or .nfs file on any server", left)
	t.Logf("servers clean %v after the sweeping agent started", took.Round(time.Millisecond))
	a.stop(syscall.SIGTERM, exitLimit)
	if ok, files := left(); !ok {
		t.Errorf("left on the servers after the agent stopped: %s", files)
	}
}
