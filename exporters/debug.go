package exporters

import (
	"encoding/json"
	"net/http"
	"slices"
	"sync"
	"time"
)

// PathDebugChecks serves the recent and slowest checks per mount.
const PathDebugChecks = "/debug/checks"

type debugOp struct {
	Op    string  `json:"op"`
	Ms    float64 `json:"ms"`
	Error string  `json:"error,omitempty"`
}

type debugCheck struct {
	TraceID    string    `json:"traceId"`
	Start      time.Time `json:"start"`
	DurationMs float64   `json:"durationMs"`
	Outcome    string    `json:"outcome"`
	State      string    `json:"state"`
	Reason     string    `json:"reason,omitempty"`
	Error      string    `json:"error,omitempty"`
	Ops        []debugOp `json:"operations"`
}

type debugMount struct {
	Recent  []debugCheck `json:"recent"`
	Slowest []debugCheck `json:"slowest"`
}

// debugStore keeps, per mount, the last n checks and the n slowest.
type debugStore struct {
	n  int
	mu sync.Mutex
	m  map[string]*debugMount
}

func newDebugStore(n int) *debugStore { return &debugStore{n: n, m: map[string]*debugMount{}} }

func (d *debugStore) add(t *Telemetry, path string, c debugCheck) {
	d.mu.Lock()
	defer d.mu.Unlock()
	dm := d.m[path]
	if dm == nil {
		dm = &debugMount{}
		d.m[path] = dm
		// Drop the history of unregistered mounts once the store holds
		// noticeably more mounts than are registered.
		if t.src != nil && len(d.m) > 2*t.src.Summary().Mounts+16 {
			live := map[string]bool{}
			for _, st := range t.src.Statuses() {
				live[st.Path] = true
			}
			for p := range d.m {
				if !live[p] && p != path {
					delete(d.m, p)
				}
			}
		}
	}
	dm.Recent = append(dm.Recent, c)
	if len(dm.Recent) > d.n {
		dm.Recent = slices.Delete(dm.Recent, 0, len(dm.Recent)-d.n)
	}
	i, _ := slices.BinarySearchFunc(dm.Slowest, c, func(a, b debugCheck) int {
		switch {
		case a.DurationMs > b.DurationMs:
			return -1
		case a.DurationMs < b.DurationMs:
			return 1
		}
		return 0
	})
	if i < d.n {
		dm.Slowest = slices.Insert(dm.Slowest, i, c)
		if len(dm.Slowest) > d.n {
			dm.Slowest = dm.Slowest[:d.n]
		}
	}
}

func (d *debugStore) snapshot(live map[string]bool) map[string]debugMount {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make(map[string]debugMount, len(d.m))
	for p, dm := range d.m {
		if live != nil && !live[p] {
			continue
		}
		out[p] = debugMount{Recent: slices.Clone(dm.Recent), Slowest: slices.Clone(dm.Slowest)}
	}
	return out
}

// DebugChecksHandler serves /debug/checks: for each registered mount its
// most recent and slowest checks with per-operation times, outcome and
// trace id, newest last. ?mount=PATH limits it to one mount and
// ?trace=ID to the checks with that trace id. It reads memory only.
func (t *Telemetry) DebugChecksHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var live map[string]bool
		if t.src != nil {
			live = map[string]bool{}
			for _, st := range t.src.Statuses() {
				live[st.Path] = true
			}
		}
		snap := t.debug.snapshot(live)
		if m := r.URL.Query().Get("mount"); m != "" {
			dm, ok := snap[m]
			snap = map[string]debugMount{}
			if ok {
				snap[m] = dm
			}
		}
		if id := r.URL.Query().Get("trace"); id != "" {
			match := func(c debugCheck) bool { return c.TraceID != id }
			for p, dm := range snap {
				dm.Recent = slices.DeleteFunc(dm.Recent, match)
				dm.Slowest = slices.DeleteFunc(dm.Slowest, match)
				if len(dm.Recent)+len(dm.Slowest) == 0 {
					delete(snap, p)
				} else {
					snap[p] = dm
				}
			}
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(snap)
	})
}
