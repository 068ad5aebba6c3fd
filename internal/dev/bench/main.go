//go:build linux

// Command bench measures the agent against the targets in BENCHMARKS.md
// and rewrites that file. Run it with `make bench` (root, for tmpfs and the
// FUSE fault filesystem). Every figure is a ratio or a per-unit cost
// measured within one run, because absolute times drift on shared machines.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"golang.org/x/sys/unix"

	"github.com/efs-health-agent/efs-health-agent/agent"
	"github.com/efs-health-agent/efs-health-agent/exporters"
	"github.com/efs-health-agent/efs-health-agent/internal/testenv/faultfs"
	"github.com/efs-health-agent/efs-health-agent/internal/testenv/tmpfs"
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

func ratio(a, b time.Duration) float64 { return float64(a) / float64(b) }

// verdict says whether got meets a "≤ limit" target, and by how much it
// misses.
func verdict(got, limit float64, unit string) string {
	if got <= limit {
		return "(met)"
	}
	return fmt.Sprintf("(missed by %.2f%s, %.0f%%)", got-limit, unit, 100*(got-limit)/limit)
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

// faultMount mounts the FUSE fault filesystem on a fresh temporary
// directory, over a fresh backing directory.
func faultMount() (fs *faultfs.FS, mnt string, err error) {
	mnt, _ = os.MkdirTemp("", "bench-fuse")
	back, _ := os.MkdirTemp("", "bench-back")
	fs, err = faultfs.Mount(mnt, back, faultfs.Options{})
	return fs, mnt, err
}
