//go:build linux && nfsguest

package nfs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// probeDirName is the agent's probe directory under a mount root.
const probeDirName = ".efs-health"

// dirRefusedLine starts the log line of a refused probe directory, once
// each time a mount starts being checked in mode dir-refused (the agent
// logs as text in the test bed).
const dirRefusedLine = `msg="probe directory refused`

// testProbeDir: the agent's probe directory on the kernel's client. The
// first check makes it (0700) on the server. Removed on the server while
// the agent runs (the client still has it cached), it is made again, with
// no failed check (five times, whenever it falls in a check). Replaced by a symlink, it is refused without being
// followed: the mount is healthy in mode dir-refused, said once in the
// log; once the symlink is gone the write check resumes. With
// --probe-location=root the probe file goes in the root, as before, in
// mode read-write-root.
func testProbeDir(t *testing.T) {
	dir := filepath.Join(exportPath("b"), probeDirName)
	a := startAgent(t, agentOpts{}, "b1")
	a.waitMount(30*time.Second, "b1", "healthy", healthy)
	waitFor(t, 10*time.Second, "the probe directory on the server", func() (bool, string) {
		st, err := os.Lstat(dir)
		return err == nil && st.IsDir() && st.Mode().Perm() == 0o700, fMode(st, err)
	})
	w := watchEndpoints(a, func(ms map[string]mountJSON) string {
		if st := ms[mountPath("b1")]; st.ErrorCount != 0 || !st.IsHealthy {
			return "a check failed with the probe directory removed or replaced: " + st.String()
		}
		return ""
	})
	for i := range 5 {
		n := a.checks()
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
		took := waitFor(t, 20*time.Second, "the probe directory made again", func() (bool, string) {
			st, err := os.Lstat(dir)
			return err == nil && st.IsDir() && a.checks() >= n+2, fMode(st, err)
		})
		t.Logf("removal %d: made again %v after, %.0f checks", i+1, took.Round(time.Millisecond), a.checks()-n)
	}

	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	target := t.TempDir()
	if err := os.Symlink(target, dir); err != nil {
		t.Fatal(err)
	}
	_, st := a.waitMount(20*time.Second, "b1", "healthy in mode dir-refused", func(m mountJSON) bool { return healthy(m) && m.Mode == "dir-refused" })
	t.Logf("symlink in place of %s: %s", probeDirName, st)
	n := a.checks()
	waitFor(t, 20*time.Second, "three more checks", func() (bool, string) { return a.checks() >= n+3, "" })
	if ents, _ := os.ReadDir(target); len(ents) != 0 {
		t.Errorf("the symlink was followed: %v", ents)
	}
	if c := strings.Count(a.logText(), dirRefusedLine); c != 1 {
		t.Errorf("log has %q %d times, want once", dirRefusedLine, c)
	}
	if err := os.Remove(dir); err != nil {
		t.Fatal(err)
	}
	a.waitMount(20*time.Second, "b1", "back in mode read-write", func(m mountJSON) bool { return healthy(m) && m.Mode == "read-write" })
	w.stop(t)
	a.kill()

	root := startAgent(t, agentOpts{args: []string{"--probe-location", "root"}}, "b1")
	_, st = root.waitMount(30*time.Second, "b1", "healthy in mode read-write-root", func(m mountJSON) bool { return healthy(m) && m.Mode == "read-write-root" })
	t.Logf("--probe-location=root: %s", st)
}

func fMode(st os.FileInfo, err error) string {
	if err != nil {
		return err.Error()
	}
	return st.Mode().String()
}
