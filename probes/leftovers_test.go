package probes_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/efs-health-agent/efs-health-agent/internal/testenv/faultfs"
	"github.com/efs-health-agent/efs-health-agent/internal/testenv/testutil"
	"github.com/efs-health-agent/efs-health-agent/probes"
)

func plant(t *testing.T, dir, name string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
}

func exists(dir, name string) bool {
	_, err := os.Lstat(filepath.Join(dir, name))
	return err == nil
}

// TestSweepLeftovers: one listing removes old leftovers of other instances
// of this node, reports young ones for a later look by name, and never
// touches this instance's files, other nodes' files, symlinks or FIFOs.
func TestSweepLeftovers(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	me := newOwner(t, "node-a")
	earlier := newOwner(t, "node-a")
	mine := must(me.NewFileName())
	old := must(earlier.NewFileName())
	legacy := probes.HostPrefix("node-a") + "0123456789abcdef.tmp"
	otherNode := must(newOwner(t, "node-b").NewFileName())
	for _, n := range []string{mine, old, legacy, otherNode} {
		plant(t, dir, n)
	}
	target := filepath.Join(t.TempDir(), "precious")
	plant(t, filepath.Dir(target), "precious")
	link := must(earlier.NewFileName())
	if err := os.Symlink(target, filepath.Join(dir, link)); err != nil {
		t.Fatal(err)
	}
	fifo := must(earlier.NewFileName())
	if err := syscall.Mkfifo(filepath.Join(dir, fifo), 0o600); err != nil {
		t.Fatal(err)
	}

	// Everything is young: nothing is removed, the leftovers are noted.
	opts := probes.SweepOptions{MinAge: time.Hour, MaxEntries: 1000, MaxYoung: 10}
	res, err := probes.SweepLeftovers(dir, me, opts)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(res.Young)
	want := []string{old, legacy}
	slices.Sort(want)
	if len(res.Removed) != 0 || !slices.Equal(res.Young, want) || res.Wait <= 0 || res.Wait > time.Hour {
		t.Fatalf("young sweep: %+v", res)
	}
	if res.Listed != 6 || res.Ref.Server.IsZero() {
		t.Fatalf("listed %d, ref %v", res.Listed, res.Ref)
	}

	// By name, once old enough (here: any age).
	opts.MinAge = time.Nanosecond
	res, err = probes.RemoveLeftovers(dir, me, append(res.Young, otherNode, link, fifo), opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Removed) != 2 || exists(dir, old) || exists(dir, legacy) {
		t.Fatalf("old leftovers not removed: %+v", res)
	}
	for _, keep := range []string{mine, otherNode, link, fifo} {
		if !exists(dir, keep) {
			t.Errorf("%s must not be touched", keep)
		}
	}
	if b, err := os.ReadFile(target); err != nil || string(b) != "x" {
		t.Errorf("symlink target changed: %q %v", b, err)
	}

	// This instance's own file is removed by name at any age (its check
	// has returned), never by the listing.
	if res, _ := probes.SweepLeftovers(dir, me, opts); len(res.Removed) != 0 {
		t.Fatalf("sweep removed %v", res.Removed)
	}
	opts.MinAge = time.Hour
	if res, _ := probes.RemoveLeftovers(dir, me, []string{mine}, opts); len(res.Removed) != 1 || exists(dir, mine) {
		t.Fatalf("own leftover not removed: %+v", res)
	}
}

// TestSweepBounds: the listing stops at its entry bound.
func TestSweepBounds(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for i := 0; i < 50; i++ {
		plant(t, dir, "f"+strings.Repeat("x", i))
	}
	res, err := probes.SweepLeftovers(dir, newOwner(t, "n"), probes.SweepOptions{MinAge: time.Hour, MaxEntries: 10})
	if err != nil || res.Listed != 10 || !res.Truncated {
		t.Fatalf("bounded sweep: %+v %v", res, err)
	}
}

func TestLeftoverAge(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ timeout, want time.Duration }{
		{5 * time.Second, probes.MinLeftoverAge},
		{time.Minute, 2 * time.Minute},
		{time.Duration(1<<63 - 1), time.Duration(1<<63 - 1)},
	} {
		if got := probes.LeftoverAge(tc.timeout); got != tc.want {
			t.Errorf("LeftoverAge(%v) = %v, want %v", tc.timeout, got, tc.want)
		}
	}
}

// TestProbeFileVanishes: the check's own probe file removed by something
// else (ENOENT on the read, as NFS gives ESTALE for a file removed by
// another client) is not an outage: the check runs again
// at once with a fresh name. Only a file that vanishes again fails, with
// probe_file_lost, never not_mounted.
func TestProbeFileVanishes(t *testing.T) {
	fs := testutil.MountFaultFS(t)
	o := newOwner(t, "node-a")
	for _, tc := range []struct {
		name  string
		times int
		want  probes.Reason
	}{
		{"once", 1, probes.ReasonNone},
		{"again", 0, probes.ReasonProbeFileLost},
	} {
		t.Run(tc.name, func(t *testing.T) {
			creates := fs.Calls(faultfs.OpCreate)
			fs.Set(faultfs.OpRead, faultfs.Fault{Errno: syscall.ENOENT, Times: tc.times})
			defer fs.Clear()
			res := probes.Check(context.Background(), fs.Mountpoint(), probes.Options{Owner: o})
			if got := probes.Classify(res.Err); got != tc.want || !res.Retried {
				t.Fatalf("reason %q (err %v, retried %v), want %q after a retry", got, res.Err, res.Retried, tc.want)
			}
			if n := fs.Calls(faultfs.OpCreate) - creates; n != 2 {
				t.Fatalf("%d probe files created, want 2", n)
			}
			if tc.want != probes.ReasonNone && res.FailedOp != probes.OpRead {
				t.Fatalf("failed in %s, want read", res.FailedOp)
			}
		})
	}
	fs.Clear()
	// Nothing is left behind.
	for _, n := range leftBehind(fs.Mountpoint()) {
		t.Errorf("left behind: %s", n)
	}
}

// TestInterruptedCalls: a create or unlink that a signal interrupts (EINTR:
// a FUSE or NFS request cut short by the Go runtime's preemption signal)
// is retried, not reported: the mount is healthy and nothing is left
// behind.
func TestInterruptedCalls(t *testing.T) {
	fs := testutil.MountFaultFS(t)
	o := newOwner(t, "node-a")
	for _, op := range []faultfs.Op{faultfs.OpCreate, faultfs.OpUnlink, faultfs.OpFsync} {
		t.Run(string(op), func(t *testing.T) {
			fs.Set(op, faultfs.Fault{Errno: syscall.EINTR, Times: 1})
			defer fs.Clear()
			res := probes.Check(context.Background(), fs.Mountpoint(), probes.Options{Owner: o})
			if res.Err != nil {
				t.Fatalf("an interrupted %s failed the check: %v", op, res.Err)
			}
			for _, n := range leftBehind(fs.Mountpoint()) {
				t.Errorf("left behind: %s", n)
			}
		})
	}
}
