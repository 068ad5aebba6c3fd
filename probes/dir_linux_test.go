package probes_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/efs-health-agent/efs-health-agent/internal/testenv/faultfs"
	"github.com/efs-health-agent/efs-health-agent/internal/testenv/testutil"
	"github.com/efs-health-agent/efs-health-agent/probes"
)

// rootTimes are the mount root's modification and change times, and its
// inode's link count: what a create or remove in the root changes.
func rootTimes(t *testing.T, dir string) [3]int64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		t.Fatal(err)
	}
	return [3]int64{st.Mtim.Nano(), st.Ctim.Nano(), int64(st.Nlink)}
}

// TestProbeDirectory: the first check makes the probe directory (0700)
// and its probe file goes there; later checks reuse it and never change
// the mount root (its times stay as they were after the directory was
// made). Under InRoot the probe file goes in the root, as earlier
// versions did, in mode read-write-root, and no directory is made.
func TestProbeDirectory(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var created []string
	opts := probes.Options{Hostname: "h", BeforeOp: func(op probes.Op) {
		if op == probes.OpRead {
			// The write step has made the probe file by now.
			ents, _ := os.ReadDir(filepath.Join(dir, probes.DirName))
			for _, e := range ents {
				created = append(created, e.Name())
			}
		}
	}}
	res := probes.Check(context.Background(), dir, opts)
	if res.Err != nil || res.Mode != probes.ModeReadWrite {
		t.Fatalf("first check: %+v", res)
	}
	st, err := os.Lstat(filepath.Join(dir, probes.DirName))
	if err != nil || !st.IsDir() || st.Mode().Perm() != 0o700 {
		t.Fatalf("probe directory: %v %v, want a 0700 directory", st, err)
	}
	if len(created) != 1 || !probes.IsProbeFile(created[0], "h") {
		t.Fatalf("probe files in the directory mid-check: %q", created)
	}
	before := rootTimes(t, dir)
	for i := 0; i < 3; i++ {
		// Apart by more than the file times' granularity.
		time.Sleep(10 * time.Millisecond)
		if res := probes.Check(context.Background(), dir, opts); res.Err != nil || res.Mode != probes.ModeReadWrite {
			t.Fatalf("check %d: %+v", i+2, res)
		}
	}
	if after := rootTimes(t, dir); after != before {
		t.Fatalf("checks changed the mount root: %v, then %v", before, after)
	}
	if left := leftBehind(dir); len(left) != 0 {
		t.Fatalf("left behind: %q", left)
	}

	root := t.TempDir()
	created = created[:0]
	before = rootTimes(t, root)
	opts.InRoot = true
	opts.BeforeOp = func(op probes.Op) {
		if op == probes.OpRead {
			ents, _ := os.ReadDir(root)
			for _, e := range ents {
				created = append(created, e.Name())
			}
		}
	}
	res = probes.Check(context.Background(), root, opts)
	if res.Err != nil || res.Mode != probes.ModeReadWriteRoot {
		t.Fatalf("probe in the root: %+v", res)
	}
	if len(created) != 1 || !probes.IsProbeFile(created[0], "h") {
		t.Fatalf("entries of the root mid-check: %q", created)
	}
	if ents, _ := os.ReadDir(root); len(ents) != 0 {
		t.Fatalf("left in the root: %v", ents)
	}
	if after := rootTimes(t, root); after == before {
		t.Fatal("a check in the root did not change the root: the test above cannot fail")
	}
}

// TestProbeDirectoryRefused: a probe directory that is a symlink (never
// followed), a regular file, writable by group or others, or owned by
// another user than the one the agent's files get is refused: the check
// is healthy, in mode dir-refused, with the read-only steps, and says
// why; nothing is made or left anywhere. With RequireWriteCheck the
// refusal is the failure permission_denied. A 0755 directory of the
// agent's user is accepted.
func TestProbeDirectoryRefused(t *testing.T) {
	t.Parallel()
	testutil.RequireRoot(t, "chown a directory to another user")
	cases := []struct {
		name  string
		plant func(t *testing.T, p, elsewhere string)
		why   string
	}{
		{"symlink to a directory", func(t *testing.T, p, elsewhere string) {
			if err := os.Symlink(elsewhere, p); err != nil {
				t.Fatal(err)
			}
		}, "is a symlink, not followed"},
		{"dangling symlink", func(t *testing.T, p, elsewhere string) {
			if err := os.Symlink(filepath.Join(elsewhere, "nothing"), p); err != nil {
				t.Fatal(err)
			}
		}, "is a symlink, not followed"},
		{"regular file", func(t *testing.T, p, _ string) {
			if err := os.WriteFile(p, nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}, "is not a directory"},
		{"world-writable", func(t *testing.T, p, _ string) { mkdirMode(t, p, 0o777) }, "has mode 0777, writable by group or others"},
		{"sticky and world-writable", func(t *testing.T, p, _ string) { mkdirMode(t, p, 0o1777) }, "has mode 01777, writable by group or others"},
		{"group-writable", func(t *testing.T, p, _ string) { mkdirMode(t, p, 0o770) }, "has mode 0770, writable by group or others"},
		{"another user's", func(t *testing.T, p, _ string) {
			mkdirMode(t, p, 0o700)
			if err := os.Chown(p, 4321, 4321); err != nil {
				t.Fatal(err)
			}
		}, "belongs to uid 4321, not to uid 0 that the agent's files get"},
	}
	roots := map[string]func(t *testing.T) string{
		"dir":     func(t *testing.T) string { return t.TempDir() },
		"faultfs": func(t *testing.T) string { return testutil.MountFaultFS(t).Mountpoint() },
	}
	for _, tc := range cases {
		for where, root := range roots {
			t.Run(where+"/"+tc.name, func(t *testing.T) {
				refused(t, root(t), tc.plant, tc.why)
			})
		}
	}
	t.Run("0755 of the agent's user", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		mkdirMode(t, filepath.Join(dir, probes.DirName), 0o755)
		if res := probes.Check(context.Background(), dir, probes.Options{Hostname: "h"}); res.Err != nil || res.Mode != probes.ModeReadWrite {
			t.Fatalf("0755 directory: %+v", res)
		}
	})
}

// refused plants a probe directory that must be refused in the mount
// root dir and checks that it is, and why.
func refused(t *testing.T, dir string, plant func(t *testing.T, p, elsewhere string), why string) {
	t.Helper()
	elsewhere := t.TempDir()
	p := filepath.Join(dir, probes.DirName)
	plant(t, p, elsewhere)
	before, _ := os.Lstat(p)
	res := probes.Check(context.Background(), dir, probes.Options{Hostname: "h"})
	if res.Err != nil || res.Mode != probes.ModeDirRefused || !errors.Is(res.DirRefused, probes.ErrProbeDirRefused) {
		t.Fatalf("refused directory: %+v", res)
	}
	if msg := res.DirRefused.Error(); !strings.Contains(msg, why) {
		t.Fatalf("refusal %q does not say %q", msg, why)
	}
	if got := opNames(res); got != "open,statfs,stat,readdir" {
		t.Fatalf("ops %s, want the read-only steps after the open", got)
	}
	after, err := os.Lstat(p)
	if err != nil || after.Mode() != before.Mode() {
		t.Fatalf("the refused %s was changed: %v, then %v (%v)", probes.DirName, before.Mode(), after, err)
	}
	if ents, _ := os.ReadDir(elsewhere); len(ents) != 0 {
		t.Fatalf("a symlink was followed: %v", ents)
	}
	if after.IsDir() {
		if ents, _ := os.ReadDir(p); len(ents) != 0 {
			t.Fatalf("left in the refused directory: %v", ents)
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("left in the root: %v", ents)
	}

	res = probes.Check(context.Background(), dir, probes.Options{Hostname: "h", RequireWriteCheck: true})
	if !errors.Is(res.Err, probes.ErrProbeDirRefused) || res.FailedOp != probes.OpWrite ||
		probes.Classify(res.Err) != probes.ReasonPermissionDenied || res.Mode != probes.ModeReadWrite {
		t.Fatalf("refused directory, write check required: %+v", res)
	}
}

// mkdirMode makes directory p with exactly mode (whatever the umask).
func mkdirMode(t *testing.T, p string, mode uint32) {
	t.Helper()
	if err := os.Mkdir(p, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := unix.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}

// TestProbeDirectoryNotCreated: a mount where the probe directory cannot
// be made falls back exactly as when the probe file could not be made in
// the root: EACCES or EPERM (root squash, an access point whose root the
// agent may not write) gives write-denied, EROFS read-only, on the fault
// filesystem; and a read-only tmpfs gives read-only.
func TestProbeDirectoryNotCreated(t *testing.T) {
	fs := testutil.MountFaultFS(t)
	for _, tc := range []struct {
		errno syscall.Errno
		mode  probes.Mode
	}{{syscall.EACCES, probes.ModeWriteDenied}, {syscall.EPERM, probes.ModeWriteDenied}, {syscall.EROFS, probes.ModeReadOnly}} {
		t.Run(tc.errno.Error(), func(t *testing.T) {
			fs.Set(faultfs.OpMkdir, faultfs.Fault{Errno: tc.errno})
			defer fs.Clear()
			res := probes.Check(context.Background(), fs.Mountpoint(), probes.Options{Hostname: "h"})
			if res.Err != nil || res.Mode != tc.mode {
				t.Fatalf("mkdir refused with %v: %+v, want healthy in %s", tc.errno, res, tc.mode)
			}
			if tc.mode == probes.ModeWriteDenied && !errors.Is(res.WriteDenied, tc.errno) {
				t.Fatalf("WriteDenied %v, want %v", res.WriteDenied, tc.errno)
			}
			if got := opNames(res); got != "open,statfs,stat,readdir" {
				t.Fatalf("ops %s", got)
			}
			if ents, _ := os.ReadDir(fs.Mountpoint()); len(ents) != 0 {
				t.Fatalf("left behind: %v", ents)
			}
			if tc.mode == probes.ModeWriteDenied {
				res = probes.Check(context.Background(), fs.Mountpoint(), probes.Options{Hostname: "h", RequireWriteCheck: true})
				if !errors.Is(res.Err, tc.errno) || probes.Classify(res.Err) != probes.ReasonPermissionDenied {
					t.Fatalf("mkdir refused, write check required: %+v", res)
				}
			}
		})
	}
	t.Run("ENOSPC", func(t *testing.T) {
		fs.Set(faultfs.OpMkdir, faultfs.Fault{Errno: syscall.ENOSPC})
		defer fs.Clear()
		res := probes.Check(context.Background(), fs.Mountpoint(), probes.Options{Hostname: "h"})
		if probes.Classify(res.Err) != probes.ReasonNoSpace || res.FailedOp != probes.OpWrite {
			t.Fatalf("mkdir without space: %+v", res)
		}
	})
	t.Run("read-only tmpfs", func(t *testing.T) {
		testutil.RequireRoot(t, "mount tmpfs")
		dir := t.TempDir()
		if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_RDONLY, "size=1m"); err != nil {
			t.Fatalf("mount read-only tmpfs: %v", err)
		}
		t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
		if res := probes.Check(context.Background(), dir, probes.Options{Hostname: "h"}); res.Err != nil || res.Mode != probes.ModeReadOnly {
			t.Fatalf("read-only tmpfs: %+v", res)
		}
	})
}

// TestProbeDirectoryRemoved: the probe directory removed between two
// checks is made again by the next one; removed while a check is about
// to create its probe file there (the create hung, the directory removed
// on the backing filesystem, the create answered ENOENT), the check
// looks it up again, makes it and passes: no false alarm either way.
func TestProbeDirectoryRemoved(t *testing.T) {
	testutil.RequireFUSE(t)
	backing := t.TempDir()
	fs, err := faultfs.Mount(t.TempDir(), backing, faultfs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = fs.Unmount() })
	mp := fs.Mountpoint()
	opts := probes.Options{Hostname: "h"}
	if res := probes.Check(context.Background(), mp, opts); res.Err != nil {
		t.Fatalf("first check: %+v", res)
	}
	if err := os.RemoveAll(filepath.Join(mp, probes.DirName)); err != nil {
		t.Fatal(err)
	}
	if res := probes.Check(context.Background(), mp, opts); res.Err != nil || res.Retried || res.Mode != probes.ModeReadWrite {
		t.Fatalf("check after the directory was removed: %+v", res)
	}
	if st, err := os.Stat(filepath.Join(mp, probes.DirName)); err != nil || !st.IsDir() {
		t.Fatalf("probe directory not made again: %v", err)
	}

	fs.Set(faultfs.OpCreate, faultfs.Fault{Hang: true, Times: 1})
	done := make(chan probes.Result, 1)
	go func() { done <- probes.Check(context.Background(), mp, opts) }()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := fs.WaitBlocked(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(backing, probes.DirName)); err != nil {
		t.Fatal(err)
	}
	fs.Release()
	res := <-done
	if res.Err != nil || !res.Retried || res.Mode != probes.ModeReadWrite {
		t.Fatalf("check whose directory was removed under its create: %+v", res)
	}
	if left := leftBehind(mp); len(left) != 0 {
		t.Fatalf("left behind: %q", left)
	}
}

// TestProbeDirectoryShared: agents of several nodes (and several on one
// node) check one volume at once, from a volume without the probe
// directory: every check passes (the mkdir races end in EEXIST, which is
// taken as found), each probe file is its own, and nothing is left.
func TestProbeDirectoryShared(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	const agents, checks = 8, 20
	var wg sync.WaitGroup
	errs := make(chan error, agents*checks)
	for i := 0; i < agents; i++ {
		o := newOwner(t, []string{"node-a", "node-b"}[i%2])
		wg.Go(func() {
			for range checks {
				if res := probes.Check(context.Background(), dir, probes.Options{Owner: o}); res.Err != nil || res.Retried || res.Mode != probes.ModeReadWrite {
					errs <- fmt.Errorf("check of %s: %+v", o.Node(), res)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if left := leftBehind(dir); len(left) != 0 {
		t.Fatalf("left behind: %q", left)
	}
}
