package probes_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/efs-health-agent/efs-health-agent/internal/testenv/faultfs"
	"github.com/efs-health-agent/efs-health-agent/internal/testenv/testutil"
	"github.com/efs-health-agent/efs-health-agent/probes"
)

func opNames(res probes.Result) string {
	var ops []string
	for _, o := range res.Ops {
		ops = append(ops, string(o.Op))
	}
	return strings.Join(ops, ",")
}

func TestReadOnlyMount(t *testing.T) {
	t.Parallel()
	testutil.RequireRoot(t, "mount tmpfs")
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_RDONLY, "size=1m"); err != nil {
		t.Fatalf("mount read-only tmpfs: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	res := probes.Check(context.Background(), dir, probes.Options{Hostname: "h"})
	if res.Err != nil || res.Mode != probes.ModeReadOnly || res.WriteDenied != nil {
		t.Fatalf("read-only mount: %+v", res)
	}
	if got := opNames(res); got != "open,statfs,stat,readdir" {
		t.Fatalf("ops %s", got)
	}
}

// TestWriteDenied is a root-squashed export (or an EFS file-system policy
// without ClientRootAccess): the mount serves its pods, but creating the
// probe file is refused with EACCES or EPERM. That is no outage: the
// check falls back to the read-only steps, healthy when the root
// answers, in a mode of its own. With RequireWriteCheck the refusal is
// the failure permission_denied, as before.
func TestWriteDenied(t *testing.T) {
	fs := testutil.MountFaultFS(t)
	for _, errno := range []syscall.Errno{syscall.EACCES, syscall.EPERM} {
		t.Run(errno.Error(), func(t *testing.T) {
			fs.Set(faultfs.OpCreate, faultfs.Fault{Errno: errno})
			defer fs.Clear()
			rec := &recorder{}
			res := probes.Check(context.Background(), fs.Mountpoint(), probes.Options{Hostname: "h", Log: &rec.OpLog})
			if res.Err != nil || res.Mode != probes.ModeWriteDenied || !errors.Is(res.WriteDenied, errno) {
				t.Fatalf("write denied: %+v", res)
			}
			if got := opNames(res); got != "open,statfs,stat,readdir" {
				t.Fatalf("ops %s, want the read-only steps after the open", got)
			}
			// The observer saw the refused create, then the read-only steps.
			want := "start open,end open false,start write,end write true,start statfs,end statfs false," +
				"start stat,end stat false,start readdir,end readdir false"
			if got := rec.events(t); got != want {
				t.Fatalf("events\n got %s\nwant %s", got, want)
			}

			res = probes.Check(context.Background(), fs.Mountpoint(), probes.Options{Hostname: "h", RequireWriteCheck: true})
			if !errors.Is(res.Err, errno) || res.FailedOp != probes.OpWrite || res.Mode != probes.ModeReadWrite ||
				probes.Classify(res.Err) != probes.ReasonPermissionDenied || res.WriteDenied != nil {
				t.Fatalf("write denied, write check required: %+v", res)
			}
		})
	}
	t.Run("root does not answer", func(t *testing.T) {
		// The fallback is healthy only when the root answers.
		fs.Set(faultfs.OpCreate, faultfs.Fault{Errno: syscall.EACCES})
		fs.Set(faultfs.OpStatfs, faultfs.Fault{Errno: syscall.EIO})
		defer fs.Clear()
		res := probes.Check(context.Background(), fs.Mountpoint(), probes.Options{Hostname: "h"})
		if res.Mode != probes.ModeWriteDenied || res.FailedOp != probes.OpStatfs || probes.Classify(res.Err) != probes.ReasonIOError {
			t.Fatalf("write denied on a root that fails statfs: %+v", res)
		}
	})
	for _, n := range leftBehind(fs.Mountpoint()) {
		t.Errorf("left behind: %s", n)
	}
}

// TestWriteDeniedSquashed is root squash as the kernel does it, without
// NFS: a root-owned 0755 mount root (a tmpfs), checked by an identity
// squashed to nobody. The check runs on a thread whose filesystem uid is
// 65534, which also drops the thread's capabilities to override file
// permissions (setfsuid(2)), so the create gets a real EACCES from the
// kernel while the root stays readable.
func TestWriteDeniedSquashed(t *testing.T) {
	t.Parallel()
	testutil.RequireRoot(t, "mount tmpfs and change the filesystem uid")
	base := t.TempDir()
	for _, d := range []string{filepath.Dir(base), base} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	dir := filepath.Join(base, "root")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=1m,mode=0755"); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	squashed := func(opts probes.Options) probes.Result {
		done := make(chan probes.Result)
		go func() {
			// The thread is never unlocked: it exits with the goroutine,
			// and its squashed identity with it.
			runtime.LockOSThread()
			if err := unix.Setfsuid(65534); err != nil {
				t.Errorf("setfsuid: %v", err)
			}
			if got, _ := unix.SetfsuidRetUid(-1); got != 65534 {
				t.Errorf("filesystem uid %d, want 65534", got)
			}
			done <- probes.Check(context.Background(), dir, opts)
		}()
		return <-done
	}
	res := squashed(probes.Options{Hostname: "h"})
	if res.Err != nil || res.Mode != probes.ModeWriteDenied || !errors.Is(res.WriteDenied, unix.EACCES) {
		t.Fatalf("squashed: %+v", res)
	}
	if got := opNames(res); got != "open,statfs,stat,readdir" {
		t.Fatalf("ops %s", got)
	}
	res = squashed(probes.Options{Hostname: "h", RequireWriteCheck: true})
	if probes.Classify(res.Err) != probes.ReasonPermissionDenied || res.FailedOp != probes.OpWrite {
		t.Fatalf("squashed, write check required: %+v", res)
	}
	// Unsquashed, the same root is checked read-write.
	if res := probes.Check(context.Background(), dir, probes.Options{Hostname: "h"}); res.Err != nil || res.Mode != probes.ModeReadWrite {
		t.Fatalf("as root: %+v", res)
	}
}

// TestOneDescriptor: the probe file is opened once. Its write and read go
// through the create's own descriptor, the read bypassing the page cache
// (it reaches the filesystem), so no second open is needed; on NFS that
// saves an OPEN and a CLOSE per check.
func TestOneDescriptor(t *testing.T) {
	fs := testutil.MountFaultFS(t)
	opens, creates, reads, writes := fs.Calls(faultfs.OpOpen), fs.Calls(faultfs.OpCreate), fs.Calls(faultfs.OpRead), fs.Calls(faultfs.OpWrite)
	res := probes.Check(context.Background(), fs.Mountpoint(), probes.Options{Hostname: "h"})
	if res.Err != nil || res.Mode != probes.ModeReadWrite {
		t.Fatalf("check: %+v", res)
	}
	if n := fs.Calls(faultfs.OpOpen) - opens; n != 0 {
		t.Errorf("%d opens of the probe file after its create, want 0", n)
	}
	if n := fs.Calls(faultfs.OpCreate) - creates; n != 1 {
		t.Errorf("%d creates, want 1", n)
	}
	if n := fs.Calls(faultfs.OpWrite) - writes; n != 1 {
		t.Errorf("%d writes reached the filesystem, want 1", n)
	}
	if n := fs.Calls(faultfs.OpRead) - reads; n != 1 {
		t.Errorf("%d reads reached the filesystem, want 1: the read back must not come from the page cache", n)
	}
	if ents := leftBehind(fs.Mountpoint()); len(ents) != 0 {
		t.Errorf("left behind: %v", ents)
	}
}

// TestBufferedFallback: on a filesystem without direct I/O (ramfs) the
// write is buffered and fsynced and the read reopens the file, as before.
func TestBufferedFallback(t *testing.T) {
	t.Parallel()
	testutil.RequireRoot(t, "mount ramfs")
	dir := t.TempDir()
	if err := unix.Mount("ramfs", dir, "ramfs", 0, ""); err != nil {
		t.Fatalf("mount ramfs: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	f, err := os.Create(dir + "/direct")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := unix.FcntlInt(f.Fd(), unix.F_SETFL, unix.O_DIRECT); !errors.Is(err, unix.EINVAL) {
		t.Skipf("ramfs accepts O_DIRECT here (%v): no filesystem to test the buffered path on", err)
	}
	f.Close()
	os.Remove(dir + "/direct")
	res := probes.Check(context.Background(), dir, probes.Options{Hostname: "h"})
	if res.Err != nil || res.Mode != probes.ModeReadWrite {
		t.Fatalf("ramfs: %+v", res)
	}
	if ents := leftBehind(dir); len(ents) != 0 {
		t.Errorf("left behind: %v", ents)
	}
}
