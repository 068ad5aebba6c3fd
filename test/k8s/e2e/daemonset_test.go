//go:build linux

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/efs-health-agent/efs-health-agent/internal/testenv/faultfs"
	"github.com/efs-health-agent/efs-health-agent/test/k8s/e2e/node"
)

// TestDaemonSet is scenario 1: the chart's DaemonSet, run by the
// controllers and kubelet. Its pod turns Ready on kubelet's own probes,
// with the memory limit the agent reads from its cgroup; volumes mounted
// under kubelet's pods directory after it started reach it through
// HostToContainer propagation and are checked; a hung one makes
// /healthz/ready 503 while liveness stays 200, so kubelet restarts
// nothing.
func TestDaemonSet(t *testing.T) {
	n := node.Shared(t)
	t.Logf("node %s (%s) Ready in %v; logs in %s", n.Name, n.IP, n.StartTime.Round(time.Millisecond), filepath.Join(n.Dir, "logs"))
	begin := time.Now()
	a := install(t, n)
	pod := a.pod(t, "Ready", nil)
	t.Logf("PASS: pod %s Ready %v after the chart was applied", pod.Name, time.Since(begin).Round(time.Millisecond))
	if !pod.Spec.HostNetwork || pod.Status.PodIP != n.IP {
		t.Fatalf("pod IP %q, hostNetwork %v: want the node's IP %s", pod.Status.PodIP, pod.Spec.HostNetwork, n.IP)
	}

	// kubelet's own probes pass, on the pod IP (the node's address, where
	// the agent listens).
	var probes map[string]float64
	n.Wait(t, "kubelet's liveness and readiness probes to succeed", func(context.Context) error {
		probes = probeCounts(t, n, pod.Name)
		if probes["Liveness/successful"] < 1 || probes["Readiness/successful"] < 1 {
			return fmt.Errorf("kubelet's probes so far: %v", probes)
		}
		return nil
	})
	// A probe may time out now and then on a loaded machine; what counts
	// is kubelet's verdict, the pod Ready with no restart (checked below).
	t.Logf("PASS: kubelet's prober_probe_total for the pod: %v", probes)

	// The memory limit comes from the container's cgroup.
	cg := containerCgroup(t, n, pod)
	limit := readInt(t, filepath.Join(cg, memoryLimitFile(cg)))
	if limit != 128<<20 {
		t.Fatalf("container memory limit %d in %s, want the chart's 128Mi", limit, cg)
	}
	logs, err := n.PodLogs(context.Background(), namespace, pod.Name, container, false)
	if err != nil {
		t.Fatal(err)
	}
	line := logLine(t, logs, "memory limit")
	if line["source"] != "cgroup" || int64(line["go_memory_limit_bytes"].(float64)) != limit*9/10 {
		t.Fatalf("the agent's memory limit: %v; want source cgroup and 90%% of %d", line, limit)
	}
	t.Logf("PASS: cgroup memory limit %d; the agent logged %q source=%v go_memory_limit=%v", limit, line["msg"], line["source"], line["go_memory_limit"])

	// Volumes mounted after the agent started reach it and are checked.
	owner := volumeOwner(t, n, "app-with-volumes")
	tmpfsDir := mountTmpfs(t, owner, "pvc-tmpfs")
	fuse, backing := mountFaultFS(t, n, owner, "pvc-efs")
	fuseDir := fuse.Mountpoint()
	m := a.waitMount(t, tmpfsDir, "healthy")
	if m.PodUID != string(owner.UID) || m.Volume != "pvc-tmpfs" {
		t.Fatalf("tmpfs volume attributed to pod %q volume %q, want %s pvc-tmpfs", m.PodUID, m.Volume, owner.UID)
	}
	a.waitMount(t, fuseDir, "healthy")
	t.Logf("PASS: %s (tmpfs) and %s (FUSE) mounted after the agent started, found and healthy", tmpfsDir, fuseDir)
	if calls := fuse.Calls(faultfs.OpCreate); calls == 0 {
		t.Fatal("the agent reported the FUSE volume healthy without creating its probe file")
	}

	// A hung volume: /healthz/ready 503, /healthz/live 200, no restart.
	before := probeCounts(t, n, pod.Name)
	fuse.Set(faultfs.OpCreate, faultfs.Fault{Hang: true})
	a.waitMount(t, fuseDir, "hung")
	code, body, err := a.get("/healthz/ready")
	if err != nil || code != http.StatusServiceUnavailable {
		t.Fatalf("/healthz/ready with a hung mount: %d %s %v, want 503", code, body, err)
	}
	n.Wait(t, "kubelet's liveness probe to succeed twice more while the mount hangs", func(context.Context) error {
		now := probeCounts(t, n, pod.Name)
		if now["Liveness/successful"] < before["Liveness/successful"]+2 {
			return fmt.Errorf("liveness probes %v then %v", before, now)
		}
		return nil
	})
	code, _, err = a.get("/healthz/live")
	if err != nil || code != http.StatusOK {
		t.Fatalf("/healthz/live with a hung mount: %d %v", code, err)
	}
	now := a.pod(t, "Ready", func(p *corev1.Pod) bool { return p.UID == pod.UID })
	if r, reason := restarts(now); r != 0 {
		t.Fatalf("agent restarted %d times (%s) with a hung mount", r, reason)
	}
	t.Logf("PASS: hung FUSE volume: /healthz/ready 503 (%s), /healthz/live 200, pod Ready with 0 restarts, kubelet's probes %v", strings.TrimSpace(string(body)), probeCounts(t, n, pod.Name))

	fuse.Clear()
	a.waitMount(t, fuseDir, "healthy")
	noProbeFiles(t, n, tmpfsDir, backing)
}

// memoryLimitFile is the memory limit's file in a cgroup v1 or v2
// directory.
func memoryLimitFile(dir string) string {
	if strings.Contains(dir, "/memory/") {
		return "memory.limit_in_bytes"
	}
	return "memory.max"
}

// logLine is the first JSON log line with message msg.
func logLine(t *testing.T, logs []byte, msg string) map[string]any {
	t.Helper()
	sc := bufio.NewScanner(bytes.NewReader(logs))
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil && m["msg"] == msg {
			return m
		}
	}
	t.Fatalf("no log line %q in:\n%s", msg, logs)
	return nil
}
