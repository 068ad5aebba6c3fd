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

// TestDueQueueBounded: however often mounts are moved or taken out, the
// queue holds at most about twice the mounts queued (plus 64).
func TestDueQueueBounded(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	q := dueQueue{epoch: t0}
	const n = 100
	ms := make([]*mount, n)
	for i := range ms {
		ms[i] = &mount{}
		q.push(ms[i], t0.Add(time.Duration(i)*time.Second))
	}
	for round := 0; round < 1000; round++ {
		m := ms[round%n]
		if round%3 == 0 {
			q.remove(m) // unregistered ...
			q.push(&mount{}, t0.Add(time.Hour))
			ms[round%n] = &mount{} // ... and another registered
			q.push(ms[round%n], t0.Add(time.Duration(round)*time.Millisecond))
		} else {
			q.push(m, t0.Add(time.Duration(round)*time.Minute)) // moved
		}
		queued := 0
		for _, e := range q.h {
			if e.m.queued && e.m.gen == e.gen {
				queued++
			}
		}
		if len(q.h) > 2*queued+65 { // compactMin is 64

			t.Fatalf("round %d: %d entries for %d queued mounts", round, len(q.h), queued)
		}
		if q.dead != len(q.h)-queued {
			t.Fatalf("round %d: %d invalid entries counted, %d held", round, q.dead, len(q.h)-queued)
		}
	}
	// Everything still comes out in order.
	var last time.Duration
	for {
		_, at, ok := q.peek()
		if !ok {
			break
		}
		if at < last {
			t.Fatal("out of order after compaction")
		}
		last = at
		q.pop()
	}
}
