package agent_test

import (
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/efs-health-agent/efs-health-agent/agent"
	"github.com/efs-health-agent/efs-health-agent/internal/testutil"
	"github.com/efs-health-agent/efs-health-agent/probes"
)

// table is an in-memory mount table.
type table struct {
	mu sync.Mutex
	m  map[string][2]string
}

func (t *table) Lookup(p string) (string, string, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.m[p]
	return e[0], e[1], ok
}

func (t *table) set(p, fstype, source string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if fstype == "" {
		delete(t.m, p)
		return
	}
	t.m[p] = [2]string{fstype, source}
}

// TestUnmountedPathNotTouched: once the mount table no longer lists the
// registered mount, the check fails as not_mounted and writes nothing into
// the directory underneath.
func TestUnmountedPathNotTouched(t *testing.T) {
	t.Parallel()
	tab := &table{m: map[string][2]string{}}
	dir := t.TempDir()
	tab.set(dir, "nfs4", "fs-1.efs:/")
	mon, clk := newFake(t, func(c *agent.Config) { c.MountTable = tab })
	if err := mon.Register(agent.Mount{Path: dir}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "healthy", func() bool { return status(t, mon, dir).State == agent.StateHealthy })
	if st := status(t, mon, dir); st.FSType != "nfs4" || st.Source != "fs-1.efs:/" {
		t.Fatalf("registration did not take the fstype from the mount table: %+v", st)
	}
	for _, tc := range []struct{ name, fstype, source, want string }{
		{"unmounted", "", "", "mount table has no mount"},
		{"replaced by another filesystem", "ext4", "/dev/vda1", "mount table shows ext4"},
	} {
		tab.set(dir, tc.fstype, tc.source)
		// A directory we can watch: after the unmount, nothing may be written.
		n := status(t, mon, dir).Checks
		clk.Advance(31 * time.Second)
		testutil.WaitFor(t, tc.name, func() bool { return status(t, mon, dir).Checks > n })
		st := status(t, mon, dir)
		if st.State != agent.StateUnhealthy || st.Reason != probes.ReasonNotMounted || !strings.Contains(st.LastError, tc.want) {
			t.Fatalf("%s: %+v", tc.name, st)
		}
		tab.set(dir, "nfs4", "fs-1.efs:/")
		clk.Advance(31 * time.Second)
		testutil.WaitFor(t, "recovery", func() bool { return status(t, mon, dir).State == agent.StateHealthy })
	}
	// A plain directory (not a mount point) is checked without the table.
	plain := t.TempDir()
	if err := mon.Register(agent.Mount{Path: plain}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "plain dir healthy", func() bool { return status(t, mon, plain).State == agent.StateHealthy })
}

func TestTunnelDown(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	mon, clk := newFake(t, nil)
	dir := t.TempDir()
	if err := mon.Register(agent.Mount{Path: dir, FSType: "nfs4", TunnelAddr: ln.Addr().String()}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "healthy through the tunnel", func() bool { return status(t, mon, dir).State == agent.StateHealthy })
	ln.Close()
	clk.Advance(31 * time.Second)
	testutil.WaitFor(t, "tunnel_down", func() bool { return status(t, mon, dir).State == agent.StateUnhealthy })
	st := status(t, mon, dir)
	if st.Reason != probes.ReasonTunnelDown || st.FailedOp != probes.OpTunnel || !strings.Contains(st.LastError, ln.Addr().String()) {
		t.Fatalf("closed tunnel port: %+v", st)
	}
	// The mount itself was not touched while the tunnel was down.
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("files: %v", ents)
	}
}
