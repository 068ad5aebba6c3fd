package discovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/efs-health-agent/efs-health-agent/agent"
	"github.com/efs-health-agent/efs-health-agent/internal/attribution"
)

// Entry is one mount from the mount table.
type Entry struct {
	Mountpoint string
	FSType     string
	Source     string
	// Options are the per-mount and superblock options, comma-separated.
	Options string
	// Tunnel is the attribution from efs-utils' state file of the mount's
	// efs-proxy, filled by Watcher.Refresh; Mount adds what the source and
	// the path say.
	Tunnel agent.Attribution
}

// option returns the value of key=value in a comma-separated option list.
func option(opts, key string) (string, bool) {
	for _, o := range strings.Split(opts, ",") {
		if v, ok := strings.CutPrefix(o, key+"="); ok {
			return v, true
		}
	}
	return "", false
}

// TunnelAddr returns the address of the efs-proxy (or, with the legacy
// stunnel option, stunnel) an EFS mount goes through: since efs-utils v2
// every mount.efs mount, TLS or not, has the NFS client talk to 127.0.0.1
// on the proxy's port (addr=127.0.0.1,port=20xxx in the options) instead
// of the NFS port 2049. It returns "" for other mounts.
func (e Entry) TunnelAddr() string {
	if !strings.HasPrefix(e.FSType, "nfs") {
		return ""
	}
	addr, ok := option(e.Options, "addr")
	if !ok || (addr != "127.0.0.1" && addr != "::1") {
		return ""
	}
	port, ok := option(e.Options, "port")
	if !ok {
		return ""
	}
	if n, err := strconv.Atoi(port); err != nil || n <= 0 || n == 2049 {
		return ""
	}
	if addr == "::1" {
		return "[::1]:" + port
	}
	return addr + ":" + port
}

// tunnelPort is the local port an NFS mount through a loopback tunnel
// talks to (2049 when the port option is absent, as efs-utils' watchdog
// assumes), or false for any other mount.
func (e Entry) tunnelPort() (int, bool) {
	if !strings.HasPrefix(e.FSType, "nfs") {
		return 0, false
	}
	if addr, ok := option(e.Options, "addr"); !ok || (addr != "127.0.0.1" && addr != "::1") {
		return 0, false
	}
	port, ok := option(e.Options, "port")
	if !ok {
		return 2049, true
	}
	n, err := strconv.Atoi(port)
	return n, err == nil && n > 0 && n <= 65535
}

// Attribution is what the entry is: from its tunnel's state file, its
// source and its kubelet path, in that order.
func (e Entry) Attribution() agent.Attribution {
	return e.Tunnel.Or(attribution.FromSource(e.Source)).Or(attribution.FromPath(e.Mountpoint))
}

// Mount converts an entry to what the agent registers.
func (e Entry) Mount() agent.Mount {
	return agent.Mount{Path: e.Mountpoint, FSType: e.FSType, Source: e.Source, TunnelAddr: e.TunnelAddr(),
		Attribution: e.Attribution()}
}

// Bounds of Config.Interval: under MinInterval re-reading a large mount
// table becomes a steady CPU cost; over MaxInterval a change the kernel
// failed to signal would go unnoticed for too long.
const (
	MinInterval = time.Second
	MaxInterval = time.Hour
)

// Config configures discovery.
type Config struct {
	// MountInfo is the mount table to read, e.g. /proc/self/mountinfo or,
	// in a container sharing the host's kubelet directory, /host/proc/1/mountinfo.
	MountInfo string
	// FSTypes are the filesystem types to register; empty disables
	// registration (the table is still followed for Lookup).
	FSTypes []string
	// Prefix limits registration to mounts under this directory.
	Prefix string
	// Paths are mount points kept from the table whatever their type:
	// the statically configured mounts, which the agent looks up to tell
	// a mount from the directory left by an unmount. Of the rest of the
	// table only mounts of FSTypes under Prefix are kept, so the copy in
	// memory is proportional to what is monitored.
	Paths []string
	// Interval is the longest time between two reads of the table, from
	// MinInterval to MaxInterval.
	Interval time.Duration
	// StateDir is efs-utils' state directory (attribution.DefaultStateDir),
	// read with the table to attribute mounts through efs-proxy (source
	// 127.0.0.1:<subpath>); empty: not read.
	StateDir string
	Logger   *slog.Logger
}

// Validate reports the first invalid setting, naming it and its value.
func (c Config) Validate() error {
	if c.MountInfo == "" {
		return errors.New("mountinfo path: must not be empty")
	}
	if !filepath.IsAbs(c.MountInfo) {
		return fmt.Errorf("mountinfo path %q: must be absolute", c.MountInfo)
	}
	if len(c.FSTypes) > 0 {
		if err := agent.ValidatePath(c.Prefix); err != nil {
			return fmt.Errorf("discovery prefix: %w", err)
		}
	}
	for _, t := range c.FSTypes {
		if t == "" || strings.ContainsAny(t, " ,\t\n") {
			return fmt.Errorf("filesystem type %q: must be a single non-empty word", t)
		}
	}
	if c.StateDir != "" && !filepath.IsAbs(c.StateDir) {
		return fmt.Errorf("efs-utils state dir %q: must be absolute", c.StateDir)
	}
	if c.Interval < MinInterval || c.Interval > MaxInterval {
		return fmt.Errorf("discovery interval %v: must be from %v to %v", c.Interval, MinInterval, MaxInterval)
	}
	return nil
}

// Registry is what discovery registers mounts with; *agent.Monitor
// implements it.
type Registry interface {
	Register(agent.Mount) error
	Unregister(path string) bool
	Status(path string) (*agent.MountStatus, bool)
}

// Watcher follows the mount table. Its Lookup implements agent.MountTable.
type Watcher struct {
	cfg   Config
	log   *slog.Logger
	paths map[string]bool // Config.Paths
	table atomic.Pointer[map[string]Entry]

	mu    sync.Mutex
	owned map[string]agent.Mount // registered by discovery
	// refused is how many discovered mounts the agent refused at the last
	// sync for lack of room (agent.ErrTooManyMounts), logged when it
	// changes rather than per mount and sync.
	refused int

	stateMu  sync.Mutex
	state    *attribution.StateDir
	stateErr string // last state dir problem logged

	reader *tableReader
	// pause waits before the read that confirms a departure; tests
	// replace it to change the table in between.
	pause func(context.Context, time.Duration) error
	now   func() time.Time
	// Failed reads in Run, logged when they start, then at most once per
	// failLogEvery, and when the table is read again.
	failing   int
	failedLog time.Time
}

// failLogEvery is the least time between two warnings about a mount table
// that keeps failing to be read.
const failLogEvery = time.Minute

// New returns a Watcher; call Refresh or Run to read the table.
func New(cfg Config) (*Watcher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	w := &Watcher{cfg: cfg, log: cfg.Logger, owned: map[string]agent.Mount{}, paths: make(map[string]bool, len(cfg.Paths)),
		state: attribution.NewStateDir(cfg.StateDir), reader: newTableReader(cfg.MountInfo), pause: sleep, now: time.Now}
	for _, p := range cfg.Paths {
		w.paths[p] = true
	}
	empty := map[string]Entry{}
	w.table.Store(&empty)
	return w, nil
}

// keep reports whether an entry of the table is kept in memory: a mount
// point in Paths, or a mount that discovery would register.
func (w *Watcher) keep(mountpoint, fstype string) bool {
	return w.paths[mountpoint] || (typeWanted(fstype, w.cfg.FSTypes) && under(mountpoint, w.cfg.Prefix))
}

// Lookup reports the filesystem mounted at path, from the last read of the
// table. It never touches path. Only paths in Config.Paths and mounts of
// Config.FSTypes under Config.Prefix are known; for any other path it
// reports ok false.
func (w *Watcher) Lookup(path string) (fstype, source string, ok bool) {
	e, ok := (*w.table.Load())[path]
	return e.FSType, e.Source, ok
}

// Refresh re-reads the mount table, publishes it for Lookup and returns
// the entries kept. The read is bounded (ReadStall, MaxTableBytes; a file
// that is not regular is refused with ErrNotRegular), and an entry of the
// last published table that the read lacks is dropped only when a second
// read, ConfirmDelay later, lacks it too.
func (w *Watcher) Refresh() (map[string]Entry, error) {
	t, fd, err := w.read(context.Background(), false)
	if err != nil {
		return nil, err
	}
	if fd >= 0 {
		unix.Close(fd)
	}
	w.table.Store(&t)
	return t, nil
}

// read reads the table without publishing it. When the read lacks entries
// of the published table, it reads again after ConfirmDelay and keeps the
// entries the second read still has: a departure is believed only when
// two independent reads agree. With wantFD it also returns a descriptor
// of the first read, for poll.
func (w *Watcher) read(ctx context.Context, wantFD bool) (map[string]Entry, int, error) {
	t, fd, err := w.reader.read(ctx, w.keep, wantFD)
	if err != nil {
		return nil, -1, err
	}
	old := *w.table.Load()
	missing := false
	for p := range old {
		if _, ok := t[p]; !ok {
			missing = true
			break
		}
	}
	if missing {
		second, err := w.confirm(ctx)
		if err != nil {
			// Nothing confirms the departures: keep what the last table
			// had, and let the next read decide.
			w.log.Debug("mount table: departures not confirmed", "err", err)
			second = old
		}
		for p := range old {
			if _, ok := t[p]; ok {
				continue
			}
			if e2, ok := second[p]; ok {
				t[p] = e2
			}
		}
	}
	w.attributeTunnels(t)
	return t, fd, nil
}

// confirm is the second read of a departure, ConfirmDelay after the first.
func (w *Watcher) confirm(ctx context.Context) (map[string]Entry, error) {
	if err := w.pause(ctx, ConfirmDelay); err != nil {
		return nil, err
	}
	t, _, err := w.reader.read(ctx, w.keep, false)
	return t, err
}

// sleep waits for d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// attributeTunnels fills Entry.Tunnel of the mounts through a loopback
// tunnel from efs-utils' state files, read here (bounded by the
// attribution package), never on a request or check path.
func (w *Watcher) attributeTunnels(t map[string]Entry) {
	if w.cfg.StateDir == "" {
		return
	}
	read := false
	w.stateMu.Lock()
	defer w.stateMu.Unlock()
	for p, e := range t {
		port, ok := e.tunnelPort()
		if !ok {
			continue
		}
		if !read {
			read = true
			// Log a problem once, not on every refresh.
			if err := w.state.Refresh(); err != nil && err.Error() != w.stateErr {
				w.stateErr = err.Error()
				w.log.Warn("efs-utils state files", "err", err)
			} else if err == nil {
				w.stateErr = ""
			}
		}
		if ts, ok := w.state.Lookup(p, port); ok {
			e.Tunnel = ts.Attribution()
			t[p] = e
		}
	}
}

// Diff returns the mounts of table that should be registered and are not
// in current, and the paths in current that are no longer mounts of the
// wanted types under prefix (or whose filesystem changed).
func Diff(current map[string]agent.Mount, table map[string]Entry, fstypes []string, prefix string) (add []agent.Mount, remove []string) {
	want := map[string]agent.Mount{}
	for p, e := range table {
		if !under(p, prefix) || !typeWanted(e.FSType, fstypes) {
			continue
		}
		want[p] = e.Mount()
	}
	for p, m := range want {
		if cur, ok := current[p]; !ok || cur != m {
			add = append(add, m)
		}
	}
	for p := range current {
		if _, ok := want[p]; !ok {
			remove = append(remove, p)
		}
	}
	return add, remove
}

func under(p, prefix string) bool {
	return prefix == "/" || p == prefix || strings.HasPrefix(p, prefix+"/")
}

func typeWanted(t string, types []string) bool {
	for _, w := range types {
		if t == w {
			return true
		}
	}
	return false
}

// sync keeps reg in step with table: it unregisters the mounts that
// discovery registered and the table no longer has, then publishes the
// table for Lookup, then registers the new mounts. That order means a
// departed mount is never judged against a table that lacks it (a check
// would call it not_mounted), and a new mount is in the table before its
// first check. Mounts configured statically are never unregistered.
func (w *Watcher) sync(table map[string]Entry, reg Registry, static map[string]bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.cfg.FSTypes) == 0 {
		w.table.Store(&table)
		return
	}
	add, remove := Diff(w.owned, table, w.cfg.FSTypes, w.cfg.Prefix)
	for _, p := range remove {
		delete(w.owned, p)
		if static[p] {
			continue
		}
		reg.Unregister(p)
		w.log.Info("mount gone", "mount", p)
	}
	w.table.Store(&table)
	refused := 0
	defer func() {
		switch {
		case refused == w.refused:
		case refused > 0:
			w.log.Warn("discovered mounts not monitored: the agent's mount limit is reached", "refused", refused)
		default:
			w.log.Info("every discovered mount is monitored again")
		}
		w.refused = refused
	}()
	for _, m := range add {
		if err := reg.Register(m); err != nil {
			if errors.Is(err, agent.ErrTooManyMounts) {
				refused++
				continue
			}
			w.log.Warn("register discovered mount", "mount", m.Path, "err", err)
			continue
		}
		if !static[m.Path] {
			w.owned[m.Path] = m
		}
		w.log.Info("mount discovered", "mount", m.Path, "fstype", m.FSType, "source", m.Source, "tunnel", m.TunnelAddr,
			"filesystem_id", m.Attribution.FileSystemID, "access_point", m.Attribution.AccessPoint, "service", m.Attribution.Service,
			"pod_uid", m.Attribution.PodUID, "volume", m.Attribution.Volume)
	}
}

// attributeStatic gives mounts registered by configuration the attribution
// the table knows for their path, keeping the rest of their registration.
func (w *Watcher) attributeStatic(table map[string]Entry, reg Registry, static []string) {
	for _, p := range static {
		want := attribution.FromPath(p)
		if e, ok := table[p]; ok {
			want = e.Attribution()
		}
		st, ok := reg.Status(p)
		if !ok || st.Attribution == want {
			continue
		}
		spec := *st.Mount // a copy: the published description is never modified
		spec.Attribution = want
		if err := reg.Register(spec); err != nil {
			w.log.Warn("attribute configured mount", "mount", p, "err", err)
		}
	}
}

// Run follows the mount table until ctx is cancelled: at once when the
// kernel signals a change of the table, and at least every Interval.
// When FSTypes is set it keeps reg in step with the table; paths in static
// are registered by configuration and never unregistered here.
//
// A read that fails (the file is missing, not a regular file, stalls past
// ReadStall, or does not parse) keeps the last table read, is logged when
// the failures start and then at most once per minute, and is retried at
// the next Interval: discovery recovers by itself once the table is valid
// again. Run returns within ReadStall of ctx being cancelled, whatever the
// table does.
func (w *Watcher) Run(ctx context.Context, reg Registry, static []string) error {
	st := map[string]bool{}
	for _, p := range static {
		st[p] = true
	}
	// The descriptor polled for the kernel's change notification comes
	// from the first successful read, never from an open of its own that
	// could block.
	fd := -1
	defer func() {
		if fd >= 0 {
			unix.Close(fd)
		}
	}()
	const slice = 250 * time.Millisecond
	next := time.Time{}
	changed := true
	for {
		if changed || !w.now().Before(next) {
			table, nfd, err := w.read(ctx, fd < 0)
			if ctx.Err() != nil {
				if nfd >= 0 {
					unix.Close(nfd)
				}
				return nil
			}
			if err != nil {
				w.readFailed(err)
			} else {
				if nfd >= 0 {
					fd = nfd
				}
				w.readOK()
				w.sync(table, reg, st)
				w.attributeStatic(table, reg, static)
			}
			next = w.now().Add(w.cfg.Interval)
			changed = false
		}
		if ctx.Err() != nil {
			return nil
		}
		wait := min(next.Sub(w.now()), slice)
		if fd < 0 {
			if sleep(ctx, wait) != nil {
				return nil
			}
			continue
		}
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLPRI}}
		n, err := unix.Poll(fds, int(wait.Milliseconds())+1)
		if err != nil && err != unix.EINTR {
			return fmt.Errorf("poll %s: %w", w.cfg.MountInfo, err)
		}
		// The kernel records the table's change count in poll itself, so
		// the next poll fires only on a further change.
		if n > 0 && fds[0].Revents&(unix.POLLPRI|unix.POLLERR) != 0 {
			changed = true
		}
	}
}

// readFailed logs a failed read of the table: the first of a run of
// failures, then at most once per failLogEvery.
func (w *Watcher) readFailed(err error) {
	w.failing++
	if w.failing > 1 && w.now().Sub(w.failedLog) < failLogEvery {
		return
	}
	w.failedLog = w.now()
	w.log.Warn("mount table unreadable; the last table read stays in force", "mountinfo", w.cfg.MountInfo,
		"err", err, "failed_reads", w.failing)
}

// readOK ends a run of failed reads.
func (w *Watcher) readOK() {
	if w.failing > 0 {
		w.log.Info("mount table readable again", "mountinfo", w.cfg.MountInfo, "failed_reads", w.failing)
	}
	w.failing = 0
}
