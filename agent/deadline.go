package agent

// deadlineHeap orders the checks in flight by their deadline, so that the
// scheduler loop enforces every deadline with its one timer instead of a
// timer per check.
type deadlineHeap []*check

func (h deadlineHeap) Len() int           { return len(h) }
func (h deadlineHeap) Less(i, j int) bool { return h[i].deadline.Before(h[j].deadline) }
func (h deadlineHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].didx = i
	h[j].didx = j
}

func (h *deadlineHeap) Push(x any) {
	c := x.(*check)
	c.didx = len(*h)
	*h = append(*h, c)
}

func (h *deadlineHeap) Pop() any {
	old := *h
	n := len(old)
	c := old[n-1]
	old[n-1] = nil
	c.didx = -1
	*h = old[:n-1]
	return c
}
