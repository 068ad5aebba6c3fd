//go:build linux

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/efs-health-agent/efs-health-agent/agent"
	"github.com/efs-health-agent/efs-health-agent/httpapi"
	"github.com/efs-health-agent/efs-health-agent/internal/testenv/faultfs"
)

// latencies is what the load generator reports per URL.
type latencies struct {
	URL      string
	N        int
	P50, P99 time.Duration
	Errors   int
}

// runLoad is the second process: a steady request loop over loopback.
func runLoad(urls []string, d time.Duration) {
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	res := map[string][]time.Duration{}
	errs := map[string]int{}
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		for _, u := range urls {
			start := time.Now()
			resp, err := client.Get(u)
			if err != nil {
				errs[u]++
				continue
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			res[u] = append(res[u], time.Since(start))
		}
		time.Sleep(2 * time.Millisecond)
	}
	var out []latencies
	for _, u := range urls {
		ds := res[u]
		if len(ds) == 0 {
			out = append(out, latencies{URL: u, Errors: errs[u]})
			continue
		}
		out = append(out, latencies{URL: u, N: len(ds), P50: quantile(ds, 0.5), P99: quantile(ds, 0.99), Errors: errs[u]})
	}
	_ = json.NewEncoder(os.Stdout).Encode(out)
}

// hungLoad: p99 of every endpoint with 100 mounts, with and without one of
// them hung on the FUSE fault filesystem, under load from another process.
func hungLoad(r *report) {
	r.add("## 5. Endpoints while a mount is hung (target: same p99 as with no hung mount)")
	r.add("")
	if err := faultfs.Available(); err != nil {
		r.add("skipped: %v", err)
		r.add("")
		return
	}
	dir, done := tmpfsDir()
	defer done()
	fs, mnt, err := faultMount()
	if err != nil {
		r.add("skipped: %v", err)
		return
	}
	defer fs.Unmount()
	tel := newTelemetry()
	mon := newMonitor(time.Second, 500*time.Millisecond, tel, 0)
	for i := 0; i < 99; i++ {
		d := filepath.Join(dir, fmt.Sprintf("v%d", i))
		_ = os.Mkdir(d, 0o755)
		_ = mon.Register(agent.Mount{Path: d})
	}
	_ = mon.Register(agent.Mount{Path: mnt})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = mon.Run(ctx) }()
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	srv := httpapi.NewServer("", httpapi.NewRouter(mon, httpapi.Options{Metrics: tel.MetricsHandler()}), quiet)
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	base := "http://" + ln.Addr().String()
	var urls []string
	paths := []string{"/healthz", "/healthz/ready", "/healthz/live", "/healthz/mounts", "/metrics", "/"}
	for _, p := range paths {
		urls = append(urls, base+p)
	}
	time.Sleep(2 * time.Second)
	measure := func() map[string]latencies {
		self, _ := os.Executable()
		out, err := exec.Command(self, "-load", strings.Join(urls, ","), "-load-duration", "8s").Output()
		if err != nil {
			panic(err)
		}
		var ls []latencies
		_ = json.Unmarshal(out, &ls)
		m := map[string]latencies{}
		for _, l := range ls {
			m[strings.TrimPrefix(l.URL, base)] = l
		}
		return m
	}
	healthy := measure()
	fs.Set(faultfs.OpWrite, faultfs.Fault{Hang: true})
	for mon.Summary().Hung == 0 {
		time.Sleep(50 * time.Millisecond)
	}
	hung := measure()
	fs.Clear()
	r.add("| endpoint | p50 no hung mount | p99 no hung mount | p50 one hung | p99 one hung | p99 ratio |")
	r.add("|---|---|---|---|---|---|")
	for _, p := range paths {
		a, b := healthy[p], hung[p]
		r.add("| %s | %v | %v | %v | %v | %.2f |", p, a.P50, a.P99, b.P50, b.P99, float64(b.P99)/float64(a.P99))
	}
	r.add("")
}
