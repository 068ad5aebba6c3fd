package agent

import (
	"iter"
	"time"

	"github.com/efs-health-agent/efs-health-agent/probes"
)

// A MountStatus is published on every check and kept for every mount, so
// its timings are stored inline in a compact form: no allocation per
// check, a few bytes per value.

// HistoryLen is the number of response times kept in MountStatus.History.
const HistoryLen = 16

// dur32 is a non-negative duration in 32 bits: the top two bits are the
// unit, the other 30 the count of that unit, truncated toward zero. A
// duration is exact to the nanosecond below 2^30 ns (about 1.07 s), to
// the microsecond below 2^30 µs (about 17.9 minutes) and to the
// millisecond above, up to 2^30 ms (about 12.4 days, well beyond
// MaxInterval, so a check's time always fits); longer saturates there, a
// negative duration is stored as zero.
type dur32 uint32

const (
	dur32Bits = 30
	dur32Max  = 1<<dur32Bits - 1
)

// Units of a dur32, in its top two bits.
const (
	dur32Ns = iota << dur32Bits
	dur32Us
	dur32Ms
)

func packDuration(d time.Duration) dur32 {
	switch {
	case d <= 0:
		return 0
	case d <= dur32Max:
		return dur32(d) | dur32Ns
	case d/time.Microsecond <= dur32Max:
		return dur32(d/time.Microsecond) | dur32Us
	}
	return dur32(min(d/time.Millisecond, dur32Max)) | dur32Ms
}

func (v dur32) duration() time.Duration {
	n := time.Duration(v & dur32Max)
	switch v &^ dur32Max {
	case dur32Us:
		return n * time.Microsecond
	case dur32Ms:
		return n * time.Millisecond
	}
	return n
}

// History is the response times of a mount's last HistoryLen checks,
// oldest first. The zero value is empty.
type History struct {
	d [HistoryLen]dur32
	n uint8
}

// HistoryOf returns a history of ds, keeping the last HistoryLen.
func HistoryOf(ds ...time.Duration) History {
	var h History
	for _, d := range ds {
		h.add(d)
	}
	return h
}

// add appends d, dropping the oldest value when the history is full.
func (h *History) add(d time.Duration) {
	if int(h.n) == HistoryLen {
		copy(h.d[:], h.d[1:])
		h.n--
	}
	h.d[h.n] = packDuration(d)
	h.n++
}

// Len is the number of response times held.
func (h *History) Len() int { return int(h.n) }

// All yields the response times, oldest first.
func (h *History) All() iter.Seq[time.Duration] {
	return func(yield func(time.Duration) bool) {
		for _, v := range h.d[:h.n] {
			if !yield(v.duration()) {
				return
			}
		}
	}
}

// Durations returns the response times, oldest first, in a new slice.
func (h *History) Durations() []time.Duration {
	out := make([]time.Duration, 0, h.n)
	for d := range h.All() {
		out = append(out, d)
	}
	return out
}

// OpTiming is the duration of one operation of the last check.
type OpTiming struct {
	Op       probes.Op
	Duration time.Duration
}

// OpTimings is the per-operation times of a check, in the order the
// operations ran. The zero value is empty.
type OpTimings struct {
	d    [probes.NumSteps]dur32
	step [probes.NumSteps]uint8 // position in probes.Steps
	n    uint8
}

// OpTimingsOf returns the timings of ops, in order. An operation that is
// not a step of the check, or one beyond probes.NumSteps, is left out.
func OpTimingsOf(ops ...OpTiming) OpTimings {
	var o OpTimings
	for _, t := range ops {
		o.add(t.Op, t.Duration)
	}
	return o
}

// opTimingsOfResult returns the timings of a check's operations.
func opTimingsOfResult(ops []probes.OpResult) OpTimings {
	var o OpTimings
	for i := range ops {
		o.add(ops[i].Op, ops[i].Duration)
	}
	return o
}

func (o *OpTimings) add(op probes.Op, d time.Duration) {
	i := probes.StepIndex(op)
	if i < 0 || int(o.n) == len(o.d) {
		return
	}
	o.d[o.n], o.step[o.n] = packDuration(d), uint8(i)
	o.n++
}

// Len is the number of operations held.
func (o *OpTimings) Len() int { return int(o.n) }

// All yields each operation and its duration, in the order they ran.
func (o *OpTimings) All() iter.Seq2[probes.Op, time.Duration] {
	return func(yield func(probes.Op, time.Duration) bool) {
		for i := range int(o.n) {
			if !yield(probes.StepOp(int(o.step[i])), o.d[i].duration()) {
				return
			}
		}
	}
}

// List returns the timings in a new slice, in the order they ran.
func (o *OpTimings) List() []OpTiming {
	out := make([]OpTiming, 0, o.n)
	for op, d := range o.All() {
		out = append(out, OpTiming{Op: op, Duration: d})
	}
	return out
}
