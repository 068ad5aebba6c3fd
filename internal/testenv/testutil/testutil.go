package testutil

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/efs-health-agent/efs-health-agent/internal/testenv/faultfs"
)

// WaitTimeout is how long WaitFor waits: generous, since the tests run
// with the race detector on a loaded two-core machine. A wait ends as
// soon as its condition holds, so the deadline costs nothing when the
// test passes.
const WaitTimeout = 30 * time.Second

// Promptly bounds what must happen "at once" while the fault filesystem
// holds a call: an answer that does not wait for the hung call, a recovery
// that does not wait out a backoff. Its hangs last until released, so
// anything that waits for one blows through the bound, while the bound is
// far above the scheduling delays of the race detector on a loaded
// two-core machine (a short bound there fails tests at random).
const Promptly = 5 * time.Second

// maxPoll is the longest pause between two looks at a condition.
const maxPoll = 20 * time.Millisecond

// WaitFor polls cond until it holds and fails the test, naming what it
// waited for, when it does not within WaitTimeout.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	WaitForWithin(t, WaitTimeout, what, cond)
}

// WaitForWithin is WaitFor with its own limit, for waits whose limit is
// part of what the test shows.
func WaitForWithin(t testing.TB, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	pause := time.Millisecond
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", limit, what)
		}
		time.Sleep(pause)
		pause = min(2*pause, maxPoll)
	}
}

// InCI reports whether the tests run in CI (CI set), where no test may
// be skipped for want of privileges or devices.
func InCI() bool { return os.Getenv("CI") != "" }

// Require skips the test with err when err is not nil, or fails it in
// CI.
func Require(t testing.TB, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if InCI() {
		t.Fatalf("%v, and CI must run this test", err)
	}
	t.Skip(err)
}

// RequireRoot skips the test when it does not run as root (or fails it in
// CI); why says what root is needed for.
func RequireRoot(t testing.TB, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		Require(t, fmt.Errorf("needs root to %s", why))
	}
}

// RequireFUSE skips the test when the fault filesystem cannot be mounted
// (or fails it in CI).
func RequireFUSE(t testing.TB) {
	t.Helper()
	Require(t, faultfs.Available())
}
