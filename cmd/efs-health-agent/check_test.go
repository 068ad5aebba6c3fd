package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/efs-health-agent/efs-health-agent/internal/testenv/faultfs"
	"github.com/efs-health-agent/efs-health-agent/internal/testenv/testutil"
)

// TestCheckStuck: a check stuck in the kernel is reported at its
// deadline, naming the operation; its probe file is removed by name once
// the call returns.
func TestCheckStuck(t *testing.T) {
	t.Parallel()
	fs := testutil.MountFaultFS(t)
	fs.Set(faultfs.OpFsync, faultfs.Fault{Hang: true})
	var out, errb bytes.Buffer
	code := run([]string{"check", "--check-interval", "10s", "--check-timeout", "500ms", fs.Mountpoint()}, env(nil), &out, &errb)
	if code != 1 {
		t.Fatalf("exit %d\n%s%s", code, out.String(), errb.String())
	}
	for _, w := range []string{"stuck", "timeout after 500ms in write (reason: timeout)", "action", "cleanup"} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("output lacks %q:\n%s", w, out.String())
		}
	}
	fs.Clear()
	testutil.WaitFor(t, "the probe file removed once the call returned", func() bool {
		ents, err := os.ReadDir(fs.Mountpoint())
		return err == nil && len(ents) == 0
	})
}

// TestCheckWriteDenied: a mount where the probe file may not be created
// is healthy, checked read-only, and the output says why; with
// --require-write-check it is the failure permission_denied.
func TestCheckWriteDenied(t *testing.T) {
	t.Parallel()
	fs := testutil.MountFaultFS(t)
	fs.Set(faultfs.OpCreate, faultfs.Fault{Errno: syscall.EACCES})
	var out, errb bytes.Buffer
	if code := run([]string{"check", fs.Mountpoint()}, env(nil), &out, &errb); code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out.String(), errb.String())
	}
	for _, w := range []string{"write    denied", "permission denied: checked read-only instead", "statfs", "readdir", "HEALTHY   write-denied"} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("output lacks %q:\n%s", w, out.String())
		}
	}
	out.Reset()
	if code := run([]string{"check", "--require-write-check", fs.Mountpoint()}, env(nil), &out, &errb); code != 1 ||
		!strings.Contains(out.String(), "(reason: permission_denied)") {
		t.Fatalf("write check required: exit %d\n%s%s", code, out.String(), errb.String())
	}
}

// TestCheckPlainDirectory: a PATH argument must be a mount point. A plain
// directory (an unmounted volume's, say) is not_mounted, "not a mount
// point", and is not touched: its modification time stays, which a probe
// file created and removed in it would change. Given with --mount or
// HEALTH_MOUNTS it is checked as the agent checks a configured path, as
// the plain directory it is, and the output says so.
func TestCheckPlainDirectory(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	before, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if code := run([]string{"check", dir}, env(nil), &out, &errb); code != 1 {
		t.Fatalf("plain directory as a PATH: exit %d\n%s%s", code, out.String(), errb.String())
	}
	for _, w := range []string{"mounttable", "not a mount point (reason: not_mounted)", "UNHEALTHY", "action"} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("output lacks %q:\n%s", w, out.String())
		}
	}
	if after, err := os.Stat(dir); err != nil || !after.ModTime().Equal(before.ModTime()) {
		t.Errorf("the directory was touched: modified %v, then %v (%v)", before.ModTime(), after.ModTime(), err)
	}
	for _, tc := range []struct {
		args []string
		env  map[string]string
	}{
		{[]string{"check", "--mount", dir}, nil},
		{[]string{"check"}, map[string]string{"HEALTH_MOUNTS": dir}},
	} {
		out.Reset()
		if code := run(tc.args, env(tc.env), &out, &errb); code != 0 {
			t.Fatalf("%v %v: exit %d\n%s%s", tc.args, tc.env, code, out.String(), errb.String())
		}
		for _, w := range []string{"not a mount point: checked as a plain directory", "HEALTHY"} {
			if !strings.Contains(out.String(), w) {
				t.Errorf("%v %v: output lacks %q:\n%s", tc.args, tc.env, w, out.String())
			}
		}
	}
	// Without a mount table nothing can be told: a bad setting, as for
	// the agent.
	errb.Reset()
	if code := run([]string{"check", "--mountinfo", filepath.Join(dir, "none"), dir}, env(nil), &out, &errb); code != 2 ||
		!strings.Contains(errb.String(), `invalid --mountinfo="`+filepath.Join(dir, "none")+`"`) {
		t.Fatalf("unreadable mount table: exit %d, stderr %q", code, errb.String())
	}
}
