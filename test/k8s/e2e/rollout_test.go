//go:build linux

package e2e

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/efs-health-agent/efs-health-agent/internal/testenv/faultfs"
	"github.com/efs-health-agent/efs-health-agent/test/k8s/e2e/node"
)

// TestRollingUpdate is scenario 2: a change of the DaemonSet's pod
// template (an environment variable) rolls out while a mount hangs. The
// controller replaces the pod within the chart's maxUnavailable, the new
// pod turns Ready although the mount still hangs (readiness follows
// liveness), reports the hung mount again, and no probe file is left.
func TestRollingUpdate(t *testing.T) {
	n := node.Shared(t)
	a := install(t, n)
	old := a.pod(t, "Ready", nil)
	owner := volumeOwner(t, n, "app-rollout")
	tmpfsDir := mountTmpfs(t, owner, "pvc-tmpfs")
	fuse, backing := mountFaultFS(t, n, owner, "pvc-efs")
	a.waitMount(t, tmpfsDir, "healthy")
	a.waitMount(t, fuse.Mountpoint(), "healthy")
	fuse.Set(faultfs.OpCreate, faultfs.Fault{Hang: true})
	a.waitMount(t, fuse.Mountpoint(), "hung")
	t.Logf("pod %s reports %s hung", old.Name, fuse.Mountpoint())

	// Record the pods' comings and goings during the rollout.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w, err := n.Client.CoreV1().Pods(namespace).Watch(ctx, metav1.ListOptions{LabelSelector: selector, ResourceVersion: old.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu                      sync.Mutex
		oldDeleting, newCreated time.Time
		newUID                  types.UID
	)
	go func() {
		for ev := range w.ResultChan() {
			p, ok := ev.Object.(*corev1.Pod)
			if !ok {
				continue
			}
			mu.Lock()
			switch {
			case p.UID == old.UID && p.DeletionTimestamp != nil && oldDeleting.IsZero():
				oldDeleting = time.Now()
			case p.UID != old.UID && ev.Type == watch.Added && newCreated.IsZero():
				newCreated, newUID = time.Now(), p.UID
			}
			mu.Unlock()
		}
	}()

	begin := time.Now()
	a.manifests = render(t, "extraEnv[0].name=ROLLOUT", "extraEnv[0].value=v2")
	n.Apply(t, a.manifests)
	var ds *appsv1.DaemonSet
	n.Wait(t, "the rollout to complete", func(ctx context.Context) error {
		ds, err = n.Client.AppsV1().DaemonSets(namespace).Get(ctx, release, metav1.GetOptions{})
		if err != nil {
			return err
		}
		s := ds.Status
		if s.ObservedGeneration < ds.Generation || s.UpdatedNumberScheduled != s.DesiredNumberScheduled || s.NumberAvailable != s.DesiredNumberScheduled || s.NumberUnavailable != 0 {
			return fmt.Errorf("generation %d observed %d, %d desired, %d updated, %d available", ds.Generation, s.ObservedGeneration, s.DesiredNumberScheduled, s.UpdatedNumberScheduled, s.NumberAvailable)
		}
		return nil
	})
	took := time.Since(begin)
	pod := a.pod(t, "Ready with the new template", func(p *corev1.Pod) bool {
		for _, e := range p.Spec.Containers[0].Env {
			if e.Name == "ROLLOUT" {
				return true
			}
		}
		return false
	})
	if pod.UID == old.UID {
		t.Fatal("the pod was not replaced")
	}
	ru := ds.Spec.UpdateStrategy.RollingUpdate
	if ds.Spec.UpdateStrategy.Type != appsv1.RollingUpdateDaemonSetStrategyType || ru == nil || ru.MaxUnavailable.String() != "10%" {
		t.Fatalf("update strategy %+v, want the chart's RollingUpdate with maxUnavailable 10%%", ds.Spec.UpdateStrategy)
	}
	mu.Lock()
	if oldDeleting.IsZero() || newCreated.IsZero() || newUID != pod.UID || newCreated.Before(oldDeleting) {
		t.Fatalf("old pod deleted at %v, new pod %s created at %v: want the old pod's deletion first (maxUnavailable 10%% of 1 node rounds up to 1, no surge)", oldDeleting, newUID, newCreated)
	}
	order := newCreated.Sub(oldDeleting)
	mu.Unlock()
	t.Logf("PASS: rollout with a hung mount completed in %v: pod %s replaced by %s (created %v after the old one's deletion began; maxUnavailable %s)", took.Round(time.Millisecond), old.Name, pod.Name, order.Round(time.Millisecond), ru.MaxUnavailable.String())

	// The new pod reports the hung mount again, and is Ready all the same.
	m := a.waitMount(t, fuse.Mountpoint(), "hung")
	code, _, err := a.get("/healthz/ready")
	if err != nil || code != http.StatusServiceUnavailable {
		t.Fatalf("/healthz/ready of the new pod: %d %v, want 503", code, err)
	}
	if r, reason := restarts(a.pod(t, "Ready", func(p *corev1.Pod) bool { return p.UID == pod.UID })); r != 0 {
		t.Fatalf("new pod restarted %d times (%s)", r, reason)
	}
	t.Logf("PASS: new pod %s Ready and reports %s %s again; /healthz/ready 503", pod.Name, m.MountPath, m.State)

	fuse.Clear()
	a.waitMount(t, fuse.Mountpoint(), "healthy")
	noProbeFiles(t, n, tmpfsDir, backing)
	t.Logf("PASS: no probe file left in the tmpfs volume or the FUSE volume's backing directory")
}
