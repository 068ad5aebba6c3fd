package httpapi

import (
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/common/expfmt"
)

// ignoreBodies: no route takes a request body, so none is read. A request
// that declares one is answered as if it had none, its connection's read
// deadline is set to now and the connection is closed after the answer,
// so a body sent at a few bytes a second cannot keep a connection busy
// (net/http would otherwise read up to 256 KiB of it after the handler,
// for up to ReadTimeout, to reuse the connection) and lock the kubelet's
// probes out of the connection cap.
func ignoreBodies(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength != 0 {
			_ = http.NewResponseController(w).SetReadDeadline(time.Now())
			w.Header().Set("Connection", "close")
		}
		next.ServeHTTP(w, r)
	})
}

// securityHeaders sets the headers every response carries, whatever route
// or error writes it: no cache may keep a health answer (Cache-Control:
// no-store), no browser may sniff a type other than the declared one
// (X-Content-Type-Options: nosniff), and no page may load anything but its
// own inline styles and data: images (Content-Security-Policy; only the
// status page is HTML, and it needs no more).
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		next.ServeHTTP(w, r)
	})
}

// contentSecurityPolicy is the policy of every response.
const contentSecurityPolicy = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"

// writeDeadline gives every response of the routes it wraps d to be
// written; the response cache extends it by the size of its response.
func writeDeadline(d time.Duration) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(d))
			next.ServeHTTP(w, r)
		})
	}
}

// recoverer answers 500 to a handler that panics and logs it through log
// (rate-limited); http.ErrAbortHandler passes through to net/http, which
// closes the connection quietly.
func recoverer(log *slog.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			defer func() {
				p := recover()
				if p == nil {
					return
				}
				if p == http.ErrAbortHandler {
					panic(p)
				}
				log.Error("handler panic", "path", r.URL.Path, "panic", fmt.Sprint(p))
				http.Error(w, "internal error", http.StatusInternalServerError)
			}()
			next.ServeHTTP(w, r)
		})
	}
}

// metricsVariant is the cache key of a scrape: the format negotiated from
// Accept (as promhttp negotiates it with OpenMetrics enabled) and the
// name[] filter.
func metricsVariant(r *http.Request) string {
	f := expfmt.NegotiateAccept(r.Header, expfmt.DefaultOpenMetricsAcceptedFormats()...)
	names := r.URL.Query()["name[]"]
	if len(names) == 0 {
		return string(f)
	}
	names = slices.Clone(names)
	slices.Sort(names)
	return string(f) + "\x00" + strings.Join(names, "\x00")
}
