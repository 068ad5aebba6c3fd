//go:build linux

package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/efs-health-agent/efs-health-agent/internal/testenv/faultfs"
	"github.com/efs-health-agent/efs-health-agent/internal/testenv/hostilehttp"
	"github.com/efs-health-agent/efs-health-agent/test/k8s/e2e/node"
)

// The load of scenario 3, in the chart's 128Mi/100m container: every
// answer the agent renders grows with the mounts, and the clients are
// make soak's hostile ones, all at once.
const (
	limitMounts    = 2000             // tmpfs volumes of one pod
	limitLoad      = 60 * time.Second // how long the clients run
	limitScrapers  = 20               // of /metrics and of /healthz/mounts each
	limitNonReader = 80               // connections that never read /healthz/mounts
	limitSlowBody  = 256              // connections sending a body at 10 B/s
)

// TestLimits is scenario 3: the agent in its own memory limit, under many
// mounts and hostile clients. It either holds (no OOM kill, no restart,
// every client answered) or is OOMKilled, restarted by kubelet and finds its
// mounts again; the test says which, with the figures. Then deleting the
// pod while a check hangs in the kernel ends it within
// terminationGracePeriodSeconds, by itself, with no probe file left.
func TestLimits(t *testing.T) {
	n := node.Shared(t)
	a := install(t, n)
	pod := a.pod(t, "Ready", nil)
	owner := volumeOwner(t, n, "app-many-volumes")
	begin := time.Now()
	dirs := make([]string, limitMounts)
	for i := range dirs {
		dirs[i] = mountTmpfs(t, owner, fmt.Sprintf("pvc-%04d", i))
	}
	found := func() int { // healthy tmpfs volumes in /healthz/mounts
		ms, err := a.mounts()
		if err != nil {
			return -1
		}
		c := 0
		for _, d := range dirs {
			if ms[d].State == "healthy" {
				c++
			}
		}
		return c
	}
	n.Wait(t, fmt.Sprintf("the agent to check all %d volumes", limitMounts), func(context.Context) error {
		if c := found(); c != limitMounts {
			return fmt.Errorf("%d healthy", c)
		}
		return nil
	})
	t.Logf("%d tmpfs volumes mounted, found and healthy in %v", limitMounts, time.Since(begin).Round(time.Millisecond))

	cg := containerCgroup(t, n, pod)
	v1 := memoryLimitFile(cg) == "memory.limit_in_bytes"
	if v1 {
		// Count the peak from here.
		_ = os.WriteFile(filepath.Join(cg, "memory.max_usage_in_bytes"), []byte("0"), 0o644)
	}

	l := runLoad(n, a, limitLoad)
	var peak, failcnt int64
	if v1 {
		peak = readInt(t, filepath.Join(cg, "memory.max_usage_in_bytes"))
		failcnt = readInt(t, filepath.Join(cg, "memory.failcnt"))
	} else if _, err := os.Stat(filepath.Join(cg, "memory.peak")); err == nil {
		peak = readInt(t, filepath.Join(cg, "memory.peak"))
	}
	after := a.n.WaitPod(t, namespace, selector, "the agent's pod", func(*corev1.Pod) bool { return true })
	r, reason := restarts(after)
	t.Logf("load for %v: %s", limitLoad, l)
	switch {
	case r == 0 && after.UID == pod.UID:
		if l.metrics.OK.Load() == 0 || l.mounts.OK.Load() == 0 {
			t.Fatalf("the load never got an answer: %s", l)
		}
		// Whether it holds is kubelet's verdict: no restart (its liveness
		// probe restarts after 5 failures in a row). The test's own probe
		// times the answers, which on a loaded machine may miss 3 s now
		// and then: a figure, not a verdict.
		t.Logf("PASS: it holds: peak %.1f MiB of the 128 MiB limit (memory.failcnt %d), 0 restarts; kubelet's probes %v", float64(peak)/(1<<20), failcnt, probeCounts(t, n, pod.Name))
	case reason == "OOMKilled":
		t.Logf("PASS (OOM): OOMKilled and restarted %d times: peak %.1f MiB of 128 MiB", r, float64(peak)/(1<<20))
	default:
		t.Fatalf("the agent restarted %d times (%s) under load, not for its memory limit", r, reason)
	}
	// Either way, it (still, or again) reports every volume.
	n.Wait(t, fmt.Sprintf("the agent to report all %d volumes after the load", limitMounts), func(context.Context) error {
		if c := found(); c != limitMounts {
			return fmt.Errorf("%d healthy", c)
		}
		return nil
	})
	t.Logf("PASS: all %d volumes reported healthy after the load", limitMounts)

	// Deleting the pod while a check hangs in the kernel.
	pod = a.pod(t, "Ready", nil)
	fuse, backing := mountFaultFS(t, n, owner, "pvc-efs")
	a.waitMount(t, fuse.Mountpoint(), "healthy")
	fuse.Set(faultfs.OpCreate, faultfs.Fault{Hang: true})
	a.waitMount(t, fuse.Mountpoint(), "hung")
	wctx, wcancel := context.WithTimeout(context.Background(), node.WaitTimeout)
	defer wcancel()
	w, err := n.Client.CoreV1().Pods(namespace).Watch(wctx, metav1.ListOptions{FieldSelector: "metadata.name=" + pod.Name, ResourceVersion: pod.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	deleted := time.Now()
	if err := n.Client.CoreV1().Pods(namespace).Delete(wctx, pod.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	var last *corev1.Pod
	var gone time.Duration
	for ev := range w.ResultChan() {
		if p, ok := ev.Object.(*corev1.Pod); ok {
			last = p
		}
		if ev.Type == watch.Deleted {
			gone = time.Since(deleted)
			break
		}
	}
	if gone == 0 || last == nil {
		t.Fatalf("pod %s not gone within %v", pod.Name, node.WaitTimeout)
	}
	grace := time.Duration(*pod.Spec.TerminationGracePeriodSeconds) * time.Second
	var term *corev1.ContainerStateTerminated
	for _, s := range last.Status.ContainerStatuses {
		if s.Name == container {
			term = s.State.Terminated
		}
	}
	if term == nil {
		t.Fatalf("no terminated state of the agent in the pod's last status: %+v", last.Status.ContainerStatuses)
	}
	// deletionTimestamp is when kubelet would have killed it: the deletion
	// plus the grace period.
	if term.ExitCode != 0 || term.FinishedAt.After(last.DeletionTimestamp.Time) {
		t.Fatalf("agent ended with %d (%s) at %v; the grace period (%v) ended at %v", term.ExitCode, term.Reason, term.FinishedAt, grace, last.DeletionTimestamp)
	}
	t.Logf("PASS: deleted with a check hung in the kernel: exit %d (%s) at %v, before the grace period's end %v (terminationGracePeriodSeconds %v); pod object gone %v after the delete",
		term.ExitCode, term.Reason, term.FinishedAt.Format(time.RFC3339), last.DeletionTimestamp.Format(time.RFC3339), grace, gone.Round(time.Millisecond))

	// The DaemonSet's next pod finds the mounts again; nothing is left.
	a.pod(t, "Ready (the replacement)", func(p *corev1.Pod) bool { return p.UID != pod.UID })
	a.waitMount(t, fuse.Mountpoint(), "hung")
	fuse.Clear()
	a.waitMount(t, fuse.Mountpoint(), "healthy")
	noProbeFiles(t, n, append([]string{backing}, dirs...)...)
	t.Logf("PASS: the replacement reports the volumes again; no probe file left in %d volumes", len(dirs)+1)

	// An operator's memory limit below what the agent needs under this
	// load: kubelet restarts it when the kernel OOM-kills it, and it finds
	// every volume again once the load ends.
	a.manifests = render(t, "resources.limits.memory="+smallLimit, "resources.requests.memory="+smallLimit)
	n.Apply(t, a.manifests)
	small := a.n.WaitPod(t, namespace, selector, "running with the "+smallLimit+" limit", func(p *corev1.Pod) bool {
		return p.Status.Phase == corev1.PodRunning && p.Spec.Containers[0].Resources.Limits.Memory().String() == smallLimit
	})
	l = runLoad(n, a, limitLoad/2)
	n.Wait(t, fmt.Sprintf("the agent with %s to report all %d volumes after the load", smallLimit, limitMounts), func(context.Context) error {
		if c := found(); c != limitMounts {
			return fmt.Errorf("%d healthy", c)
		}
		return nil
	})
	end := a.pod(t, "Ready", func(p *corev1.Pod) bool { return p.UID == small.UID })
	r, reason = restarts(end)
	switch {
	case r == 0:
		t.Logf("PASS: with a %s limit it holds too: 0 restarts; load for %v: %s", smallLimit, limitLoad/2, l)
	case reason == "OOMKilled":
		t.Logf("PASS: with a %s limit it was OOMKilled and restarted %d times, then reported all %d volumes again; load for %v: %s", smallLimit, r, limitMounts, limitLoad/2, l)
	default:
		t.Fatalf("with a %s limit the agent restarted %d times (%s), not for its memory limit", smallLimit, r, reason)
	}
}

// smallLimit is a memory limit below the agent's need under the load.
const smallLimit = "16Mi"

// load is what the hostile clients saw.
type load struct {
	metrics, mounts hostilehttp.Counts
	opened, dropped atomic.Int64
	probe           hostilehttp.Probe
}

func (l *load) String() string {
	return fmt.Sprintf("/metrics scrapers %v; /healthz/mounts scrapers %v; %d non-reading connections; %d slow bodies dropped; liveness %d probes, %d failed, slowest %v",
		&l.metrics, &l.mounts, l.opened.Load(), l.dropped.Load(), l.probe.Probes.Load(), l.probe.Failed.Load(), l.probe.Slowest().Round(time.Millisecond))
}

// runLoad throws make soak's hostile clients at the agent for d, with a
// liveness probe every second timed as kubelet's (3 s).
func runLoad(n *node.Node, a *agent, d time.Duration) *load {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var wg sync.WaitGroup
	l := &load{}
	addr := net.JoinHostPort(n.IP, strconv.Itoa(port))
	hostilehttp.Scrapers(ctx, &wg, a.base, "/metrics", limitScrapers, 10*time.Second, &l.metrics)
	hostilehttp.Scrapers(ctx, &wg, a.base, "/healthz/mounts", limitScrapers, 10*time.Second, &l.mounts)
	hostilehttp.NonReaders(ctx, &wg, addr, "/healthz/mounts", limitNonReader, 5*time.Second, &l.opened)
	hostilehttp.SlowBodies(ctx, &wg, addr, "/healthz/live", limitSlowBody, &l.dropped)
	wg.Go(func() { l.probe.Run(ctx, a.base, "/healthz/live", time.Second, 3*time.Second) })
	wg.Wait()
	return l
}
