package httpapi_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/efs-health-agent/efs-health-agent/agent"
	"github.com/efs-health-agent/efs-health-agent/httpapi"
	"github.com/efs-health-agent/efs-health-agent/probes"
)

// Benchmarks of the endpoints with 1,000 mounts, for benchstat:
//
//	go test -run '^$' -bench . -count 10 ./httpapi > new.txt

func benchRouter() http.Handler {
	src := &fakeSource{live: true, sum: agent.Summary{Mounts: 1000, Running: true, Heartbeat: now}}
	for i := 0; i < 1000; i++ {
		src.sts = append(src.sts, &agent.MountStatus{
			Mount:        &agent.Mount{Path: fmt.Sprintf("/var/lib/kubelet/pods/%08d/volumes/kubernetes.io~csi/pv/mount", i)},
			State:        agent.StateHealthy,
			Mode:         probes.ModeReadWrite,
			LastCheck:    now,
			ResponseTime: 3 * time.Millisecond,
			Ops:          agent.OpTimingsOf(agent.OpTiming{Op: probes.OpWrite, Duration: 2 * time.Millisecond}, agent.OpTiming{Op: probes.OpRead, Duration: time.Millisecond}),
		})
	}
	return httpapi.NewRouter(src, httpapi.Options{Now: func() time.Time { return now }})
}

func benchGet(b *testing.B, path string) {
	h := benchRouter()
	req := httptest.NewRequest(http.MethodGet, path, nil)
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("%s: %d", path, rec.Code)
		}
	}
}

func BenchmarkHealthz(b *testing.B)       { benchGet(b, "/healthz") }
func BenchmarkHealthzReady(b *testing.B)  { benchGet(b, "/healthz/ready") }
func BenchmarkHealthzMounts(b *testing.B) { benchGet(b, "/healthz/mounts") }
func BenchmarkStatusPage(b *testing.B)    { benchGet(b, "/") }
