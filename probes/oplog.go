package probes

import (
	"sync"
	"time"
)

// OpLog is the one account of a check's operations as they run: each
// with its start, duration and error, and the operation in progress. The
// check's goroutine writes it (Options.Log); another goroutine may read
// it meanwhile, which is how the caller that gives up on a check at its
// deadline learns which operation is stuck in the kernel. The zero value
// is empty; an OpLog serves one check at a time (Reset before reuse).
type OpLog struct {
	mu sync.Mutex
	// cur is the operation in progress, or the last one started while
	// none is (OpOpen before the first); open says which.
	cur     Op
	curAt   time.Time
	open    bool
	lastEnd time.Time
	frozen  bool
	n       int
	ops     [NumSteps]OpResult
}

// Reset empties the log for a check that starts at start.
func (l *OpLog) Reset(start time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cur, l.curAt, l.open, l.lastEnd, l.frozen, l.n = OpOpen, start, false, time.Time{}, false, 0
	clear(l.ops[:])
}

// begin records that op started at at.
func (l *OpLog) begin(op Op, at time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.frozen {
		return
	}
	l.cur, l.curAt, l.open = op, at, true
}

// end records the end of the operation in progress, at at after d.
func (l *OpLog) end(d time.Duration, err error, at time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.frozen {
		return
	}
	l.open, l.lastEnd = false, at
	if l.n < len(l.ops) {
		l.ops[l.n] = OpResult{Op: l.cur, Start: l.curAt, Duration: d, Err: err}
		l.n++
	}
}

// Current returns the operation in progress (open) or, between two, the
// last one started, and when it started.
func (l *OpLog) Current() (op Op, start time.Time, open bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cur, l.curAt, l.open
}

// LastEnd is when the check's last operation returned; zero before the
// first.
func (l *OpLog) LastEnd() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lastEnd
}

// Failed returns the error of the first operation op that failed, nil
// when none did.
func (l *OpLog) Failed(op Op) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := range l.ops[:l.n] {
		if o := &l.ops[i]; o.Op == op && o.Err != nil {
			return o.Err
		}
	}
	return nil
}

// Ops returns the operations that ended, in order. Call it once the
// check returned (or after Freeze): the slice is the log's own, valid
// until Reset.
func (l *OpLog) Ops() []OpResult {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ops[:l.n:l.n]
}

// Freeze ends the log at at, for a check given up at its deadline, and
// returns the operation in progress (open) or, between two, the last one
// started, with the operations: one in progress is recorded as ending at
// at (its error is the caller's to set, in the slice, which is the log's
// own and valid until Reset). What the check does afterwards is not
// recorded.
func (l *OpLog) Freeze(at time.Time) (cur Op, ops []OpResult, open bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	cur, open = l.cur, l.open && !l.frozen
	if open && l.n < len(l.ops) {
		l.ops[l.n] = OpResult{Op: l.cur, Start: l.curAt, Duration: at.Sub(l.curAt)}
		l.n++
	} else {
		open = false
	}
	l.frozen, l.open = true, false
	return cur, l.ops[:l.n:l.n], open
}
