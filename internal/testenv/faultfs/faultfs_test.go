//go:build linux

package faultfs_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/efs-health-agent/efs-health-agent/internal/testenv/faultfs"
	"github.com/efs-health-agent/efs-health-agent/internal/testenv/testutil"
)

func TestPassthrough(t *testing.T) {
	f := testutil.MountFaultFS(t)
	p := filepath.Join(f.Mountpoint(), "a")
	if err := os.WriteFile(p, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(p); err != nil || string(b) != "hello" {
		t.Fatalf("read %q %v", b, err)
	}
	ents, err := os.ReadDir(f.Mountpoint())
	if err != nil || len(ents) != 1 {
		t.Fatalf("readdir %v %v", ents, err)
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(f.Mountpoint(), &st); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	if f.Calls(faultfs.OpCreate) == 0 || f.Calls(faultfs.OpWrite) == 0 || f.Calls(faultfs.OpUnlink) == 0 {
		t.Fatal("calls not counted")
	}
}

func TestErrnoFaults(t *testing.T) {
	f := testutil.MountFaultFS(t)
	p := filepath.Join(f.Mountpoint(), "x")
	if err := os.WriteFile(p, []byte("data"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		op    faultfs.Op
		errno syscall.Errno
		do    func() error
	}{
		{faultfs.OpCreate, syscall.EROFS, func() error { return os.WriteFile(filepath.Join(f.Mountpoint(), "new"), nil, 0o600) }},
		{faultfs.OpWrite, syscall.ENOSPC, func() error { return os.WriteFile(p, []byte("more"), 0o600) }},
		{faultfs.OpRead, syscall.EIO, func() error { _, err := os.ReadFile(p); return err }},
		{faultfs.OpOpen, syscall.ESTALE, func() error { _, err := os.ReadFile(p); return err }},
		{faultfs.OpUnlink, syscall.EACCES, func() error { return os.Remove(p) }},
		{faultfs.OpStatfs, syscall.EIO, func() error { var st syscall.Statfs_t; return syscall.Statfs(f.Mountpoint(), &st) }},
	}
	for _, tc := range cases {
		t.Run(string(tc.op), func(t *testing.T) {
			f.Set(tc.op, faultfs.Fault{Errno: tc.errno})
			if err := tc.do(); !errors.Is(err, tc.errno) {
				t.Fatalf("%s: err %v, want %v", tc.op, err, tc.errno)
			}
			f.Clear()
			if err := tc.do(); err != nil && tc.op != faultfs.OpUnlink {
				t.Fatalf("after Clear: %v", err)
			}
		})
	}
}

func TestTimesAndDelay(t *testing.T) {
	f := testutil.MountFaultFS(t)
	p := filepath.Join(f.Mountpoint(), "x")
	f.Set(faultfs.OpCreate, faultfs.Fault{Errno: syscall.EIO, Times: 1})
	if err := os.WriteFile(p, nil, 0o600); !errors.Is(err, syscall.EIO) {
		t.Fatalf("first create: %v", err)
	}
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatalf("second create (fault used up): %v", err)
	}
	if err := os.WriteFile(p, []byte("some data"), 0o600); err != nil {
		t.Fatal(err)
	}
	f.Set(faultfs.OpRead, faultfs.Fault{Delay: 100 * time.Millisecond})
	start := time.Now()
	if _, err := os.ReadFile(p); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Fatalf("delayed read took %v", d)
	}
}

func TestHangUntilRelease(t *testing.T) {
	f := testutil.MountFaultFS(t)
	p := filepath.Join(f.Mountpoint(), "x")
	f.Set(faultfs.OpCreate, faultfs.Fault{Hang: true})
	done := make(chan error, 1)
	go func() { done <- os.WriteFile(p, []byte("x"), 0o600) }()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := f.WaitBlocked(ctx, 1); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		t.Fatalf("hung create returned: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	// Release lets the hung request proceed; the fault stays for the next.
	f.Release()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("after release: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("still hung after Release")
	}
	go func() { done <- os.WriteFile(p+"2", []byte("x"), 0o600) }()
	if err := f.WaitBlocked(ctx, 1); err != nil {
		t.Fatal(err)
	}
	f.Clear()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("after Clear: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("still hung after Clear")
	}
	if f.Blocked() != 0 {
		t.Fatalf("Blocked = %d", f.Blocked())
	}
}

// TestHangHonoursKill: a process blocked on a hung operation can still be
// killed, like one blocked on an NFS hard mount.
func TestHangHonoursKill(t *testing.T) {
	f := testutil.MountFaultFS(t)
	p := filepath.Join(f.Mountpoint(), "x")
	if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	f.Set(faultfs.OpRead, faultfs.Fault{Hang: true})
	cmd := exec.Command("cat", p)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := f.WaitBlocked(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		t.Fatal("killed process is still stuck in the kernel")
	}
	// The kernel may have readahead requests of its own hung too; those
	// belong to no process and wait for a release, as on NFS.
	f.Clear()
	if err := f.WaitBlockedZero(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestUnmountWhileHung(t *testing.T) {
	testutil.RequireFUSE(t)
	f, err := faultfs.Mount(t.TempDir(), t.TempDir(), faultfs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	f.Set(faultfs.OpAll, faultfs.Fault{Hang: true})
	done := make(chan error, 1)
	go func() { _, err := os.Stat(filepath.Join(f.Mountpoint(), "x")); done <- err }()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := f.WaitBlocked(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if err := f.Unmount(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("request still hung after Unmount")
	}
	b, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(b), " "+f.Mountpoint()+" ") {
		t.Fatal("still mounted")
	}
}

// TestReaddirFault: a readdir fault applies to each listing of a
// directory and not to an O_PATH open of it; Calls(OpReaddir) counts
// listings.
func TestReaddirFault(t *testing.T) {
	f := testutil.MountFaultFS(t)
	for _, n := range []string{"a", "b", "c"} {
		if err := os.WriteFile(filepath.Join(f.Mountpoint(), n), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	f.Set(faultfs.OpReaddir, faultfs.Fault{Errno: syscall.EIO})
	fd, err := unix.Open(f.Mountpoint(), unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatalf("an O_PATH open must not apply a readdir fault: %v", err)
	}
	unix.Close(fd)
	if _, err := os.ReadDir(f.Mountpoint()); !errors.Is(err, syscall.EIO) {
		t.Fatalf("readdir: %v, want EIO", err)
	}
	f.Clear()
	n := f.Calls(faultfs.OpReaddir)
	names, err := os.ReadDir(f.Mountpoint())
	if err != nil || len(names) != 3 {
		t.Fatalf("after Clear: %v %v", names, err)
	}
	if got := f.Calls(faultfs.OpReaddir) - n; got != 1 {
		t.Fatalf("one listing counted as %d", got)
	}
}

// TestGetdentsFault: OpGetdents applies to each batch of a listing (one
// FUSE READDIR each), not to opening the directory: a listing of a small
// directory is one batch of names and one empty batch at its end.
func TestGetdentsFault(t *testing.T) {
	f := testutil.MountFaultFS(t)
	for _, n := range []string{"a", "b", "c"} {
		if err := os.WriteFile(filepath.Join(f.Mountpoint(), n), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	f.Set(faultfs.OpGetdents, faultfs.Fault{Errno: syscall.EIO})
	d, err := os.Open(f.Mountpoint())
	if err != nil {
		t.Fatalf("opening a directory must not apply a getdents fault: %v", err)
	}
	if _, err := d.Readdirnames(-1); !errors.Is(err, syscall.EIO) {
		t.Fatalf("getdents: %v, want EIO", err)
	}
	d.Close()
	f.Clear()
	n := f.Calls(faultfs.OpGetdents)
	names, err := os.ReadDir(f.Mountpoint())
	if err != nil || len(names) != 3 {
		t.Fatalf("after Clear: %v %v", names, err)
	}
	if got := f.Calls(faultfs.OpGetdents) - n; got != 2 {
		t.Fatalf("a listing of 3 names counted as %d batches, want 2", got)
	}
}
