package agent_test

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/efs-health-agent/efs-health-agent/agent"
	"github.com/efs-health-agent/efs-health-agent/internal/testenv/faultfs"
	"github.com/efs-health-agent/efs-health-agent/internal/testenv/testutil"
	"github.com/efs-health-agent/efs-health-agent/probes"
)

func onceConfig(clk agent.Clock, tab agent.MountTable) agent.Config {
	cfg := agent.DefaultConfig()
	cfg.Hostname = "node-a"
	cfg.Clock = clk
	cfg.Logger = quietLogger()
	cfg.Timeout = 2 * time.Second
	cfg.MountTable = tab
	return cfg
}

// TestCheckOnce: one check through the agent's pipeline, with the mount
// table taken into account as in Register.
func TestCheckOnce(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tab := &table{m: map[string][2]string{dir: {"nfs4", "fs-1.efs:/"}}}
	o, err := agent.CheckOnce(context.Background(), onceConfig(agent.RealClock{}, tab), agent.Mount{Path: dir})
	if err != nil {
		t.Fatal(err)
	}
	if o.Outcome.State != agent.StateHealthy || o.Result.Mode != probes.ModeReadWrite || o.Late != nil {
		t.Fatalf("healthy dir: %+v", o)
	}
	tab.set(dir, "ext4", "/dev/vda1")
	o, err = agent.CheckOnce(context.Background(), onceConfig(agent.RealClock{}, tab), agent.Mount{Path: dir, FSType: "nfs4"})
	if err != nil {
		t.Fatal(err)
	}
	if o.Outcome.State != agent.StateUnhealthy || o.Outcome.Reason != probes.ReasonNotMounted || o.Outcome.FailedOp != probes.OpMountTable {
		t.Fatalf("replaced mount: %+v", o.Outcome)
	}
	if ents := leftBehind(t, dir); len(ents) != 0 {
		t.Fatalf("files: %v", ents)
	}
	if _, err := agent.CheckOnce(context.Background(), onceConfig(agent.RealClock{}, nil), agent.Mount{Path: "rel"}); err == nil {
		t.Fatal("relative path accepted")
	}
}

// TestCheckOnceStuck: a check stuck in the kernel (here in the mount
// table lookup) is reported at its deadline, naming the operation, and
// its goroutine finishes on its own once the call returns.
func TestCheckOnceStuck(t *testing.T) {
	t.Parallel()
	synctest.Test(t, testCheckOnceStuck)
}

func testCheckOnceStuck(t *testing.T) {
	dir := t.TempDir()
	tab := &blockingTable{nfs: map[string]bool{dir: true}}
	tab.close()
	start := time.Now()
	type ret struct {
		o   agent.Once
		err error
	}
	done := make(chan ret, 1)
	go func() {
		o, err := agent.CheckOnce(context.Background(), onceConfig(agent.RealClock{}, tab), agent.Mount{Path: dir, FSType: "nfs4"})
		done <- ret{o, err}
	}()
	synctest.Wait()
	if n := tab.blocked.Load(); n != 1 {
		t.Fatalf("%d calls blocked in the mount table, want 1", n)
	}
	r := <-done // at the deadline, 2s on
	if d := time.Since(start); d != 2*time.Second {
		t.Fatalf("the stuck check was reported after %v, want at its 2s deadline", d)
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	o := r.o
	if !o.Outcome.TimedOut || o.Outcome.State != agent.StateHung || o.Outcome.FailedOp != probes.OpMountTable ||
		!errors.Is(o.Outcome.Err, agent.ErrTimeout) || o.Late == nil {
		t.Fatalf("stuck check: %+v", o)
	}
	tab.open()
	res := <-o.Late
	if len(res.Leftovers) != 0 {
		t.Fatalf("leftovers: %v", res.Leftovers)
	}
	if ents := leftBehind(t, dir); len(ents) != 0 {
		t.Fatalf("files: %v", ents)
	}
}

// TestCheckOnceTunnelDown: the one-shot check follows the tunnel rules:
// healthy when only the tunnel is unreachable, tunnel_down when the check
// then hangs past its deadline.
func TestCheckOnceTunnelDown(t *testing.T) {
	fs := testutil.MountFaultFS(t)
	ln := tunnelListener(t)
	addr := ln.Addr().String()
	ln.Close()
	cfg := onceConfig(agent.RealClock{}, nil)
	cfg.Timeout = 200 * time.Millisecond
	spec := agent.Mount{Path: fs.Mountpoint(), TunnelAddr: addr}
	o, err := agent.CheckOnce(context.Background(), cfg, spec)
	if err != nil || o.Outcome.State != agent.StateHealthy || !errors.Is(o.Result.TunnelErr, probes.ErrTunnelDown) {
		t.Fatalf("tunnel down, I/O fine: %+v %v", o, err)
	}
	fs.Set(faultfs.OpWrite, faultfs.Fault{Hang: true})
	o, err = agent.CheckOnce(context.Background(), cfg, spec)
	if err != nil || !o.Outcome.TimedOut || o.Outcome.Reason != probes.ReasonTunnelDown || !errors.Is(o.Outcome.Err, agent.ErrTimeout) ||
		!errors.Is(o.Outcome.Err, probes.ErrTunnelDown) {
		t.Fatalf("tunnel down, check hung: %+v %v", o.Outcome, err)
	}
	fs.Clear()
	<-o.Late
}
