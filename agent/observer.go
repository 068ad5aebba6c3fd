package agent

import (
	"time"
)

// Observer receives every finished check, for telemetry. Its methods are
// called from check goroutines and the scheduler loop, never under the
// monitor's lock, and must not block. An observer must not call back into
// the Monitor: the record carries what it needs.
type Observer interface {
	// CheckDone is called once per check, when it returns or hits its
	// deadline (also when the mount was unregistered while it ran). The
	// record is valid during the call only.
	CheckDone(r *CheckRecord)
	// CheckSkipped is called when a check of m is due but the previous
	// one is still stuck in the filesystem.
	CheckSkipped(m *Mount, at time.Time)
}
