package agent

import "time"

// Clock is the source of time for the scheduler. Tests inject a fake one so
// they do not sleep.
type Clock interface {
	Now() time.Time
	// NewTimer returns a timer that sends on its channel once d has
	// passed; the scheduler re-arms one timer with Reset instead of
	// creating one per wake.
	NewTimer(d time.Duration) ChanTimer
}

// ChanTimer is a re-armable timer, as time.Timer is: after Reset or Stop
// returns, no value from before is received. It is an alias so that clocks
// in other packages can implement Clock without importing this one.
type ChanTimer = interface {
	Chan() <-chan time.Time
	Reset(d time.Duration) bool
	Stop() bool
}

// RealClock is the wall clock.
type RealClock struct{}

// Now returns time.Now().
func (RealClock) Now() time.Time { return time.Now() }

// NewTimer wraps time.NewTimer.
func (RealClock) NewTimer(d time.Duration) ChanTimer { return realTimer{time.NewTimer(d)} }

type realTimer struct{ *time.Timer }

func (t realTimer) Chan() <-chan time.Time { return t.C }
