package discovery_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/efs-health-agent/efs-health-agent/agent"
	"github.com/efs-health-agent/efs-health-agent/internal/discovery"
	"github.com/efs-health-agent/efs-health-agent/internal/testenv/faultfs"
	"github.com/efs-health-agent/efs-health-agent/internal/testenv/testutil"
)

// mountLine is one line of a mountinfo table.
type mountLine struct{ path, fstype, source string }

// writeTable writes a mountinfo table with a root line and lines, by
// rename, so that a reader sees the old or the new table, whole.
func writeTable(t *testing.T, file string, lines ...mountLine) {
	t.Helper()
	var b strings.Builder
	b.WriteString("22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n")
	for i, l := range lines {
		fmt.Fprintf(&b, "%d 22 0:%d / %s rw,relatime shared:%d - %s %s rw,vers=4.1\n", 100+i, 100+i, l.path, 100+i, l.fstype, l.source)
	}
	tmp := file + ".new"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, file); err != nil {
		t.Fatal(err)
	}
}

// logBuffer collects a logger's lines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// registry records what discovery does to it, and whether a mount it
// unregisters was still in the watcher's table at that moment: if not,
// a check running then would have called it not_mounted.
type registry struct {
	w *discovery.Watcher

	mu           sync.Mutex
	mounts       map[string]agent.Mount
	unregistered []string
	judgedGone   []string // unregistered after the table had dropped them
}

func newRegistry() *registry { return &registry{mounts: map[string]agent.Mount{}} }

func (r *registry) Register(m agent.Mount) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.mounts[m.Path] = m
	return nil
}

func (r *registry) Unregister(p string) bool {
	_, _, inTable := r.w.Lookup(p)
	r.mu.Lock()
	defer r.mu.Unlock()
	if !inTable {
		r.judgedGone = append(r.judgedGone, p)
	}
	r.unregistered = append(r.unregistered, p)
	_, ok := r.mounts[p]
	delete(r.mounts, p)
	return ok
}

func (r *registry) Status(string) (*agent.MountStatus, bool) { return nil, false }

func (r *registry) has(p string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.mounts[p]
	return ok
}

func (r *registry) report() (unregistered, judgedGone []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.unregistered...), append([]string(nil), r.judgedGone...)
}

// runWatcher runs w.Run until the test ends and fails the test when Run
// does not return within 10 s of its context being cancelled.
func runWatcher(t *testing.T, w *discovery.Watcher, reg discovery.Registry, static []string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx, reg, static) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return within 10 s of its context being cancelled")
		}
	})
}

// refreshWithin calls Refresh and fails the test if it does not return
// within limit (a read blocked for good would otherwise hang the test).
func refreshWithin(t *testing.T, w *discovery.Watcher, limit time.Duration) (map[string]discovery.Entry, error) {
	t.Helper()
	type result struct {
		t   map[string]discovery.Entry
		err error
	}
	done := make(chan result, 1)
	go func() { tab, err := w.Refresh(); done <- result{tab, err} }()
	select {
	case r := <-done:
		return r.t, r.err
	case <-time.After(limit):
		t.Fatalf("Refresh did not return within %v", limit)
		return nil, nil
	}
}

// TestRefusesNonRegularTable points the watcher at files that are not a
// mount table: each is refused from its mode, at once, without waiting
// for a writer or reading an endless stream; /proc/self/mountinfo, a
// regular file of size 0, is read.
func TestRefusesNonRegularTable(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	for _, tc := range []struct{ path, kind string }{
		{fifo, "a named pipe (FIFO)"},
		{"/dev/zero", "a character device"},
		{dir, "a directory"},
		{sock, ""}, // a socket cannot be opened at all (ENXIO)
	} {
		w, err := discovery.New(discovery.Config{MountInfo: tc.path, Interval: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		_, err = refreshWithin(t, w, 10*time.Second)
		if err == nil || !strings.Contains(err.Error(), tc.path) {
			t.Fatalf("Refresh of %s = %v, want an error naming it", tc.path, err)
		}
		if tc.kind != "" && (!errors.Is(err, discovery.ErrNotRegular) || !strings.Contains(err.Error(), tc.kind)) {
			t.Fatalf("Refresh of %s = %v, want %q: %v", tc.path, err, tc.kind, discovery.ErrNotRegular)
		}
		if cerr := discovery.CheckTable(context.Background(), tc.path); cerr == nil || cerr.Error() != err.Error() {
			t.Fatalf("CheckTable(%s) = %v, want %v", tc.path, cerr, err)
		}
	}
	if err := discovery.CheckTable(context.Background(), "/proc/self/mountinfo"); err != nil {
		t.Fatalf("CheckTable(/proc/self/mountinfo): %v", err)
	}
}

// TestTableSizeBounded reads a table larger than the bound: refused.
func TestTableSizeBounded(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "mountinfo")
	lines := make([]mountLine, 100)
	for i := range lines {
		lines[i] = mountLine{fmt.Sprintf("/mnt/m%03d", i), "nfs4", "fs-1:/"}
	}
	writeTable(t, file, lines...)
	w, err := discovery.New(discovery.Config{MountInfo: file, Interval: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Refresh(); err != nil {
		t.Fatal(err)
	}
	discovery.SetReadBounds(w, discovery.ReadStall, 1000)
	if _, err := w.Refresh(); !errors.Is(err, discovery.ErrTableTooLarge) {
		t.Fatalf("Refresh of a table over the bound = %v, want %v", err, discovery.ErrTableTooLarge)
	}
}

// TestStalledReadBounded serves the table from the FUSE fault filesystem
// and hangs its open, then its read: Refresh gives up after the stall
// bound, no second reader piles up behind the stuck one, and reads work
// again once the file answers.
func TestStalledReadBounded(t *testing.T) {
	for _, op := range []faultfs.Op{faultfs.OpOpen, faultfs.OpRead} {
		t.Run(string(op), func(t *testing.T) {
			fs := testutil.MountFaultFS(t)
			file := filepath.Join(fs.Mountpoint(), "mountinfo")
			writeTable(t, file, mountLine{"/mnt/static", "nfs4", "fs-1:/"})
			w, err := discovery.New(discovery.Config{MountInfo: file, Paths: []string{"/mnt/static"}, Interval: time.Second})
			if err != nil {
				t.Fatal(err)
			}
			if tab, err := w.Refresh(); err != nil || len(tab) != 1 {
				t.Fatalf("Refresh = %v, %v", tab, err)
			}
			discovery.SetReadBounds(w, 300*time.Millisecond, discovery.MaxTableBytes)
			fs.Set(op, faultfs.Fault{Hang: true})
			defer fs.Clear()
			if _, err := refreshWithin(t, w, 10*time.Second); !errors.Is(err, discovery.ErrReadStalled) {
				t.Fatalf("Refresh of a hung table = %v, want %v", err, discovery.ErrReadStalled)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := fs.WaitBlocked(ctx, 1); err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 3; i++ {
				if _, err := refreshWithin(t, w, 10*time.Second); !errors.Is(err, discovery.ErrReadStuck) {
					t.Fatalf("Refresh while a read is stuck = %v, want %v", err, discovery.ErrReadStuck)
				}
			}
			if n := fs.Blocked(); n != 1 {
				t.Fatalf("%d reads hung in the filesystem, want 1", n)
			}
			if _, _, ok := w.Lookup("/mnt/static"); !ok {
				t.Fatal("a failed read dropped the table")
			}
			fs.Clear()
			testutil.WaitFor(t, "a read after the file answers again", func() bool {
				_, err := w.Refresh()
				return err == nil
			})
		})
	}
}

// TestRunRecoversFromFIFO swaps a FIFO in for the table while discovery
// runs, then a valid table again: the FIFO is logged (once) and skipped,
// the last table stays in force (the static mount is not declared gone),
// and discovery sees the new table's mounts by itself. Run returns
// promptly when cancelled with the FIFO in place.
func TestRunRecoversFromFIFO(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "mountinfo")
	static := "/mnt/static"
	a, b := pods+"/a/volumes/kubernetes.io~csi/pv/mount", pods+"/b/volumes/kubernetes.io~csi/pv/mount"
	writeTable(t, file, mountLine{static, "ext4", "/dev/vdb"}, mountLine{a, "nfs4", "fs-1:/"})
	var logs logBuffer
	w, err := discovery.New(discovery.Config{MountInfo: file, FSTypes: []string{"nfs4"}, Prefix: pods, Paths: []string{static},
		Interval: time.Second, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	reg := newRegistry()
	reg.w = w
	runWatcher(t, w, reg, []string{static})
	testutil.WaitFor(t, "a registered", func() bool { return reg.has(a) })

	fifo := filepath.Join(dir, "fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(fifo, file); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "the FIFO logged", func() bool { return strings.Contains(logs.String(), "named pipe") })
	if _, _, ok := w.Lookup(static); !ok || !reg.has(a) {
		t.Fatal("an unreadable table dropped the last table read")
	}

	writeTable(t, file, mountLine{static, "ext4", "/dev/vdb"}, mountLine{a, "nfs4", "fs-1:/"}, mountLine{b, "nfs4", "fs-2:/"})
	testutil.WaitFor(t, "b registered from the valid table", func() bool { return reg.has(b) })
	testutil.WaitFor(t, "recovery logged", func() bool { return strings.Contains(logs.String(), "mount table readable again") })
	if _, _, ok := w.Lookup(static); !ok {
		t.Fatal("the static mount left the table")
	}
	if unregistered, _ := reg.report(); len(unregistered) != 0 {
		t.Fatalf("unregistered %v", unregistered)
	}
	if n := strings.Count(logs.String(), "mount table unreadable"); n != 1 {
		t.Errorf("%d warnings for one run of failures, want 1 (rate-limited):\n%s", n, logs.String())
	}
	// A FIFO again, left in place when Run is cancelled (runWatcher's
	// cleanup checks that Run returns).
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(fifo, file); err != nil {
		t.Fatal(err)
	}
}

// tornSetup runs a watcher over a table of a static mount and two
// discovered ones (a, b). While the returned torn flag is set, the table
// is written whole again before the read that confirms a departure, so a
// table written without some entries is seen by one read only; confirms
// counts those reads.
func tornSetup(t *testing.T) (w *discovery.Watcher, reg *registry, file string, full []mountLine, torn *atomic.Bool, confirms *atomic.Int32) {
	t.Helper()
	file = filepath.Join(t.TempDir(), "mountinfo")
	full = []mountLine{{"/mnt/static", "ext4", "/dev/vdb"}, {pods + "/a/volumes/kubernetes.io~csi/pv/mount", "nfs4", "fs-1:/"},
		{pods + "/b/volumes/kubernetes.io~csi/pv/mount", "nfs4", "fs-2:/"}}
	writeTable(t, file, full...)
	w, err := discovery.New(discovery.Config{MountInfo: file, FSTypes: []string{"nfs4"}, Prefix: pods, Paths: []string{full[0].path},
		Interval: time.Second, Logger: slog.New(slog.NewTextHandler(&logBuffer{}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	torn, confirms = &atomic.Bool{}, &atomic.Int32{}
	discovery.SetConfirmPause(w, func(context.Context, time.Duration) error {
		if torn.CompareAndSwap(true, false) {
			writeTable(t, file, full...)
		}
		confirms.Add(1)
		return nil
	})
	reg = newRegistry()
	reg.w = w
	runWatcher(t, w, reg, []string{full[0].path})
	testutil.WaitFor(t, "a and b registered", func() bool { return reg.has(full[1].path) && reg.has(full[2].path) })
	return w, reg, file, full, torn, confirms
}

// TestTornReadNotBelieved gives discovery one read of a table that lacks
// a static and a discovered mount, as a read of a half-written file, or
// of the kernel's mountinfo while mounts move, can: neither is declared
// gone (the static mount stays in the table that the mounttable step
// reads, the discovered one stays registered) because the second read
// has them. A mount that really goes is dropped after the second read.
func TestTornReadNotBelieved(t *testing.T) {
	t.Parallel()
	w, reg, file, full, torn, confirms := tornSetup(t)
	static, a, b := full[0].path, full[1], full[2].path
	torn.Store(true)
	writeTable(t, file, a)
	var staticGone atomic.Bool
	testutil.WaitFor(t, "the torn table read", func() bool {
		if _, _, ok := w.Lookup(static); !ok {
			staticGone.Store(true)
		}
		unregistered, _ := reg.report()
		return confirms.Load() > 0 || staticGone.Load() || len(unregistered) > 0
	})
	if _, _, ok := w.Lookup(static); !ok || staticGone.Load() {
		t.Fatal("one torn read took the static mount out of the table: it would be checked as not_mounted")
	}
	if unregistered, _ := reg.report(); len(unregistered) != 0 || !reg.has(b) {
		t.Fatalf("one torn read unregistered %v", unregistered)
	}
	// The static mount really goes: out of the table after a second read.
	writeTable(t, file, full[1:]...)
	testutil.WaitFor(t, "the static mount out of the table", func() bool { _, _, ok := w.Lookup(static); return !ok })
	if confirms.Load() < 2 {
		t.Fatalf("%d confirming reads, want one per departure", confirms.Load())
	}
}

// TestUnregisteredBeforePublished removes a discovered mount from the
// table: it is unregistered after a second read confirms it, and before
// the table without it is published, so no check of it can run against
// a table that lacks it and report not_mounted (or /metrics show it at 0)
// on its way out.
func TestUnregisteredBeforePublished(t *testing.T) {
	t.Parallel()
	w, reg, file, full, _, confirms := tornSetup(t)
	b := full[2].path
	writeTable(t, file, full[:2]...)
	testutil.WaitFor(t, "b unregistered", func() bool { return !reg.has(b) })
	testutil.WaitFor(t, "b out of the table", func() bool { _, _, ok := w.Lookup(b); return !ok })
	if unregistered, judgedGone := reg.report(); len(unregistered) != 1 || len(judgedGone) != 0 {
		t.Fatalf("unregistered %v, of which %v after the table had dropped them (want [%s], none)", unregistered, judgedGone, b)
	}
	if confirms.Load() != 1 {
		t.Fatalf("%d confirming reads, want 1", confirms.Load())
	}
}

// TestReadFailuresRateLimited fails many reads in a row: one warning when
// the failures start, then at most one a minute, and one line when the
// table is read again.
func TestReadFailuresRateLimited(t *testing.T) {
	t.Parallel()
	var logs logBuffer
	w, err := discovery.New(discovery.Config{MountInfo: "/proc/self/mountinfo", Interval: time.Second,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_000_000, 0)
	discovery.SetNow(w, func() time.Time { return now })
	for i := 0; i < 100; i++ {
		discovery.ReadFailed(w, discovery.ErrNotRegular)
		now = now.Add(time.Second)
	}
	if n := strings.Count(logs.String(), "mount table unreadable"); n != 2 {
		t.Fatalf("%d warnings over 100 s of failures, want 2:\n%s", n, logs.String())
	}
	discovery.ReadOK(w)
	discovery.ReadOK(w)
	if n := strings.Count(logs.String(), "mount table readable again"); n != 1 || !strings.Contains(logs.String(), "failed_reads=100") {
		t.Fatalf("recovery logged %d times:\n%s", n, logs.String())
	}
}
