package rendercache

import (
	"sync"
	"time"
)

// Limits bounds what requests can make the agent hold and how long a
// client may take to read a response. The zero value takes every default.
type Limits struct {
	// Renders is how many O(n) renderings (/metrics, /healthz/mounts and
	// the status page together) may be built at once (default
	// DefaultRenders). Concurrent requests for the same answer share one
	// rendering; a request that needs a new one when none is free is
	// served the last rendering of its endpoint, or 503 with Retry-After
	// if there is none.
	Renders int
	// Bytes caps the encoded responses held at once: the cached
	// renderings (gzip-compressed), those still being written to slow
	// clients, and the decompression buffer of each client that does not
	// accept gzip (default DefaultBudgetBytes). A request that would pass
	// it is answered 503 with Retry-After.
	Bytes int64
	// MaxAge is how long a rendering is served to new requests while the
	// monitor's state has not changed (default DefaultMaxAge).
	MaxAge time.Duration
	// WriteBase and WriteRate size the write deadline of a response of n
	// bytes: WriteBase + n/WriteRate (defaults DefaultWriteBase,
	// DefaultWriteRate). A client that reads slower is dropped and what
	// its response held is released.
	WriteBase time.Duration
	WriteRate int64
	// RenderWait bounds how long a request waits for a rendering in
	// progress (default DefaultRenderWait); past it, 503.
	RenderWait time.Duration
}

// Defaults of Limits.
const (
	DefaultRenders     = 2
	DefaultBudgetBytes = 16 << 20
	DefaultMaxAge      = time.Second
	DefaultWriteBase   = 5 * time.Second
	DefaultWriteRate   = 1 << 20 // bytes per second
	DefaultRenderWait  = 10 * time.Second
)

// plainStreamCost is what the budget reserves for a client that does not
// accept gzip: the response is decompressed from the cached rendering as
// it is written, through a flate window (32 KiB) and a copy buffer.
const plainStreamCost = 96 << 10

// WithDefaults returns l with its zero fields set to their defaults.
func (l Limits) WithDefaults() Limits {
	if l.Renders <= 0 {
		l.Renders = DefaultRenders
	}
	if l.Bytes <= 0 {
		l.Bytes = DefaultBudgetBytes
	}
	if l.MaxAge <= 0 {
		l.MaxAge = DefaultMaxAge
	}
	if l.WriteBase <= 0 {
		l.WriteBase = DefaultWriteBase
	}
	if l.WriteRate <= 0 {
		l.WriteRate = DefaultWriteRate
	}
	if l.RenderWait <= 0 {
		l.RenderWait = DefaultRenderWait
	}
	return l
}

// writeDeadline is how long a response of n bytes may take to be written.
func (l Limits) writeDeadline(n int64) time.Duration {
	return l.WriteBase + time.Duration(n*int64(time.Second)/l.WriteRate)
}

// byteBudget counts the bytes held by responses against a fixed limit.
type byteBudget struct {
	limit int64

	mu   sync.Mutex
	used int64
}

// reserve takes n bytes from the budget; it reports false, taking
// nothing, when that would pass the limit.
func (b *byteBudget) reserve(n int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.used+n > b.limit {
		return false
	}
	b.used += n
	return true
}

// release returns n bytes to the budget.
func (b *byteBudget) release(n int64) {
	b.mu.Lock()
	b.used -= n
	b.mu.Unlock()
}

// heldBuffer is an in-memory body whose capacity is reserved from a
// byteBudget as it grows; a write past the budget fails with
// errOverBudget.
type heldBuffer struct {
	b        []byte
	reserved int64
	budget   *byteBudget
}

// minGrowth is the smallest step by which a heldBuffer grows.
const minGrowth = 64 << 10

func (h *heldBuffer) Write(p []byte) (int, error) {
	need := len(h.b) + len(p)
	if need > cap(h.b) {
		n := max(2*cap(h.b), need, minGrowth)
		if !h.budget.reserve(int64(n - cap(h.b))) {
			return 0, errOverBudget
		}
		h.reserved += int64(n - cap(h.b))
		nb := make([]byte, len(h.b), n)
		copy(nb, h.b)
		h.b = nb
	}
	h.b = append(h.b, p...)
	return len(p), nil
}

// finish returns the body and the bytes reserved for it (its capacity),
// which the caller releases when the body is no longer used.
func (h *heldBuffer) finish() (body []byte, reserved int64) {
	body, reserved = h.b, h.reserved
	h.b, h.reserved = nil, 0
	return body, reserved
}

// discard releases everything reserved.
func (h *heldBuffer) discard() {
	h.budget.release(h.reserved)
	h.b, h.reserved = nil, 0
}
