//go:build linux

package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/efs-health-agent/efs-health-agent/internal/testenv/cgroup"
	"github.com/efs-health-agent/efs-health-agent/internal/testenv/tmpfs"
)

// Hostile-load phase: the agent binary in a memory cgroup limited like
// the shipped manifests, under everything an unauthenticated neighbour
// can throw at port 9910 at once.
const (
	hostileMemory     = 128 << 20 // the manifests' memory limit
	hostileCPU        = 100       // the manifests' CPU limit, in millicores
	hostileMounts     = 300       // tmpfs directories checked every 2 s
	hostileTableLines = 100_000   // lines of the mountinfo fixture
	hostileIdleConns  = 4000      // idle keep-alive connections held open at once
	hostileDebug      = 16        // clients asking for the largest /debug/checks
)

// hostileResult is what the phase measured.
type hostileResult struct {
	cgroupV2                     bool
	baseRSS, peakRSS, cgroupPeak int64 // bytes
	oomKills                     int
	connsOpened, connsServed     int64
	debugOK, debugRefused        int64
	debugOther                   int64
	liveProbes, liveFailed       int64
	liveSlowest                  time.Duration
	exitErr                      error
	throttled                    int          // CFS periods the agent was throttled in
	table                        *tableAttack // hostile_table.go
	// The hostile clients' part (hostile_http.go), on its own agent.
	http    *hostileHTTPResult
	httpErr error
}

// mountinfoFixture writes a mount table of n lines shaped like a busy
// node's: overlay roots, kubelet tmpfs secrets and projected volumes, and
// NFS mounts outside the discovery prefix, so the agent reads and parses
// every line at each refresh and registers none of them.
func mountinfoFixture(path string, n int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	fmt.Fprintf(w, "1 0 253:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw\n")
	for i := 2; i <= n; i++ {
		switch i % 4 {
		case 0:
			fmt.Fprintf(w, "%d 1 0:%d / /run/containerd/io.containerd.runtime.v2.task/k8s.io/%064x/rootfs rw,relatime shared:%d - overlay overlay rw,lowerdir=/var/lib/containerd/l/%d,upperdir=/var/lib/containerd/u/%d,workdir=/var/lib/containerd/w/%d\n", i, 100+i%900, i, i, i, i, i)
		case 1, 2:
			fmt.Fprintf(w, "%d 1 0:%d / /var/lib/kubelet/pods/%08x-0000-4000-8000-%012x/volumes/kubernetes.io~projected/kube-api-access-%05d rw,relatime shared:%d - tmpfs tmpfs rw,size=65536k\n", i, 100+i%900, i, i, i%100000, i)
		default:
			fmt.Fprintf(w, "%d 1 0:%d / /mnt/nfs/share-%d rw,relatime shared:%d - nfs4 fs-%08x.efs.us-east-1.amazonaws.com:/ rw,vers=4.1,rsize=1048576,wsize=1048576,hard,timeo=600,retrans=2,sec=sys\n", i, 100+i%900, i, i, i)
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func vmRSS(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n << 10
		}
	}
	return 0
}

// raiseNoFile makes room for n open files in this process.
func raiseNoFile(n uint64) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return err
	}
	if lim.Cur >= n {
		return nil
	}
	lim.Cur = n
	lim.Max = max(lim.Max, n)
	return syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
}

// hostileBox is where a hostile phase runs the agent: a cgroup limited
// like the manifests' container (hostileMemory, hostileCPU), a directory
// on a tmpfs of its own for the mount roots, and a free loopback port.
type hostileBox struct {
	g    *cgroup.Group
	root string
	port int
	undo []func()
}

// newHostileBox makes the box of the phase name, with a tmpfs of size
// (the directory stays on the disk if tmpfs cannot be mounted) and room
// for noFile descriptors in this process.
func newHostileBox(name, size string, noFile uint64) (_ *hostileBox, err error) {
	if err := raiseNoFile(noFile); err != nil {
		return nil, fmt.Errorf("RLIMIT_NOFILE: %w", err)
	}
	b := &hostileBox{}
	defer func() {
		if err != nil {
			b.close()
		}
	}()
	if b.g, err = cgroup.New("efs-health-agent-"+name, hostileMemory); err != nil {
		return nil, err
	}
	g := b.g
	b.undo = append(b.undo, func() { _ = g.Remove() })
	if err = g.LimitCPU(hostileCPU); err != nil {
		return nil, err
	}
	if b.root, err = os.MkdirTemp("", "efs-"+name); err != nil {
		return nil, err
	}
	root := b.root
	b.undo = append(b.undo, func() { _ = os.RemoveAll(root) })
	if unmount, err := tmpfs.Mount(root, "size="+size); err == nil {
		b.undo = append(b.undo, unmount)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	b.port = ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return b, nil
}

// close undoes the box, the last step first; the agent must have exited.
func (b *hostileBox) close() {
	for i := len(b.undo) - 1; i >= 0; i-- {
		b.undo[i]()
	}
}

// dirs makes n mount roots in the box, named with format and their index.
func (b *hostileBox) dirs(n int, format string) ([]string, error) {
	dirs := make([]string, 0, n)
	for i := 0; i < n; i++ {
		d := filepath.Join(b.root, fmt.Sprintf(format, i))
		if err := os.Mkdir(d, 0o755); err != nil {
			return nil, err
		}
		dirs = append(dirs, d)
	}
	return dirs, nil
}

// agentRun is an agent started by startAgent: its output is kept in
// memory, exited yields its Wait once (a reader that only looks puts it
// back).
type agentRun struct {
	cmd    *exec.Cmd
	exited chan error
	mu     sync.Mutex
	logs   strings.Builder
}

// startAgent starts cmd (made by the box's Group.Command) with env added
// to this process's environment, collecting its output.
func startAgent(cmd *exec.Cmd, env ...string) (*agentRun, error) {
	a := &agentRun{cmd: cmd, exited: make(chan error, 1)}
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout = writerFunc(func(p []byte) (int, error) { a.mu.Lock(); defer a.mu.Unlock(); return a.logs.Write(p) })
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() { a.exited <- cmd.Wait() }()
	return a, nil
}

// output is what the agent has written so far.
func (a *agentRun) output() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.logs.String()
}

// kill kills the agent, if it still runs, and waits for it.
func (a *agentRun) kill() {
	_ = a.cmd.Process.Kill()
	<-a.exited
}

// runHostile runs the phase for dur against the agent binary bin.
func runHostile(bin string, dur time.Duration) (*hostileResult, error) {
	box, err := newHostileBox("soak", "64m", hostileIdleConns+2048)
	if err != nil {
		return nil, err
	}
	defer box.close()
	g, root, port := box.g, box.root, box.port
	mounts, err := box.dirs(hostileMounts, "v%03d")
	if err != nil {
		return nil, err
	}
	table := filepath.Join(root, "mountinfo")
	if err := mountinfoFixture(table, hostileTableLines); err != nil {
		return nil, fmt.Errorf("mountinfo fixture: %w", err)
	}
	tables, err := newTableAttack(bin, table, mounts)
	if err != nil {
		return nil, fmt.Errorf("mount-table attack: %w", err)
	}
	base := "http://127.0.0.1:" + strconv.Itoa(port)

	cmd := g.Command(bin, "--bind-address", "127.0.0.1", "--port", strconv.Itoa(port),
		"--check-interval", "2s", "--check-timeout", "1s")
	a, err := startAgent(cmd, "HEALTH_MOUNTS="+strings.Join(mounts, ","), "HEALTH_MOUNTINFO="+table,
		"HEALTH_DISCOVER_FSTYPES=nfs4", "HEALTH_DISCOVERY_INTERVAL=2s", "HEALTH_NODE_NAME=soak")
	if err != nil {
		return nil, err
	}
	defer a.kill()
	exited := a.exited
	fail := func(err error) (*hostileResult, error) {
		return nil, fmt.Errorf("%w; agent log:\n%s", err, a.output())
	}
	if err := waitHealthy(base, 60*time.Second); err != nil {
		return fail(err)
	}
	pid := cmd.Process.Pid
	res := &hostileResult{cgroupV2: g.V2, baseRSS: vmRSS(pid)}

	ctx, cancel := context.WithTimeout(context.Background(), dur)
	defer cancel()
	var l hostileLoad
	var wg sync.WaitGroup
	wg.Go(func() { tables.run(ctx) })
	wg.Go(func() { l.watchRSS(ctx, pid) })
	wg.Go(func() { l.kubelet(ctx, base) })
	for w := 0; w < 8; w++ {
		wg.Go(func() { l.idleConns(ctx, port) })
	}
	for w := 0; w < hostileDebug; w++ {
		wg.Go(func() { l.debugClient(ctx, base) })
	}
	wg.Wait()
	l.closeHeld()

	res.peakRSS, res.cgroupPeak, res.oomKills, res.throttled = l.peak.Load(), g.PeakBytes(), g.OOMKills(), g.Throttled()
	res.connsOpened, res.connsServed = l.opened.Load(), l.served.Load()
	res.debugOK, res.debugRefused, res.debugOther = l.dOK.Load(), l.dRefused.Load(), l.dOther.Load()
	res.liveProbes, res.liveFailed, res.liveSlowest = l.probes.Load(), l.failed.Load(), time.Duration(l.slowest.Load())
	res.exitErr = stopAgent(cmd, exited)
	tables.judge(a.output())
	res.table = tables
	res.http, res.httpErr = runHostileHTTP(bin, dur)
	return res, nil
}

// stopAgent sends SIGTERM to the agent unless it exited during the load,
// and says what went wrong: an exit during the load, a failed exit, or
// none within 5 s.
func stopAgent(cmd *exec.Cmd, exited chan error) error {
	select {
	case err := <-exited:
		exited <- err
		return fmt.Errorf("the agent exited during the load: %v", err)
	default:
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		exited <- err
		if err != nil {
			return fmt.Errorf("exit after SIGTERM: %w", err)
		}
		return nil
	case <-time.After(exitBound):
		return fmt.Errorf("no exit within %v of SIGTERM", exitBound)
	}
}

// hostileLoad is the phase's clients and what they saw.
type hostileLoad struct {
	peak                    atomic.Int64 // agent RSS
	probes, failed, slowest atomic.Int64 // the kubelet's /healthz/live
	opened, served          atomic.Int64 // idle keep-alive connections
	dOK, dRefused, dOther   atomic.Int64 // /debug/checks
	heldMu                  sync.Mutex
	held                    []net.Conn
}

// watchRSS samples the agent's RSS every 20 ms.
func (l *hostileLoad) watchRSS(ctx context.Context, pid int) {
	for ctx.Err() == nil {
		if r := vmRSS(pid); r > l.peak.Load() {
			l.peak.Store(r)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kubelet asks /healthz/live on a fresh connection every 100 ms.
func (l *hostileLoad) kubelet(ctx context.Context, base string) {
	// Judged by the manifests' probe timeout: under their 100m CPU
	// limit the agent is throttled, and kubelet waits that long.
	c := &http.Client{Timeout: probeTimeout + time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for ctx.Err() == nil {
		start := time.Now()
		resp, err := c.Get(base + "/healthz/live")
		d := time.Since(start)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		l.probes.Add(1)
		if err != nil || resp.StatusCode != http.StatusOK || d > probeTimeout {
			l.failed.Add(1)
		}
		if int64(d) > l.slowest.Load() {
			l.slowest.Store(int64(d))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// idleConns opens connections continuously, each serving one request
// and left open; the clients hold up to hostileIdleConns and close their
// oldest beyond that.
func (l *hostileLoad) idleConns(ctx context.Context, port int) {
	for ctx.Err() == nil {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), 2*time.Second)
		if err != nil {
			continue
		}
		l.opened.Add(1)
		l.heldMu.Lock()
		l.held = append(l.held, c)
		if len(l.held) > hostileIdleConns {
			l.held[0].Close()
			l.held = l.held[1:]
		}
		l.heldMu.Unlock()
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := io.WriteString(c, "GET /healthz/live HTTP/1.1\r\nHost: agent\r\n\r\n"); err != nil {
			continue
		}
		if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			l.served.Add(1)
		}
	}
}

// closeHeld closes the idle connections still held.
func (l *hostileLoad) closeHeld() {
	l.heldMu.Lock()
	defer l.heldMu.Unlock()
	for _, c := range l.held {
		c.Close()
	}
	l.held = nil
}

// debugClient asks for the largest /debug/checks answer, again and again.
func (l *hostileLoad) debugClient(ctx context.Context, base string) {
	c := &http.Client{Timeout: 10 * time.Second}
	for ctx.Err() == nil {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/debug/checks?limit=1000", nil)
		resp, err := c.Do(req)
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, context.DeadlineExceeded) {
				l.dOther.Add(1)
			}
			continue
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusOK:
			l.dOK.Add(1)
		case http.StatusTooManyRequests:
			l.dRefused.Add(1)
		default:
			l.dOther.Add(1)
		}
	}
}

// waitHealthy waits until /healthz/ready answers 200.
func waitHealthy(base string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		resp, err := http.Get(base + "/healthz/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("the agent was not ready within %v", limit)
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// ok reports whether the phase held its bounds: no OOM kill, a clean
// exit, and /healthz/live answered within the manifests' probe timeout
// every time.
func (r *hostileResult) ok() bool {
	return r.oomKills <= 0 && r.exitErr == nil && r.liveFailed == 0 && r.debugOther == 0 && r.liveProbes > 0 &&
		r.table.ok() && r.httpErr == nil && r.http != nil && r.http.ok()
}

// markdown is the phase's section of BENCHMARKS.md.
func (r *hostileResult) markdown(dur time.Duration, note string) string {
	var b strings.Builder
	v := "cgroup v1 memory controller"
	if r.cgroupV2 {
		v = "cgroup v2"
	}
	fmt.Fprintf(&b, "## Hostile load (`make soak`, phase 2)\n\n")
	if note != "" {
		note = " " + strings.TrimSpace(note)
	}
	fmt.Fprintf(&b, "%s, %d cores, %s.%s "+
		"The agent binary runs in a %d MiB memory cgroup (%s) limited to %dm of CPU (a CFS quota, throttled in %d periods), as in the manifests, with %d tmpfs mounts checked every 2 s (timeout 1 s) "+
		"and discovery of nfs4 under the default prefix following a %s-line mountinfo fixture (`HEALTH_MOUNTINFO`, overlay, tmpfs and nfs4 lines outside the prefix) every 2 s. "+
		"For %v, from loopback at once: 8 clients open keep-alive connections continuously, send one request on each and leave it idle, holding up to %d open; "+
		"%d clients request `/debug/checks?limit=1000` in a loop; a probe requests `/healthz/live` on a fresh connection every 100 ms.\n\n",
		time.Now().UTC().Format("2006-01-02"), runtime.NumCPU(), runtime.Version(), note, hostileMemory>>20, v, hostileCPU, r.throttled, hostileMounts, thousands(hostileTableLines),
		dur.Round(time.Second), hostileIdleConns, hostileDebug)
	fmt.Fprintf(&b, "| measure | value |\n|---|---|\n")
	fmt.Fprintf(&b, "| agent RSS before the load | %.1f MiB |\n", float64(r.baseRSS)/(1<<20))
	fmt.Fprintf(&b, "| agent peak RSS during the load (sampled every 20 ms) | %.1f MiB |\n", float64(r.peakRSS)/(1<<20))
	if r.cgroupPeak > 0 {
		fmt.Fprintf(&b, "| cgroup peak memory (kernel's own count, page cache included) | %.1f MiB |\n", float64(r.cgroupPeak)/(1<<20))
	}
	fmt.Fprintf(&b, "| OOM kills | %d |\n", max(r.oomKills, 0))
	fmt.Fprintf(&b, "| idle connections opened / served a request | %d / %d |\n", r.connsOpened, r.connsServed)
	fmt.Fprintf(&b, "| `/debug/checks` served / refused with 429 / other | %d / %d / %d |\n", r.debugOK, r.debugRefused, r.debugOther)
	fmt.Fprintf(&b, "| `/healthz/live` probes / failed or over %v | %d / %d |\n", probeTimeout, r.liveProbes, r.liveFailed)
	fmt.Fprintf(&b, "| slowest `/healthz/live` | %v |\n", r.liveSlowest.Round(100*time.Microsecond))
	r.table.rows(&b)
	exit := "clean exit after SIGTERM"
	if r.exitErr != nil {
		exit = r.exitErr.Error()
	}
	fmt.Fprintf(&b, "| end | %s |\n\n", exit)
	if r.httpErr != nil {
		fmt.Fprintf(&b, "Hostile clients: %v\n\n", r.httpErr)
	} else if r.http != nil {
		b.WriteString(r.http.markdown())
	}
	return b.String()
}

// replaceSection rewrites the part of file between begin and end (or
// appends it).
func replaceSection(file, begin, end, body string) error {
	old, _ := os.ReadFile(file)
	text := string(old)
	section := begin + body + end
	if i, j := strings.Index(text, begin), strings.Index(text, end); i >= 0 && j > i {
		text = text[:i] + section + text[j+len(end):]
	} else {
		text += "\n" + section
	}
	return os.WriteFile(file, []byte(text), 0o644)
}

// buildAgent builds the agent binary into dir when no -agent is given.
func buildAgent(dir string) (string, error) {
	bin := filepath.Join(dir, "efs-health-agent")
	out, err := exec.Command("go", "build", "-o", bin, "./cmd/efs-health-agent").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %w\n%s", err, out)
	}
	return bin, nil
}

// thousands formats n with comma separators.
func thousands(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
