package lograte

import (
	"context"
	"log"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// DefaultInterval is how often one cause may be logged unless told
// otherwise.
const DefaultInterval = 10 * time.Second

// maxCauses bounds the causes remembered at once; past it, new causes
// share one entry, so the limiter's memory is bounded whatever is logged.
const maxCauses = 64

// overflowCause is the shared entry of causes past maxCauses.
const overflowCause = "(other causes)"

// SuppressedKey is the attribute that counts the lines of the same cause
// suppressed since the previous one.
const SuppressedKey = "suppressed_since_last"

// Limiter decides which log lines pass: at most one per cause per
// interval. It is safe for concurrent use.
type Limiter struct {
	interval time.Duration
	now      func() time.Time

	mu     sync.Mutex
	causes map[string]*cause
}

type cause struct {
	last       time.Time
	suppressed int
}

// New returns a Limiter; a zero interval is DefaultInterval and a nil now
// is time.Now.
func New(interval time.Duration, now func() time.Time) *Limiter {
	if interval <= 0 {
		interval = DefaultInterval
	}
	if now == nil {
		now = time.Now
	}
	return &Limiter{interval: interval, now: now, causes: map[string]*cause{}}
}

// Allow reports whether a line of cause key may be logged now and, if so,
// how many lines of that cause were suppressed since the last one.
func (l *Limiter) Allow(key string) (suppressed int, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	c, found := l.causes[key]
	if !found {
		if len(l.causes) >= maxCauses {
			l.forgetOldLocked(now)
		}
		if len(l.causes) >= maxCauses {
			key = overflowCause
			c, found = l.causes[key]
		}
		if !found {
			c = &cause{}
			l.causes[key] = c
		}
	}
	if !c.last.IsZero() && now.Sub(c.last) < l.interval {
		c.suppressed++
		return 0, false
	}
	n := c.suppressed
	c.last, c.suppressed = now, 0
	return n, true
}

// forgetOldLocked drops causes whose last line is older than the interval
// and that suppressed nothing since.
func (l *Limiter) forgetOldLocked(now time.Time) {
	for k, c := range l.causes {
		if c.suppressed == 0 && now.Sub(c.last) >= l.interval {
			delete(l.causes, k)
		}
	}
}

// Cause is the rate-limiting key of a free-form message: its first 80
// bytes with every run of digits (ports, addresses, sizes) folded into
// one '#', so that "write tcp 127.0.0.1:9910->127.0.0.1:53312: broken
// pipe" and the same error on another connection are one cause.
func Cause(msg string) string {
	var b strings.Builder
	digits := false
	for i := 0; i < len(msg) && b.Len() < 80; i++ {
		c := msg[i]
		if c >= '0' && c <= '9' {
			if !digits {
				b.WriteByte('#')
			}
			digits = true
			continue
		}
		digits = false
		b.WriteByte(c)
	}
	return b.String()
}

// Handler wraps h so that records pass at most once per cause per
// interval, the cause being the record's message (see Cause); a record
// that passes carries SuppressedKey when lines were suppressed.
func Handler(h slog.Handler, l *Limiter) slog.Handler { return &handler{h: h, l: l} }

type handler struct {
	h slog.Handler
	l *Limiter
}

func (h *handler) Enabled(ctx context.Context, lv slog.Level) bool { return h.h.Enabled(ctx, lv) }

func (h *handler) Handle(ctx context.Context, r slog.Record) error {
	n, ok := h.l.Allow(Cause(r.Message))
	if !ok {
		return nil
	}
	if n > 0 {
		r = r.Clone()
		r.AddAttrs(slog.Int(SuppressedKey, n))
	}
	return h.h.Handle(ctx, r)
}

func (h *handler) WithAttrs(as []slog.Attr) slog.Handler {
	return &handler{h: h.h.WithAttrs(as), l: h.l}
}

func (h *handler) WithGroup(name string) slog.Handler {
	return &handler{h: h.h.WithGroup(name), l: h.l}
}

// Logger returns a *slog.Logger writing through log's handler, rate
// limited by l (a nil log is slog.Default()).
func Logger(log *slog.Logger, l *Limiter) *slog.Logger {
	if log == nil {
		log = slog.Default()
	}
	return slog.New(Handler(log.Handler(), l))
}

// StdLogger returns a *log.Logger (for http.Server.ErrorLog and
// promhttp's ErrorLog) writing at level through log's handler, rate
// limited by l.
func StdLogger(log *slog.Logger, l *Limiter, level slog.Level) *log.Logger {
	if log == nil {
		log = slog.Default()
	}
	return slog.NewLogLogger(Handler(log.Handler(), l), level)
}
