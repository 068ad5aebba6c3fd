package probes_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/efs-health-agent/efs-health-agent/probes"
)

// TestOps: the pipeline names every operation once, in the order a check
// runs them.
func TestOps(t *testing.T) {
	t.Parallel()
	want := []probes.Op{probes.OpMountTable, probes.OpTunnel, probes.OpOpen,
		probes.OpWrite, probes.OpRead, probes.OpDelete, probes.OpStatfs, probes.OpStat, probes.OpReaddir}
	if got := probes.Ops(); !slices.Equal(got, want) {
		t.Fatalf("Ops() = %v, want %v", got, want)
	}
	steps := probes.Steps()
	for i, s := range steps {
		if s.Op != want[i] {
			t.Fatalf("step %d is %s, want %s", i, s.Op, want[i])
		}
		if i > 0 && s.Stage < steps[i-1].Stage {
			t.Fatalf("step %s runs in stage %d, before the stage of the step ahead of it", s.Op, s.Stage)
		}
		if probes.StepIndex(s.Op) != i || probes.StepOp(i) != s.Op {
			t.Fatalf("StepIndex(%s) = %d, StepOp(%d) = %s; want %d and %s", s.Op, probes.StepIndex(s.Op), i, probes.StepOp(i), i, s.Op)
		}
	}
	if probes.NumSteps != len(steps) {
		t.Fatalf("NumSteps = %d, want %d", probes.NumSteps, len(steps))
	}
	if i := probes.StepIndex("no such op"); i != -1 {
		t.Fatalf("StepIndex of an unknown op = %d, want -1", i)
	}
}

type fakeTable map[string][2]string

func (f fakeTable) Lookup(p string) (string, string, bool) {
	e, ok := f[p]
	return e[0], e[1], ok
}

type fakeTunnel struct{ err error }

func (f fakeTunnel) DialTunnel(context.Context, string, time.Duration) error { return f.err }

// TestPreflight: the mount table and tunnel steps run first, reach the
// observer in order, and appear in the result only when they fail, in
// which case nothing on the mount is touched.
func TestPreflight(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	table := fakeTable{dir: {"nfs4", "fs-1:/"}}
	opts := func(rec *recorder, tun error) probes.Options {
		return probes.Options{Hostname: "h", Log: &rec.OpLog, MountTable: table, FSType: "nfs4", Source: "fs-1:/",
			TunnelAddr: "127.0.0.1:1", Tunnel: fakeTunnel{tun}}
	}
	rec := &recorder{}
	res := probes.Check(context.Background(), dir, opts(rec, nil))
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	want := "start mounttable,end mounttable false,start tunnel,end tunnel false,start open,end open false," +
		"start write,end write false,start read,end read false,start delete,end delete false"
	if got := rec.events(t); got != want {
		t.Fatalf("events\n got %s\nwant %s", got, want)
	}
	if res.Ops[0].Op != probes.OpOpen {
		t.Fatalf("preflight steps in the result of a healthy check: %+v", res.Ops)
	}

	// A tunnel that cannot be reached fails nothing by itself: the I/O
	// runs, and a healthy check says only that the tunnel was not reached.
	rec = &recorder{}
	res = probes.Check(context.Background(), dir, opts(rec, probes.ErrTunnelDown))
	if res.Err != nil || res.Mode != probes.ModeReadWrite || !errors.Is(res.TunnelErr, probes.ErrTunnelDown) ||
		!strings.Contains(res.TunnelErr.Error(), "tunnel 127.0.0.1:1") || res.Ops[0].Op != probes.OpOpen {
		t.Fatalf("tunnel down, I/O fine: %+v", res)
	}
	if got := rec.events(t); got != "start mounttable,end mounttable false,start tunnel,end tunnel true,"+
		"start open,end open false,start write,end write false,start read,end read false,start delete,end delete false" {
		t.Fatalf("events after a failed tunnel: %s", got)
	}
	if ents := leftBehind(dir); len(ents) != 0 {
		t.Fatalf("files: %v", ents)
	}

	o := opts(&recorder{}, nil)
	o.FSType = "ext4"
	res = probes.Check(context.Background(), dir, o)
	var oe *probes.OpError
	if res.FailedOp != probes.OpMountTable || !errors.Is(res.Err, probes.ErrNotMounted) || !errors.As(res.Err, &oe) ||
		len(res.Ops) != 1 || res.Mode != probes.ModeReadWrite {
		t.Fatalf("replaced mount: %+v", res)
	}
	if ents := leftBehind(dir); len(ents) != 0 {
		t.Fatalf("files: %v", ents)
	}
}

// TestCheckReadOnly: the read-only variant of the pipeline.
func TestCheckReadOnly(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	res := probes.CheckReadOnly(context.Background(), t.TempDir(), probes.Options{Hostname: "h", Log: &rec.OpLog})
	if res.Err != nil || res.Mode != probes.ModeReadOnly {
		t.Fatalf("%+v", res)
	}
	want := "start open,end open false,start statfs,end statfs false,start stat,end stat false,start readdir,end readdir false"
	if got := rec.events(t); got != want {
		t.Fatalf("events\n got %s\nwant %s", got, want)
	}
}

// TestOpsBound: the longest path a check can take (preflight, open, the
// read-write steps twice for a lost probe file) fits in NumSteps, the
// bound of an OpLog and of /debug/checks; the read-only fallback
// (preflight, open, a refused write, the read-only steps) fits as well.
func TestOpsBound(t *testing.T) {
	t.Parallel()
	n := map[probes.Stage]int{}
	for _, s := range probes.Steps() {
		n[s.Stage]++
	}
	retry := n[probes.StagePreflight] + n[probes.StageRoot] + 2*n[probes.StageReadWrite]
	fallback := n[probes.StagePreflight] + n[probes.StageRoot] + 1 + n[probes.StageReadOnly]
	if retry > probes.NumSteps || fallback > probes.NumSteps {
		t.Fatalf("a check runs up to %d operations (retry) or %d (read-only fallback), NumSteps is %d", retry, fallback, probes.NumSteps)
	}
}

// TestOpLogFreeze: at a deadline the operation in progress is recorded
// as ending then, with the deadline's error, and nothing the check does
// afterwards is recorded.
func TestOpLogFreeze(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	start := time.Unix(1000, 0)
	var log probes.OpLog
	log.Reset(start)
	if op, at, open := log.Current(); op != probes.OpOpen || !at.Equal(start) || open {
		t.Fatalf("before the first operation: %s %v %v", op, at, open)
	}
	stuck := make(chan struct{})
	release := make(chan struct{})
	done := make(chan probes.Result)
	go func() {
		done <- probes.Check(context.Background(), dir, probes.Options{Hostname: "h", Log: &log,
			BeforeOp: func(op probes.Op) {
				if op == probes.OpRead {
					close(stuck)
					<-release
				}
			}})
	}()
	<-stuck
	// Between write and read: the last operation started is write.
	if op, _, open := log.Current(); op != probes.OpWrite || open {
		t.Fatalf("held before read: current %s open %v", op, open)
	}
	cur, ops, open := log.Freeze(time.Now())
	if cur != probes.OpWrite || open || len(ops) != 2 || ops[0].Op != probes.OpOpen || ops[1].Op != probes.OpWrite {
		t.Fatalf("frozen between operations: %s %v %+v", cur, open, ops)
	}
	close(release)
	if res := <-done; res.Err != nil || len(res.Ops) != 4 {
		t.Fatalf("check: %+v", res)
	}
	if got := log.Ops(); len(got) != 2 {
		t.Fatalf("operations recorded after Freeze: %+v", got)
	}
}
