//go:build linux && nfsguest

package nfs

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// groupMounts is the number of mounts of one file system in the grouping
// layouts (the reference case).
const groupMounts = 10

// groupInterval is the agent's check interval in the grouping scenarios,
// and groupIntervals how many intervals a round-trip count spans.
const (
	groupInterval  = 2 * time.Second
	groupIntervals = 10
)

// metadataOps are the NFS operations that change metadata on the server.
var metadataOps = map[string]bool{"OPEN": true, "CREATE": true, "SETATTR": true, "WRITE": true, "REMOVE": true, "RENAME": true, "LINK": true, "COMMIT": true}

// layout is a set of mounts of one export: plain (one superblock) or each
// through a proxy of its own to one server (trunked onto one client).
type layout struct {
	name    string
	mounts  []string
	proxies []*tcpProxy
}

// plainLayout mounts the tunnel server's export groupMounts times, plain.
func plainLayout(t *testing.T) layout {
	srv := bed.servers["tunnel"]
	l := layout{name: "plain"}
	for i := range groupMounts {
		mp := filepath.Join(mountDir, fmt.Sprintf("gp%d", i))
		mountFor(t, mp, "", srv.addr()+":/tunnel")
		l.mounts = append(l.mounts, mp)
	}
	return l
}

// trunkedLayout mounts the tunnel server's export groupMounts times, each
// through a proxy of its own on 127.0.0.1:20100+i, as efs-utils mounts
// each file system through an efs-proxy of its own.
func trunkedLayout(t *testing.T) layout {
	srv := bed.servers["tunnel"]
	l := layout{name: "trunked"}
	for i := range groupMounts {
		port := 20100 + i
		p := &tcpProxy{listen: fmt.Sprintf("127.0.0.1:%d", port), target: srv.addr() + ":2049"}
		p.start(t)
		t.Cleanup(p.stop)
		mp := filepath.Join(tunnelDir, fmt.Sprintf("gt%d", i))
		mountFor(t, mp, fmt.Sprintf(",port=%d", port), "127.0.0.1:/tunnel")
		l.mounts = append(l.mounts, mp)
		l.proxies = append(l.proxies, p)
	}
	return l
}

// mountFor mounts source at mp with EFS's options (and extra), unmounted
// when the test ends.
func mountFor(t *testing.T, mp, extra, source string) {
	t.Helper()
	if err := os.MkdirAll(mp, 0o755); err != nil {
		t.Fatal(err)
	}
	mustSh(t, "mount", "-t", "nfs4", "-o", efsOptions+extra, source, mp)
	t.Cleanup(func() { _, _ = sh(20*time.Second, "umount", "-f", "-l", mp) })
	if err := awaitGrace(mp, 60*time.Second); err != nil {
		t.Fatal(err)
	}
}

// superblocks maps each mount point to its device number (mountinfo's
// major:minor).
func superblocks(t *testing.T, mps []string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, mp := range mps {
		var st unix.Stat_t
		if err := unix.Stat(mp, &st); err != nil {
			t.Fatal(err)
		}
		out[mp] = fmt.Sprintf("%d:%d", unix.Major(st.Dev), unix.Minor(st.Dev))
	}
	return out
}

// layoutCounts sums the RPC counters of the layout's distinct superblocks
// (mountstats shows one superblock's counters under each of its mounts).
func layoutCounts(t *testing.T, l layout) map[string]uint64 {
	t.Helper()
	seen := map[string]bool{}
	sum := map[string]uint64{}
	for mp, dev := range superblocks(t, l.mounts) {
		if seen[dev] {
			continue
		}
		seen[dev] = true
		for op, n := range opCounts(t, mp) {
			sum[op] += n
		}
	}
	return sum
}

// perInterval runs an agent on the layout's mounts (grouped or not) and
// returns the RPCs per interval by operation, the total and the
// metadata-changing ones.
func perInterval(t *testing.T, l layout, grouped bool) (map[string]float64, float64, float64) {
	args := []string{"--group-checks=" + fmt.Sprint(grouped)}
	a := startAgent(t, agentOpts{interval: groupInterval.String(), timeout: "1s", args: args}, l.mounts...)
	defer a.kill()
	for _, mp := range l.mounts {
		a.waitMount(60*time.Second, mp, "healthy", healthy)
	}
	// Past every mount's first check and the first leftover sweeps.
	time.Sleep(3 * groupInterval)
	c0, t0 := layoutCounts(t, l), time.Now()
	time.Sleep(groupIntervals * groupInterval)
	c1, t1 := layoutCounts(t, l), time.Now()
	n := float64(t1.Sub(t0)) / float64(groupInterval)
	per := map[string]float64{}
	var total, meta float64
	for op, v := range c1 {
		if d := float64(v - c0[op]); d > 0 {
			per[op] = d / n
			total += d / n
			if metadataOps[op] {
				meta += d / n
			}
		}
	}
	return per, total, meta
}

// testGroupRPCs counts the round trips per interval of ten mounts of one
// export, plain and trunked, with grouping off and on, and prints the
// table. Target with grouping: at most 16 round trips per interval, at
// most 4 of them changing metadata, as EFS would count them (no
// DELEGRETURN).
func testGroupRPCs(t *testing.T) {
	var b strings.Builder
	fmt.Fprintf(&b, "NFS RPCs per %v interval, %d mounts of one export, over %d intervals:\n", groupInterval, groupMounts, groupIntervals)
	for _, mk := range []func(*testing.T) layout{plainLayout, trunkedLayout} {
		l := mk(t)
		devs := map[string]bool{}
		for _, d := range superblocks(t, l.mounts) {
			devs[d] = true
		}
		for _, grouped := range []bool{false, true} {
			per, total, meta := perInterval(t, l, grouped)
			ops := make([]string, 0, len(per))
			for op := range per {
				ops = append(ops, op)
			}
			sort.Strings(ops)
			fmt.Fprintf(&b, "  %s (%d superblocks), grouping %v: total %.1f, metadata-changing %.1f:", l.name, len(devs), grouped, total, meta)
			for _, op := range ops {
				fmt.Fprintf(&b, " %s %.1f", op, per[op])
			}
			b.WriteString("\n")
			// The target is what EFS would see: it grants no delegation
			// (the user guide's unsupported NFSv4.1 features: "client
			// delegation or callbacks of any type"), so no DELEGRETURN,
			// which the Linux nfsd's delegation on the probe's open adds.
			if efs := total - per["DELEGRETURN"]; grouped && (efs > 16 || meta > 4) {
				t.Errorf("%s grouped: %.1f round trips per interval without DELEGRETURN (%.1f metadata-changing), want at most 16 (4)", l.name, efs, meta)
			}
		}
		for _, mp := range l.mounts {
			_, _ = sh(20*time.Second, "umount", "-f", "-l", mp)
		}
		for _, p := range l.proxies {
			p.stop()
		}
	}
	t.Log(b.String())
	_ = os.WriteFile(filepath.Join(workDir, "group-rpcs.txt"), []byte(b.String()), 0o644)
}

// statHangs reports which of mps do not answer a stat -f (statfs) within
// limit: measured apart from the agent, each in a process of its own.
func statHangs(mps []string, limit time.Duration) map[string]bool {
	out := map[string]bool{}
	done := make(chan string, len(mps))
	for _, mp := range mps {
		go func() {
			if _, err := sh(limit, "stat", "-f", mp); err == nil {
				done <- mp
			} else {
				done <- "!" + mp
			}
		}()
	}
	for range mps {
		r := <-done
		if p, hung := strings.CutPrefix(r, "!"); hung {
			out[p] = true
		}
	}
	return out
}

// testGroupTunnel: ten mounts trunked through ten proxies, grouped. A
// silenced proxy (its forwarding stopped, as by SIGSTOP) and a killed one
// flag exactly the mounts whose I/O really hangs (a timed stat -f on each,
// apart from the agent): those the silenced tunnel carries.
func testGroupTunnel(t *testing.T) {
	l := trunkedLayout(t)
	// Discovered, so that each mount's tunnel is the port its mount table
	// entry shows: the connection that carries it.
	// A timeout of 2 s: a call that takes over 1 s is not rare in the
	// emulated guest, and would be a fault of the mount's own.
	a := startAgent(t, agentOpts{interval: "3s", timeout: "2s", args: append([]string{"--group-checks=true"}, discoverTunnel...)})
	for _, mp := range l.mounts {
		a.waitMount(60*time.Second, mp, "healthy", healthy)
	}
	shared := 0
	waitFor(t, 10*groupInterval, "a mount on a shared proof", func() (bool, string) {
		shared = 0
		for _, mp := range l.mounts {
			if m, _ := a.mount(mp); m.Check == "shared" {
				shared++
			}
		}
		return shared > 0, ""
	})
	// Stop each proxy in turn until one is found that carries traffic
	// (the trunked superblock's connection): kill it.
	// From the last: the first mount's proxy is likely the one that
	// carries them all, and the idle ones must flag nothing.
	killed := -1
	for i := len(l.proxies) - 1; i >= 0; i-- {
		p := l.proxies[i]
		p.stop()
		hung := statHangs(l.mounts, 3*time.Second)
		t.Logf("proxy %d killed: %d mounts hang (stat -f)", i, len(hung))
		if len(hung) == 0 {
			// An idle tunnel: no mount may be flagged for it, for an
			// interval and a timeout.
			until := time.Now().Add(3*time.Second + 2*time.Second)
			for time.Now().Before(until) {
				for _, mp := range l.mounts {
					if m, _ := a.mount(mp); !m.IsHealthy {
						t.Fatalf("%s flagged (%s) for an idle tunnel whose death hangs nothing", mp, m)
					}
				}
				time.Sleep(200 * time.Millisecond)
			}
			p.start(t)
			continue
		}
		killed = i
		start := time.Now()
		waitFor(t, 3*time.Second+2*time.Second+5*time.Second, "every hung mount flagged", func() (bool, string) {
			var missing []string
			for mp := range hung {
				if m, _ := a.mount(mp); m.IsHealthy {
					missing = append(missing, mp)
				}
			}
			return len(missing) == 0, strings.Join(missing, ",")
		})
		t.Logf("the %d hung mounts flagged %v after the proxy died", len(hung), time.Since(start).Round(time.Millisecond))
		for _, mp := range l.mounts {
			m, _ := a.mount(mp)
			if !hung[mp] && !m.IsHealthy {
				t.Errorf("%s flagged (%s) while its I/O answers", mp, m)
			}
			if hung[mp] {
				t.Logf("%s: %s", mp, m)
				// A check that dialed the tunnel after it died says
				// tunnel_down; one started before and still stuck says
				// timeout, then hung.
				if m.Reason != "tunnel_down" && m.Reason != "timeout" && m.Reason != "hung" {
					t.Errorf("%s: reason %q, want tunnel_down (or timeout, hung for a check started before the tunnel died)", mp, m.Reason)
				}
			}
		}
		break
	}
	if killed < 0 {
		t.Fatal("no proxy carried the mounts' traffic")
	}
}
