// Package fakeclock is a manually advanced clock for scheduler tests, so
// they do not sleep. It implements agent.Clock.
package fakeclock

import (
	"sort"
	"sync"
	"time"
)

// Clock is a fake clock. The zero value is not usable; use New.
type Clock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*timer
}

type timer struct {
	c       *Clock
	at      time.Time
	f       func()         // AfterFunc timers
	ch      chan time.Time // NewTimer timers
	stopped bool
	fired   bool
	queued  bool // in Clock.timers
}

// New returns a clock set to start.
func New(start time.Time) *Clock { return &Clock{now: start} }

// Now returns the fake time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Stopper is the timer handle returned by AfterFunc.
type Stopper = interface{ Stop() bool }

// AfterFunc schedules f to run in its own goroutine when the clock has been
// advanced by d.
func (c *Clock) AfterFunc(d time.Duration, f func()) Stopper {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &timer{c: c, at: c.now.Add(d), f: f}
	if d <= 0 {
		t.fired = true
		go f()
		return t
	}
	t.queued = true
	c.timers = append(c.timers, t)
	return t
}

// ChanTimer is the timer handle returned by NewTimer.
type ChanTimer = interface {
	Chan() <-chan time.Time
	Reset(d time.Duration) bool
	Stop() bool
}

// NewTimer returns a timer that sends the fake time on its channel when
// the clock has been advanced by d. Like time.Timer, it can be re-armed
// with Reset, and after Reset or Stop no value from before is received.
func (c *Clock) NewTimer(d time.Duration) ChanTimer {
	t := &timer{c: c, ch: make(chan time.Time, 1), stopped: true}
	t.Reset(d)
	return t
}

// Chan is the channel a NewTimer timer sends on.
func (t *timer) Chan() <-chan time.Time { return t.ch }

// Reset re-arms the timer to fire d after the clock's current time. It
// reports whether the timer was pending.
func (t *timer) Reset(d time.Duration) bool {
	c := t.c
	c.mu.Lock()
	defer c.mu.Unlock()
	pending := !t.fired && !t.stopped
	t.drainLocked()
	t.at, t.stopped, t.fired = c.now.Add(d), false, false
	if d <= 0 {
		t.fired = true
		t.fireLocked()
		return pending
	}
	if !t.queued {
		t.queued = true
		c.timers = append(c.timers, t)
	}
	return pending
}

// drainLocked drops a value sent and not received.
func (t *timer) drainLocked() {
	if t.ch == nil {
		return
	}
	select {
	case <-t.ch:
	default:
	}
}

// fireLocked runs the timer's function in its own goroutine, or sends the
// time on its channel.
func (t *timer) fireLocked() {
	if t.ch == nil {
		go t.f()
		return
	}
	select {
	case t.ch <- t.at:
	default:
	}
}

// Stop cancels the timer.
func (t *timer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	if t.fired || t.stopped {
		t.drainLocked()
		return false
	}
	t.stopped = true
	t.drainLocked()
	return true
}

// Advance moves the clock forward by d, firing due timers in order (each in
// its own goroutine, as time.AfterFunc does).
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	var due []*timer
	keep := c.timers[:0]
	for _, t := range c.timers {
		switch {
		case t.stopped:
			t.queued = false
		case !t.at.After(c.now):
			t.fired = true
			t.queued = false
			due = append(due, t)
		default:
			keep = append(keep, t)
		}
	}
	c.timers = keep
	sort.Slice(due, func(i, j int) bool { return due[i].at.Before(due[j].at) })
	for _, t := range due {
		t.fireLocked()
	}
	c.mu.Unlock()
}

// Next returns the time of the earliest timer not yet fired or stopped.
func (c *Clock) Next() (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var next time.Time
	found := false
	for _, t := range c.timers {
		if !t.stopped && (!found || t.at.Before(next)) {
			next, found = t.at, true
		}
	}
	return next, found
}

// Pending is the number of timers not yet fired or stopped.
func (c *Clock) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, t := range c.timers {
		if !t.stopped {
			n++
		}
	}
	return n
}
