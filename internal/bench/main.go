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
	"sort"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/efs-health-agent/efs-health-agent/agent"
	"github.com/efs-health-agent/efs-health-agent/exporters"
	"github.com/efs-health-agent/efs-health-agent/httpapi"
	"github.com/efs-health-agent/efs-health-agent/internal/faultfs"
	"github.com/efs-health-agent/efs-health-agent/internal/tmpfs"
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
	flag.Parse()
	if *load != "" {
		runLoad(strings.Split(*load, ","), *dur)
		return
	}
	os.Exit(run(*out, *scaleDur))
}

type report struct {
	lines []string
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

func newTelemetry() *exporters.Telemetry {
	t, err := exporters.New(context.Background(), nil, exporters.Options{Logger: quiet, Getenv: func(string) string { return "" }})
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
	r.add("Machine: %d cores (%s), kernel %s, %s, %s", runtime.NumCPU(), cpu, strings.TrimRight(string(uts.Release[:]), "\x00"), runtime.Version(), time.Now().UTC().Format("2006-01-02"))
	r.add("")

	if scaleProfile != "" {
		scale(r, scaleDur)
		return 0
	}
	overhead(r)
	if cpuProfile != "" {
		return 0
	}
	memory(r)
	scrape(r)
	hungLoad(r)
	detection(r)
	scale(r, scaleDur)

	if out != "" {
		writeReport(out, r)
	}
	return 0
}

// bareCheck is the probe's syscall sequence with no agent machinery.
func bareCheck(dir string, i int, payload, buf []byte) error {
	dfd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(dfd)
	var st unix.Statfs_t
	if err := unix.Fstatfs(dfd, &st); err != nil {
		return err
	}
	name := fmt.Sprintf(".bare-%d.tmp", i)
	fd, err := unix.Openat(dfd, name, unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_WRONLY|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	_, _ = unix.Write(fd, payload)
	_ = unix.Fsync(fd)
	unix.Close(fd)
	fd, err = unix.Openat(dfd, name, unix.O_RDONLY|unix.O_DIRECT|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		fd, err = unix.Openat(dfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
	}
	_, _ = unix.Read(fd, buf)
	unix.Close(fd)
	return unix.Unlinkat(dfd, name, 0)
}

// overhead: CPU per check through the agent (scheduler, telemetry, spans)
// against the bare syscall sequence, side by side in one run.
func overhead(r *report) {
	dir, done := tmpfsDir()
	defer done()
	payload := make([]byte, probes.PayloadSize)
	raw := make([]byte, 8192)
	off := 4096 - int(uintptr(unsafePointer(raw))&4095)
	buf := raw[off%4096 : off%4096+4096]
	const n = 20000
	for i := 0; i < 500; i++ {
		_ = bareCheck(dir, i, payload, buf)
	}
	c0 := cpuTime()
	w0 := time.Now()
	for i := 0; i < n; i++ {
		if err := bareCheck(dir, i, payload, buf); err != nil {
			panic(err)
		}
	}
	bare := (cpuTime() - c0) / n
	bareWall := time.Since(w0) / n

	// The agent: 50 mounts checked as fast as the scheduler allows
	// (interval 50ms), with the full telemetry pipeline recording spans
	// and the histogram.
	tel := newTelemetry()
	mon := newMonitor(50*time.Millisecond, 40*time.Millisecond, tel, 0)
	for i := 0; i < 50; i++ {
		d := filepath.Join(dir, fmt.Sprintf("m%d", i))
		_ = os.Mkdir(d, 0o755)
		_ = mon.Register(agent.Mount{Path: d})
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { _ = mon.Run(ctx) }()
	time.Sleep(time.Second)
	checks := func() uint64 {
		var s uint64
		for _, st := range mon.Statuses() {
			s += st.Checks
		}
		return s
	}
	if cpuProfile != "" {
		f, _ := os.Create(cpuProfile)
		_ = pprof.StartCPUProfile(f)
	}
	k0, c1 := checks(), cpuTime()
	time.Sleep(10 * time.Second)
	k1, c2 := checks(), cpuTime()
	if cpuProfile != "" {
		pprof.StopCPUProfile()
	}
	cancel()
	_ = tel.Shutdown(context.Background())
	agentPer := (c2 - c1) / time.Duration(k1-k0)
	r.add("## 1. Agent overhead per check (target: agent ≤ 1.3× bare syscalls)")
	r.add("")
	r.add("| | CPU per check | wall per check |")
	r.add("|---|---|---|")
	r.add("| bare syscall sequence (%d iterations, tmpfs) | %v | %v |", n, bare, bareWall)
	r.add("| agent: scheduler + probe + spans + histogram (%d checks, 50 mounts, tmpfs) | %v | — |", k1-k0, agentPer)
	r.add("| **ratio agent / bare** | **%.2f×** | |", float64(agentPer)/float64(bare))
	r.add("")
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
	r.add("## 2. Memory per mount (target: ≤ 2 KiB per mount, linear)")
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
		r.add("| %d | %s | %d KiB | %d KiB | %.0f B |", row.n, label, base>>10, after>>10, float64(after-base)/float64(row.n))
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
	r.add("## 4. Endpoint cost by number of mounts (targets at 10,000: /metrics ≤ 100 ms, /healthz/mounts ≤ 50 ms; /healthz, /healthz/ready, /healthz/live p99 ≤ 1 ms)")
	r.add("")
	r.add("| mounts | /metrics p50 | /healthz/mounts p50 | / (status page) p50 | /healthz p99 | /healthz/ready p99 | /healthz/live p99 |")
	r.add("|---|---|---|---|---|---|---|")
	for _, n := range []int{1000, 10000} {
		dir, done := tmpfsDir()
		tel := newTelemetry()
		mon, stop := withMounts(dir, n, tel)
		h := httpapi.NewRouter(mon, httpapi.Options{Metrics: tel.MetricsHandler()})
		med := func(p string, k int) time.Duration {
			var ds []time.Duration
			for i := 0; i < k; i++ {
				ds = append(ds, serve(h, p))
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
		r.add("| %d | %v | %v | %v | %v | %v | %v |", n, med("/metrics", 15).Round(time.Microsecond), med("/healthz/mounts", 15).Round(time.Microsecond),
			med("/", 15).Round(time.Microsecond), p99("/healthz"), p99("/healthz/ready"), p99("/healthz/live"))
		stop()
		_ = tel.Shutdown(context.Background())
		done()
	}
	r.add("")
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
	}
	r.add("")
}

// scale: 10,000 mounts at a 30s interval: CPU share of one core and how
// evenly check starts spread over the interval.
func scale(r *report, d time.Duration) {
	r.add("## 3. CPU at scale: 10,000 mounts, interval 30s (target: ≤ 2%% of one core, checks spread evenly)")
	r.add("")
	dir, done := tmpfsDir()
	defer done()
	tel := newTelemetry()
	defer tel.Shutdown(context.Background())
	mon, stop := withMounts(dir, 10000, tel)
	defer stop()
	// Let the first random phase settle, then measure.
	time.Sleep(35 * time.Second)
	prev := map[string]uint64{}
	for _, st := range mon.Statuses() {
		prev[st.Path] = st.Checks
	}
	buckets := map[int64]int{}
	if scaleProfile != "" {
		f, _ := os.Create(scaleProfile)
		_ = pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	c0, w0 := cpuTime(), time.Now()
	for time.Since(w0) < d {
		time.Sleep(time.Second)
		sec := int64(time.Since(w0) / time.Second)
		for _, st := range mon.Statuses() {
			if st.Checks != prev[st.Path] {
				buckets[sec] += int(st.Checks - prev[st.Path])
				prev[st.Path] = st.Checks
			}
		}
	}
	// The once-a-second sampling loop above costs CPU too; measure it alone.
	cpu := cpuTime() - c0
	wall := time.Since(w0)
	s0 := cpuTime()
	for i := 0; i < 10; i++ {
		for _, st := range mon.Statuses() {
			_ = st.Checks
		}
	}
	sampling := (cpuTime() - s0) / 10 * time.Duration(wall/time.Second)
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
	r.add("| %v | %d | %.2f%% | %.0f | %d | %d | %.2f |", wall.Round(time.Second), total, 100*float64(cpu-sampling)/float64(wall), mean, counts[0], max, float64(max)/mean)
	r.add("")
}

func writeReport(path string, r *report) {
	var b strings.Builder
	b.WriteString("# Benchmarks\n\nWritten by `make bench` (`go run ./internal/bench`); rerun it after touching a hot path.\n\n")
	b.WriteString(methodText)
	b.WriteString("\n## Latest run\n\n")
	for _, l := range r.lines {
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
