//go:build linux

// Command soak runs the agent for minutes against 200 mounts — 190 tmpfs
// directories and 10 FUSE fault mounts whose faults rotate (EIO, ESTALE,
// slow, flapping, and two that hang) — while a client polls every endpoint.
// It checks that goroutines and OS threads stay bounded by the mounts plus
// a constant, RSS stays flat, every endpoint keeps answering, and no probe
// file is left behind, and records the figures in BENCHMARKS.md.
//
// A second phase (hostile.go) runs the agent binary in a 128 MiB memory
// cgroup, as the manifests limit it, with a 100,000-line mount table,
// while thousands of idle keep-alive connections and 16 /debug/checks
// clients hit it at once, and records its peak RSS and slowest
// /healthz/live. Run both with `make soak` (root and /dev/fuse needed).
package main

import (
	"context"
	"flag"
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

func main() { os.Exit(run()) }

func procStatus(key string) int {
	b, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, key+":"); ok {
			var n int
			fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &n)
			return n
		}
	}
	return -1
}

func run() int {
	dur := flag.Duration("duration", 3*time.Minute, "how long the rotating-faults phase lasts (0 skips it)")
	out := flag.String("out", "BENCHMARKS.md", "file whose soak sections are rewritten")
	agentBin := flag.String("agent", "", "agent binary for the hostile-load phase (default: built from ./cmd/efs-health-agent)")
	hostile := flag.Duration("hostile", time.Minute, "how long the hostile-load phase lasts (0 skips it)")
	note := flag.String("note", "", "sentence added to the hostile-load figures' method line (e.g. that the machine was shared)")
	flag.Parse()
	code := 0
	if *dur > 0 {
		code = rotating(*dur, out)
	}
	if *hostile > 0 {
		if c := hostilePhase(*agentBin, *hostile, *note, *out); c != 0 {
			code = c
		}
	}
	return code
}

// hostilePhase runs the hostile-load phase and records it in out.
func hostilePhase(bin string, dur time.Duration, note, out string) int {
	if bin == "" {
		dir, err := os.MkdirTemp("", "efs-soak-bin")
		if err != nil {
			fmt.Fprintln(os.Stderr, "soak:", err)
			return 1
		}
		defer os.RemoveAll(dir)
		if bin, err = buildAgent(dir); err != nil {
			fmt.Fprintln(os.Stderr, "soak:", err)
			return 1
		}
	}
	res, err := runHostile(bin, dur)
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak: hostile load:", err)
		return 1
	}
	md := res.markdown(dur, note)
	fmt.Print(md)
	if out != "" {
		if err := replaceSection(out, "<!-- soak-hostile -->\n", "<!-- /soak-hostile -->\n", md); err != nil {
			fmt.Fprintln(os.Stderr, "soak:", err)
			return 1
		}
	}
	if !res.ok() {
		fmt.Println("soak: hostile load FAILED (bounds above)")
		return 1
	}
	return 0
}

// rotating is the rotating-faults phase: 200 mounts in process for dur.
func rotating(dur time.Duration, out *string) int {
	if err := faultfs.Available(); err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		return 1
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	root, _ := os.MkdirTemp("", "efs-soak")
	defer os.RemoveAll(root)
	if unmount, err := tmpfs.Mount(root, "size=256m"); err == nil {
		defer unmount()
	}
	tel, _ := exporters.New(context.Background(), nil, exporters.Options{Logger: quiet, Getenv: func(string) string { return "" }})
	cfg := agent.DefaultConfig()
	cfg.Hostname, cfg.Logger, cfg.Observer = "soak", quiet, tel.Observer()
	cfg.Interval, cfg.Timeout, cfg.MinRetry = 2*time.Second, time.Second, 250*time.Millisecond
	mon, _ := agent.New(cfg)
	tel.SetSource(mon)
	var dirs []string
	for i := 0; i < 190; i++ {
		d := filepath.Join(root, fmt.Sprintf("v%03d", i))
		_ = os.Mkdir(d, 0o755)
		dirs = append(dirs, d)
		_ = mon.Register(agent.Mount{Path: d})
	}
	var fss []*faultfs.FS
	for i := 0; i < 10; i++ {
		mnt, _ := os.MkdirTemp("", "soak-fuse")
		back, _ := os.MkdirTemp("", "soak-back")
		fs, err := faultfs.Mount(mnt, back, faultfs.Options{})
		if err != nil {
			fmt.Fprintln(os.Stderr, "soak:", err)
			return 1
		}
		defer fs.Unmount()
		fss = append(fss, fs)
		dirs = append(dirs, back)
		_ = mon.Register(agent.Mount{Path: mnt})
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = mon.Run(ctx) }()
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	srv := httpapi.NewServer("", httpapi.NewRouter(mon, httpapi.Options{Metrics: tel.MetricsHandler()}), quiet)
	go func() { _ = srv.Serve(ln) }()
	base := "http://" + ln.Addr().String()

	// The client: every endpoint, every 100 ms, over loopback.
	type stat struct {
		n, errs int
		max     time.Duration
	}
	stats := map[string]*stat{}
	paths := []string{"/healthz", "/healthz/ready", "/healthz/live", "/healthz/mounts", "/metrics", "/"}
	for _, p := range paths {
		stats[p] = &stat{}
	}
	clientDone := make(chan struct{})
	go func() {
		defer close(clientDone)
		c := &http.Client{Timeout: 2 * time.Second}
		for ctx.Err() == nil {
			for _, p := range paths {
				start := time.Now()
				resp, err := c.Get(base + p)
				d := time.Since(start)
				s := stats[p]
				if err != nil {
					s.errs++
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				s.n++
				if d > s.max {
					s.max = d
				}
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()

	faults := []faultfs.Fault{{Errno: syscall.EIO}, {Errno: syscall.ESTALE}, {Delay: 300 * time.Millisecond}, {Errno: syscall.ENOSPC}}
	time.Sleep(5 * time.Second)
	g0, t0, rss0 := runtime.NumGoroutine(), procStatus("Threads"), procStatus("VmRSS")
	maxG, maxT, maxRSS := g0, t0, rss0
	// A sample a minute: RSS alone cannot tell a leak from the heap and
	// the runtime settling, the live heap after a GC can.
	type sample struct {
		at             time.Duration
		g, t           int
		rss, liveHeapK uint64
	}
	take := func(at time.Duration) sample {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return sample{at, runtime.NumGoroutine(), procStatus("Threads"), uint64(procStatus("VmRSS")), ms.HeapAlloc >> 10}
	}
	samples := []sample{take(0)}
	start := time.Now()
	round := 0
	for time.Since(start) < dur {
		// Two mounts hang for the whole soak; the others rotate faults
		// every 15 s, one of them flapping.
		fss[0].Set(faultfs.OpWrite, faultfs.Fault{Hang: true})
		fss[1].Set(faultfs.OpFsync, faultfs.Fault{Hang: true})
		for i := 2; i < 10; i++ {
			fss[i].Clear()
			if (i+round)%3 != 0 {
				fss[i].Set(faultfs.OpWrite, faults[(i+round)%len(faults)])
			}
		}
		for k := 0; k < 15; k++ {
			fss[9].Set(faultfs.OpCreate, faultfs.Fault{Errno: syscall.EIO, Times: 1}) // flapping
			time.Sleep(time.Second)
			maxG = max(maxG, runtime.NumGoroutine())
			maxT = max(maxT, procStatus("Threads"))
			maxRSS = max(maxRSS, procStatus("VmRSS"))
			if el := time.Since(start); el >= time.Duration(len(samples))*time.Minute {
				samples = append(samples, take(el.Round(time.Second)))
			}
		}
		round++
	}
	s := mon.Summary()
	g1, t1, rss1 := runtime.NumGoroutine(), procStatus("Threads"), procStatus("VmRSS")
	for _, fs := range fss {
		fs.Clear()
	}
	time.Sleep(5 * time.Second)
	cancel()
	<-clientDone
	leaked := 0
	for _, d := range dirs {
		ents, _ := os.ReadDir(d)
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), probes.FilePrefix) {
				leaked++
			}
		}
	}
	var checks uint64
	for _, st := range mon.Statuses() {
		checks += st.Checks
	}
	var b strings.Builder
	fmt.Fprintf(&b, "## Soak (`make soak`)\n\n%s, %d cores, %s. 200 mounts (190 tmpfs, 10 FUSE: 2 hung throughout, 8 rotating EIO / ESTALE / 300 ms slow / ENOSPC every 15 s, one flapping), interval 2 s, timeout 1 s, for %v; a client requests every endpoint every 100 ms.\n\n",
		time.Now().UTC().Format("2006-01-02"), runtime.NumCPU(), runtime.Version(), dur.Round(time.Second))
	fmt.Fprintf(&b, "| measure | start | end | max during |\n|---|---|---|---|\n")
	fmt.Fprintf(&b, "| goroutines | %d | %d | %d |\n| OS threads | %d | %d | %d |\n| RSS | %d MiB | %d MiB | %d MiB |\n\n", g0, g1, maxG, t0, t1, maxT, rss0>>10, rss1>>10, maxRSS>>10)
	fmt.Fprintf(&b, "Every minute (live heap after a forced GC):\n\n| time | goroutines | OS threads | RSS | live heap |\n|---|---|---|---|---|\n")
	for _, x := range samples {
		fmt.Fprintf(&b, "| %v | %d | %d | %d MiB | %d KiB |\n", x.at, x.g, x.t, x.rss>>10, x.liveHeapK)
	}
	fmt.Fprintf(&b, "\n")
	fmt.Fprintf(&b, "Hung mounts at the end: %d. Checks completed: %d. Probe files left behind after the faults cleared: %d.\n\n", s.Hung, checks, leaked)
	fmt.Fprintf(&b, "| endpoint | requests | errors | slowest |\n|---|---|---|---|\n")
	for _, p := range paths {
		fmt.Fprintf(&b, "| %s | %d | %d | %v |\n", p, stats[p].n, stats[p].errs, stats[p].max.Round(time.Microsecond))
	}
	fmt.Print(b.String())
	ok := leaked == 0 && maxG < 200+100 && maxT < 200+50
	for _, p := range paths {
		ok = ok && stats[p].errs == 0
	}
	if *out != "" {
		old, _ := os.ReadFile(*out)
		text := string(old)
		const begin, end = "<!-- soak -->\n", "<!-- /soak -->\n"
		section := begin + b.String() + end
		if i, j := strings.Index(text, begin), strings.Index(text, end); i >= 0 && j > i {
			text = text[:i] + section + text[j+len(end):]
		} else {
			text += "\n" + section
		}
		_ = os.WriteFile(*out, []byte(text), 0o644)
	}
	if !ok {
		fmt.Println("soak: FAILED (bounds above)")
		return 1
	}
	return 0
}
