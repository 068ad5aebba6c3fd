package probes_test

import (
	"context"
	"testing"

	"github.com/efs-health-agent/efs-health-agent/internal/testenv/testutil"
	"github.com/efs-health-agent/efs-health-agent/probes"
)

// BenchmarkCheck is the probe alone on a local directory: open, statfs,
// write + fsync, read back, delete, with no observer. make bench compares
// the whole agent with the bare syscalls; this is the step between them.
func BenchmarkCheck(b *testing.B) {
	dir := testutil.TmpfsDir(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if res := probes.Check(ctx, dir, probes.Options{Hostname: "bench"}); res.Err != nil {
			b.Fatal(res.Err)
		}
	}
}
