package agent

// dueHeap orders queued mounts by their next due time.
type dueHeap []*mount

func (h dueHeap) Len() int           { return len(h) }
func (h dueHeap) Less(i, j int) bool { return h[i].due.Before(h[j].due) }
func (h dueHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].idx = i
	h[j].idx = j
}

func (h *dueHeap) Push(x any) {
	m := x.(*mount)
	m.idx = len(*h)
	*h = append(*h, m)
}

func (h *dueHeap) Pop() any {
	old := *h
	n := len(old)
	m := old[n-1]
	old[n-1] = nil
	m.idx = -1
	*h = old[:n-1]
	return m
}
