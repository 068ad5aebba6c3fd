//go:build linux && nfsguest

package nfs

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// agentBinary is the agent built from this tree, copied into the results
// share by the host.
const agentBinary = workDir + "/efs-health-agent"

// budget is how long any endpoint may take to answer while the scenarios
// watch them: the endpoints answer from memory, but the guest is emulated
// (TCG) on a loaded two-core machine. Any other look at an endpoint fails
// only beyond lookLimit.
const (
	budget    = 2 * time.Second
	lookLimit = 5 * time.Second
)

// nodeName is the node name every agent of the test bed runs with, so a
// restarted agent cleans up after its predecessor.
const nodeName = "nfs-guest"

var (
	portMu   sync.Mutex
	nextPort = 19910
)

func allocPort() int {
	portMu.Lock()
	defer portMu.Unlock()
	nextPort++
	return nextPort
}

// agentProc is one running agent.
type agentProc struct {
	t       testing.TB
	cmd     *exec.Cmd
	port    int
	logPath string
	client  *http.Client
	done    chan struct{}
	waitErr error
}

// agentOpts are how an agent is started.
type agentOpts struct {
	interval, timeout string
	// netns runs the agent in that network namespace (ip netns exec).
	netns string
	args  []string
}

// startAgent starts the agent with interval 2s and timeout 1s unless opts
// say otherwise, and waits for /healthz/live.
func startAgent(t testing.TB, opts agentOpts, mounts ...string) *agentProc {
	t.Helper()
	if opts.interval == "" {
		opts.interval = "2s"
	}
	if opts.timeout == "" {
		opts.timeout = "1s"
	}
	a := &agentProc{t: t, port: allocPort(), done: make(chan struct{})}
	args := []string{"--port", strconv.Itoa(a.port), "--bind-address", "127.0.0.1",
		"--check-interval", opts.interval, "--check-timeout", opts.timeout,
		"--node-name", nodeName, "--enable-debug"}
	for _, m := range mounts {
		args = append(args, "--mount", mountPath(m))
	}
	args = append(args, opts.args...)
	name := agentBinary
	if opts.netns != "" {
		args = append([]string{"netns", "exec", opts.netns, agentBinary}, args...)
		name = "ip"
	}
	a.logPath = filepath.Join(logDir, fmt.Sprintf("agent-%s-%d.log", strings.ReplaceAll(t.Name(), "/", "_"), a.port))
	logf, err := os.Create(a.logPath)
	if err != nil {
		t.Fatal(err)
	}
	a.cmd = exec.Command(name, args...)
	a.cmd.Stdout, a.cmd.Stderr = logf, logf
	tr := &http.Transport{DisableKeepAlives: true}
	if opts.netns != "" {
		tr.DialContext = netnsDialer(opts.netns)
	}
	a.client = &http.Client{Timeout: 5 * time.Second, Transport: tr}
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		a.waitErr = a.cmd.Wait()
		logf.Close()
		close(a.done)
	}()
	t.Cleanup(func() {
		a.kill()
		if t.Failed() {
			t.Logf("agent log (%s):\n%s", a.logPath, tailFile(a.logPath, 40))
		}
	})
	waitFor(t, 20*time.Second, "the agent's /healthz/live", func() (bool, string) {
		select {
		case <-a.done:
			t.Fatalf("agent exited at start: %v\n%s", a.waitErr, tailFile(a.logPath, 20))
		default:
		}
		code, _, err := a.get("/healthz/live")
		return err == nil && code == 200, fmt.Sprint(code, err)
	})
	return a
}

// kill stops the agent with SIGKILL if it still runs, and waits for it.
func (a *agentProc) kill() {
	select {
	case <-a.done:
		return
	default:
	}
	_ = a.cmd.Process.Kill()
	select {
	case <-a.done:
	case <-time.After(10 * time.Second):
		a.t.Errorf("agent pid %d did not die within 10s of SIGKILL", a.cmd.Process.Pid)
	}
}

// stop sends sig and returns how long the agent took to exit, failing
// the test beyond limit.
func (a *agentProc) stop(sig syscall.Signal, limit time.Duration) time.Duration {
	a.t.Helper()
	start := time.Now()
	_ = a.cmd.Process.Signal(sig)
	select {
	case <-a.done:
		return time.Since(start)
	case <-time.After(limit):
		a.t.Fatalf("agent did not exit within %v of %v", limit, sig)
		return 0
	}
}

// exitCode is the agent's exit status once it exited.
func (a *agentProc) exitCode() int {
	<-a.done
	return a.cmd.ProcessState.ExitCode()
}

// get fetches path from the agent.
func (a *agentProc) get(path string) (int, []byte, error) {
	resp, err := a.client.Get(fmt.Sprintf("http://127.0.0.1:%d%s", a.port, path))
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// timedGet fetches path and fails the test when it takes longer than
// lookLimit or fails.
func (a *agentProc) timedGet(path string) (int, []byte, time.Duration) {
	a.t.Helper()
	start := time.Now()
	code, b, err := a.get(path)
	took := time.Since(start)
	if err != nil {
		a.t.Fatalf("GET %s: %v after %v", path, err, took)
	}
	if took > lookLimit {
		a.t.Errorf("GET %s took %v, more than %v", path, took, lookLimit)
	}
	return code, b, took
}

// mountJSON is what the test bed reads of a mount in /healthz/mounts.
type mountJSON struct {
	IsHealthy         bool               `json:"isHealthy"`
	LastCheckTime     *string            `json:"lastCheckTime"`
	ErrorCount        uint64             `json:"errorCount"`
	ConsecutiveErrors uint64             `json:"consecutiveErrors"`
	LastError         string             `json:"lastError"`
	State             string             `json:"state"`
	Mode              string             `json:"mode"`
	Reason            string             `json:"reason"`
	FailedOperation   string             `json:"failedOperation"`
	OperationsMs      map[string]float64 `json:"operationsMs"`
	HungForMs         int64              `json:"hungForMs"`
	FSType            string             `json:"fsType"`
	Check             string             `json:"check"`
	ProvenBy          string             `json:"provenBy"`
}

func (m mountJSON) String() string {
	return fmt.Sprintf("state=%s healthy=%v mode=%s reason=%s error=%q errors=%d ops=%v", m.State, m.IsHealthy, m.Mode, m.Reason, m.LastError, m.ErrorCount, m.OperationsMs)
}

// mounts reads /healthz/mounts, keyed by mount path.
func (a *agentProc) mounts() map[string]mountJSON {
	a.t.Helper()
	_, b, _ := a.timedGet("/healthz/mounts")
	var ms map[string]mountJSON
	if err := json.Unmarshal(b, &ms); err != nil {
		a.t.Fatalf("/healthz/mounts: %v: %s", err, b)
	}
	return ms
}

// mount reads one mount's status by mount point name.
func (a *agentProc) mount(name string) (mountJSON, bool) {
	m, ok := a.mounts()[mountPath(name)]
	return m, ok
}

// metrics reads /metrics.
func (a *agentProc) metrics() string {
	a.t.Helper()
	_, b, _ := a.timedGet("/metrics")
	return string(b)
}

// metric sums the samples of series name whose labels contain every
// label="value" pair given.
func metric(text, name string, labels ...string) (float64, bool) {
	var sum float64
	found := false
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		ok := true
		for _, l := range labels {
			if !strings.Contains(line, l) {
				ok = false
				break
			}
		}
		if !ok {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			continue
		}
		sum += v
		found = true
	}
	return sum, found
}

// checks is the number of checks the agent finished, over all its mounts
// (efs_mount_checks_total has no mount label).
func (a *agentProc) checks() float64 {
	v, _ := metric(a.metrics(), "efs_mount_checks_total")
	return v
}

var goroutineTotal = regexp.MustCompile(`goroutine profile: total (\d+)`)

// goroutines is the agent's goroutine count, from its pprof endpoint.
func (a *agentProc) goroutines() int {
	a.t.Helper()
	_, b, _ := a.timedGet("/debug/pprof/goroutine?debug=1")
	m := goroutineTotal.FindSubmatch(b)
	if m == nil {
		a.t.Fatalf("no goroutine total in /debug/pprof/goroutine: %.200s", b)
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// logText is the agent's log so far.
func (a *agentProc) logText() string {
	b, _ := os.ReadFile(a.logPath)
	return string(b)
}

// waitFor polls cond every 200 ms until it holds, failing the test after
// limit with cond's last description. It returns how long it waited.
func waitFor(t testing.TB, limit time.Duration, what string, cond func() (bool, string)) time.Duration {
	t.Helper()
	start := time.Now()
	last := ""
	for {
		ok, detail := cond()
		if ok {
			return time.Since(start)
		}
		last = detail
		if time.Since(start) > limit {
			t.Fatalf("timed out after %v waiting for %s; last: %s", limit, what, last)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// waitState waits until the mount point called name satisfies cond.
func (a *agentProc) waitMount(limit time.Duration, name, what string, cond func(mountJSON) bool) (time.Duration, mountJSON) {
	a.t.Helper()
	var last mountJSON
	took := waitFor(a.t, limit, name+" "+what, func() (bool, string) {
		m, ok := a.mount(name)
		last = m
		if !ok {
			return false, "not registered"
		}
		return cond(m), m.String()
	})
	return took, last
}

func healthy(m mountJSON) bool { return m.IsHealthy && m.State == "healthy" }

// tailFile returns the last n lines of a file.
func tailFile(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}

// netnsDialer dials from the network namespace ns: the socket is made by
// a thread that entered it (a socket keeps the namespace it was made in).
func netnsDialer(ns string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		type res struct {
			c   net.Conn
			err error
		}
		ch := make(chan res, 1)
		go func() {
			c, err := dialInNetns(ctx, ns, network, addr)
			ch <- res{c, err}
		}()
		r := <-ch
		return r.c, r.err
	}
}
