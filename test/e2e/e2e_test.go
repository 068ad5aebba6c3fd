//go:build linux

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/efs-health-agent/efs-health-agent/internal/testenv/faultfs"
	"github.com/efs-health-agent/efs-health-agent/internal/testenv/testutil"
	"github.com/efs-health-agent/efs-health-agent/probes"
)

var (
	buildOnce sync.Once
	binDir    string // removed by TestMain when the tests are done
	binPath   string
	buildErr  error
)

// TestMain removes the agent binary built for the run.
func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// agentBinary builds the agent once per test run.
func agentBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "efs-health-agent-e2e")
		if err != nil {
			buildErr = err
			return
		}
		binDir = dir
		binPath = filepath.Join(dir, "efs-health-agent")
		out, err := exec.Command("go", "build", "-o", binPath, "../../cmd/efs-health-agent").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// agentProc is a running agent.
type agentProc struct {
	cmd  *exec.Cmd
	base string
	logs *syncBuffer // read with Text
	done chan error
}

type syncBuffer struct {
	mu sync.Mutex
	bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.Buffer.Write(p)
}

// ReadFrom copies through Write, under the lock: the embedded Buffer's
// ReadFrom, which exec's copy of a child's output uses, would bypass it.
func (b *syncBuffer) ReadFrom(r io.Reader) (int64, error) {
	return io.Copy(writeOnly{b}, r)
}

func startAgent(t *testing.T, env []string, args ...string) *agentProc {
	t.Helper()
	port := freePort(t)
	args = append([]string{"--bind-address", "127.0.0.1", "--port", strconv.Itoa(port)}, args...)
	cmd := exec.Command(agentBinary(t), args...)
	cmd.Env = append(os.Environ(), env...)
	logs := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &agentProc{cmd: cmd, base: fmt.Sprintf("http://127.0.0.1:%d", port), logs: logs, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			logs.mu.Lock()
			t.Logf("agent log:\n%s", logs.String())
			logs.mu.Unlock()
		}
	})
	testutil.WaitForWithin(t, 10*time.Second, "agent listening", func() bool {
		resp, err := http.Get(p.base + "/healthz/live")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	return p
}

func mounts(t *testing.T, base string) map[string]map[string]any {
	t.Helper()
	resp, err := http.Get(base + "/healthz/mounts")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

func state(t *testing.T, base, path string) string {
	s, _ := mounts(t, base)[path]["state"].(string)
	return s
}

// prometheusBinary finds the Prometheus server, skipping (or failing in
// CI) when it is not installed.
func prometheusBinary(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("prometheus")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("prometheus is not installed; make test installs the Debian package as root")
		}
		t.Skip("prometheus not installed (apt-get install prometheus)")
	}
	return p
}

// promQuery runs an instant query and returns the first sample's value.
func promQuery(base, q string) (string, bool) {
	resp, err := http.Get(base + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		return "", false
	}
	defer resp.Body.Close()
	var r struct {
		Status string
		Data   struct {
			Result []struct {
				Value [2]any
			}
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || r.Status != "success" || len(r.Data.Result) == 0 {
		return "", false
	}
	v, _ := r.Data.Result[0].Value[1].(string)
	return v, true
}

// TestPrometheusScrapesAgent: a real Prometheus server scrapes the agent;
// through its HTTP API the target is up, a healthy mount reads 1, and a
// mount made unhealthy on the FUSE fault filesystem reads 0.
func TestPrometheusScrapesAgent(t *testing.T) {
	prom := prometheusBinary(t)
	fs := testutil.MountFaultFS(t)
	healthy := t.TempDir()
	agent := startAgent(t, nil, "--check-interval", "1s", "--check-timeout", "500ms", "--mount", healthy, "--mount", fs.Mountpoint())
	target := strings.TrimPrefix(agent.base, "http://")

	dir := t.TempDir()
	cfg := fmt.Sprintf("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n- job_name: efs-health-agent\n  static_configs:\n  - targets: ['%s']\n", target)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	promPort := freePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, prom, "--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"), fmt.Sprintf("--web.listen-address=127.0.0.1:%d", promPort))
	var plog syncBuffer
	cmd.Stdout, cmd.Stderr = &plog, &plog
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("prometheus log:\n%s", plog.String())
		}
	})
	pbase := fmt.Sprintf("http://127.0.0.1:%d", promPort)

	testutil.WaitForWithin(t, 60*time.Second, "target up", func() bool { v, ok := promQuery(pbase, `up{job="efs-health-agent"}`); return ok && v == "1" })
	q := func(path string) string {
		return fmt.Sprintf(`efs_mount_health_status{job="efs-health-agent",mount_path=%q}`, path)
	}
	testutil.WaitForWithin(t, 30*time.Second, "healthy mounts read 1", func() bool {
		a, ok1 := promQuery(pbase, q(healthy))
		b, ok2 := promQuery(pbase, q(fs.Mountpoint()))
		return ok1 && ok2 && a == "1" && b == "1"
	})
	fs.Set(faultfs.OpWrite, faultfs.Fault{Errno: syscall.EIO})
	testutil.WaitForWithin(t, 30*time.Second, "faulty mount reads 0", func() bool { v, ok := promQuery(pbase, q(fs.Mountpoint())); return ok && v == "0" })
	if v, _ := promQuery(pbase, q(healthy)); v != "1" {
		t.Fatalf("healthy mount reads %q while the other fails", v)
	}
	testutil.WaitForWithin(t, 30*time.Second, "driver unhealthy", func() bool { v, ok := promQuery(pbase, `efs_csi_driver_healthy`); return ok && v == "0" })
	testutil.WaitForWithin(t, 30*time.Second, "io_error counted", func() bool {
		v, ok := promQuery(pbase, `efs_mount_checks_total{reason="io_error"}`)
		return ok && v != "0"
	})
	fs.Clear()
	testutil.WaitForWithin(t, 30*time.Second, "recovered mount reads 1", func() bool { v, ok := promQuery(pbase, q(fs.Mountpoint())); return ok && v == "1" })
}

// TestSIGTERMWhileHung: the agent exits 0 within 2 seconds of SIGTERM even
// with a check stuck in the kernel.
func TestSIGTERMWhileHung(t *testing.T) {
	fs := testutil.MountFaultFS(t)
	agent := startAgent(t, nil, "--check-interval", "1s", "--check-timeout", "300ms", "--mount", fs.Mountpoint())
	testutil.WaitForWithin(t, 10*time.Second, "healthy", func() bool { return state(t, agent.base, fs.Mountpoint()) == "healthy" })
	fs.Set(faultfs.OpWrite, faultfs.Fault{Hang: true})
	testutil.WaitForWithin(t, 10*time.Second, "hung", func() bool { return state(t, agent.base, fs.Mountpoint()) == "hung" })
	start := time.Now()
	if err := agent.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-agent.done:
		agent.done <- err // for the cleanup
		if err != nil {
			t.Fatalf("exit: %v", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("exit took %v", d)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("agent did not exit within 2s of SIGTERM while a check was stuck")
	}
}

// TestCrashRestartCleansUp: an agent killed during a hung write leaves its
// probe file. The next agent on the same node starts while the write is
// still hung; once it is released, the new agent removes the leftover (and
// one of an earlier version) as soon as they are provably not in flight
// (older than the leftover age, 30s here), and never touches another
// node's probe files on the shared filesystem.
func TestCrashRestartCleansUp(t *testing.T) {
	fs := testutil.MountFaultFS(t)
	node := []string{"HEALTH_NODE_NAME=node-a"}
	otherOwner, err := probes.NewOwner("node-b")
	if err != nil {
		t.Fatal(err)
	}
	otherNew, _ := otherOwner.NewFileName()
	others := []string{probes.HostPrefix("node-b") + "0123456789abcdef.tmp", otherNew}
	legacy := probes.HostPrefix("node-a") + "fedcba9876543210.tmp"
	for _, n := range append([]string{legacy}, others...) {
		if err := os.WriteFile(filepath.Join(fs.Mountpoint(), n), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	fs.Set(faultfs.OpFsync, faultfs.Fault{Hang: true})
	agent := startAgent(t, node, "--check-interval", "1s", "--check-timeout", "300ms", "--mount", fs.Mountpoint())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := fs.WaitBlocked(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if err := agent.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-agent.done:
		agent.done <- err
	case <-time.After(5 * time.Second):
		t.Fatal("killed agent did not exit")
	}
	if left := probeFiles(t, fs.Mountpoint(), "node-a"); len(left) != 2 {
		t.Fatalf("expected the killed check's probe file and the planted one, found %v", left)
	}
	again := startAgent(t, node, "--check-interval", "1s", "--check-timeout", "300ms", "--mount", fs.Mountpoint())
	testutil.WaitForWithin(t, 10*time.Second, "restarted agent hung in the still hung write", func() bool { return state(t, again.base, fs.Mountpoint()) == "hung" })
	fs.Clear()
	testutil.WaitForWithin(t, 10*time.Second, "healthy after the release", func() bool { return state(t, again.base, fs.Mountpoint()) == "healthy" })
	testutil.WaitForWithin(t, 90*time.Second, "leftovers removed", func() bool { return len(probeFiles(t, fs.Mountpoint(), "node-a")) == 0 })
	for _, n := range others {
		if _, err := os.Stat(filepath.Join(fs.Mountpoint(), n)); err != nil {
			t.Fatalf("another node's probe file was touched: %v", err)
		}
	}
	if state(t, again.base, fs.Mountpoint()) != "healthy" {
		t.Fatal("not healthy after the cleanup")
	}
}

func probeFiles(t *testing.T, dir, host string) []string {
	t.Helper()
	var out []string
	// The probe directory, where checks make their files, and the root,
	// where earlier versions made theirs.
	for _, sub := range []string{probes.DirName, ""} {
		ents, err := os.ReadDir(filepath.Join(dir, sub))
		if err != nil && !(sub != "" && os.IsNotExist(err)) {
			t.Fatal(err)
		}
		for _, e := range ents {
			if probes.IsProbeFile(e.Name(), host) {
				out = append(out, filepath.Join(sub, e.Name()))
			}
		}
	}
	return out
}
