//go:build linux

package main

import (
	"context"
	"io"
	"math"
	"net"
	"net/http"
	"sort"
	"time"

	"github.com/efs-health-agent/efs-health-agent/httpapi"
)

type discard struct{ h http.Header }

func (d *discard) Header() http.Header { return d.h }

func (d *discard) Write(b []byte) (int, error) { return len(b), nil }

func (d *discard) WriteHeader(int) {}

func serve(h http.Handler, path string) time.Duration {
	req, _ := http.NewRequest(http.MethodGet, path, nil)
	start := time.Now()
	h.ServeHTTP(&discard{h: http.Header{}}, req)
	return time.Since(start)
}

func quantile(ds []time.Duration, q float64) time.Duration {
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return ds[int(math.Min(float64(len(ds)-1), q*float64(len(ds))))]
}

// scrape: cost of each endpoint at 1,000 and 10,000 mounts, in process.
func scrape(r *report) {
	r.add("## 4. Endpoint cost by number of mounts (targets at 10,000: /metrics over HTTP ≤ 50 ms, /healthz/mounts ≤ 50 ms; /healthz, /healthz/ready, /healthz/live p99 ≤ 1 ms)")
	r.add("")
	r.add("| mounts | /metrics over HTTP p50 | /metrics p50 | /healthz/mounts p50 | / (status page) p50 | /healthz p99 | /healthz/ready p99 | /healthz/live p99 |")
	r.add("|---|---|---|---|---|---|---|---|")
	for _, n := range []int{1000, 10000} {
		dir, done := tmpfsDir()
		tel := newTelemetry()
		mon, stop := withMounts(dir, n, tel)
		// Every request renders: the router shares a rendering between
		// requests of an unchanged state (up to 1 s), which would time
		// the cache instead; MaxAge shortens that, and pastShare waits
		// out the sharing of a fresh rendering.
		h := httpapi.NewRouter(mon, httpapi.Options{Metrics: tel.MetricsHandler(), Limits: httpapi.Limits{MaxAge: time.Nanosecond}})
		med := func(p string, k int) time.Duration {
			var ds []time.Duration
			for i := 0; i < k; i++ {
				d := serve(h, p)
				ds = append(ds, d)
				pastShare(d)
			}
			return quantile(ds, 0.5)
		}
		p99 := func(p string) time.Duration {
			var ds []time.Duration
			for i := 0; i < 2000; i++ {
				ds = append(ds, serve(h, p))
			}
			return quantile(ds, 0.99)
		}
		overHTTP := httpMedian(h, "/metrics", 15)
		r.add("| %d | %v | %v | %v | %v | %v | %v | %v |", n, overHTTP.Round(time.Microsecond), med("/metrics", 15).Round(time.Microsecond), med("/healthz/mounts", 15).Round(time.Microsecond),
			med("/", 15).Round(time.Microsecond), p99("/healthz"), p99("/healthz/ready"), p99("/healthz/live"))
		if n == 10000 {
			metricsHTTP = overHTTP
		}
		stop()
		_ = tel.Shutdown(context.Background())
		done()
	}
	r.add("")
	r.target("4. /metrics at 10,000 mounts over HTTP, p50", metricsHTTP.Round(time.Microsecond).String(), float64(metricsHTTP)/float64(time.Millisecond), 50, " ms")
}

// metricsHTTP is the /metrics p50 over HTTP at 10,000 mounts, for the
// targets table.
var metricsHTTP time.Duration

// httpMedian serves h on loopback with the agent's server and returns the
// median time of k GET requests for path, from sending the request to the
// last byte of the body, over one kept-alive connection, with the gzip
// encoding a Prometheus server asks for.
func httpMedian(h http.Handler, path string, k int) time.Duration {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	srv := httpapi.NewServer("", h, quiet)
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	defer client.CloseIdleConnections()
	url := "http://" + ln.Addr().String() + path
	get := func() time.Duration {
		start := time.Now()
		resp, err := client.Get(url)
		if err != nil {
			panic(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return time.Since(start)
	}
	pastShare(get()) // connect
	var ds []time.Duration
	for i := 0; i < k; i++ {
		d := get()
		ds = append(ds, d)
		pastShare(d)
	}
	return quantile(ds, 0.5)
}

// pastShare waits until a rendering that took about d is no longer shared
// with new requests (the router shares one for 4x the time it took), so
// the next request is timed rendering, not served from the cache.
func pastShare(d time.Duration) { time.Sleep(5*d + time.Millisecond) }
