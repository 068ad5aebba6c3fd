package httpapi_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/efs-health-agent/efs-health-agent/agent"
	"github.com/efs-health-agent/efs-health-agent/exporters"
	"github.com/efs-health-agent/efs-health-agent/httpapi"
	"github.com/efs-health-agent/efs-health-agent/internal/lograte"
	"github.com/efs-health-agent/efs-health-agent/internal/testenv/testutil"
	"github.com/efs-health-agent/efs-health-agent/probes"
)

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// manyMounts is a live source of n healthy mounts with kubelet-shaped
// paths.
func manyMounts(n int) *fakeSource {
	src := &fakeSource{live: true, sum: agent.Summary{Mounts: n, Running: true, Heartbeat: now}}
	for i := 0; i < n; i++ {
		src.sts = append(src.sts, &agent.MountStatus{
			Mount: &agent.Mount{Path: fmt.Sprintf("/var/lib/kubelet/pods/%08x-0000-4000-8000-%012x/volumes/kubernetes.io~csi/pv-%d/mount", i, i, i), FSType: "nfs4"},
			State: agent.StateHealthy, Mode: probes.ModeReadWrite, LastCheck: now, ResponseTime: 3 * time.Millisecond,
			Ops: agent.OpTimingsOf(agent.OpTiming{Op: probes.OpWrite, Duration: 2 * time.Millisecond}, agent.OpTiming{Op: probes.OpRead, Duration: time.Millisecond}),
		})
	}
	return src
}

// bulkHandler writes size bytes of a scrape-like text that compresses
// well, as an O(n) endpoint of that size would.
func bulkHandler(size int, calls *atomic.Int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if calls != nil {
			calls.Add(1)
		}
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		bw := bufio.NewWriter(w)
		for i, left := 0, size; left > 0; i++ {
			n, _ := fmt.Fprintf(bw, "efs_mount_health_status{mount_path=\"/mnt/v%07d\"} 1\n", i)
			left -= n
		}
		_ = bw.Flush()
	})
}

// heapLive is the heap marked live by the last GC.
func heapLive() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// TestConcurrentRequestsStayInBudget: 100 concurrent clients of each O(n)
// endpoint (/metrics, /healthz/mounts, the status page) at 5,000 mounts,
// all reading everything and asking for gzip as Prometheus does, grow the
// live heap by less than 32 MiB: they are served from at most one
// rendering per endpoint at a time (DefaultRenders in all), compressed
// once. Every answer is 200, or 503 with Retry-After. Not parallel: it
// measures the process's heap.
func TestConcurrentRequestsStayInBudget(t *testing.T) {
	const mounts, clients = 5000, 100
	const bound = 32 << 20
	src := manyMounts(mounts)
	tel, err := exporters.New(context.Background(), src, exporters.Options{Logger: quietLog(), Getenv: func(string) string { return "" }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	// The write deadline (5 s by default) is not under test here: on a
	// loaded machine, 300 clients under the race detector outlast it, and
	// the server rightly drops them.
	srv := httptest.NewServer(httpapi.NewRouter(src, httpapi.Options{Metrics: tel.MetricsHandler(), Logger: quietLog(),
		Now: func() time.Time { return now }, Limits: httpapi.Limits{WriteBase: time.Minute}}))
	t.Cleanup(srv.Close)

	defer debug.SetGCPercent(debug.SetGCPercent(25)) // frequent GCs: a finer sample of the live heap
	runtime.GC()
	base := heapLive()
	var peak atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			peak.Store(max(peak.Load(), heapLive()))
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()
	var ok, refused, other atomic.Int64
	var whyMu sync.Mutex
	why := map[string]int{} // the other answers, by what they were
	otherAnswer := func(what string) {
		other.Add(1)
		whyMu.Lock()
		why[what]++
		whyMu.Unlock()
	}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for _, path := range []string{httpapi.PathMetrics, httpapi.PathMounts, httpapi.PathStatus} {
		for i := 0; i < clients; i++ {
			wg.Go(func() {
				c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 60 * time.Second}
				<-start
				for j := 0; j < 2; j++ {
					req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
					req.Header.Set("Accept-Encoding", "gzip")
					resp, err := c.Do(req)
					if err != nil {
						otherAnswer(path + ": " + err.Error())
						continue
					}
					n, _ := io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					switch {
					case resp.StatusCode == http.StatusOK && n > 0:
						ok.Add(1)
					case resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") != "":
						refused.Add(1)
					default:
						otherAnswer(fmt.Sprintf("%s: %d, %d bytes, Retry-After %q", path, resp.StatusCode, n, resp.Header.Get("Retry-After")))
					}
				}
			})
		}
	}
	close(start)
	wg.Wait()
	close(stop)
	<-sampled
	growth := int64(peak.Load()) - int64(base)
	t.Logf("%d mounts, %d clients per endpoint: live heap %.1f MiB at the start, peak +%.1f MiB; %d answered, %d refused with 503, %d other",
		mounts, clients, float64(base)/(1<<20), float64(growth)/(1<<20), ok.Load(), refused.Load(), other.Load())
	if growth >= bound {
		t.Errorf("the live heap grew by %.1f MiB, the bound is %d MiB", float64(growth)/(1<<20), bound>>20)
	}
	if other.Load() > 0 || ok.Load() == 0 {
		t.Errorf("%d answers neither 200 nor 503 with Retry-After, %d 200: %v", other.Load(), ok.Load(), why)
	}
}

// TestConcurrentRequestsShareOneRendering: 50 concurrent requests and
// then 50 more, the monitor's state unchanged, cost one rendering; a new
// state costs one more.
func TestConcurrentRequestsShareOneRendering(t *testing.T) {
	t.Parallel()
	var calls atomic.Int64
	src := manyMounts(10)
	h := httpapi.NewRouter(src, httpapi.Options{Metrics: bulkHandler(256<<10, &calls), Limits: httpapi.Limits{MaxAge: time.Hour}})
	run := func() {
		var wg sync.WaitGroup
		for i := 0; i < 50; i++ {
			wg.Go(func() {
				rec := httptest.NewRecorder()
				req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
				if i%2 == 0 {
					req.Header.Set("Accept-Encoding", "gzip")
				}
				h.ServeHTTP(rec, req)
				body := rec.Body.Bytes()
				if rec.Header().Get("Content-Encoding") == "gzip" {
					zr, err := gzip.NewReader(bytes.NewReader(body))
					if err != nil {
						t.Error(err)
						return
					}
					body, _ = io.ReadAll(zr)
				}
				if rec.Code != http.StatusOK || len(body) < 256<<10-100 || strconv.Itoa(rec.Body.Len()) != rec.Header().Get("Content-Length") {
					t.Errorf("GET /metrics: %d, %d bytes (Content-Length %s)", rec.Code, len(body), rec.Header().Get("Content-Length"))
				}
			})
		}
		wg.Wait()
	}
	run()
	run()
	if n := calls.Load(); n != 1 {
		t.Fatalf("100 requests of one state rendered %d times, want 1", n)
	}
	src.sum.Heartbeat = now.Add(time.Second)
	src2 := *src
	h2 := httpapi.NewRouter(&src2, httpapi.Options{Metrics: bulkHandler(256<<10, &calls), Limits: httpapi.Limits{MaxAge: time.Hour}})
	for i := 0; i < 2; i++ {
		rec := httptest.NewRecorder()
		h2.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	}
	if n := calls.Load(); n != 2 {
		t.Fatalf("%d renderings after a second router's two requests, want 2", n)
	}
}

// changingSource publishes a new summary on every call, as a busy monitor
// does.
type changingSource struct{ *fakeSource }

func (c changingSource) Summary() *agent.Summary { s := c.fakeSource.sum; return &s }

// TestOverBudgetIs503: a rendering that would hold more than the byte
// budget is answered 503 with Retry-After, not with more memory, and the
// refusals are logged once per cause and interval, not once per request.
func TestOverBudgetIs503(t *testing.T) {
	t.Parallel()
	var logs syncBuf
	incompressible := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		b := make([]byte, 1<<20)
		_, _ = rand.NewChaCha8([32]byte{}).Read(b)
		_, _ = w.Write(b)
	})
	src := changingSource{manyMounts(1)}
	h := httpapi.NewRouter(src, httpapi.Options{Metrics: incompressible, Logger: slog.New(slog.NewTextHandler(&logs, nil)),
		Limits: httpapi.Limits{Bytes: 256 << 10}})
	start := time.Now()
	for i := 0; i < 20; i++ {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
		if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" {
			t.Fatalf("request %d: %d (Retry-After %q), want 503 with Retry-After", i, rec.Code, rec.Header().Get("Retry-After"))
		}
	}
	// Two causes (the rendering, the request), each once per interval
	// begun: a loaded machine may take more than one for the 20 requests.
	intervals := 1 + int(time.Since(start)/lograte.DefaultInterval)
	if n := strings.Count(logs.String(), "\n"); n > 2*intervals {
		t.Fatalf("%d log lines for 20 refused requests in %d log intervals, want at most one per cause and interval:\n%s", n, intervals, logs.String())
	}
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// serve runs the router behind an httpapi.Server on loopback; closed
// counts the connections the server has closed.
func serve(t *testing.T, h http.Handler, maxConns int) (addr string, closed *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := httpapi.NewServer(ln.Addr().String(), h, quietLog())
	s.MaxConnections = maxConns
	closed = &atomic.Int64{}
	s.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateClosed {
			closed.Add(1)
		}
	}
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(func() { _ = s.Close() })
	return ln.Addr().String(), closed
}

// dialSmall connects with a 4 KiB receive buffer, set before the
// connection is made so the window stays small: a client that does not
// read soon stops the server's writes.
func dialSmall(addr string) (net.Conn, error) {
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		return errors.Join(err, serr)
	}}
	return d.Dial("tcp", addr)
}

// TestClientsThatNeverReadAreDropped: 40 clients ask for a 16 MB answer
// (uncompressed, more than the kernel's socket buffers take) and never
// read. The write deadline, sized to the answer, drops each of them, so
// what they held is released: when they read at last, the answer is cut
// short (or was a 503, for one that waited too long for a render slot).
func TestClientsThatNeverReadAreDropped(t *testing.T) {
	t.Parallel()
	const size, clients = 16 << 20, 40
	lim := httpapi.Limits{WriteBase: 300 * time.Millisecond, WriteRate: 64 << 20}
	addr, closed := serve(t, httpapi.NewRouter(manyMounts(1), httpapi.Options{Metrics: bulkHandler(size, nil), Limits: lim, Logger: quietLog()}), 256)
	conns := make([]net.Conn, clients)
	for i := range conns {
		c, err := dialSmall(addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if _, err := io.WriteString(c, "GET /metrics HTTP/1.1\r\nHost: agent\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		conns[i] = c
	}
	// The deadline is 300 ms + 16 MiB / 64 MiB/s = 550 ms; the server's
	// WriteTimeout (30 s) is past the wait's limit.
	start := time.Now()
	testutil.WaitFor(t, "the server to drop every client that does not read", func() bool {
		if n := closed.Load(); n != clients && time.Since(start) > testutil.WaitTimeout-time.Second {
			t.Logf("%d of %d clients dropped", n, clients)
		}
		return closed.Load() == clients
	})
	t.Logf("every client dropped %v after the last request", time.Since(start).Round(time.Millisecond))
	for i, c := range conns[:2] {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			continue // dropped before the headers left the socket buffer
		}
		n, err := io.Copy(io.Discard, resp.Body)
		// A client refused (503: on a loaded machine it may wait past
		// RenderWait for a render slot) held nothing but that short answer.
		if err == nil && n == resp.ContentLength && resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("client %d read the whole answer (%d bytes, %d) after stalling: it was not dropped", i, n, resp.StatusCode)
		}
	}
}

// TestSlowBodiesDoNotLockOutProbes: 256 connections (the cap) each send a
// GET declaring a 200 KB body at 10 B/s, reconnecting when dropped. No
// route reads a body, so none waits for one: /healthz/live on a fresh
// connection keeps answering within the manifests' liveness probe timeout
// (3 s; the probes run in this loaded process too). Locked out, a probe
// would wait for ReadTimeout (10 s) to free a slot.
func TestSlowBodiesDoNotLockOutProbes(t *testing.T) {
	t.Parallel()
	addr, _ := serve(t, httpapi.NewRouter(manyMounts(1), httpapi.Options{Logger: quietLog()}), httpapi.DefaultMaxConnections)
	ctx, cancel := context.WithCancel(context.Background())
	var attackers sync.WaitGroup
	defer attackers.Wait()
	defer cancel()
	for i := 0; i < httpapi.DefaultMaxConnections; i++ {
		attackers.Go(func() { slowBody(ctx, addr) })
	}
	probe := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	// Long enough for every attacker to be through its headers, well
	// short of ReadTimeout (10 s), which used to free the slots.
	deadline := time.Now().Add(3 * time.Second)
	var probes, failed int
	var last error
	for time.Now().Before(deadline) {
		resp, err := probe.Get("http://" + addr + httpapi.PathLive)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				err = fmt.Errorf("status %d", resp.StatusCode)
			}
		}
		probes++
		if err != nil {
			failed++
			last = err
		}
		time.Sleep(100 * time.Millisecond) // the kubelet's period, scaled down
	}
	if failed > 0 {
		t.Fatalf("%d of %d /healthz/live probes failed or took over 3 s under 256 slow-body connections (last: %v)", failed, probes, last)
	}
}

// slowBody sends, until ctx ends, GETs that declare a 200 KB body and send
// it at 10 B/s, on a new connection whenever the server drops one.
func slowBody(ctx context.Context, addr string) {
	for ctx.Err() == nil {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		stop := context.AfterFunc(ctx, func() { c.Close() })
		_, err = io.WriteString(c, "GET /healthz/live HTTP/1.1\r\nHost: agent\r\nContent-Type: text/plain\r\nContent-Length: 200000\r\n\r\n")
		for err == nil && ctx.Err() == nil {
			_, err = c.Write([]byte("x"))
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
		stop()
		c.Close()
	}
}

// TestBusyConnectionMakesRoom: with every slot held by a client that
// does not read its answer, a new connection is admitted by closing the
// one busy longest (past the guard's busy limit, a second), long before the write
// deadline would.
func TestBusyConnectionMakesRoom(t *testing.T) {
	t.Parallel()
	addr, _ := serve(t, httpapi.NewRouter(manyMounts(1), httpapi.Options{Metrics: bulkHandler(16<<20, nil), Logger: quietLog(),
		Limits: httpapi.Limits{WriteBase: time.Minute}}), 16)
	for i := 0; i < 16; i++ {
		c, err := dialSmall(addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if _, err := io.WriteString(c, "GET /metrics HTTP/1.1\r\nHost: agent\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
	}
	probe := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	testutil.WaitFor(t, "/healthz/live to be served with every slot busy", func() bool {
		resp, err := probe.Get("http://" + addr + httpapi.PathLive)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}
