//go:build linux

package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/efs-health-agent/efs-health-agent/internal/testenv/cgroup"
	"github.com/efs-health-agent/efs-health-agent/internal/testenv/hostilehttp"
	"github.com/efs-health-agent/efs-health-agent/internal/testenv/testutil"
)

// TestHostileClientsThroughBinary: the agent binary with 2,000 mounts
// under, one after the other, 20, 50 and 100 concurrent scrapers of each
// O(n) endpoint (/metrics, /healthz/mounts, the status page; ordinary
// clients that read everything and ask for gzip), then 80 clients that
// never read (of /metrics and the status page) and 256 connections sending declared bodies at 10 B/s, then
// SIGTERM while all of them are still at it. Its RSS grows by less than
// 64 MiB, /healthz/live on a fresh connection answers 200 within the
// manifests' liveness probe timeout (3 s) throughout, every scrape is answered 200 or refused with 503 and
// Retry-After, the agent closes the non-readers' connections (its open
// descriptors come back down) and the slow-body ones, and it exits 0
// within 5 s of SIGTERM.
func TestHostileClientsThroughBinary(t *testing.T) {
	const mounts = 2000
	raiseNoFile(t, 8192)
	dir := testutil.TmpfsDir(t)
	var paths []string
	for i := 0; i < mounts; i++ {
		p := filepath.Join(dir, fmt.Sprintf("v%04d", i))
		if err := os.Mkdir(p, 0o755); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	a := startAgent(t, []string{"HEALTH_MOUNTS=" + strings.Join(paths, ",")}, "--check-interval", "30s", "--check-timeout", "5s")
	testutil.WaitForWithin(t, 120*time.Second, "every mount checked", func() bool {
		resp, err := http.Get(a.base + "/healthz/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	addr := strings.TrimPrefix(a.base, "http://")
	base := rssKiB(t, a.cmd.Process.Pid)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var bg sync.WaitGroup
	defer bg.Wait()
	defer cancel()
	// The watchers stop before SIGTERM.
	wctx, wcancel := context.WithCancel(ctx)
	var peak atomic.Int64
	bg.Go(func() {
		for wctx.Err() == nil {
			if kb := rssKiB(t, a.cmd.Process.Pid); kb > peak.Load() {
				peak.Store(kb)
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
	// The manifests' timeoutSeconds: the prober shares this process with
	// hundreds of attacking clients, so its own clock runs late on a
	// loaded machine; a tighter bound measured the test, not the agent.
	probe := &hostilehttp.Probe{}
	bg.Go(func() { probe.Run(wctx, a.base, "/healthz/live", 100*time.Millisecond, 3*time.Second) })

	endpoints := []string{"/metrics", "/healthz/mounts", "/"}
	for _, n := range []int{20, 50, 100} {
		var c hostilehttp.Counts
		sctx, scancel := context.WithTimeout(ctx, 3*time.Second)
		var wg sync.WaitGroup
		for _, p := range endpoints {
			hostilehttp.Scrapers(sctx, &wg, a.base, p, n, 10*time.Second, &c)
		}
		wg.Wait()
		scancel()
		t.Logf("%d scrapers of each O(n) endpoint: %s; RSS peak so far +%d KiB", n, &c, peak.Load()-base)
		if c.Bad.Load() > 0 || c.OK.Load() == 0 {
			t.Errorf("%d scrapers of each endpoint: %s", n, &c)
		}
	}

	// The non-readers hold their connections far longer than the write
	// deadline (5 s + 1 s per MiB): the agent closes its side, and its
	// open descriptors come back down while they still hold on.
	fds := hostilehttp.OpenFDs(a.cmd.Process.Pid)
	var opened, bodiesDropped atomic.Int64
	var attack sync.WaitGroup
	actx, acancel := context.WithCancel(ctx)
	defer acancel()
	hostilehttp.NonReaders(actx, &attack, addr, "/metrics", 40, time.Minute, &opened)
	hostilehttp.NonReaders(actx, &attack, addr, "/", 40, time.Minute, &opened)
	testutil.WaitForWithin(t, 10*time.Second, "80 non-readers connected", func() bool { return opened.Load() >= 80 })
	testutil.WaitForWithin(t, 30*time.Second, "the agent to drop the non-readers", func() bool {
		return hostilehttp.OpenFDs(a.cmd.Process.Pid) <= fds+8
	})
	hostilehttp.SlowBodies(actx, &attack, addr, "/healthz/live", 256, &bodiesDropped)
	var c hostilehttp.Counts
	hostilehttp.Scrapers(actx, &attack, a.base, "/metrics", 5, 10*time.Second, &c)
	testutil.WaitForWithin(t, 10*time.Second, "the slow-body connections to be dropped", func() bool { return bodiesDropped.Load() >= 256 })

	wcancel()
	bg.Wait()
	start := time.Now()
	if err := a.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-a.done:
		a.done <- err
		if err != nil {
			t.Errorf("exit after SIGTERM: %v", err)
		}
		t.Logf("exit %v after SIGTERM", time.Since(start).Round(time.Millisecond))
	case <-time.After(5 * time.Second):
		t.Error("no exit within 5 s of SIGTERM under hostile clients")
	}
	acancel()
	attack.Wait()
	t.Logf("RSS %d KiB at the start, peak %d KiB (+%d KiB); %d non-readers, %d slow-body connections dropped; /healthz/live %d probes, slowest %v, %d failed",
		base, peak.Load(), peak.Load()-base, opened.Load(), bodiesDropped.Load(), probe.Probes.Load(), probe.Slowest().Round(time.Millisecond), probe.Failed.Load())
	if g := peak.Load() - base; g >= 64<<10 {
		t.Errorf("RSS grew by %d KiB, the bound is 64 MiB", g)
	}
	if n := probe.Failed.Load(); n > 0 {
		t.Errorf("%d /healthz/live probes failed or took over 3 s (last: %s)", n, probe.LastError())
	}
}

// TestSIGTERMInMemoryCgroupUnderClients: the agent binary with 5,000
// mounts in a 128 MiB memory cgroup, as the manifests run it, under 20
// concurrent scrapers of each O(n) endpoint and 40 clients that never
// read /metrics. It is not OOM-killed, /healthz/live answers within the
// manifests' probe timeout (3 s) throughout, and SIGTERM ends it, exit
// status 0, within 5 s.
func TestSIGTERMInMemoryCgroupUnderClients(t *testing.T) {
	testutil.RequireRoot(t, "create a cgroup")
	const mounts = 5000
	raiseNoFile(t, 8192)
	g, err := cgroup.New("efs-health-agent-e2e-http", 128<<20)
	if err != nil {
		testutil.Require(t, err)
	}
	t.Cleanup(func() { _ = g.Remove() })
	dir := testutil.TmpfsDir(t)
	port := freePort(t)
	args := []string{"--bind-address", "127.0.0.1", "--port", strconv.Itoa(port), "--check-interval", "60s", "--check-timeout", "5s"}
	for i := 0; i < mounts; i++ {
		p := filepath.Join(dir, fmt.Sprintf("v%04d", i))
		if err := os.Mkdir(p, 0o755); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--mount", p)
	}
	cmd := g.Command(agentBinary(t), args...)
	logs := &syncBuffer{}
	w := writeOnly{logs}
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
	})
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	testutil.WaitForWithin(t, 180*time.Second, "every mount checked", func() bool {
		resp, err := http.Get(base + "/healthz/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	probe := &hostilehttp.Probe{}
	pctx, pcancel := context.WithCancel(ctx)
	var pwg sync.WaitGroup
	pwg.Go(func() { probe.Run(pctx, base, "/healthz/live", 100*time.Millisecond, 3*time.Second) })
	var c hostilehttp.Counts
	var opened atomic.Int64
	for _, p := range []string{"/metrics", "/healthz/mounts", "/"} {
		hostilehttp.Scrapers(ctx, &wg, base, p, 20, 10*time.Second, &c)
	}
	hostilehttp.NonReaders(ctx, &wg, "127.0.0.1:"+strconv.Itoa(port), "/metrics", 40, time.Minute, &opened)
	// For a while: the probe keeps going. (The code before the memory
	// budget was OOM-killed within 10 s of 20 scrapers at 5,000 mounts.)
	time.Sleep(10 * time.Second)
	pcancel()
	pwg.Wait()
	start := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		done <- err
		t.Logf("exit %v after SIGTERM: %v", time.Since(start).Round(time.Millisecond), err)
		if err != nil {
			t.Errorf("exit after SIGTERM: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("no exit within 5 s of SIGTERM")
	}
	t.Logf("scrapes: %s; %d non-readers; cgroup peak %d MiB, %d OOM kills; /healthz/live %d probes, slowest %v, %d failed",
		&c, opened.Load(), g.PeakBytes()>>20, g.OOMKills(), probe.Probes.Load(), probe.Slowest().Round(time.Millisecond), probe.Failed.Load())
	if n := g.OOMKills(); n > 0 {
		t.Errorf("%d OOM kills", n)
	}
	if n := probe.Failed.Load(); n > 0 || probe.Probes.Load() == 0 {
		t.Errorf("%d of %d /healthz/live probes failed or took over 3 s (last: %s)", n, probe.Probes.Load(), probe.LastError())
	}
	if c.Bad.Load() > 0 || c.OK.Load() == 0 {
		t.Errorf("scrapes: %s", &c)
	}
}
