package discovery

import (
	"context"
	"time"
)

// SetReadBounds lowers a watcher's read bounds for a test.
func SetReadBounds(w *Watcher, stall time.Duration, limit int64) {
	w.reader.stall, w.reader.limit = stall, limit
}

// SetConfirmPause replaces the wait before the read that confirms a
// departure, so that a test can change the table in between.
func SetConfirmPause(w *Watcher, pause func(context.Context, time.Duration) error) { w.pause = pause }

// SetNow replaces a watcher's clock.
func SetNow(w *Watcher, now func() time.Time) { w.now = now }

// ReadFailed and ReadOK are what Run calls after a failed and a
// successful read.
func ReadFailed(w *Watcher, err error) { w.readFailed(err) }

// ReadOK: see ReadFailed.
func ReadOK(w *Watcher) { w.readOK() }
