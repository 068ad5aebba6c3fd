package exporters_test

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/efs-health-agent/efs-health-agent/agent"
	"github.com/efs-health-agent/efs-health-agent/checklog"
	"github.com/efs-health-agent/efs-health-agent/exporters"
	"github.com/efs-health-agent/efs-health-agent/probes"
)

func heap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestChurn: pods come and go and every pod has a new mount path. 20,000
// distinct paths pass through, 100 at a time, each checked and scraped:
// the scrape only ever holds the live ones, the /debug/checks store stays
// bounded, and the heap stays flat. Not parallel: it measures the heap.
func TestChurn(t *testing.T) {
	src := &source{}
	tel := newTel(t, src, exporters.Options{})
	const rounds, live = 200, 100
	var base uint64
	for r := 0; r < rounds; r++ {
		// The last round's pods are gone, this round's are registered,
		// then checked (the agent lists a mount before it checks it).
		sts := make([]*agent.MountStatus, live)
		for i := range sts {
			p := fmt.Sprintf("/var/lib/kubelet/pods/pod-%d-%d/volumes/efs/mount", r, i)
			sts[i] = &agent.MountStatus{Mount: &agent.Mount{Path: p}, State: agent.StateHealthy, LastCheck: t0, ResponseTime: time.Millisecond, ErrorCount: uint64(i)}
		}
		src.set(sts, agent.Summary{Mounts: live})
		for _, st := range sts {
			runCheck(tel.Observer(), *st.Mount, t0, map[probes.Op]time.Duration{probes.OpWrite: time.Millisecond, probes.OpRead: time.Millisecond}, st)
		}
		body := scrape(t, tel, "")
		if n := strings.Count(body, "efs_mount_health_status{"); n != live {
			t.Fatalf("round %d: %d health series, want %d live mounts", r, n, live)
		}
		if r > 0 && strings.Contains(body, fmt.Sprintf("pod-%d-", r-1)) {
			t.Fatalf("round %d: series of unregistered mounts remain", r)
		}
		// The check log holds a fixed number of entries, whatever the
		// number of mounts that passed through.
		if n, most := tel.CheckLog().Len(), checklog.DefaultRecent+checklog.DefaultSlowest+checklog.DefaultFailures; n > most {
			t.Fatalf("round %d: /debug/checks holds %d records, more than %d", r, n, most)
		}
		if r%10 == 0 {
			debugChecks(t, tel, "?mount=none")
		}
		if r == 20 {
			base = heap()
		}
	}
	end := heap()
	t.Logf("heap after warm-up %d KiB, after %d distinct mounts %d KiB", base>>10, rounds*live, end>>10)
	if end > base+2<<20 {
		t.Fatalf("heap grew from %d KiB to %d KiB over %d distinct mounts", base>>10, end>>10, rounds*live)
	}
}
