//go:build linux

package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"
)

// WaitTimeout bounds each wait of the helpers below: a pod's start, a
// rollout, a probe's verdict, on a loaded two-core machine. A wait ends as
// soon as its condition holds.
const WaitTimeout = 3 * time.Minute

// FieldManager is the field manager of Apply's server-side apply.
const FieldManager = "k8s-e2e"

func goarch() string { return runtime.GOARCH }

// Objects decodes a multi-document YAML stream (helm template's output,
// a manifest) into objects, skipping empty documents.
func Objects(manifests []byte) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(manifests), 4096)
	var objs []*unstructured.Unstructured
	for {
		var m map[string]any
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			return objs, nil
		} else if err != nil {
			return nil, err
		}
		if len(m) == 0 {
			continue
		}
		objs = append(objs, &unstructured.Unstructured{Object: m})
	}
}

// resource maps an object to its API resource, reading the apiserver's
// discovery afresh (CustomResourceDefinitions may have just been made).
func (n *Node) resource(obj *unstructured.Unstructured) (dynamic.ResourceInterface, error) {
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(n.Client.Discovery()))
	gvk := obj.GroupVersionKind()
	m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", gvk.Kind, obj.GetName(), err)
	}
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		return n.Dynamic.Resource(m.Resource).Namespace(obj.GetNamespace()), nil
	}
	return n.Dynamic.Resource(m.Resource), nil
}

// Apply server-side applies every object of manifests, as kubectl apply
// --server-side does, in their order; it retries for a while an object
// whose kind the apiserver does not serve yet (a CRD being established).
func (n *Node) Apply(t testing.TB, manifests []byte) {
	t.Helper()
	objs, err := Objects(manifests)
	if err != nil {
		t.Fatalf("decode manifests: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), WaitTimeout)
	defer cancel()
	for _, obj := range objs {
		body, err := obj.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		err = n.waitFor(ctx, "apply "+obj.GetKind()+" "+obj.GetName(), func() error {
			r, err := n.resource(obj)
			if err != nil {
				return err
			}
			force := true
			_, err = r.Patch(ctx, obj.GetName(), types.ApplyPatchType, body, metav1.PatchOptions{FieldManager: FieldManager, Force: &force})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// Delete deletes every object of manifests (the last first) and waits
// until they are gone: a DaemonSet's pods too (foreground deletion).
func (n *Node) Delete(t testing.TB, manifests []byte) {
	t.Helper()
	objs, err := Objects(manifests)
	if err != nil {
		t.Fatalf("decode manifests: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), WaitTimeout)
	defer cancel()
	fg := metav1.DeletePropagationForeground
	for i := len(objs) - 1; i >= 0; i-- {
		obj := objs[i]
		r, err := n.resource(obj)
		if err != nil {
			t.Fatal(err)
		}
		if err := ignoreNotFound(r.Delete(ctx, obj.GetName(), metav1.DeleteOptions{PropagationPolicy: &fg})); err != nil {
			t.Fatalf("delete %s %s: %v", obj.GetKind(), obj.GetName(), err)
		}
		err = n.waitFor(ctx, "deletion of "+obj.GetKind()+" "+obj.GetName(), func() error {
			_, err := r.Get(ctx, obj.GetName(), metav1.GetOptions{})
			if err == nil {
				return errors.New("still there")
			}
			return ignoreNotFound(err)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// PodReady is a WaitPod condition: the pod's Ready condition is True.
func PodReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// WaitPod waits until a pod of namespace ns matching the label selector
// meets cond (what names it in a failure) and returns it. A pod being
// deleted never matches.
func (n *Node) WaitPod(t testing.TB, ns, selector, what string, cond func(*corev1.Pod) bool) *corev1.Pod {
	t.Helper()
	var found *corev1.Pod
	n.Wait(t, fmt.Sprintf("a pod %s in %s: %s", selector, ns, what), func(ctx context.Context) error {
		pods, err := n.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			return err
		}
		for i := range pods.Items {
			p := &pods.Items[i]
			if p.DeletionTimestamp == nil && cond(p) {
				found = p
				return nil
			}
		}
		return fmt.Errorf("%d pods, none matching", len(pods.Items))
	})
	return found
}

// Wait polls check until it returns nil, failing the test after
// WaitTimeout or as soon as a component of the node exits.
func (n *Node) Wait(t testing.TB, what string, check func(ctx context.Context) error) {
	t.Helper()
	n.WaitWithin(t, WaitTimeout, what, check)
}

// WaitWithin is Wait with its own limit, for waits whose limit is part of
// what the test shows.
func (n *Node) WaitWithin(t testing.TB, limit time.Duration, what string, check func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	if err := n.waitFor(ctx, what, func() error { return check(ctx) }); err != nil {
		t.Fatal(err)
	}
}

// KubeletGet reads a path of kubelet's HTTPS endpoint (/metrics,
// /metrics/probes, /stats/summary...) through the apiserver's node proxy,
// as a monitoring system does.
func (n *Node) KubeletGet(ctx context.Context, path string) ([]byte, error) {
	return n.Client.CoreV1().RESTClient().Get().AbsPath("/api/v1/nodes", n.Name, "proxy", path).DoRaw(ctx)
}

// PodLogs is a container's log, through the apiserver and kubelet;
// previous asks for the last terminated instance's.
func (n *Node) PodLogs(ctx context.Context, ns, pod, container string, previous bool) ([]byte, error) {
	return n.Client.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{Container: container, Previous: previous}).DoRaw(ctx)
}
