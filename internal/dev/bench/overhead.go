//go:build linux

package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime/pprof"
	"time"

	"golang.org/x/sys/unix"

	"github.com/efs-health-agent/efs-health-agent/agent"
	"github.com/efs-health-agent/efs-health-agent/exporters"
	"github.com/efs-health-agent/efs-health-agent/httpapi"
	"github.com/efs-health-agent/efs-health-agent/probes"
)

// bareCheck is the probe's syscall sequence with no agent machinery: the
// root opened O_PATH, the probe directory opened O_PATH relative to it and
// its attributes read from the cache (statx), one descriptor for the probe
// file (created in the directory, switched to O_DIRECT where the
// filesystem allows), pwrite, fsync, pread through the same descriptor,
// close, unlink.
func bareCheck(dir string, i int, payload, buf []byte) error {
	rfd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(rfd)
	dfd, err := unix.Openat(rfd, probes.DirName, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(dfd)
	var stx unix.Statx_t
	if err := unix.Statx(dfd, "", unix.AT_EMPTY_PATH|unix.AT_STATX_DONT_SYNC, unix.STATX_TYPE|unix.STATX_MODE|unix.STATX_UID, &stx); err != nil {
		return err
	}
	name := fmt.Sprintf(".bare-%d.tmp", i)
	fd, err := unix.Openat(dfd, name, unix.O_CREAT|unix.O_NOFOLLOW|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
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
		_ = os.Mkdir(filepath.Join(dirs[i], probes.DirName), 0o700)
	}
	check := bareChecker(dirs)
	bare := bareBackToBack(check)
	paced := barePaced(check)
	def := agentOverhead(dirs, cpuProfile != "", "")
	all := agentOverhead(dirs, false, "always_on")
	overheadReport(r, bare, paced, def, all)
}

// bareChecker returns bareCheck round robin over dirs, out of an aligned
// buffer.
func bareChecker(dirs []string) func(i int) {
	payload := make([]byte, probes.PayloadSize)
	raw := make([]byte, 8192)
	off := 4096 - int(uintptr(unsafePointer(raw))&4095)
	buf := raw[off%4096 : off%4096+4096]
	return func(i int) {
		if err := bareCheck(dirs[i%len(dirs)], i, payload, buf); err != nil {
			panic(err)
		}
	}
}

// overheadRow is one row of figure 1: checks run, CPU per check, and the
// check rate (wall per check for the back-to-back baseline).
type overheadRow struct {
	checks uint64
	per    time.Duration
	rate   float64
	wall   time.Duration
}

// bareBackToBack is baseline 1: the bare checks back to back, round robin
// over the mounts' directories.
func bareBackToBack(check func(int)) overheadRow {
	const n = 20000
	for i := 0; i < 1000; i++ {
		check(i)
	}
	c0, w0 := cpuTime(), time.Now()
	for i := 0; i < n; i++ {
		check(i)
	}
	wall := time.Since(w0) / n
	return overheadRow{checks: n, per: (cpuTime() - c0) / n, wall: wall, rate: float64(time.Second) / float64(wall)}
}

// barePaced is baseline 2: the same syscalls paced by one timer at the
// agent's rate (one check every interval / mounts), round robin.
func barePaced(check func(int)) overheadRow {
	tick := time.NewTicker(overheadInterval / overheadMounts)
	defer tick.Stop()
	paced := 0
	c0, w0 := cpuTime(), time.Now()
	for time.Since(w0) < overheadRun {
		<-tick.C
		check(paced)
		paced++
	}
	return overheadRow{checks: uint64(paced), per: (cpuTime() - c0) / time.Duration(paced), rate: float64(paced) / time.Since(w0).Seconds()}
}

// agentOverhead runs the whole agent on dirs for overheadRun, with the
// healthy-check sampler given ("" for the default), and profiles its CPU
// into -cpuprofile when profile is set.
func agentOverhead(dirs []string, profile bool, sampler string) overheadRow {
	tel := newTracedTelemetry(sampler)
	defer func() { _ = tel.Shutdown(context.Background()) }()
	mon := newMonitor(overheadInterval, overheadTimeout, tel, 0)
	for _, d := range dirs {
		_ = mon.Register(agent.Mount{Path: d})
	}
	ctx, cancel := context.WithCancel(context.Background())
	monDone := make(chan struct{})
	go func() { defer close(monDone); _ = mon.Run(ctx) }()
	defer func() { cancel(); <-monDone }()
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	srv := httpapi.NewServer("", httpapi.NewRouter(mon, httpapi.Options{Metrics: tel.MetricsHandler(),
		DebugChecks: httpapi.DebugChecks(tel.CheckLog())}), quiet)
	go func() { _ = srv.Serve(ln) }()
	defer func() { _ = srv.Close() }()
	// Two intervals for the random first phase to settle.
	time.Sleep(2 * overheadInterval)
	checks := func() uint64 {
		var s uint64
		for _, st := range mon.Statuses() {
			s += st.Checks
		}
		return s
	}
	if profile {
		f, _ := os.Create(cpuProfile)
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, "bench: cpu profile:", err)
		}
		defer func() { pprof.StopCPUProfile(); _ = f.Close() }()
	}
	k0, c1, w1 := checks(), cpuTime(), time.Now()
	time.Sleep(overheadRun)
	k1, c2, w2 := checks(), cpuTime(), time.Now()
	return overheadRow{checks: k1 - k0, per: (c2 - c1) / time.Duration(k1-k0), rate: float64(k1-k0) / w2.Sub(w1).Seconds()}
}

// overheadReport writes figure 1.
func overheadReport(r *report, bare, paced, def, all overheadRow) {
	r.add("## 1. Agent CPU per check: 200 mounts, interval 1 s (targets: agent ≤ 4× the bare syscalls back to back, ≤ 1× the same syscalls paced by a timer)")
	r.add("")
	r.add("| | checks | checks per second | CPU per check | wall per check |")
	r.add("|---|---|---|---|---|")
	r.add("| bare syscalls back to back, round robin over the 200 directories | %d | %.0f | %v | %v |", bare.checks, bare.rate, bare.per, bare.wall)
	r.add("| bare syscalls paced by one timer at the agent's rate (every %v) | %d | %.0f | %v | — |", overheadInterval/overheadMounts, paced.checks, paced.rate, paced.per)
	r.add("| agent, default trace sampling (healthy checks at %s %v) | %d | %.0f | %v | — |", exporters.DefaultHealthySampler, exporters.DefaultHealthySampleRatio, def.checks, def.rate, def.per)
	r.add("| agent, every check traced (OTEL_TRACES_SAMPLER=always_on) | %d | %.0f | %v | — |", all.checks, all.rate, all.per)
	r.add("")
	r.add("| ratio | default sampling | every check traced | target |")
	r.add("|---|---|---|---|")
	r.add("| agent / bare back to back | **%.2f×** | %.2f× | ≤ 4× %s |", ratio(def.per, bare.per), ratio(all.per, bare.per), verdict(ratio(def.per, bare.per), 4, "×"))
	r.add("| agent / bare paced | **%.2f×** | %.2f× | ≤ 1× %s |", ratio(def.per, paced.per), ratio(all.per, paced.per), verdict(ratio(def.per, paced.per), 1, "×"))
	r.add("")
	r.target("1. agent CPU per check / bare syscalls back to back (200 mounts at 1 s)", fmt.Sprintf("%v / %v", def.per, bare.per), ratio(def.per, bare.per), 4, "×")
	r.target("1. agent CPU per check / same syscalls paced by a timer", fmt.Sprintf("%v / %v", def.per, paced.per), ratio(def.per, paced.per), 1, "×")
}
