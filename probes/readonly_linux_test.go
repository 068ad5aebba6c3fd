package probes_test

import (
	"context"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/efs-health-agent/efs-health-agent/internal/testutil"
	"github.com/efs-health-agent/efs-health-agent/probes"
)

func TestReadOnlyMount(t *testing.T) {
	t.Parallel()
	testutil.RequireRoot(t, "mount tmpfs")
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_RDONLY, "size=1m"); err != nil {
		t.Fatalf("mount read-only tmpfs: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	res := probes.Check(context.Background(), dir, probes.Options{Hostname: "h"})
	if res.Err != nil || res.Mode != probes.ModeReadOnly {
		t.Fatalf("read-only mount: %+v", res)
	}
	var ops []string
	for _, o := range res.Ops {
		ops = append(ops, string(o.Op))
	}
	if got := strings.Join(ops, ","); got != "open,statfs,stat,readdir" {
		t.Fatalf("ops %s", got)
	}
}
