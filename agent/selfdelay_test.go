package agent_test

import (
	"sync"
	"testing"
	"time"

	"github.com/efs-health-agent/efs-health-agent/agent"
	"github.com/efs-health-agent/efs-health-agent/internal/testenv/testutil"
	"github.com/efs-health-agent/efs-health-agent/probes"
)

// gate holds a check's goroutine once its calls have returned, before
// the check completes, as a CPU-starved agent would leave it: the calls
// are done, the goroutine is not running.
type gate struct {
	held    chan struct{} // closed when a check is held
	release chan struct{}
	once    sync.Once
}

func (g *gate) hold() {
	first := false
	g.once.Do(func() { first = true })
	if first {
		close(g.held)
		<-g.release
	}
}

// TestReturnedBeforeDeadlineProcessedAfter: a check whose calls have all
// returned before its deadline, but whose goroutine has not run since, is
// seen by the scheduler at the deadline. That is the agent's own delay,
// not the mount's: the check gets one extension, completes with its real
// result (healthy), and efs_health_agent_self_delays_total{cause=
// "scheduling"} rises.
func TestReturnedBeforeDeadlineProcessedAfter(t *testing.T) {
	t.Parallel()
	obs := &gate{held: make(chan struct{}), release: make(chan struct{})}
	mon, clk := newFake(t, func(c *agent.Config) {
		c.Interval, c.Timeout = 10*time.Second, 2*time.Second
	})
	agent.HoldAfterProbe(mon, obs.hold)
	var release sync.Once
	letGo := func() { release.Do(func() { close(obs.release) }) }
	t.Cleanup(letGo) // before the monitor stops, should the test fail
	dir := t.TempDir()
	if err := mon.Register(agent.Mount{Path: dir}); err != nil {
		t.Fatal(err)
	}
	<-obs.held // the calls returned at epoch, before the deadline
	clk.Advance(2 * time.Second)
	// The scheduler goes on (sleeping until its heartbeat), and the
	// deadline is now a timeout later.
	for _, at := range []time.Duration{3 * time.Second, 4 * time.Second} {
		testutil.WaitFor(t, "the scheduler to sleep until "+at.String(), func() bool {
			next, ok := clk.Next()
			return ok && next.Equal(epoch.Add(at))
		})
		if at == 3*time.Second {
			clk.Advance(time.Second)
		}
	}
	if st := status(t, mon, dir); st.State != agent.StatePending {
		t.Fatalf("judged at the deadline: %+v", st)
	}
	letGo()
	testutil.WaitFor(t, "the check's real result", func() bool { return status(t, mon, dir).Checks == 1 })
	if st := status(t, mon, dir); st.State != agent.StateHealthy || st.ErrorCount != 0 {
		t.Fatalf("a check that returned before its deadline: %+v", st)
	}
	if d := mon.Summary().SelfDelays; d[agent.SelfDelayScheduling] != 1 || d[agent.SelfDelayHousekeeping] != 0 {
		t.Fatalf("self delays %v, want one of cause scheduling", d)
	}
	assertNoProbeFiles(t, dir)
}

// TestLateSchedulerExtendsOnce: a check stuck in a call, whose deadline
// the scheduler sees a second late (the agent was not running), gets one
// extension of the timeout; seen late again at the new deadline, it is a
// timeout: the extension is granted once, and a stuck mount is reported
// at most one timeout later than on time. No self delay is counted.
func TestLateSchedulerExtendsOnce(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tab := &blockingTable{nfs: map[string]bool{dir: true}}
	mon, clk := newFake(t, func(c *agent.Config) {
		c.Interval, c.Timeout, c.MountTable = 10*time.Second, 2*time.Second, tab
	})
	tab.close()
	t.Cleanup(tab.open)
	if err := mon.Register(agent.Mount{Path: dir, FSType: "nfs4", Source: "fs-1.efs:/"}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "the check to block", func() bool { return tab.blocked.Load() == 1 })
	testutil.WaitFor(t, "the loop to sleep", func() bool { _, ok := clk.Next(); return ok })
	clk.Advance(3 * time.Second) // the deadline (2s) seen 1s late
	testutil.WaitFor(t, "the loop to sleep again", func() bool {
		next, ok := clk.Next()
		return ok && next.After(epoch.Add(3*time.Second))
	})
	if st := status(t, mon, dir); st.State != agent.StatePending {
		t.Fatalf("judged at a deadline seen late: %+v", st)
	}
	clk.Advance(3 * time.Second) // the new deadline (5s) seen 1s late
	testutil.WaitFor(t, "hung", func() bool { return status(t, mon, dir).State == agent.StateHung })
	if st := status(t, mon, dir); !st.LastCheck.Equal(epoch.Add(6*time.Second)) || st.FailedOp != probes.OpMountTable {
		t.Fatalf("after the extension: %+v", st)
	}
	if d := mon.Summary().SelfDelays; d != [agent.NumSelfDelayCauses]uint64{} {
		t.Fatalf("self delays %v for a stuck check", d)
	}
}
