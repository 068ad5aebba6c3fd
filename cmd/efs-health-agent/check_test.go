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
	"github.com/efs-health-agent/efs-health-agent/probes"
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
		return len(leftBehind(t, fs.Mountpoint())) == 0
	})
}

// leftBehind lists what a check may not leave in the mount root dir:
// every entry but the probe directory, and every entry of that directory
// (which stays, empty, for the next check).
func leftBehind(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if e.Name() != probes.DirName || !e.IsDir() {
			out = append(out, e.Name())
		}
	}
	in, _ := os.ReadDir(filepath.Join(dir, probes.DirName))
	for _, e := range in {
		out = append(out, filepath.Join(probes.DirName, e.Name()))
	}
	return out
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
