package agent

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
)

// ValidatePath reports whether p can be registered: absolute and clean.
func ValidatePath(p string) error {
	if p == "" {
		return errors.New("mount path: must not be empty")
	}
	if !filepath.IsAbs(p) {
		return fmt.Errorf("mount path %q: must be absolute", p)
	}
	if filepath.Clean(p) != p {
		return fmt.Errorf("mount path %q: must be clean (%q)", p, filepath.Clean(p))
	}
	return nil
}

// Register adds a mount and schedules its first check at once. Registering
// a path that is already registered updates its description and is
// otherwise a no-op. It never touches the filesystem.
func (mon *Monitor) Register(spec Mount) error {
	if err := ValidatePath(spec.Path); err != nil {
		return err
	}
	if spec.FSType == "" && mon.cfg.MountTable != nil {
		// A path that is a mount point now is verified against the mount
		// table before every check from here on.
		if fstype, source, ok := mon.cfg.MountTable.Lookup(spec.Path); ok {
			spec.FSType, spec.Source = fstype, source
		}
	}
	mon.mu.Lock()
	defer mon.mu.Unlock()
	if m, ok := mon.mounts[spec.Path]; ok {
		if *m.spec != spec {
			// Published statuses and checks in flight keep the old
			// description; it is never modified.
			desc := spec
			m.spec = &desc
			st := *m.status.Load()
			st.Mount = &desc
			m.status.Store(&st)
		}
		return nil
	}
	if len(mon.mounts) >= mon.cfg.MaxMounts {
		return fmt.Errorf("register %q: %w (at most %d)", spec.Path, ErrTooManyMounts, mon.cfg.MaxMounts)
	}
	now := mon.clock.Now()
	desc := spec
	m := &mount{spec: &desc, slot: mon.counts.allocSlot()}
	st := &MountStatus{Mount: &desc, State: StatePending}
	m.status.Store(st)
	mon.mounts[spec.Path] = m
	mon.counts.pending++
	mon.due.push(m, now)
	mon.listDirty = true
	mon.publishSummaryLocked()
	mon.log.Info("mount registered", "mount", spec.Path, "fstype", spec.FSType)
	mon.poke()
	return nil
}

// Unregister removes a mount. It never blocks on the filesystem, even while
// the mount's check is stuck there; the stuck goroutine is left to finish
// on its own and its result is discarded. It reports whether the path was
// registered.
func (mon *Monitor) Unregister(path string) bool {
	mon.mu.Lock()
	defer mon.mu.Unlock()
	m, ok := mon.mounts[path]
	if !ok {
		return false
	}
	delete(mon.mounts, path)
	m.removed = true
	if m.cur != nil {
		mon.orphans[path] = m
	}
	mon.due.remove(m)
	mon.forgetMemberLocked(m)
	mon.counts.freeSlot(m.slot)
	mon.counts.count(m.status.Load().State, -1, path)
	mon.listDirty = true
	mon.publishSummaryLocked()
	mon.log.Info("mount unregistered", "mount", path)
	return true
}

// Status returns the status of one mount.
func (mon *Monitor) Status(path string) (*MountStatus, bool) {
	mon.mu.Lock()
	m, ok := mon.mounts[path]
	mon.mu.Unlock()
	if !ok {
		return nil, false
	}
	return m.status.Load(), true
}

// Statuses returns every mount's status, sorted by path. The values are
// immutable; the slice is the caller's.
func (mon *Monitor) Statuses() []*MountStatus {
	list := mon.mountList()
	out := make([]*MountStatus, len(list))
	for i, m := range list {
		out[i] = m.status.Load()
	}
	return out
}

func (mon *Monitor) mountList() []*mount {
	mon.mu.Lock()
	if mon.listDirty {
		l := make([]*mount, 0, len(mon.mounts))
		for _, m := range mon.mounts {
			l = append(l, m)
		}
		slices.SortFunc(l, func(a, b *mount) int {
			switch {
			case a.spec.Path < b.spec.Path:
				return -1
			case a.spec.Path > b.spec.Path:
				return 1
			}
			return 0
		})
		mon.list.Store(&l)
		mon.listDirty = false
	}
	mon.mu.Unlock()
	return *mon.list.Load()
}
