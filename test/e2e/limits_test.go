//go:build linux

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
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
	"github.com/efs-health-agent/efs-health-agent/internal/testenv/testutil"
)

// rssKiB is a process's resident set in KiB.
func rssKiB(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n
		}
	}
	t.Fatalf("no VmRSS for pid %d", pid)
	return 0
}

// raiseNoFile makes room for n more open files in this process.
func raiseNoFile(t *testing.T, n uint64) {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Cur >= n {
		return
	}
	lim.Cur = max(lim.Cur, min(n, lim.Max))
	if lim.Max < n {
		lim.Max, lim.Cur = n, n // root may raise the hard limit
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatalf("RLIMIT_NOFILE to %d: %v", n, err)
	}
}

// watch samples, until stop is called, the agent's RSS every 20 ms and a
// GET /healthz/live on a fresh connection every 50 ms, each within 1 s.
type watch struct {
	peakKiB   atomic.Int64
	slowest   atomic.Int64 // nanoseconds
	failures  atomic.Int64
	probes    atomic.Int64
	lastError atomic.Value
	stop      func()
}

func watchAgent(t *testing.T, a *agentProc) *watch {
	t.Helper()
	w := &watch{}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			if kb := rssKiB(t, a.cmd.Process.Pid); kb > w.peakKiB.Load() {
				w.peakKiB.Store(kb)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	go func() {
		defer wg.Done()
		client := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		for ctx.Err() == nil {
			start := time.Now()
			resp, err := client.Get(a.base + "/healthz/live")
			d := time.Since(start)
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					err = fmt.Errorf("status %d", resp.StatusCode)
				}
			}
			w.probes.Add(1)
			if err != nil {
				w.failures.Add(1)
				w.lastError.Store(err.Error())
			}
			if int64(d) > w.slowest.Load() {
				w.slowest.Store(int64(d))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	w.stop = func() { cancel(); wg.Wait() }
	return w
}

// check stops the watch and fails the test if the agent grew by
// maxGrowth or more over baseKiB or a liveness probe failed or took 1 s.
func (w *watch) check(t *testing.T, baseKiB int64, maxGrowth int64) {
	t.Helper()
	w.stop()
	growth := w.peakKiB.Load() - baseKiB
	t.Logf("RSS %d KiB at the start, peak %d KiB (+%d KiB); %d /healthz/live probes, slowest %v, %d failed",
		baseKiB, w.peakKiB.Load(), growth, w.probes.Load(), time.Duration(w.slowest.Load()).Round(time.Millisecond), w.failures.Load())
	if growth*1024 >= maxGrowth {
		t.Errorf("RSS grew by %d KiB, the bound is %d KiB", growth, maxGrowth>>10)
	}
	if n := w.failures.Load(); n > 0 {
		t.Errorf("%d /healthz/live probes failed or took over 1 s (last: %v)", n, w.lastError.Load())
	}
	if w.probes.Load() == 0 {
		t.Error("no /healthz/live probe ran")
	}
}

// TestIdleConnectionFlood: 4,000 idle keep-alive connections against the
// agent binary. It holds at most --max-connections of them, closing the
// longest-idle to admit each new one, so its RSS grows by less than
// 48 MiB and /healthz/live on a fresh connection answers within 1 s
// throughout.
func TestIdleConnectionFlood(t *testing.T) {
	const conns = 4000
	raiseNoFile(t, conns+1024)
	a := startAgent(t, nil)
	addr := strings.TrimPrefix(a.base, "http://")
	base := rssKiB(t, a.cmd.Process.Pid)
	w := watchAgent(t, a)

	var (
		opened, served atomic.Int64
		mu             sync.Mutex
		held           []net.Conn
	)
	t.Cleanup(func() {
		for _, c := range held {
			c.Close()
		}
	})
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < conns/8; i++ {
				c, err := net.DialTimeout("tcp", addr, 5*time.Second)
				if err != nil {
					continue
				}
				opened.Add(1)
				mu.Lock()
				held = append(held, c)
				mu.Unlock()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				if _, err := io.WriteString(c, "GET /healthz/live HTTP/1.1\r\nHost: agent\r\n\r\n"); err != nil {
					continue
				}
				resp, err := http.ReadResponse(bufio.NewReader(c), nil)
				if err != nil {
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				served.Add(1) // and left open, idle
			}
		}()
	}
	wg.Wait()
	// Hold them for a while: the probes keep going.
	time.Sleep(2 * time.Second)
	t.Logf("%d connections opened, %d served a request and were left idle", opened.Load(), served.Load())
	w.check(t, base, 48<<20)
	if opened.Load() < conns*9/10 {
		t.Errorf("only %d of %d connections could be opened", opened.Load(), conns)
	}
}

// TestDebugChecksHammer: 300 mounts with full histories and 16 clients
// asking for the largest /debug/checks answer for 10 s. RSS grows by less
// than 64 MiB, /healthz/live answers within 1 s throughout, and the
// requests beyond the concurrency limit are refused with Retry-After
// rather than queued.
func TestDebugChecksHammer(t *testing.T) {
	dir := testutil.TmpfsDir(t)
	var paths []string
	for i := 0; i < 300; i++ {
		p := filepath.Join(dir, fmt.Sprintf("v%03d", i))
		if err := os.Mkdir(p, 0o755); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	a := startAgent(t, []string{"HEALTH_MOUNTS=" + strings.Join(paths, ",")}, "--check-interval", "500ms", "--check-timeout", "250ms")
	// Full histories: every per-mount history (the status page keeps the
	// last 16 response times) and every /debug/checks list filled.
	testutil.WaitForWithin(t, 120*time.Second, "17 checks per mount", func() bool {
		resp, err := http.Get(a.base + "/debug/checks?limit=1")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var d struct {
			ChecksRecorded int `json:"checksRecorded"`
		}
		return json.NewDecoder(resp.Body).Decode(&d) == nil && d.ChecksRecorded >= 17*len(paths)
	})
	for p, m := range mounts(t, a.base) {
		if m["state"] != "healthy" {
			t.Fatalf("%s: %v", p, m)
		}
	}
	base := rssKiB(t, a.cmd.Process.Pid)
	w := watchAgent(t, a)
	var ok, refused, other atomic.Int64
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for c := 0; c < 16; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Timeout: 10 * time.Second}
			for ctx.Err() == nil {
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, a.base+"/debug/checks?limit=1000", nil)
				resp, err := client.Do(req)
				if err != nil {
					if !errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
						other.Add(1)
					}
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				switch {
				case resp.StatusCode == http.StatusOK:
					ok.Add(1)
				case resp.StatusCode == http.StatusTooManyRequests && resp.Header.Get("Retry-After") != "":
					refused.Add(1)
				default:
					other.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("/debug/checks: %d served, %d refused with 429, %d other", ok.Load(), refused.Load(), other.Load())
	w.check(t, base, 64<<20)
	if ok.Load() == 0 || other.Load() > 0 {
		t.Errorf("/debug/checks: %d served, %d neither served nor refused", ok.Load(), other.Load())
	}
}

// TestMemoryLimitFollowsCgroup: in a memory cgroup the agent sets the Go
// runtime's soft limit to 90% of the group's limit and logs it; GOMEMLIMIT
// wins over the cgroup.
func TestMemoryLimitFollowsCgroup(t *testing.T) {
	testutil.RequireRoot(t, "create a cgroup")
	const limit = 100 << 20
	g, err := cgroup.New("efs-health-agent-e2e", limit)
	if err != nil {
		testutil.Require(t, err)
	}
	t.Cleanup(func() { _ = g.Remove() })
	for _, tc := range []struct {
		name string
		env  []string
		want string
	}{
		{"cgroup", nil, fmt.Sprintf("source=cgroup go_memory_limit_bytes=%d", int64(limit*0.9))},
		{"GOMEMLIMIT wins", []string{"GOMEMLIMIT=50MiB"}, fmt.Sprintf("source=GOMEMLIMIT go_memory_limit_bytes=%d", 50<<20)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := g.Command(agentBinary(t), "--bind-address", "127.0.0.1", "--port", strconv.Itoa(freePort(t)))
			cmd.Env = append(os.Environ(), tc.env...)
			logs := &syncBuffer{}
			// Only Write: the embedded Buffer's ReadFrom would bypass the lock.
			w := writeOnly{logs}
			cmd.Stdout, cmd.Stderr = w, w
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
			read := func() string { logs.mu.Lock(); defer logs.mu.Unlock(); return logs.String() }
			testutil.WaitForWithin(t, 10*time.Second, "the memory limit logged", func() bool { return strings.Contains(read(), "agent started") })
			if s := read(); !strings.Contains(s, tc.want) {
				t.Fatalf("log lacks %q:\n%s", tc.want, s)
			}
		})
	}
}

// writeOnly hides every method of its writer but Write.
type writeOnly struct{ w io.Writer }

func (o writeOnly) Write(p []byte) (int, error) { return o.w.Write(p) }
