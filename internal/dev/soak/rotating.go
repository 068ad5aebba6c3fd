//go:build linux

package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/efs-health-agent/efs-health-agent/agent"
	"github.com/efs-health-agent/efs-health-agent/exporters"
	"github.com/efs-health-agent/efs-health-agent/httpapi"
	"github.com/efs-health-agent/efs-health-agent/internal/testenv/faultfs"
	"github.com/efs-health-agent/efs-health-agent/internal/testenv/tmpfs"
	"github.com/efs-health-agent/efs-health-agent/probes"
)

// rotating is the rotating-faults phase: 200 mounts in process for dur.
func rotating(dur time.Duration, out *string) int {
	if err := faultfs.Available(); err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		return 1
	}
	bed, err := newRotatingBed()
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		return 1
	}
	defer bed.close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = bed.mon.Run(ctx) }()
	base, stop := bed.serve()
	defer stop()
	client := pollEndpoints(ctx, base)

	time.Sleep(5 * time.Second)
	res := bed.rotate(dur)
	for _, fs := range bed.fss {
		fs.Clear()
	}
	time.Sleep(5 * time.Second)
	cancel()
	<-client.done
	res.client = client
	res.leaked = bed.leftovers()
	for _, st := range bed.mon.Statuses() {
		res.checks += st.Checks
	}
	report := res.markdown(dur)
	fmt.Print(report)
	if *out != "" {
		_ = replaceSection(*out, "<!-- soak -->\n", "<!-- /soak -->\n", report)
	}
	if !res.ok() {
		fmt.Println("soak: FAILED (bounds above)")
		return 1
	}
	return 0
}

// rotatingBed is the agent in process with its 200 mounts: 190 tmpfs
// directories and 10 FUSE fault mounts.
type rotatingBed struct {
	root string
	tel  *exporters.Telemetry
	mon  *agent.Monitor
	// dirs are the directories probe files land in (for the FUSE
	// mounts, their backing directories).
	dirs    []string
	fss     []*faultfs.FS
	cleanup []func()
}

func newRotatingBed() (_ *rotatingBed, err error) {
	b := &rotatingBed{}
	defer func() {
		if err != nil {
			b.close()
		}
	}()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	b.root, _ = os.MkdirTemp("", "efs-soak")
	b.cleanup = append(b.cleanup, func() { os.RemoveAll(b.root) })
	if unmount, err := tmpfs.Mount(b.root, "size=256m"); err == nil {
		b.cleanup = append(b.cleanup, unmount)
	}
	b.tel, _ = exporters.New(context.Background(), nil, exporters.Options{Logger: quiet, Getenv: func(string) string { return "" }})
	cfg := agent.DefaultConfig()
	cfg.Hostname, cfg.Logger, cfg.Observer = "soak", quiet, b.tel.Observer()
	cfg.Interval, cfg.Timeout, cfg.MinRetry = 2*time.Second, time.Second, 250*time.Millisecond
	b.mon, _ = agent.New(cfg)
	b.tel.SetSource(b.mon)
	for i := 0; i < 190; i++ {
		d := filepath.Join(b.root, fmt.Sprintf("v%03d", i))
		_ = os.Mkdir(d, 0o755)
		b.dirs = append(b.dirs, d)
		_ = b.mon.Register(agent.Mount{Path: d})
	}
	for i := 0; i < 10; i++ {
		mnt, _ := os.MkdirTemp("", "soak-fuse")
		back, _ := os.MkdirTemp("", "soak-back")
		fs, err := faultfs.Mount(mnt, back, faultfs.Options{})
		if err != nil {
			return nil, err
		}
		b.cleanup = append(b.cleanup, func() { fs.Unmount() })
		b.fss = append(b.fss, fs)
		b.dirs = append(b.dirs, back)
		_ = b.mon.Register(agent.Mount{Path: mnt})
	}
	return b, nil
}

// close unmounts and removes what newRotatingBed made, last made first.
func (b *rotatingBed) close() {
	for i := len(b.cleanup) - 1; i >= 0; i-- {
		b.cleanup[i]()
	}
}

// serve starts the agent's HTTP server on loopback and returns its base
// URL.
func (b *rotatingBed) serve() (string, func()) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	srv := httpapi.NewServer("", httpapi.NewRouter(b.mon, httpapi.Options{Metrics: b.tel.MetricsHandler()}), quiet)
	go func() { _ = srv.Serve(ln) }()
	return "http://" + ln.Addr().String(), func() { _ = srv.Close() }
}

// leftovers counts the probe files in the mounts' directories.
func (b *rotatingBed) leftovers() int {
	n := 0
	for _, d := range b.dirs {
		for _, sub := range []string{probes.DirName, ""} {
			ents, _ := os.ReadDir(filepath.Join(d, sub))
			for _, e := range ents {
				if strings.HasPrefix(e.Name(), probes.FilePrefix) {
					n++
				}
			}
		}
	}
	return n
}

// soakPaths are the endpoints the client polls.
var soakPaths = []string{"/healthz", "/healthz/ready", "/healthz/live", "/healthz/mounts", "/metrics", "/"}

// endpointStat is the client's account of one endpoint.
type endpointStat struct {
	n, errs int
	max     time.Duration
}

// endpointClient polls every endpoint every 100 ms until its context
// ends; stats are for reading after done.
type endpointClient struct {
	stats map[string]*endpointStat
	done  chan struct{}
}

func pollEndpoints(ctx context.Context, base string) *endpointClient {
	ec := &endpointClient{stats: map[string]*endpointStat{}, done: make(chan struct{})}
	for _, p := range soakPaths {
		ec.stats[p] = &endpointStat{}
	}
	go func() {
		defer close(ec.done)
		c := &http.Client{Timeout: 2 * time.Second}
		for ctx.Err() == nil {
			for _, p := range soakPaths {
				start := time.Now()
				resp, err := c.Get(base + p)
				d := time.Since(start)
				s := ec.stats[p]
				if err != nil {
					s.errs++
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				s.n++
				s.max = max(s.max, d)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	return ec
}

// rotatingSample is the process a minute into the soak: RSS alone cannot
// tell a leak from the heap and the runtime settling, the live heap after
// a GC can.
type rotatingSample struct {
	at             time.Duration
	g, t           int
	rss, liveHeapK uint64
}

func takeSample(at time.Duration) rotatingSample {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return rotatingSample{at, runtime.NumGoroutine(), procStatus("Threads"), uint64(procStatus("VmRSS")), ms.HeapAlloc >> 10}
}

// rotatingResult is what the phase measured.
type rotatingResult struct {
	g0, t0, rss0       int
	g1, t1, rss1       int
	maxG, maxT, maxRSS int
	samples            []rotatingSample
	hung               int
	checks             uint64
	leaked             int
	client             *endpointClient
}

// rotate runs the faults for dur: two mounts hang throughout, the others
// rotate faults every 15 s, one of them flapping. It samples the process
// every second (maxima) and every minute (the table).
func (b *rotatingBed) rotate(dur time.Duration) *rotatingResult {
	faults := []faultfs.Fault{{Errno: syscall.EIO}, {Errno: syscall.ESTALE}, {Delay: 300 * time.Millisecond}, {Errno: syscall.ENOSPC}}
	r := &rotatingResult{g0: runtime.NumGoroutine(), t0: procStatus("Threads"), rss0: procStatus("VmRSS")}
	r.maxG, r.maxT, r.maxRSS = r.g0, r.t0, r.rss0
	r.samples = []rotatingSample{takeSample(0)}
	start := time.Now()
	for round := 0; time.Since(start) < dur; round++ {
		b.fss[0].Set(faultfs.OpWrite, faultfs.Fault{Hang: true})
		b.fss[1].Set(faultfs.OpFsync, faultfs.Fault{Hang: true})
		for i := 2; i < 10; i++ {
			b.fss[i].Clear()
			if (i+round)%3 != 0 {
				b.fss[i].Set(faultfs.OpWrite, faults[(i+round)%len(faults)])
			}
		}
		for k := 0; k < 15; k++ {
			b.fss[9].Set(faultfs.OpCreate, faultfs.Fault{Errno: syscall.EIO, Times: 1}) // flapping
			time.Sleep(time.Second)
			r.maxG = max(r.maxG, runtime.NumGoroutine())
			r.maxT = max(r.maxT, procStatus("Threads"))
			r.maxRSS = max(r.maxRSS, procStatus("VmRSS"))
			if el := time.Since(start); el >= time.Duration(len(r.samples))*time.Minute {
				r.samples = append(r.samples, takeSample(el.Round(time.Second)))
			}
		}
	}
	r.hung = b.mon.Summary().Hung
	r.g1, r.t1, r.rss1 = runtime.NumGoroutine(), procStatus("Threads"), procStatus("VmRSS")
	return r
}

// ok holds the bounds: no probe file left, goroutines and threads bounded
// by the mounts plus a constant, and no endpoint error.
func (r *rotatingResult) ok() bool {
	ok := r.leaked == 0 && r.maxG < 200+100 && r.maxT < 200+50
	for _, p := range soakPaths {
		ok = ok && r.client.stats[p].errs == 0
	}
	return ok
}

// markdown is the phase's section of BENCHMARKS.md.
func (r *rotatingResult) markdown(dur time.Duration) string {
	var b strings.Builder
	fmt.Fprintf(&b, "## Soak (`make soak`)\n\n%s, %d cores, %s. 200 mounts (190 tmpfs, 10 FUSE: 2 hung throughout, 8 rotating EIO / ESTALE / 300 ms slow / ENOSPC every 15 s, one flapping), interval 2 s, timeout 1 s, for %v; a client requests every endpoint every 100 ms.\n\n",
		time.Now().UTC().Format("2006-01-02"), runtime.NumCPU(), runtime.Version(), dur.Round(time.Second))
	fmt.Fprintf(&b, "| measure | start | end | max during |\n|---|---|---|---|\n")
	fmt.Fprintf(&b, "| goroutines | %d | %d | %d |\n| OS threads | %d | %d | %d |\n| RSS | %d MiB | %d MiB | %d MiB |\n\n",
		r.g0, r.g1, r.maxG, r.t0, r.t1, r.maxT, r.rss0>>10, r.rss1>>10, r.maxRSS>>10)
	fmt.Fprintf(&b, "Every minute (live heap after a forced GC):\n\n| time | goroutines | OS threads | RSS | live heap |\n|---|---|---|---|---|\n")
	for _, x := range r.samples {
		fmt.Fprintf(&b, "| %v | %d | %d | %d MiB | %d KiB |\n", x.at, x.g, x.t, x.rss>>10, x.liveHeapK)
	}
	fmt.Fprintf(&b, "\n")
	fmt.Fprintf(&b, "Hung mounts at the end: %d. Checks completed: %d. Probe files left behind after the faults cleared: %d.\n\n", r.hung, r.checks, r.leaked)
	fmt.Fprintf(&b, "| endpoint | requests | errors | slowest |\n|---|---|---|---|\n")
	for _, p := range soakPaths {
		s := r.client.stats[p]
		fmt.Fprintf(&b, "| %s | %d | %d | %v |\n", p, s.n, s.errs, s.max.Round(time.Microsecond))
	}
	return b.String()
}
