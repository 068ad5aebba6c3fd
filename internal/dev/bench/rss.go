//go:build linux

package main

import (
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

	"github.com/efs-health-agent/efs-health-agent/httpapi"
)

// idleRSS: resident memory of the agent binary with no mounts, after it
// has served one request of every endpoint.
func idleRSS(r *report) {
	r.add("## 2b. Agent process with no mounts (target: RSS ≤ 12 MiB)")
	r.add("")
	agent, err := residentIdle("./cmd/efs-health-agent",
		[]string{"/healthz", "/healthz/ready", "/healthz/mounts", "/metrics", "/", httpapi.PathDebugChecks})
	if err != nil {
		r.add("skipped: %v", err)
		r.add("")
		return
	}
	floor, err := residentIdle("./internal/dev/bench/floor", []string{"/metrics"})
	if err != nil {
		r.add("skipped: %v", err)
		r.add("")
		return
	}
	r.add("| binary | size | RSS 3 s after one request of every endpoint | of which anonymous (heap, stacks) | of which the binary's pages |")
	r.add("|---|---|---|---|---|")
	r.add("| the agent, `CGO_ENABLED=0 go build -trimpath -ldflags \"-s -w\"` (as `make build`), no mounts, no OTEL_* | %.1f MiB | %.1f MiB | %.1f MiB | %.1f MiB |",
		agent.size, agent.rss, agent.anon, agent.file)
	r.add("| dependency floor (`internal/dev/bench/floor`: chi, the OpenTelemetry SDK with the Prometheus exporter serving /metrics, the OTLP HTTP and gRPC exporters linked; no agent code), built the same way | %.1f MiB | %.1f MiB | %.1f MiB | %.1f MiB |",
		floor.size, floor.rss, floor.anon, floor.file)
	r.add("")
	r.add("The binary's pages count in RSS once the process has touched them (and the kernel has mapped their neighbours); the same share is resident when the binary is run from tmpfs. The floor row is what the agreed core dependencies alone keep resident: the agent's own code, its other libraries and its state are the difference (%.1f MiB).",
		agent.rss-floor.rss)
	r.add("")
	r.target("2b. RSS of the agent with no mounts", fmt.Sprintf("%.1f MiB (dependency floor %.1f MiB)", agent.rss, floor.rss), agent.rss, 12, " MiB")
}

// resident is a process's memory in MiB, and its binary's size.
type resident struct{ size, rss, anon, file float64 }

// residentIdle builds pkg as make build does, runs it listening on
// loopback with an empty environment, requests each of paths once, and
// reads its resident memory 3 s later.
func residentIdle(pkg string, paths []string) (resident, error) {
	tmp, err := os.MkdirTemp("", "bench-bin")
	if err != nil {
		return resident{}, err
	}
	defer os.RemoveAll(tmp)
	bin := filepath.Join(tmp, filepath.Base(pkg))
	build := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, pkg)
	build.Env = append(os.Environ(), "CGO_ENABLED=0") // static, as make build
	if out, err := build.CombinedOutput(); err != nil {
		return resident{}, fmt.Errorf("go build %s: %v %s", pkg, err, out)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return resident{}, err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cmd := exec.Command(bin, "--bind-address", "127.0.0.1", "--port", fmt.Sprint(port))
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	if err := cmd.Start(); err != nil {
		return resident{}, err
	}
	defer func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() }()
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	for start := time.Now(); ; time.Sleep(20 * time.Millisecond) {
		if resp, err := http.Get(base + "/healthz/live"); err == nil {
			resp.Body.Close()
			break
		}
		if time.Since(start) > 20*time.Second {
			return resident{}, fmt.Errorf("%s did not start", pkg)
		}
	}
	for _, p := range paths {
		if resp, err := http.Get(base + p); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	time.Sleep(3 * time.Second) // let the first GC cycles run
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
	if err != nil {
		return resident{}, err
	}
	var rssKiB, anonKiB, fileKiB int
	for _, l := range strings.Split(string(status), "\n") {
		for _, f := range []struct {
			key string
			v   *int
		}{{"VmRSS:", &rssKiB}, {"RssAnon:", &anonKiB}, {"RssFile:", &fileKiB}} {
			if strings.HasPrefix(l, f.key) {
				_, _ = fmt.Sscanf(strings.TrimPrefix(l, f.key), "%d", f.v)
			}
		}
	}
	fi, err := os.Stat(bin)
	if err != nil {
		return resident{}, err
	}
	return resident{size: float64(fi.Size()) / (1 << 20), rss: float64(rssKiB) / 1024, anon: float64(anonKiB) / 1024, file: float64(fileKiB) / 1024}, nil
}
