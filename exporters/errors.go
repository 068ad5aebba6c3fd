package exporters

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
)

// errorLogInterval bounds how often export errors are logged.
const errorLogInterval = time.Minute

// errorLimiter logs OpenTelemetry errors (an unreachable collector, say)
// at most once per interval, counting the ones it suppressed, so a
// collector outage cannot flood the log.
type errorLimiter struct {
	log      *slog.Logger
	interval time.Duration
	now      func() time.Time

	mu         sync.Mutex
	last       time.Time
	suppressed int
}

func newErrorLimiter(log *slog.Logger, interval time.Duration, now func() time.Time) *errorLimiter {
	return &errorLimiter{log: log, interval: interval, now: now}
}

// Handle logs err unless another error was logged within the interval.
func (h *errorLimiter) Handle(err error) {
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

// otelErrors is the one piece of package state. The SDK reports export
// and collection errors only through the process-wide otel.Handle (the
// periodic reader, the batch span processor and the Prometheus exporter
// take no error handler of their own), so New installs a forwarder there
// once, and each Telemetry points it at its own rate-limited logger; the
// most recent live one receives the errors.
var otelErrors struct {
	once sync.Once
	cur  atomic.Pointer[errorLimiter]
}

func installErrorHandler(h *errorLimiter) {
	otelErrors.cur.Store(h)
	otelErrors.once.Do(func() {
		otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
			if h := otelErrors.cur.Load(); h != nil {
				h.Handle(err)
			}
		}))
	})
}

func uninstallErrorHandler(h *errorLimiter) { otelErrors.cur.CompareAndSwap(h, nil) }
