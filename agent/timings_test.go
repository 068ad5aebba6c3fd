package agent

import (
	"slices"
	"testing"
	"time"

	"github.com/efs-health-agent/efs-health-agent/probes"
)

// TestPackDuration: a duration is kept exactly to the nanosecond below
// about 1.07 s, to the microsecond below about 17.9 minutes and to the
// millisecond above, through MaxInterval; beyond 2^30 ms it saturates,
// and a negative duration is zero.
func TestPackDuration(t *testing.T) {
	t.Parallel()
	const us, ms = time.Microsecond, time.Millisecond
	cases := []struct{ in, want time.Duration }{
		{0, 0},
		{-time.Second, 0},
		{1, 1},
		{12345 * time.Nanosecond, 12345 * time.Nanosecond},
		{1<<30 - 1, 1<<30 - 1}, // the last exact nanosecond
		{1 << 30, 1 << 30 / us * us},
		{1500*ms + 123456, 1500*ms + 123*us},
		{5 * time.Second, 5 * time.Second},
		{(1<<30-1)*us + 999, (1<<30 - 1) * us}, // the last microsecond
		{(1 << 30) * us, (1 << 30) * us / ms * ms},
		{time.Hour + 123456789, time.Hour + 123*ms},
		{MaxInterval, MaxInterval},
		{MaxInterval + 999*us, MaxInterval},
		{(1<<30 - 1) * ms, (1<<30 - 1) * ms},
		{1 << 62, (1<<30 - 1) * ms}, // saturates
	}
	for _, tc := range cases {
		if got := packDuration(tc.in).duration(); got != tc.want {
			t.Errorf("packDuration(%v) holds %v, want %v", tc.in, got, tc.want)
		}
	}
	// What the endpoints show of a duration (whole microseconds below the
	// millisecond range) is unchanged through MaxInterval.
	for d := time.Duration(1); d <= MaxInterval; d = d*3 + 7 {
		got := packDuration(d).duration()
		if got > d || (d < (1<<30)*us && got.Microseconds() != d.Microseconds()) || got.Milliseconds() != d.Milliseconds() {
			t.Fatalf("packDuration(%v) holds %v", d, got)
		}
	}
}

func TestHistory(t *testing.T) {
	t.Parallel()
	var h History
	if h.Len() != 0 || len(h.Durations()) != 0 {
		t.Fatalf("zero History holds %v", h.Durations())
	}
	var want []time.Duration
	for i := range 3 * HistoryLen {
		d := time.Duration(i+1) * time.Millisecond
		h.add(d)
		want = append(want, d)
		if len(want) > HistoryLen {
			want = want[1:]
		}
		if got := h.Durations(); h.Len() != len(want) || !slices.Equal(got, want) {
			t.Fatalf("after %d adds: %v, want %v", i+1, got, want)
		}
	}
	if got := HistoryOf(want...); got != h {
		t.Fatalf("HistoryOf = %v, want %v", got.Durations(), want)
	}
	for range h.All() {
		break // an early stop is honoured
	}
}

func TestOpTimings(t *testing.T) {
	t.Parallel()
	var o OpTimings
	if o.Len() != 0 || len(o.List()) != 0 {
		t.Fatalf("zero OpTimings holds %v", o.List())
	}
	want := []OpTiming{{probes.OpOpen, 3 * time.Microsecond}, {probes.OpStatfs, 2500 * time.Nanosecond},
		{probes.OpWrite, 9 * time.Millisecond}, {probes.OpRead, 4 * time.Second}, {probes.OpDelete, 0}}
	res := make([]probes.OpResult, len(want))
	for i, w := range want {
		res[i] = probes.OpResult{Op: w.Op, Duration: w.Duration}
	}
	o = opTimingsOfResult(res)
	if got := o.List(); o.Len() != len(want) || !slices.Equal(got, want) {
		t.Fatalf("timings %v, want %v", got, want)
	}
	if OpTimingsOf(want...) != o {
		t.Fatal("OpTimingsOf differs from the timings of the result")
	}
	// Every step fits; an operation that is no step is left out.
	var all []OpTiming
	for i, op := range probes.Ops() {
		all = append(all, OpTiming{op, time.Duration(i)})
	}
	o = OpTimingsOf(append(all, OpTiming{"no such op", time.Second})...)
	if got := o.List(); !slices.Equal(got, all) {
		t.Fatalf("timings %v, want %v", got, all)
	}
}
