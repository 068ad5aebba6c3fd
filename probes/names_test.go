package probes_test

import (
	"context"
	"strings"
	"testing"

	"github.com/efs-health-agent/efs-health-agent/probes"
)

func newOwner(t *testing.T, node string) probes.Owner {
	t.Helper()
	o, err := probes.NewOwner(node)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func TestProbeFileNames(t *testing.T) {
	t.Parallel()
	a := newOwner(t, "node/../x")
	b := newOwner(t, "node/../x")
	if a.Instance() == b.Instance() {
		t.Fatal("instance ids repeat")
	}
	n1, err := a.NewFileName()
	if err != nil {
		t.Fatal(err)
	}
	n2, _ := a.NewFileName()
	if n1 == n2 {
		t.Fatal("names repeat")
	}
	if strings.Contains(n1, "/") || !strings.HasPrefix(n1, probes.FilePrefix) {
		t.Fatalf("unsafe name %q", n1)
	}
	other := newOwner(t, "other")
	nb, _ := b.NewFileName()
	no, _ := other.NewFileName()
	for _, tc := range []struct {
		name string
		want probes.Ownership
	}{
		{n1, probes.ThisInstance},
		{nb, probes.EarlierInstance},
		{no, probes.NotOurs},
		{probes.HostPrefix("node/../x") + "0123456789abcdef.tmp", probes.EarlierInstance}, // earlier versions' format
		{probes.HostPrefix("other") + "0123456789abcdef.tmp", probes.NotOurs},
		{probes.HostPrefix("node/../x") + "0123456789abcdeg.tmp", probes.NotOurs},
		{probes.HostPrefix("node/../x") + "0123456789abcdef", probes.NotOurs},
		{probes.HostPrefix("node/../x") + "x.tmp", probes.NotOurs},
		{strings.TrimSuffix(n1, ".tmp") + "0.tmp", probes.NotOurs},
		{"unrelated", probes.NotOurs},
	} {
		if got := a.Classify(tc.name); got != tc.want {
			t.Errorf("Classify(%q) = %d, want %d", tc.name, got, tc.want)
		}
	}
	if !probes.IsProbeFile(n1, "node/../x") || !probes.IsProbeFile(nb, "node/../x") || probes.IsProbeFile(no, "node/../x") {
		t.Fatal("IsProbeFile does not attribute names to their node")
	}
	// A node whose name looks like another node's name plus an instance
	// never takes that node's files for its own.
	tricky := newOwner(t, "node_.._x-0123456789abcdef")
	if tricky.Classify(n1) != probes.NotOurs || a.Classify(must(tricky.NewFileName())) != probes.NotOurs {
		t.Fatal("names of different nodes are confused")
	}
}

func must(s string, err error) string {
	if err != nil {
		panic(err)
	}
	return s
}

// TestLongNodeName: node names up to the Kubernetes limit of 253
// characters give file names well under NAME_MAX, shortened the same way
// every time, and distinct for names that share their beginning.
func TestLongNodeName(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("ip-10-0-0-1.", 21)[:252] + "a"
	if len(long) != 253 {
		t.Fatal(len(long))
	}
	long2 := long[:252] + "b"
	again := strings.Clone(long)
	if probes.NodeTag(long) != probes.NodeTag(again) || probes.NodeTag(long) == probes.NodeTag(long2) {
		t.Fatal("tags of long names are not deterministic and distinct")
	}
	if len(probes.NodeTag(long)) > probes.MaxNodeTag {
		t.Fatalf("tag of %d bytes", len(probes.NodeTag(long)))
	}
	a, b := newOwner(t, long), newOwner(t, long2)
	n := must(a.NewFileName())
	if len(n) > 200 {
		t.Fatalf("name of %d bytes for a 253-byte node name", len(n))
	}
	if a.Classify(n) != probes.ThisInstance || newOwner(t, long).Classify(n) != probes.EarlierInstance || b.Classify(n) != probes.NotOurs {
		t.Fatal("long names not matched the way they are made")
	}
	dir := t.TempDir()
	res := probes.Check(context.Background(), dir, probes.Options{Owner: a})
	if res.Err != nil {
		t.Fatalf("check with a 253-character node name: %v", res.Err)
	}
}
