//go:build linux

package main

import (
	"context"
	"net"
	"net/http"
	"syscall"
	"time"

	"github.com/efs-health-agent/efs-health-agent/agent"
	"github.com/efs-health-agent/efs-health-agent/httpapi"
	"github.com/efs-health-agent/efs-health-agent/internal/testenv/faultfs"
)

// detection: fault start to /healthz/ready 503, release to 200, at
// interval 1s and timeout 500ms.
func detection(r *report) {
	r.add("## 6. Detection latency at interval 1s, timeout 500ms (targets: hang ≤ interval + timeout + 100 ms = 1.6 s, recovery ≤ 2 s)")
	r.add("")
	if err := faultfs.Available(); err != nil {
		r.add("skipped: %v", err)
		r.add("")
		return
	}
	fs, mnt, err := faultMount()
	if err != nil {
		r.add("skipped: %v", err)
		return
	}
	defer fs.Unmount()
	mon := newMonitor(time.Second, 500*time.Millisecond, nil, 0)
	_ = mon.Register(agent.Mount{Path: mnt})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = mon.Run(ctx) }()
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	srv := httpapi.NewServer("", httpapi.NewRouter(mon, httpapi.Options{}), quiet)
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	ready := "http://" + ln.Addr().String() + "/healthz/ready"
	code := func() int {
		resp, err := http.Get(ready)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	until := func(want int) time.Duration {
		start := time.Now()
		for code() != want {
			time.Sleep(5 * time.Millisecond)
		}
		return time.Since(start)
	}
	until(200)
	r.add("| fault | runs | fault → 503 median | max | release → 200 median | max |")
	r.add("|---|---|---|---|---|---|")
	for _, f := range []struct {
		name  string
		fault faultfs.Fault
	}{{"EIO on write", faultfs.Fault{Errno: syscall.EIO}}, {"hang in write", faultfs.Fault{Hang: true}}} {
		var det, rec []time.Duration
		for i := 0; i < 5; i++ {
			time.Sleep(time.Duration(200*i) * time.Millisecond) // vary the phase
			fs.Set(faultfs.OpWrite, f.fault)
			det = append(det, until(503))
			fs.Clear()
			rec = append(rec, until(200))
		}
		r.add("| %s | 5 | %v | %v | %v | %v |", f.name, quantile(det, 0.5).Round(time.Millisecond), quantile(det, 1).Round(time.Millisecond),
			quantile(rec, 0.5).Round(time.Millisecond), quantile(rec, 1).Round(time.Millisecond))
		worst := quantile(det, 1).Round(time.Millisecond)
		r.target("6. "+f.name+" → 503, slowest of 5", worst.String(), worst.Seconds(), 1.6, " s")
		back := quantile(rec, 1).Round(time.Millisecond)
		r.target("6. "+f.name+" released → 200, slowest of 5", back.String(), back.Seconds(), 2, " s")
	}
	r.add("")
}
