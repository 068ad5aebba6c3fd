// Command demo runs the agent binary against a FUSE fault filesystem and
// walks a scripted timeline — healthy, I/O errors, a hang, recovery —
// printing what the endpoints say at each step. It needs root and
// /dev/fuse. Run it with `make demo`.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/efs-health-agent/efs-health-agent/internal/testenv/faultfs"
	"github.com/efs-health-agent/efs-health-agent/probes"
)

func main() { os.Exit(run()) }

func run() int {
	bin := flag.String("agent", "bin/efs-health-agent", "agent binary")
	flag.Parse()
	if err := faultfs.Available(); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		return 1
	}
	// One scratch directory for the mount point, its backing directory and
	// the agent's log, removed on the way out (after the unmount below).
	work, err := os.MkdirTemp("", "efs-demo-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo: scratch directory:", err)
		return 1
	}
	defer os.RemoveAll(work)
	mnt, back := filepath.Join(work, "mnt"), filepath.Join(work, "backing")
	fs, err := mountFaultFS(mnt, back)
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		return 1
	}
	defer fs.Unmount()
	base, stop, err := startAgent(*bin, mnt, filepath.Join(work, "agent.log"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		return 1
	}
	defer stop()

	fmt.Printf("agent on %s checking the FUSE fault mount %s (interval 2s, timeout 1s)\n", base, mnt)
	steps := []struct {
		title string
		do    func()
		wait  time.Duration
	}{
		{"1. healthy", func() {}, 1500 * time.Millisecond},
		{"2. writes fail with EIO", func() { fs.Set(faultfs.OpWrite, faultfs.Fault{Errno: syscall.EIO}) }, 2500 * time.Millisecond},
		{"3. recovered", func() { fs.Clear() }, 2500 * time.Millisecond},
		{"4. the mount hangs (every write blocks, like an unreachable NFS server)", func() { fs.Set(faultfs.OpWrite, faultfs.Fault{Hang: true}) }, 4 * time.Second},
		{"5. still hung, endpoints still answer at once", func() {}, 3 * time.Second},
		{"6. the server answers again", func() { fs.Clear() }, 1500 * time.Millisecond},
	}
	for _, s := range steps {
		s.do()
		time.Sleep(s.wait)
		fmt.Printf("\n== %s\n", s.title)
		show(base, mnt)
	}
	left, _ := os.ReadDir(filepath.Join(back, probes.DirName))
	fmt.Printf("\nfiles left in the mount: %d, requests still blocked: %d\n", len(left), fs.Blocked())
	return 0
}

// mountFaultFS mounts the fault filesystem at mnt over back, making both.
func mountFaultFS(mnt, back string) (*faultfs.FS, error) {
	for _, d := range []string{mnt, back} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return nil, err
		}
	}
	return faultfs.Mount(mnt, back, faultfs.Options{})
}

// startAgent starts the agent binary bin checking mnt every 2 s on a free
// loopback port, its output to logPath. stop sends it SIGTERM, waits for
// it and prints its log.
func startAgent(bin, mnt, logPath string) (base string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, fmt.Errorf("free port: %w", err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	agent := exec.Command(bin, "--bind-address", "127.0.0.1", "--port", fmt.Sprint(port),
		"--check-interval", "2s", "--check-timeout", "1s", "--mount", mnt, "--log-format", "text")
	logs, err := os.Create(logPath)
	if err != nil {
		return "", nil, fmt.Errorf("agent log: %w", err)
	}
	agent.Stdout, agent.Stderr = logs, logs
	if err := agent.Start(); err != nil {
		logs.Close()
		return "", nil, err
	}
	return fmt.Sprintf("http://127.0.0.1:%d", port), func() {
		_ = agent.Process.Signal(syscall.SIGTERM)
		_ = agent.Wait()
		logs.Close()
		fmt.Printf("\nagent log (state changes only):\n")
		b, _ := os.ReadFile(logPath)
		fmt.Print(indent(string(b)))
	}, nil
}

// show prints the health endpoints' answers and mnt's entry of
// /healthz/mounts, each with its latency.
func show(base, mnt string) {
	for _, p := range []string{"/healthz", "/healthz/ready", "/healthz/live"} {
		code, body, d := get(base + p)
		fmt.Printf("  %-16s %d  %-60s (%v)\n", p, code, strings.TrimSpace(body), d.Round(time.Microsecond))
	}
	_, body, d := get(base + "/healthz/mounts")
	var m map[string]map[string]any
	_ = json.Unmarshal([]byte(body), &m)
	st := m[mnt]
	fmt.Printf("  %-16s state=%v reason=%v consecutiveErrors=%v lastError=%q hungForMs=%v (%v)\n", "/healthz/mounts",
		st["state"], st["reason"], st["consecutiveErrors"], st["lastError"], st["hungForMs"], d.Round(time.Microsecond))
}

func get(url string) (int, string, time.Duration) {
	start := time.Now()
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error(), time.Since(start)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), time.Since(start)
}

func indent(s string) string {
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		out = append(out, "  "+l)
	}
	return strings.Join(out, "\n") + "\n"
}
