package probes_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/efs-health-agent/efs-health-agent/probes"
)

// recorder is a check's OpLog (Options.Log).
type recorder struct{ probes.OpLog }

// events renders the log as the start and end of each operation, with
// whether it failed, and fails the test if the operations overlap or run
// backwards.
func (r *recorder) events(t *testing.T) string {
	t.Helper()
	var ev []string
	var last time.Time
	for _, o := range r.Ops() {
		if o.Start.IsZero() || o.Start.Before(last) || o.Duration < 0 {
			t.Fatalf("operation %s starts at %v after %v, lasts %v", o.Op, o.Start, last, o.Duration)
		}
		last = o.Start.Add(o.Duration)
		ev = append(ev, "start "+string(o.Op), fmt.Sprintf("end %s %v", o.Op, o.Err != nil))
	}
	return strings.Join(ev, ",")
}

func TestReadWriteCheck(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	rec := &recorder{}
	res := probes.Check(context.Background(), dir, probes.Options{Hostname: "node-a", Log: &rec.OpLog})
	if res.Err != nil || res.Mode != probes.ModeReadWrite {
		t.Fatalf("check: %+v", res)
	}
	want := "start open,end open false,start write,end write false,start read,end read false,start delete,end delete false"
	if got := rec.events(t); got != want {
		t.Fatalf("events\n got %s\nwant %s", got, want)
	}
	if res.Duration() <= 0 {
		t.Fatal("no duration")
	}
	ents := leftBehind(dir)
	if len(ents) != 0 {
		t.Fatalf("left behind: %v", ents)
	}
}

func TestMissingAndSymlinkedRoot(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	real := filepath.Join(base, "real")
	if err := os.Mkdir(real, 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(base, "link")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, path string
		errno      syscall.Errno
	}{
		{"missing", filepath.Join(base, "nope"), syscall.ENOENT},
		{"root replaced by a symlink", link, syscall.ENOTDIR}, // O_DIRECTORY|O_NOFOLLOW on a symlink
	} {
		res := probes.Check(context.Background(), tc.path, probes.Options{Hostname: "h"})
		if !errors.Is(res.Err, tc.errno) || res.FailedOp != probes.OpOpen {
			t.Errorf("%s: err %v op %q, want %v in open", tc.name, res.Err, res.FailedOp, tc.errno)
		}
		if probes.Classify(res.Err) != probes.ReasonNotMounted {
			t.Errorf("%s: reason %s", tc.name, probes.Classify(res.Err))
		}
	}
	if ents := leftBehind(real); len(ents) != 0 {
		t.Fatalf("wrote through the symlink: %v", ents)
	}
}

func TestClassify(t *testing.T) {
	t.Parallel()
	wrap := func(e error) error { return &probes.OpError{Op: probes.OpWrite, Err: fmt.Errorf("create: %w", e)} }
	for _, tc := range []struct {
		err  error
		want probes.Reason
	}{
		{nil, probes.ReasonNone},
		{wrap(syscall.EIO), probes.ReasonIOError},
		{wrap(syscall.ESTALE), probes.ReasonStaleFileHandle},
		{wrap(syscall.EACCES), probes.ReasonPermissionDenied},
		{wrap(syscall.EPERM), probes.ReasonPermissionDenied},
		{wrap(syscall.EROFS), probes.ReasonReadOnly},
		{wrap(syscall.ENOSPC), probes.ReasonNoSpace},
		{wrap(syscall.EDQUOT), probes.ReasonNoSpace},
		{wrap(syscall.ENOENT), probes.ReasonNotMounted},
		{wrap(fmt.Errorf("%w: %w", probes.ErrProbeFileLost, syscall.ENOENT)), probes.ReasonProbeFileLost},
		{wrap(fmt.Errorf("%w: %w", probes.ErrProbeFileLost, syscall.ESTALE)), probes.ReasonProbeFileLost},
		{wrap(probes.ErrDataMismatch), probes.ReasonDataMismatch},
		{wrap(errors.New("odd")), probes.ReasonIOError},
	} {
		if got := probes.Classify(tc.err); got != tc.want {
			t.Errorf("Classify(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
	for _, r := range probes.Reasons {
		if probes.Advice(r) == "no action needed" {
			t.Errorf("no advice for %s", r)
		}
	}
}

// TestTransportCheck: the transport check opens the root and calls statfs,
// nothing else: no probe file, no probe directory, no mode (it proves
// nothing about writing); with Superblock it reads the root's device
// number, the same as stat's.
func TestTransportCheck(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	rec := &recorder{}
	res := probes.CheckTransport(context.Background(), dir, probes.Options{Hostname: "node-a", Log: &rec.OpLog, Superblock: true})
	if res.Err != nil || res.Mode != "" || !res.Transport || res.ModeKnown() {
		t.Fatalf("transport check: %+v", res)
	}
	if got, want := rec.events(t), "start open,end open false,start statfs,end statfs false"; got != want {
		t.Fatalf("events\n got %s\nwant %s", got, want)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		t.Fatal(err)
	}
	if !res.DevKnown || res.Dev != uint64(st.Dev) {
		t.Fatalf("device %d (known %v), want %d", res.Dev, res.DevKnown, st.Dev)
	}
	if ents, err := os.ReadDir(dir); err != nil || len(ents) != 0 {
		t.Fatalf("the transport check left %v (%v)", ents, err)
	}
	// A root that is gone fails in open, before any statfs.
	res = probes.CheckTransport(context.Background(), filepath.Join(dir, "gone"), probes.Options{Hostname: "node-a"})
	if res.Err == nil || res.FailedOp != probes.OpOpen || res.Mode != "" {
		t.Fatalf("missing root: %+v", res)
	}
}
