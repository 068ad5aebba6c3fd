package main

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/efs-health-agent/efs-health-agent/internal/faultfs"
	"github.com/efs-health-agent/efs-health-agent/internal/testutil"
)

// TestCheckStuck: a check stuck in the kernel is reported at its
// deadline, naming the operation; its probe file is removed by name once
// the call returns.
func TestCheckStuck(t *testing.T) {
	t.Parallel()
	fs := faultfs.MountT(t)
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
