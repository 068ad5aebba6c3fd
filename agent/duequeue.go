package agent

import (
	"container/heap"
	"time"
)

// dueQueue orders queued mounts by their next due time. Its entries carry
// the due time inline, so that keeping the heap in order reads and writes
// only the heap's own contiguous array, never the mounts: at 10,000
// mounts the mounts are spread over the heap and each one touched costs a
// cache miss. A mount is taken out or moved by invalidating its entry
// (the mount's generation changes) and pushing a new one; an invalid
// entry is dropped when it reaches the top, and the heap is rebuilt from
// its valid entries whenever invalid ones are more than half of it (and
// more than compactMin), so it never holds more than about twice the
// queued mounts, whatever the churn.
type dueQueue struct {
	epoch time.Time // due times are kept as offsets from it
	h     dueHeap
	dead  int // invalid entries in h
}

// compactMin is the number of invalid entries below which the due queue
// is never rebuilt.
const compactMin = 64

type dueEntry struct {
	at  time.Duration // due time, from epoch
	gen uint32
	m   *mount
}

type dueHeap []dueEntry

func (h dueHeap) Len() int           { return len(h) }
func (h dueHeap) Less(i, j int) bool { return h[i].at < h[j].at }
func (h dueHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *dueHeap) Push(x any)        { *h = append(*h, x.(dueEntry)) }
func (h *dueHeap) Pop() any {
	old := *h
	n := len(old)
	e := old[n-1]
	old[n-1] = dueEntry{}
	*h = old[:n-1]
	return e
}

// push queues m at due, replacing its place in the queue if it has one.
func (q *dueQueue) push(m *mount, due time.Time) {
	q.invalidate(m)
	m.queued = true
	heap.Push(&q.h, dueEntry{at: due.Sub(q.epoch), gen: m.gen, m: m})
}

// remove takes m out of the queue.
func (q *dueQueue) remove(m *mount) {
	q.invalidate(m)
	m.queued = false
}

// invalidate makes m's entry, if it has one, invalid.
func (q *dueQueue) invalidate(m *mount) {
	m.gen++
	if !m.queued {
		return
	}
	q.dead++
	if q.dead > compactMin && q.dead > len(q.h)/2 {
		live := q.h[:0]
		for _, e := range q.h {
			if e.m.queued && e.m.gen == e.gen {
				live = append(live, e)
			}
		}
		clear(q.h[len(live):])
		q.h = live
		heap.Init(&q.h)
		q.dead = 0
	}
}

// peek returns the mount due first and its due time, after dropping the
// invalidated entries at the top.
func (q *dueQueue) peek() (*mount, time.Duration, bool) {
	for len(q.h) > 0 {
		e := q.h[0]
		if e.m.queued && e.m.gen == e.gen {
			return e.m, e.at, true
		}
		heap.Pop(&q.h)
		q.dead--
	}
	return nil, 0, false
}

// pop takes out the mount peek returned.
func (q *dueQueue) pop() *mount {
	m := heap.Pop(&q.h).(dueEntry).m
	m.queued = false
	return m
}

// dueBy reports whether a mount is due at or before t, and which.
func (q *dueQueue) dueBy(t time.Time) (*mount, bool) {
	m, at, ok := q.peek()
	return m, ok && at <= t.Sub(q.epoch)
}

// next returns the due time of the mount due first.
func (q *dueQueue) next() (time.Time, bool) {
	_, at, ok := q.peek()
	return q.epoch.Add(at), ok
}

// len is the number of entries, invalidated ones included.
func (q *dueQueue) len() int { return len(q.h) }
