package exporters

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"

	"github.com/efs-health-agent/efs-health-agent/internal/lograte"
)

// errorLogInterval bounds how often export errors are logged.
const errorLogInterval = time.Minute

// exportErrorLogger returns the logger of OpenTelemetry errors (an
// unreachable collector, say): one line per interval at most, the next
// one counting those suppressed (lograte.SuppressedKey), so a collector
// outage cannot flood the log. Every error is logged with one message, so
// they share one limit.
func exportErrorLogger(log *slog.Logger, interval time.Duration, now func() time.Time) *slog.Logger {
	return lograte.Logger(log, lograte.New(interval, now))
}

// logExportError logs err on log, the logger of exportErrorLogger.
func logExportError(log *slog.Logger, err error) { log.Warn("telemetry export error", "err", err) }

// otelErrors is the one piece of package state. The SDK reports export
// and collection errors only through the process-wide otel.Handle (the
// periodic reader, the batch span processor and the Prometheus exporter
// take no error handler of their own), so New installs a forwarder there
// once, and each Telemetry points it at its own rate-limited logger; the
// most recent live one receives the errors.
var otelErrors struct {
	once sync.Once
	cur  atomic.Pointer[slog.Logger]
}

func installErrorHandler(log *slog.Logger) {
	otelErrors.cur.Store(log)
	otelErrors.once.Do(func() {
		otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
			if log := otelErrors.cur.Load(); log != nil {
				logExportError(log, err)
			}
		}))
	})
}

func uninstallErrorHandler(log *slog.Logger) { otelErrors.cur.CompareAndSwap(log, nil) }
