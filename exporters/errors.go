package exporters

import (
	"log/slog"
	"sync"
	"time"
)

// ErrorHandler logs OpenTelemetry export errors (an unreachable collector,
// say) at most once per interval, counting the ones it suppressed, so a
// collector outage cannot flood the log. It implements otel.ErrorHandler.
type ErrorHandler struct {
	log      *slog.Logger
	interval time.Duration
	now      func() time.Time

	mu         sync.Mutex
	last       time.Time
	suppressed int
}

// NewErrorHandler returns an ErrorHandler logging to log at most once per
// interval.
func NewErrorHandler(log *slog.Logger, interval time.Duration, now func() time.Time) *ErrorHandler {
	if now == nil {
		now = time.Now
	}
	return &ErrorHandler{log: log, interval: interval, now: now}
}

// Handle logs err unless another error was logged within the interval.
func (h *ErrorHandler) Handle(err error) {
	h.mu.Lock()
	now := h.now()
	if !h.last.IsZero() && now.Sub(h.last) < h.interval {
		h.suppressed++
		h.mu.Unlock()
		return
	}
	n := h.suppressed
	h.last, h.suppressed = now, 0
	h.mu.Unlock()
	h.log.Warn("telemetry export error", "err", err, "suppressed_since_last", n)
}
