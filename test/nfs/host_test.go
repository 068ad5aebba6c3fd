//go:build linux && !nfsguest

package nfs

import (
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/efs-health-agent/efs-health-agent/internal/testenv/testutil"
)

// defaultLimit is how long the guest may run before QEMU is killed: the
// whole of make nfs-e2e must fit 16 minutes on a loaded 2-core CI machine
// (a whole run takes about 6 minutes on an idle one, 12 under a load
// average of 30).
const defaultLimit = 15 * time.Minute

// guestTools are the host programs the test bed needs, by Debian package.
var guestTools = []struct{ path, pkg string }{
	{"qemu-system-x86_64", "qemu-system-x86"},
	{"/bin/busybox", "busybox-static"},
	{"rpc.nfsd", "nfs-kernel-server"},
	{"rpc.mountd", "nfs-kernel-server"},
	{"exportfs", "nfs-kernel-server"},
	{"mount.nfs", "nfs-common"},
	{"tc", "iproute2"},
	{"ip", "iproute2"},
	{"unshare", "util-linux"},
	{"nsenter", "util-linux"},
}

// TestNFS boots the guest once, runs every scenario (or those NFS_RUN
// selects) in it, and reports each as a subtest.
func TestNFS(t *testing.T) {
	if os.Getenv("NFS_E2E") == "" {
		t.Skip("the NFS test bed runs in a QEMU guest: make nfs-e2e (NFS_E2E=1)")
	}
	testutil.RequireRoot(t, "boot the guest with the host's root shared read-only over 9p")
	kernel, modDir, err := guestKernel()
	if err == nil {
		err = missingTools()
	}
	testutil.Require(t, err)

	limit := defaultLimit
	if v := os.Getenv("NFS_LIMIT"); v != "" {
		if limit, err = time.ParseDuration(v); err != nil {
			t.Fatalf("invalid NFS_LIMIT=%q: %v", v, err)
		}
	}
	work, err := os.MkdirTemp("", "nfs-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if (t.Failed() && os.Getenv("CI") == "") || os.Getenv("NFS_KEEP") != "" {
			t.Logf("kept the guest's results share: %s (logs/ has every agent's and server's log)", work)
			return
		}
		_ = os.RemoveAll(work)
	})
	start := time.Now()
	build(t, work)
	if err := writeInitramfs(filepath.Join(work, "initrd"), modDir, bootModules); err != nil {
		t.Fatalf("initramfs: %v", err)
	}
	// The guest's own time limit comes first, so that a stuck scenario
	// ends with the testing package's goroutine dump rather than a kill.
	guestLimit := limit - 30*time.Second
	args := []string{"-test.v", "-test.timeout=" + guestLimit.String()}
	if run := os.Getenv("NFS_RUN"); run != "" {
		args = append(args, "-test.run=^TestScenarios$/"+run)
	} else {
		// GroupRPCs measures what grouped checks (HEALTH_GROUP_CHECKS,
		// off by default) cost against a target they meet with little
		// margin: it runs when asked for (make nfs-group-rpcs), not in
		// every run of the bed.
		args = append(args, "-test.skip=^TestScenarios$/GroupRPCs$")
	}
	if err := os.WriteFile(filepath.Join(work, "args"), []byte(strings.Join(args, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("built the agent, the guest driver and the initramfs in %v; booting %s (limit %v)", time.Since(start).Round(time.Millisecond), kernel, limit)

	boot := time.Now()
	qerr := runGuest(t, work, kernel, limit)
	t.Logf("guest ran for %v", time.Since(boot).Round(time.Second))
	out, _ := os.ReadFile(filepath.Join(work, "guest.out"))
	rc, rcErr := os.ReadFile(filepath.Join(work, "rc"))
	results := parseResults(out)
	if qerr != nil || rcErr != nil || len(results) == 0 {
		t.Errorf("the guest did not finish (%v; exit status file: %v); guest output tail:\n%s\nconsole tail:\n%s",
			qerr, rcErr, tail(out, 60), tail(readFile(filepath.Join(work, "console.log")), 40))
	}
	for _, r := range results {
		t.Run(r.name, func(t *testing.T) {
			t.Logf("guest verdict %s in %s\n%s", r.verdict, r.took, r.log)
			switch r.verdict {
			case "FAIL":
				t.Error("scenario failed in the guest (log above)")
			case "SKIP":
				t.Skip("skipped in the guest")
			}
		})
	}
	// A failed scenario explains a failed driver; a panic (the driver's
	// own time limit included) cuts the running scenario's verdict off.
	if code := strings.TrimSpace(string(rc)); rcErr == nil && code != "0" && (!anyFailed(results) || bytes.Contains(out, []byte("\npanic: "))) {
		t.Errorf("guest driver exited with status %s; output tail:\n%s", code, tail(out, 60))
	}
}

// guestKernel finds the newest kernel in /boot and its modules.
func guestKernel() (kernel, modDir string, err error) {
	ks, _ := filepath.Glob("/boot/vmlinuz-*")
	sort.Strings(ks)
	for i := len(ks) - 1; i >= 0; i-- {
		ver := strings.TrimPrefix(filepath.Base(ks[i]), "vmlinuz-")
		if st, err := os.Stat(filepath.Join("/lib/modules", ver, "modules.dep")); err == nil && st.Mode().IsRegular() {
			return ks[i], filepath.Join("/lib/modules", ver), nil
		}
	}
	return "", "", errors.New("no /boot/vmlinuz-* with its modules in /lib/modules (apt-get install linux-image-amd64)")
}

// missingTools names the Debian packages to install for the test bed.
func missingTools() error {
	var pkgs []string
	for _, tool := range guestTools {
		if _, err := exec.LookPath(tool.path); err != nil && !contains(pkgs, tool.pkg) {
			pkgs = append(pkgs, tool.pkg)
		}
	}
	if f, err := elf.Open("/bin/busybox"); err == nil {
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP && !contains(pkgs, "busybox-static") {
				pkgs = append(pkgs, "busybox-static") // the initramfs has no libc
			}
		}
		f.Close()
	}
	if len(pkgs) > 0 {
		return fmt.Errorf("the NFS test bed needs %s (apt-get install %s)", strings.Join(pkgs, ", "), strings.Join(pkgs, " "))
	}
	return nil
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// build compiles the agent and the guest driver, static, into work.
func build(t *testing.T, work string) {
	t.Helper()
	for _, args := range [][]string{
		{"build", "-trimpath", "-o", filepath.Join(work, "efs-health-agent"), "../../cmd/efs-health-agent"},
		{"test", "-c", "-tags", "nfsguest", "-o", filepath.Join(work, "guest.test"), "."},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		cmd := exec.CommandContext(ctx, "go", args...)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil {
			t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// runGuest boots the guest and waits for it to power off, killing QEMU
// at limit. The guest's output is followed as it runs.
func runGuest(t *testing.T, work, kernel string, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64",
		"-accel", "tcg,thread=multi", "-cpu", "max", "-smp", "2", "-m", "3072",
		"-nic", "none", "-display", "none", "-monitor", "none", "-no-reboot",
		"-serial", "file:"+filepath.Join(work, "console.log"),
		"-kernel", kernel, "-initrd", filepath.Join(work, "initrd"),
		"-append", "console=ttyS0 panic=-1 quiet rdinit=/init",
		"-virtfs", "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap",
		"-virtfs", "local,path="+work+",mount_tag=work,security_model=none,multidevs=remap",
	)
	cmd.WaitDelay = 5 * time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("qemu: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	follow := newFollower(filepath.Join(work, "guest.out"))
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			follow.emit(t)
			if ctx.Err() != nil {
				return fmt.Errorf("guest killed at the %v limit", limit)
			}
			if err != nil {
				return fmt.Errorf("qemu: %w: %s", err, strings.TrimSpace(stderr.String()))
			}
			return nil
		case <-tick.C:
			follow.emit(t)
		}
	}
}

// follower prints the complete lines added to a file since the last look.
type follower struct {
	path string
	off  int64
}

func newFollower(path string) *follower { return &follower{path: path} }

func (f *follower) emit(t *testing.T) {
	b, err := os.ReadFile(f.path)
	if err != nil || int64(len(b)) <= f.off {
		return
	}
	chunk := b[f.off:]
	end := bytes.LastIndexByte(chunk, '\n')
	if end < 0 {
		return
	}
	f.off += int64(end + 1)
	for _, line := range strings.Split(string(chunk[:end]), "\n") {
		t.Log("guest: " + line)
	}
}

// result is one guest scenario's verdict and log.
type result struct {
	name, verdict, took, log string
}

var (
	runLine    = regexp.MustCompile(`^=== (?:RUN|CONT)\s+TestScenarios/(\S+)$`)
	resultLine = regexp.MustCompile(`^\s*--- (PASS|FAIL|SKIP): TestScenarios/(\S+) \(([^)]*)\)$`)
)

// parseResults reads the scenarios' verdicts from the guest's -test.v
// output; a scenario's log is its lines between its start and its verdict.
func parseResults(out []byte) []result {
	var res []result
	logs := map[string]*strings.Builder{}
	cur := ""
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if m := runLine.FindStringSubmatch(line); m != nil {
			cur = m[1]
			if logs[cur] == nil {
				logs[cur] = &strings.Builder{}
			}
			continue
		}
		if m := resultLine.FindStringSubmatch(line); m != nil {
			r := result{name: m[2], verdict: m[1], took: m[3]}
			if b := logs[m[2]]; b != nil {
				r.log = b.String()
			}
			res = append(res, r)
			cur = ""
			continue
		}
		if cur != "" {
			logs[cur].WriteString(line + "\n")
		}
	}
	return res
}

func anyFailed(rs []result) bool {
	for _, r := range rs {
		if r.verdict == "FAIL" {
			return true
		}
	}
	return false
}

func readFile(path string) []byte {
	b, _ := os.ReadFile(path)
	return b
}

// tail returns the last n lines of b.
func tail(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
