//go:build linux

package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/efs-health-agent/efs-health-agent/internal/testenv/hostilehttp"
)

// The hostile clients' part of the hostile phase: a second agent binary
// with many mounts, in its own memory cgroup limited like the manifests,
// under, one step after the other, 20, 50 and 100 concurrent scrapers of
// every O(n) endpoint, 40 clients that never read, 256 slow-body
// connections, then all of them at once and SIGTERM.
const (
	// hostileHTTPMounts is the number of mounts (tmpfs directories),
	// unless SOAK_HTTP_MOUNTS says otherwise.
	hostileHTTPMounts = 10_000
	// hostileHTTPRSS is the RSS the agent must stay under.
	hostileHTTPRSS = 110 << 20
	// probeTimeout is the manifests' timeoutSeconds of the liveness
	// probe (deploy/kustomize/base/daemonset.yaml).
	probeTimeout = 3 * time.Second
	// exitBound is the time from SIGTERM to exit docs/configuration.md states.
	exitBound = 5 * time.Second
)

// httpStep is one step of the phase and what it saw.
type httpStep struct {
	name      string
	scrapes   hostilehttp.Counts
	peakRSS   int64
	liveFail  int64
	liveProbe int64
	slowest   time.Duration
}

// hostileHTTPResult is what the phase measured.
type hostileHTTPResult struct {
	mounts                    int
	step                      time.Duration
	baseRSS, peakRSS          int64
	cgroupPeak                int64
	oomKills                  int
	throttled                 int // CFS periods the agent was throttled in
	steps                     []*httpStep
	nonReaders, slowBodies    int64
	liveProbes, liveFailed    int64
	liveSlowest, exitDuration time.Duration
	liveLast                  string // the last failed probe's error
	exitErr                   error
}

// hostileHTTPSettings reads SOAK_HTTP_MOUNTS and SOAK_HTTP_STEP (how long
// each step lasts; default a sixth of the hostile phase, at least 5 s).
func hostileHTTPSettings(dur time.Duration) (mounts int, step time.Duration, err error) {
	mounts, step = hostileHTTPMounts, max(dur/6, 5*time.Second)
	if v := os.Getenv("SOAK_HTTP_MOUNTS"); v != "" {
		if mounts, err = strconv.Atoi(v); err != nil || mounts < 1 {
			return 0, 0, fmt.Errorf("invalid SOAK_HTTP_MOUNTS=%q: want a positive number", v)
		}
	}
	if v := os.Getenv("SOAK_HTTP_STEP"); v != "" {
		if step, err = time.ParseDuration(v); err != nil || step <= 0 {
			return 0, 0, fmt.Errorf("invalid SOAK_HTTP_STEP=%q: want a positive duration", v)
		}
	}
	return mounts, step, nil
}

// runHostileHTTP runs the phase against the agent binary bin.
func runHostileHTTP(bin string, dur time.Duration) (*hostileHTTPResult, error) {
	mounts, step, err := hostileHTTPSettings(dur)
	if err != nil {
		return nil, err
	}
	bed, err := newHTTPBed(bin, mounts)
	if err != nil {
		return nil, err
	}
	defer bed.close()
	res := &hostileHTTPResult{mounts: mounts, step: step, baseRSS: vmRSS(bed.pid())}
	w := watchHTTP(bed.pid(), bed.base)
	st := &httpSteps{res: res, w: w, step: step}
	var nonReaders, slowBodies atomic.Int64
	endpoints := []string{"/metrics", "/healthz/mounts", "/"}
	for _, n := range []int{20, 50, 100} {
		st.run(fmt.Sprintf("%d scrapers of each O(n) endpoint", n), func(ctx context.Context, wg *sync.WaitGroup, s *httpStep) {
			for _, p := range endpoints {
				hostilehttp.Scrapers(ctx, wg, bed.base, p, n, 10*time.Second, &s.scrapes)
			}
		})()
	}
	st.run("40 clients that never read (/metrics, no gzip)", func(ctx context.Context, wg *sync.WaitGroup, _ *httpStep) {
		hostilehttp.NonReaders(ctx, wg, bed.addr, "/metrics", 40, time.Minute, &nonReaders)
	})()
	st.run("256 slow-body connections", func(ctx context.Context, wg *sync.WaitGroup, _ *httpStep) {
		hostilehttp.SlowBodies(ctx, wg, bed.addr, "/healthz/live", 256, &slowBodies)
	})()
	end := st.run("all at once, then SIGTERM", func(ctx context.Context, wg *sync.WaitGroup, s *httpStep) {
		for _, p := range endpoints {
			hostilehttp.Scrapers(ctx, wg, bed.base, p, 20, 10*time.Second, &s.scrapes)
		}
		hostilehttp.NonReaders(ctx, wg, bed.addr, "/metrics", 40, time.Minute, &nonReaders)
		hostilehttp.SlowBodies(ctx, wg, bed.addr, "/healthz/live", 256, &slowBodies)
	})
	// The probe stops first: the agent is about to go; the last step's
	// clients run on until it has.
	w.stop()
	res.liveProbes, res.liveFailed, res.liveSlowest, res.liveLast = w.probe.Probes.Load(), w.probe.Failed.Load(), w.probe.Slowest(), w.probe.LastError()
	start := time.Now()
	res.exitErr = stopAgent(bed.a.cmd, bed.a.exited)
	res.exitDuration = time.Since(start)
	end()
	res.peakRSS = max(res.peakRSS, w.peak.Load())
	res.cgroupPeak, res.oomKills, res.throttled = bed.box.g.PeakBytes(), bed.box.g.OOMKills(), bed.box.g.Throttled()
	res.nonReaders, res.slowBodies = nonReaders.Load(), slowBodies.Load()
	return res, nil
}

// httpBed is the phase's agent: mounts tmpfs mounts in a box of its own,
// checked every 60 s (10,000 mounts make 170 checks a second, so that the
// load measured is the clients', not the checks').
type httpBed struct {
	box        *hostileBox
	a          *agentRun
	addr, base string
}

func newHTTPBed(bin string, mounts int) (_ *httpBed, err error) {
	b := &httpBed{}
	if b.box, err = newHostileBox("soak-http", "256m", 8192); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			b.close()
		}
	}()
	b.addr = "127.0.0.1:" + strconv.Itoa(b.box.port)
	b.base = "http://" + b.addr
	dirs, err := b.box.dirs(mounts, "v%05d")
	if err != nil {
		return nil, err
	}
	args := []string{"--bind-address", "127.0.0.1", "--port", strconv.Itoa(b.box.port), "--check-interval", "60s", "--check-timeout", "5s"}
	for _, d := range dirs {
		args = append(args, "--mount", d)
	}
	if b.a, err = startAgent(b.box.g.Command(bin, args...), "HEALTH_NODE_NAME=soak", "HEALTH_LOG_FORMAT=json"); err != nil {
		return nil, err
	}
	if err := waitHealthy(b.base, 180*time.Second); err != nil {
		tail := b.a.output()
		if len(tail) > 4000 {
			tail = tail[len(tail)-4000:]
		}
		return nil, fmt.Errorf("%w; agent log (tail):\n%s", err, tail)
	}
	return b, nil
}

func (b *httpBed) pid() int { return b.a.cmd.Process.Pid }

// close kills the agent if it still runs, then undoes the box.
func (b *httpBed) close() {
	if b.a != nil {
		b.a.kill()
	}
	b.box.close()
}

// httpWatch samples the agent's RSS every 20 ms and runs the kubelet's
// probe every 100 ms until stop.
type httpWatch struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	peak   atomic.Int64 // since the last reset
	probe  *hostilehttp.Probe
}

func watchHTTP(pid int, base string) *httpWatch {
	ctx, cancel := context.WithCancel(context.Background())
	w := &httpWatch{cancel: cancel, probe: &hostilehttp.Probe{}}
	w.wg.Go(func() {
		for ctx.Err() == nil {
			if r := vmRSS(pid); r > w.peak.Load() {
				w.peak.Store(r)
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
	w.wg.Go(func() { w.probe.Run(ctx, base, "/healthz/live", 100*time.Millisecond, probeTimeout) })
	return w
}

func (w *httpWatch) stop() {
	w.cancel()
	w.wg.Wait()
}

// httpSteps runs the load one step after another, each for step.
type httpSteps struct {
	res  *hostileHTTPResult
	w    *httpWatch
	step time.Duration
}

// run starts a step's clients, waits the step out and returns the function
// that ends it: the step's peak RSS and probes are taken, its clients
// stopped and waited for.
func (h *httpSteps) run(name string, start func(ctx context.Context, wg *sync.WaitGroup, s *httpStep)) (end func()) {
	s := &httpStep{name: name}
	h.res.steps = append(h.res.steps, s)
	p0, f0 := h.w.probe.Probes.Load(), h.w.probe.Failed.Load()
	h.w.peak.Store(0)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	start(ctx, &wg, s)
	time.Sleep(h.step)
	return func() {
		s.peakRSS, s.liveProbe, s.liveFail, s.slowest = h.w.peak.Load(), h.w.probe.Probes.Load()-p0, h.w.probe.Failed.Load()-f0, h.w.probe.Slowest()
		h.res.peakRSS = max(h.res.peakRSS, s.peakRSS)
		cancel()
		wg.Wait()
	}
}

// ok reports whether the phase held its bounds.
func (r *hostileHTTPResult) ok() bool {
	if r.oomKills > 0 || r.exitErr != nil || r.liveFailed > 0 || r.liveProbes == 0 || r.peakRSS >= hostileHTTPRSS {
		return false
	}
	for _, s := range r.steps {
		if s.scrapes.Bad.Load() > 0 {
			return false
		}
	}
	return true
}

// markdown is the phase's part of the hostile section of BENCHMARKS.md.
func (r *hostileHTTPResult) markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "### Hostile clients at %s mounts\n\n", thousands(r.mounts))
	fmt.Fprintf(&b, "A second agent binary in its own %d MiB memory cgroup, limited to %dm of CPU (throttled in %d periods), with %s tmpfs mounts checked every 60 s (timeout 5 s), "+
		"%v a step: 20, 50 and 100 concurrent scrapers of each of `/metrics`, `/healthz/mounts` and `/` (fresh connections, gzip, reading everything), "+
		"40 clients that ask for `/metrics` without gzip and never read (4 KiB receive window, replaced after a minute), "+
		"256 connections sending a GET with a declared 200 KB body at 10 B/s (reconnecting when dropped), then all at once and SIGTERM. "+
		"Throughout, `/healthz/live` on a fresh connection every 100 ms must answer 200 within the manifests' probe timeout (%v); RSS must stay under %d MiB.\n\n",
		hostileMemory>>20, hostileCPU, r.throttled, thousands(r.mounts), r.step, probeTimeout, hostileHTTPRSS>>20)
	fmt.Fprintf(&b, "| step | scrapes | peak RSS | `/healthz/live` probes / failed | slowest probe so far |\n|---|---|---|---|---|\n")
	for _, s := range r.steps {
		sc := "—"
		if n := s.scrapes.OK.Load() + s.scrapes.Refused.Load() + s.scrapes.ConnErr.Load() + s.scrapes.Bad.Load(); n > 0 {
			sc = s.scrapes.String()
		}
		fmt.Fprintf(&b, "| %s | %s | %.1f MiB | %d / %d | %v |\n", s.name, sc, float64(s.peakRSS)/(1<<20), s.liveProbe, s.liveFail, s.slowest.Round(time.Millisecond))
	}
	fmt.Fprintf(&b, "\nA connection error is a scrape whose connection the cap closed or refused; the scrapers reconnect at once, without backoff, so a refused one tries again in a loop; the `/healthz/live` probe is counted apart.\n")
	fmt.Fprintf(&b, "\n| measure | value |\n|---|---|\n")
	fmt.Fprintf(&b, "| agent RSS before the load | %.1f MiB |\n", float64(r.baseRSS)/(1<<20))
	fmt.Fprintf(&b, "| agent peak RSS (sampled every 20 ms) | %.1f MiB (bound %d MiB) |\n", float64(r.peakRSS)/(1<<20), hostileHTTPRSS>>20)
	if r.cgroupPeak > 0 {
		fmt.Fprintf(&b, "| cgroup peak memory | %.1f MiB |\n", float64(r.cgroupPeak)/(1<<20))
	}
	fmt.Fprintf(&b, "| OOM kills | %d |\n", max(r.oomKills, 0))
	fmt.Fprintf(&b, "| non-reading / slow-body connections made | %d / %d |\n", r.nonReaders, r.slowBodies)
	fmt.Fprintf(&b, "| `/healthz/live` probes / failed or over %v | %d / %d (slowest %v) |\n", probeTimeout, r.liveProbes, r.liveFailed, r.liveSlowest.Round(time.Millisecond))
	if r.liveLast != "" {
		fmt.Fprintf(&b, "| last failed probe | %s |\n", strings.ReplaceAll(r.liveLast, "|", "\\|"))
	}
	exit := fmt.Sprintf("exit %v after SIGTERM", r.exitDuration.Round(time.Millisecond))
	if r.exitErr != nil {
		exit = r.exitErr.Error()
	}
	fmt.Fprintf(&b, "| end | %s |\n\n", exit)
	return b.String()
}
