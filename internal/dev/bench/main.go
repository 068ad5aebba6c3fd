//go:build linux

// Command bench measures the agent against the targets in BENCHMARKS.md
// and rewrites that file. Run it with `make bench` (root, for tmpfs and the
// FUSE fault filesystem). Every figure is a ratio or a per-unit cost
// measured within one run, because absolute times drift on shared machines.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"golang.org/x/sys/unix"

	"github.com/efs-health-agent/efs-health-agent/agent"
	"github.com/efs-health-agent/efs-health-agent/exporters"
	"github.com/efs-health-agent/efs-health-agent/httpapi"
	"github.com/efs-health-agent/efs-health-agent/internal/testenv/faultfs"
	"github.com/efs-health-agent/efs-health-agent/internal/testenv/tmpfs"
	"github.com/efs-health-agent/efs-health-agent/probes"
)

var cpuProfile, scaleProfile string

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func main() {
	load := flag.String("load", "", "internal: act as the load generator against these comma-separated URLs")
	dur := flag.Duration("load-duration", 5*time.Second, "internal: load duration")
	out := flag.String("out", "BENCHMARKS.md", "file to write")
	scaleDur := flag.Duration("scale-duration", 90*time.Second, "how long the 10,000-mount CPU run lasts")
	flag.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the agent part of figure 1 here, and stop")
	flag.StringVar(&scaleProfile, "scaleprofile", "", "run only figure 3, write a CPU profile of its measured part here, and stop")
	flag.StringVar(&figures, "figures", "", "run only these comma-separated figures (1,2,2b,3,4,5,6) and print the report instead of writing -out")
	flag.Parse()
	if *load != "" {
		runLoad(strings.Split(*load, ","), *dur)
		return
	}
	os.Exit(run(*out, *scaleDur))
}

type report struct {
	lines []string
	// targets are the rows of the targets table, in the order measured.
	targets []string
}

// target adds a row to the targets table: what was measured against a
// "≤ limit" target, and whether it is met or by how much it is missed.
func (r *report) target(name, measured string, got, limit float64, unit string) {
	r.targets = append(r.targets, fmt.Sprintf("| %s | %s | ≤ %g%s | %s |", name, measured, limit, unit, strings.Trim(verdict(got, limit, unit), "()")))
}

func (r *report) add(format string, a ...any) {
	s := fmt.Sprintf(format, a...)
	fmt.Println(s)
	r.lines = append(r.lines, s)
}

func cpuTime() time.Duration {
	var ru unix.Rusage
	_ = unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// tmpfsDir mounts a fresh tmpfs (falls back to a temp dir without root).
func tmpfsDir() (string, func()) {
	d, _ := os.MkdirTemp("", "efs-bench")
	unmount, err := tmpfs.Mount(d, "size=512m,nr_inodes=0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err, "- using", d)
		return d, func() { os.RemoveAll(d) }
	}
	return d, func() { unmount(); os.RemoveAll(d) }
}

func newMonitor(interval, timeout time.Duration, tel *exporters.Telemetry, conc int) *agent.Monitor {
	cfg := agent.DefaultConfig()
	cfg.Hostname = "bench"
	cfg.Logger = quiet
	cfg.Interval, cfg.Timeout = interval, timeout
	if conc > 0 {
		cfg.MaxConcurrent = conc
	}
	if cfg.MinRetry > interval {
		cfg.MinRetry = interval
	}
	if tel != nil {
		cfg.Observer = tel.Observer()
	}
	m, err := agent.New(cfg)
	if err != nil {
		panic(err)
	}
	if tel != nil {
		tel.SetSource(m)
	}
	return m
}

func newTelemetry() *exporters.Telemetry { return newTracedTelemetry("") }

// newTracedTelemetry is the agent's telemetry with a span processor
// attached, as in production with OTLP push: a batch processor whose
// exporter discards the spans. sampler is OTEL_TRACES_SAMPLER ("" for the
// default).
func newTracedTelemetry(sampler string) *exporters.Telemetry {
	env := map[string]string{"OTEL_TRACES_SAMPLER": sampler}
	t, err := exporters.New(context.Background(), nil, exporters.Options{Logger: quiet, Getenv: func(k string) string { return env[k] },
		SpanProcessor: sdktrace.NewBatchSpanProcessor(tracetest.NewNoopExporter())})
	if err != nil {
		panic(err)
	}
	return t
}

func run(out string, scaleDur time.Duration) int {
	r := &report{}
	host, _ := os.Hostname()
	_ = host
	cpu := "unknown"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				cpu = strings.TrimSpace(strings.SplitN(l, ":", 2)[1])
				break
			}
		}
	}
	var uts unix.Utsname
	_ = unix.Uname(&uts)
	load := "unknown"
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		load = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	r.add("Machine: %d cores (%s), kernel %s, %s, %s; load average at start %s", runtime.NumCPU(), cpu, strings.TrimRight(string(uts.Release[:]), "\x00"), runtime.Version(), time.Now().UTC().Format("2006-01-02 15:04 MST"), load)
	r.add("")

	if scaleProfile != "" {
		scale(r, scaleDur)
		return 0
	}
	if figures != "" {
		// A partial run, to check one figure after a change: printed, not
		// written (BENCHMARKS.md holds complete runs only).
		want := strings.Split(figures, ",")
		for _, f := range []struct {
			name string
			run  func(*report)
		}{{"1", overhead}, {"2", memory}, {"2b", idleRSS}, {"4", scrape}, {"5", hungLoad}, {"6", detection},
			{"3", func(r *report) { scale(r, scaleDur) }}} {
			if slices.Contains(want, f.name) {
				f.run(r)
			}
		}
		fmt.Println(strings.Join(r.targets, "\n")) // the figures were printed as measured
		return 0
	}
	overhead(r)
	if cpuProfile != "" {
		return 0
	}
	memory(r)
	idleRSS(r)
	scrape(r)
	hungLoad(r)
	detection(r)
	scale(r, scaleDur)

	if out != "" {
		writeReport(out, r)
	}
	return 0
}

// figures, when set, selects the figures to run (-figures).
var figures string

// bareCheck is the probe's syscall sequence with no agent machinery: the
// root opened O_PATH, one descriptor for the probe file (created
// exclusively, switched to O_DIRECT where the filesystem allows), pwrite,
// fsync, pread through the same descriptor, close, unlink.
func bareCheck(dir string, i int, payload, buf []byte) error {
	dfd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(dfd)
	name := fmt.Sprintf(".bare-%d.tmp", i)
	fd, err := unix.Openat(dfd, name, unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	_, _ = unix.FcntlInt(uintptr(fd), unix.F_SETFL, unix.O_DIRECT)
	n := copy(buf, payload) // out of an aligned buffer, as O_DIRECT wants
	_, _ = unix.Pwrite(fd, buf[:n], 0)
	_ = unix.Fsync(fd)
	_, _ = unix.Pread(fd, buf[:n], 0)
	unix.Close(fd)
	return unix.Unlinkat(dfd, name, 0)
}

// Figure 1: the agent at 200 mounts checked every second.
const (
	overheadMounts   = 200
	overheadInterval = time.Second
	overheadTimeout  = 500 * time.Millisecond
	overheadRun      = 15 * time.Second
)

// overhead: process CPU per check of the whole agent (HTTP server,
// scheduler, probe, telemetry with a span processor attached) at 200 mounts
// every second, against two baselines on the same tmpfs directories: the
// bare syscall sequence back to back, and the same syscalls paced by one
// timer at the agent's rate.
func overhead(r *report) {
	dir, done := tmpfsDir()
	defer done()
	dirs := make([]string, overheadMounts)
	for i := range dirs {
		dirs[i] = filepath.Join(dir, fmt.Sprintf("m%03d", i))
		_ = os.Mkdir(dirs[i], 0o755)
	}
	payload := make([]byte, probes.PayloadSize)
	raw := make([]byte, 8192)
	off := 4096 - int(uintptr(unsafePointer(raw))&4095)
	buf := raw[off%4096 : off%4096+4096]
	check := func(i int) {
		if err := bareCheck(dirs[i%len(dirs)], i, payload, buf); err != nil {
			panic(err)
		}
	}

	// Baseline 1: back to back, round robin over the mounts' directories.
	const n = 20000
	for i := 0; i < 1000; i++ {
		check(i)
	}
	c0, w0 := cpuTime(), time.Now()
	for i := 0; i < n; i++ {
		check(i)
	}
	bare := (cpuTime() - c0) / n
	bareWall := time.Since(w0) / n

	// Baseline 2: the same syscalls paced by one timer at the agent's rate
	// (one check every interval / mounts), round robin.
	tick := time.NewTicker(overheadInterval / overheadMounts)
	paced := 0
	c0, w0 = cpuTime(), time.Now()
	for time.Since(w0) < overheadRun {
		<-tick.C
		check(paced)
		paced++
	}
	tick.Stop()
	pacedPer := (cpuTime() - c0) / time.Duration(paced)
	pacedWall := time.Since(w0)

	type agentRow struct {
		checks uint64
		per    time.Duration
		rate   float64
	}
	runAgent := func(profile bool, sampler ...string) agentRow {
		tel := newTracedTelemetry(strings.Join(sampler, ""))
		mon := newMonitor(overheadInterval, overheadTimeout, tel, 0)
		for _, d := range dirs {
			_ = mon.Register(agent.Mount{Path: d})
		}
		ctx, cancel := context.WithCancel(context.Background())
		monDone := make(chan struct{})
		go func() { defer close(monDone); _ = mon.Run(ctx) }()
		ln, _ := net.Listen("tcp", "127.0.0.1:0")
		srv := httpapi.NewServer("", httpapi.NewRouter(mon, httpapi.Options{Metrics: tel.MetricsHandler(),
			DebugChecks: tel.DebugChecksHandler()}), quiet)
		go func() { _ = srv.Serve(ln) }()
		// Two intervals for the random first phase to settle.
		time.Sleep(2 * overheadInterval)
		checks := func() uint64 {
			var s uint64
			for _, st := range mon.Statuses() {
				s += st.Checks
			}
			return s
		}
		var profFile *os.File
		if profile {
			f, _ := os.Create(cpuProfile)
			profFile = f
			if err := pprof.StartCPUProfile(f); err != nil {
				fmt.Fprintln(os.Stderr, "bench: cpu profile:", err)
			}
		}
		k0, c1, w1 := checks(), cpuTime(), time.Now()
		time.Sleep(overheadRun)
		k1, c2, w2 := checks(), cpuTime(), time.Now()
		if profile {
			pprof.StopCPUProfile()
			_ = profFile.Close()
		}
		_ = srv.Close()
		cancel()
		<-monDone
		_ = tel.Shutdown(context.Background())
		return agentRow{checks: k1 - k0, per: (c2 - c1) / time.Duration(k1-k0), rate: float64(k1-k0) / w2.Sub(w1).Seconds()}
	}
	def := runAgent(cpuProfile != "")
	all := runAgent(false, "always_on")

	r.add("## 1. Agent CPU per check: 200 mounts, interval 1 s (targets: agent ≤ 4× the bare syscalls back to back, ≤ 1× the same syscalls paced by a timer)")
	r.add("")
	r.add("| | checks | checks per second | CPU per check | wall per check |")
	r.add("|---|---|---|---|---|")
	r.add("| bare syscalls back to back, round robin over the 200 directories | %d | %.0f | %v | %v |", n, float64(time.Second)/float64(bareWall), bare, bareWall)
	r.add("| bare syscalls paced by one timer at the agent's rate (every %v) | %d | %.0f | %v | — |", overheadInterval/overheadMounts, paced, float64(paced)/pacedWall.Seconds(), pacedPer)
	r.add("| agent, default trace sampling (healthy checks at %s %v) | %d | %.0f | %v | — |", exporters.DefaultHealthySampler, exporters.DefaultHealthySampleRatio, def.checks, def.rate, def.per)
	r.add("| agent, every check traced (OTEL_TRACES_SAMPLER=always_on) | %d | %.0f | %v | — |", all.checks, all.rate, all.per)
	r.add("")
	r.add("| ratio | default sampling | every check traced | target |")
	r.add("|---|---|---|---|")
	r.add("| agent / bare back to back | **%.2f×** | %.2f× | ≤ 4× %s |", ratio(def.per, bare), ratio(all.per, bare), verdict(ratio(def.per, bare), 4, "×"))
	r.add("| agent / bare paced | **%.2f×** | %.2f× | ≤ 1× %s |", ratio(def.per, pacedPer), ratio(all.per, pacedPer), verdict(ratio(def.per, pacedPer), 1, "×"))
	r.add("")
	r.target("1. agent CPU per check / bare syscalls back to back (200 mounts at 1 s)", fmt.Sprintf("%v / %v", def.per, bare), ratio(def.per, bare), 4, "×")
	r.target("1. agent CPU per check / same syscalls paced by a timer", fmt.Sprintf("%v / %v", def.per, pacedPer), ratio(def.per, pacedPer), 1, "×")
}

func ratio(a, b time.Duration) float64 { return float64(a) / float64(b) }

// verdict says whether got meets a "≤ limit" target, and by how much it
// misses.
func verdict(got, limit float64, unit string) string {
	if got <= limit {
		return "(met)"
	}
	return fmt.Sprintf("(missed by %.2f%s, %.0f%%)", got-limit, unit, 100*(got-limit)/limit)
}

func heapAlloc() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// registerDirs makes n directories under dir and registers them as NFS
// mounts on a monitor checking every interval.
func registerDirs(dir string, n int, interval, timeout time.Duration, tel *exporters.Telemetry) *agent.Monitor {
	mon := newMonitor(interval, timeout, tel, 64)
	for i := 0; i < n; i++ {
		d := filepath.Join(dir, fmt.Sprintf("v%05d", i))
		_ = os.Mkdir(d, 0o755)
		_ = mon.Register(agent.Mount{Path: d, FSType: "nfs4", Source: "fs-0123456789abcdef.efs.us-east-1.amazonaws.com:/"})
	}
	return mon
}

// withMounts registers n tmpfs directories, runs the checks until each has
// completed one, and returns the monitor and the function that stops it.
func withMounts(dir string, n int, tel *exporters.Telemetry) (*agent.Monitor, func()) {
	mon := registerDirs(dir, n, 30*time.Second, 5*time.Second, tel)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { _ = mon.Run(ctx) }()
	for mon.Summary().Pending > 0 {
		time.Sleep(50 * time.Millisecond)
	}
	return mon, cancel
}

// memory: live heap per registered mount after checks and scrapes.
func memory(r *report) {
	r.add("## 2. Memory per mount (target: ≤ 1 KiB per mount in the steady state, linear)")
	r.add("")
	r.add("| mounts | checks per mount | heap before | heap after checks + scrapes | per mount |")
	r.add("|---|---|---|---|---|")
	for _, row := range []struct{ n, checks int }{{1000, 1}, {10000, 1}, {1000, 12}} {
		dir, done := tmpfsDir()
		base := heapAlloc()
		tel := newTelemetry()
		var mon *agent.Monitor
		stop := func() {}
		if row.checks == 1 {
			mon, stop = withMounts(dir, row.n, tel)
		} else {
			mon = withChecks(dir, row.n, row.checks, tel)
		}
		h := httpapi.NewRouter(mon, httpapi.Options{Metrics: tel.MetricsHandler()})
		for _, p := range []string{"/metrics", "/healthz/mounts", "/"} {
			serve(h, p)
		}
		serve(tel.DebugChecksHandler(), httpapi.PathDebugChecks)
		after := heapAlloc()
		label := "1 (first check)"
		if row.checks > 1 {
			label = fmt.Sprintf("≥ %d (histories full)", row.checks)
		}
		per := float64(after-base) / float64(row.n)
		r.add("| %d | %s | %d KiB | %d KiB | %.0f B |", row.n, label, base>>10, after>>10, per)
		if row.checks > 1 {
			r.target("2. heap per mount in the steady state", fmt.Sprintf("%.0f B", per), per/1024, 1, " KiB")
		}
		stop()
		_ = tel.Shutdown(context.Background())
		runtime.KeepAlive(mon)
		done()
	}
	r.add("")
}

// withChecks registers n tmpfs directories, checks them every 100 ms until
// each has had k checks (enough to fill its /debug/checks and latency
// histories), then stops the scheduler and lets the checks in flight end,
// so that the heap holds the steady state and no check's garbage.
func withChecks(dir string, n, k int, tel *exporters.Telemetry) *agent.Monitor {
	mon := registerDirs(dir, n, 100*time.Millisecond, 50*time.Millisecond, tel)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { _ = mon.Run(ctx) }()
	for {
		least := uint64(k)
		for _, st := range mon.Statuses() {
			least = min(least, st.Checks)
		}
		if least >= uint64(k) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	for mon.Summary().InFlight > 0 {
		time.Sleep(10 * time.Millisecond)
	}
	return mon
}

type discard struct{ h http.Header }

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(b []byte) (int, error) { return len(b), nil }
func (d *discard) WriteHeader(int)             {}

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

// idleRSS: resident memory of the agent binary with no mounts, after it
// has served one request of every endpoint.
func idleRSS(r *report) {
	r.add("## 2b. Agent process with no mounts (target: RSS ≤ 12 MiB)")
	r.add("")
	agent, err := residentIdle("./cmd/efs-health-agent",
		[]string{"/healthz", "/healthz/ready", "/healthz/mounts", "/metrics", "/", httpapi.PathDebugChecks})
	if err != nil {
		r.add("skipped: %v", err)
		r.add("")
		return
	}
	floor, err := residentIdle("./internal/dev/bench/floor", []string{"/metrics"})
	if err != nil {
		r.add("skipped: %v", err)
		r.add("")
		return
	}
	r.add("| binary | size | RSS 3 s after one request of every endpoint | of which anonymous (heap, stacks) | of which the binary's pages |")
	r.add("|---|---|---|---|---|")
	r.add("| the agent, `CGO_ENABLED=0 go build -trimpath -ldflags \"-s -w\"` (as `make build`), no mounts, no OTEL_* | %.1f MiB | %.1f MiB | %.1f MiB | %.1f MiB |",
		agent.size, agent.rss, agent.anon, agent.file)
	r.add("| dependency floor (`internal/dev/bench/floor`: chi, the OpenTelemetry SDK with the Prometheus exporter serving /metrics, the OTLP HTTP and gRPC exporters linked; no agent code), built the same way | %.1f MiB | %.1f MiB | %.1f MiB | %.1f MiB |",
		floor.size, floor.rss, floor.anon, floor.file)
	r.add("")
	r.add("The binary's pages count in RSS once the process has touched them (and the kernel has mapped their neighbours); the same share is resident when the binary is run from tmpfs. The floor row is what the agreed core dependencies alone keep resident: the agent's own code, its other libraries and its state are the difference (%.1f MiB).",
		agent.rss-floor.rss)
	r.add("")
	r.target("2b. RSS of the agent with no mounts", fmt.Sprintf("%.1f MiB (dependency floor %.1f MiB)", agent.rss, floor.rss), agent.rss, 12, " MiB")
}

// resident is a process's memory in MiB, and its binary's size.
type resident struct{ size, rss, anon, file float64 }

// residentIdle builds pkg as make build does, runs it listening on
// loopback with an empty environment, requests each of paths once, and
// reads its resident memory 3 s later.
func residentIdle(pkg string, paths []string) (resident, error) {
	tmp, err := os.MkdirTemp("", "bench-bin")
	if err != nil {
		return resident{}, err
	}
	defer os.RemoveAll(tmp)
	bin := filepath.Join(tmp, filepath.Base(pkg))
	build := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, pkg)
	build.Env = append(os.Environ(), "CGO_ENABLED=0") // static, as make build
	if out, err := build.CombinedOutput(); err != nil {
		return resident{}, fmt.Errorf("go build %s: %v %s", pkg, err, out)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return resident{}, err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cmd := exec.Command(bin, "--bind-address", "127.0.0.1", "--port", fmt.Sprint(port))
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	if err := cmd.Start(); err != nil {
		return resident{}, err
	}
	defer func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() }()
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	for start := time.Now(); ; time.Sleep(20 * time.Millisecond) {
		if resp, err := http.Get(base + "/healthz/live"); err == nil {
			resp.Body.Close()
			break
		}
		if time.Since(start) > 20*time.Second {
			return resident{}, fmt.Errorf("%s did not start", pkg)
		}
	}
	for _, p := range paths {
		if resp, err := http.Get(base + p); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	time.Sleep(3 * time.Second) // let the first GC cycles run
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
	if err != nil {
		return resident{}, err
	}
	var rssKiB, anonKiB, fileKiB int
	for _, l := range strings.Split(string(status), "\n") {
		for _, f := range []struct {
			key string
			v   *int
		}{{"VmRSS:", &rssKiB}, {"RssAnon:", &anonKiB}, {"RssFile:", &fileKiB}} {
			if strings.HasPrefix(l, f.key) {
				_, _ = fmt.Sscanf(strings.TrimPrefix(l, f.key), "%d", f.v)
			}
		}
	}
	fi, err := os.Stat(bin)
	if err != nil {
		return resident{}, err
	}
	return resident{size: float64(fi.Size()) / (1 << 20), rss: float64(rssKiB) / 1024, anon: float64(anonKiB) / 1024, file: float64(fileKiB) / 1024}, nil
}

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
	mnt, _ := os.MkdirTemp("", "bench-fuse")
	back, _ := os.MkdirTemp("", "bench-back")
	fs, err := faultfs.Mount(mnt, back, faultfs.Options{})
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
	mnt, _ := os.MkdirTemp("", "bench-fuse")
	back, _ := os.MkdirTemp("", "bench-back")
	fs, err := faultfs.Mount(mnt, back, faultfs.Options{})
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

// scale: 10,000 mounts at a 30s interval: CPU share of one core and how
// evenly check starts spread over the interval.
func scale(r *report, d time.Duration) {
	r.add("## 3. CPU at scale: 10,000 mounts, interval 30s (target: ≤ 1%% of one core, checks spread evenly)")
	r.add("")
	dir, done := tmpfsDir()
	defer done()
	tel := newTelemetry()
	defer tel.Shutdown(context.Background())
	mon, stop := withMounts(dir, 10000, tel)
	defer stop()
	// Let the first random phase settle, then measure.
	time.Sleep(35 * time.Second)
	// The sampler counts each mount's new checks once a second, by index
	// into the sorted status list (no mount is registered or removed
	// during the run), and its own CPU is measured below and subtracted.
	sts := mon.Statuses()
	prev := make([]uint64, len(sts))
	sample := func() int {
		n := 0
		for i, st := range mon.Statuses() {
			if d := st.Checks - prev[i]; d != 0 {
				n += int(d)
				prev[i] = st.Checks
			}
		}
		return n
	}
	sample()
	buckets := map[int64]int{}
	if scaleProfile != "" {
		f, err := os.Create(scaleProfile)
		if err != nil {
			panic(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			panic(err)
		}
		// Closed only once the profile is written: an unreachable *os.File
		// is closed by its finalizer.
		defer func() { pprof.StopCPUProfile(); _ = f.Close() }()
	}
	c0, w0 := cpuTime(), time.Now()
	for time.Since(w0) < d {
		time.Sleep(time.Second)
		buckets[int64(time.Since(w0)/time.Second)] += sample()
	}
	cpu := cpuTime() - c0
	wall := time.Since(w0)
	// The sampler's own cost: the same pass, 10 times back to back.
	s0 := cpuTime()
	for i := 0; i < 10; i++ {
		_ = sample()
	}
	sampling := (cpuTime() - s0) / 10 * time.Duration(len(buckets))
	total := 0
	max := 0
	var counts []int
	for _, c := range buckets {
		total += c
		counts = append(counts, c)
		if c > max {
			max = c
		}
	}
	mean := float64(total) / float64(len(buckets))
	sort.Ints(counts)
	r.add("| run | checks | CPU share of one core (agent, without the sampler) | checks per second: mean | min | max | max / mean |")
	r.add("|---|---|---|---|---|---|---|")
	share := 100 * float64(cpu-sampling) / float64(wall)
	r.add("| %v | %d | %.2f%% | %.0f | %d | %d | %.2f |", wall.Round(time.Second), total, share, mean, counts[0], max, float64(max)/mean)
	r.add("")
	r.target("3. CPU at 10,000 mounts every 30 s", fmt.Sprintf("%.2f%% of a core", share), share, 1, "%")
}

func writeReport(path string, r *report) {
	var b strings.Builder
	b.WriteString("# Benchmarks\n\nWritten by `make bench` (`go run ./internal/dev/bench`); rerun it after touching a hot path.\n\n")
	b.WriteString(methodText)
	b.WriteString("\n## Latest run\n\n")
	for _, l := range r.lines {
		b.WriteString(l + "\n")
	}
	b.WriteString("## Targets\n\nComputed from the figures above by `make bench`.\n\n| target | measured | limit | verdict |\n|---|---|---|---|\n")
	for _, l := range r.targets {
		b.WriteString(l + "\n")
	}
	b.WriteString(notesText)
	// Keep the section `make soak` writes.
	if old, err := os.ReadFile(path); err == nil {
		if i := strings.Index(string(old), "<!-- soak -->"); i >= 0 {
			b.WriteString("\n" + string(old[i:]))
		}
	}
	_ = os.WriteFile(path, []byte(b.String()), 0o644)
}
