package agent

import (
	"testing"
	"time"

	"github.com/efs-health-agent/efs-health-agent/probes"
)

// TestOwnDelay: which deadlines are the agent's own doing.
func TestOwnDelay(t *testing.T) {
	t.Parallel()
	d := time.Unix(1000, 0)
	for _, c := range []struct {
		name    string
		now     time.Time
		inCall  bool
		lastEnd time.Time
		want    bool
	}{
		{"in a call, seen on time: the mount's", d, true, d.Add(-time.Second), false},
		{"in a call, seen within the slack: the mount's", d.Add(lateSlack), true, d.Add(-time.Second), false},
		{"in a call, the loop late: the agent's", d.Add(lateSlack + time.Millisecond), true, d.Add(-time.Second), true},
		{"between calls, last returned in time: the agent's", d, false, d.Add(-time.Millisecond), true},
		{"never started its first call: the agent's", d, false, time.Time{}, true},
		{"between calls, last returned after the deadline: the mount's", d.Add(time.Millisecond), false, d.Add(time.Millisecond), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := ownDelay(d, c.now, c.inCall, c.lastEnd); got != c.want {
				t.Fatalf("ownDelay = %v, want %v", got, c.want)
			}
		})
	}
}

// TestSlowCalls: a check that completed past its deadline is still a
// timeout when its calls alone took the timeout.
func TestSlowCalls(t *testing.T) {
	t.Parallel()
	res := probes.Result{Ops: []probes.OpResult{{Op: probes.OpOpen, Duration: time.Second}, {Op: probes.OpWrite, Duration: time.Second}, {Op: probes.OpRead, Duration: time.Second}}}
	if op, slow := slowCalls(res, 2*time.Second); !slow || op != probes.OpWrite {
		t.Fatalf("slowCalls = %q, %v; want write, true", op, slow)
	}
	if _, slow := slowCalls(res, 4*time.Second); slow {
		t.Fatal("3s of calls judged slow against a 4s timeout")
	}
}
