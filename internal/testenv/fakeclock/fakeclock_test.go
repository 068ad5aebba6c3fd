package fakeclock_test

import (
	"testing"
	"time"

	"github.com/efs-health-agent/efs-health-agent/internal/testenv/fakeclock"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func received(ch <-chan time.Time) (time.Time, bool) {
	select {
	case v := <-ch:
		return v, true
	default:
		return time.Time{}, false
	}
}

// TestChanTimer: a NewTimer timer fires on Advance, and after Reset or
// Stop no value from before is received, as with time.Timer.
func TestChanTimer(t *testing.T) {
	t.Parallel()
	c := fakeclock.New(t0)
	tm := c.NewTimer(time.Second)
	if next, ok := c.Next(); !ok || !next.Equal(t0.Add(time.Second)) {
		t.Fatalf("Next = %v %v, want %v", next, ok, t0.Add(time.Second))
	}
	c.Advance(999 * time.Millisecond)
	if _, ok := received(tm.Chan()); ok {
		t.Fatal("fired early")
	}
	c.Advance(time.Millisecond)
	if v, ok := received(tm.Chan()); !ok || !v.Equal(t0.Add(time.Second)) {
		t.Fatalf("received %v %v at the deadline", v, ok)
	}
	if _, ok := c.Next(); ok || c.Pending() != 0 {
		t.Fatal("a fired timer is still pending")
	}

	// Fired and not received, then re-armed: the old value is dropped.
	tm.Reset(time.Second)
	c.Advance(time.Second)
	if tm.Reset(time.Second) {
		t.Fatal("Reset of a fired timer reported it pending")
	}
	if _, ok := received(tm.Chan()); ok {
		t.Fatal("a value from before Reset was received")
	}
	if !tm.Stop() {
		t.Fatal("Stop of a pending timer reported it not pending")
	}
	c.Advance(2 * time.Second)
	if _, ok := received(tm.Chan()); ok {
		t.Fatal("a stopped timer fired")
	}
	// Reset to zero fires at once.
	tm.Reset(0)
	if _, ok := received(tm.Chan()); !ok {
		t.Fatal("Reset(0) did not fire")
	}
}

func TestAfterFunc(t *testing.T) {
	t.Parallel()
	c := fakeclock.New(t0)
	done := make(chan struct{})
	c.AfterFunc(time.Second, func() { close(done) })
	stopped := c.AfterFunc(time.Second, func() { t.Error("stopped timer ran") })
	stopped.Stop()
	c.Advance(time.Second)
	<-done
}
