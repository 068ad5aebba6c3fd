package agent

import (
	"testing"
	"time"
)

// TestDueQueue: mounts come out in due order; a removed mount never comes
// out, a moved one comes out once at its new time, and the entries they
// left behind are dropped on the way.
func TestDueQueue(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	q := dueQueue{epoch: t0}
	a, b, c, d := &mount{}, &mount{}, &mount{}, &mount{}
	q.push(a, t0.Add(3*time.Second))
	q.push(b, t0.Add(1*time.Second))
	q.push(c, t0.Add(2*time.Second))
	q.push(d, t0.Add(4*time.Second))
	q.remove(c)                      // unregistered
	q.push(b, t0.Add(5*time.Second)) // moved later
	q.push(d, t0.Add(time.Second))   // moved earlier
	if _, ok := q.dueBy(t0.Add(999 * time.Millisecond)); ok {
		t.Fatal("a mount due before the first due time")
	}
	var got []*mount
	for {
		m, ok := q.dueBy(t0.Add(time.Minute))
		if !ok {
			break
		}
		if q.pop() != m {
			t.Fatal("pop returned another mount than dueBy")
		}
		got = append(got, m)
	}
	want := []*mount{d, a, b}
	if len(got) != len(want) {
		t.Fatalf("got %d mounts, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("mount %d out of order", i)
		}
	}
	if q.len() != 0 {
		t.Fatalf("%d entries left", q.len())
	}
	if _, ok := q.next(); ok {
		t.Fatal("next on an empty queue")
	}
	for _, m := range want {
		if m.queued {
			t.Fatal("a popped mount still marked queued")
		}
	}
}
