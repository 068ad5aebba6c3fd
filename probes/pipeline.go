package probes

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
)

// Stage groups the steps of a check.
type Stage int

// Stages of a check, in the order they run.
const (
	// StagePreflight steps do no I/O on the mount. A preflight step is
	// in Result.Ops only when it fails: the response time of a check is
	// its I/O on the mount.
	StagePreflight Stage = iota
	// StageRoot steps open the mount root.
	StageRoot
	// StageReadWrite steps write, read back and delete the probe file.
	StageReadWrite
	// StageReadOnly steps run instead of StageReadWrite on a read-only
	// mount, and after StageReadWrite when the create of the probe file
	// was refused (EROFS; EACCES/EPERM unless RequireWriteCheck).
	StageReadOnly
)

// Step is one named, timed operation of a check.
type Step struct {
	// Op names the step in Result.Ops, in the OpLog, in metrics and
	// in /debug/checks.
	Op Op
	// Stage is the group the step runs in.
	Stage Stage
	// Cleanup steps run even after an earlier step of their stage failed
	// or the check was cancelled (when their condition holds); other
	// steps run only while the check has not failed and ctx is not done.
	Cleanup bool
	// Advisory steps never fail a check on their own: their failure is
	// kept (Result.TunnelErr) to explain a later failure or a hang, and
	// the check goes on.
	Advisory bool

	when func(*run) bool  // nil: always
	do   func(*run) error // the operation; its error is wrapped in OpError
}

// steps is the check, in order. Adding a step is one row here and its
// method on run (in io_linux.go for I/O on the mount, with a stub in
// io_other.go).
var steps = [...]Step{
	{Op: OpMountTable, Stage: StagePreflight, when: (*run).hasMountTable, do: (*run).mountTable},
	{Op: OpTunnel, Stage: StagePreflight, Advisory: true, when: (*run).hasTunnel, do: (*run).tunnel},
	{Op: OpOpen, Stage: StageRoot, do: (*run).open},
	{Op: OpWrite, Stage: StageReadWrite, do: (*run).write},
	{Op: OpRead, Stage: StageReadWrite, do: (*run).read},
	{Op: OpDelete, Stage: StageReadWrite, Cleanup: true, when: (*run).hasProbeFile, do: (*run).delete},
	// statfs is the read-only check's round trip to the server (it is
	// never cached). A read-write check needs none: its write and read
	// reach the server, and a read-only mount refuses the create with
	// EROFS before anything is written.
	{Op: OpStatfs, Stage: StageReadOnly, do: (*run).statfs},
	{Op: OpStat, Stage: StageReadOnly, do: (*run).stat},
	{Op: OpReaddir, Stage: StageReadOnly, do: (*run).readdir},
}

// Steps returns the steps of a check in the order they run. The slice is
// the caller's.
func Steps() []Step { return slices.Clone(steps[:]) }

// Ops returns the operations of every step, in the order they run: every
// Op a check reports.
func Ops() []Op {
	ops := make([]Op, len(steps))
	for i := range steps {
		ops[i] = steps[i].Op
	}
	return ops
}

// NumSteps is the number of steps of a check, and the bound of the
// operations one check runs (Result.Ops, an OpLog, /debug/checks): the
// longest path is the preflight steps, open, and the read-write steps
// twice (a probe file lost mid-check is tried once more), which is as
// many; a check that falls back to the read-only steps runs fewer.
// TestOpsBound holds that bound; the declarations below hold NumSteps
// equal to len(steps) (it is spelled out so that OpLog can size its
// array by it).
const NumSteps = 9

var (
	_ [NumSteps - len(steps)]struct{}
	_ [len(steps) - NumSteps]struct{}
)

// StepIndex returns the position of op's step in Steps (and Ops), or -1
// when no step has that operation.
func StepIndex(op Op) int {
	for i := range steps {
		if steps[i].Op == op {
			return i
		}
	}
	return -1
}

// StepOp returns the operation of the step at position i of Steps.
func StepOp(i int) Op { return steps[i].Op }

// run is one check in progress.
type run struct {
	ctx  context.Context
	root string
	opts Options
	res  Result
	// refused is set by write when the filesystem refused to create the
	// probe file with EROFS.
	refused bool
	// denied is set by write when creating the probe file was refused
	// with EACCES/EPERM and Options.RequireWriteCheck is off.
	denied bool
	// dirRefused is set by write when DirName was refused and
	// Options.RequireWriteCheck is off.
	dirRefused bool
	// created is set while a probe file of this check may exist.
	created bool
	sys     sysState // the open root and buffers; see io_linux.go
}

func (r *run) hasProbeFile() bool { return r.created }

// stage runs the steps of s in order. It reports whether the check has
// not failed.
func (r *run) stage(s Stage) bool {
	for i := range steps {
		st := &steps[i]
		if st.Stage != s {
			continue
		}
		if !st.Cleanup && (r.res.Err != nil || r.ctx.Err() != nil) {
			continue
		}
		if st.when != nil && !st.when(r) {
			continue
		}
		err := r.timed(st.Op, st.do)
		switch {
		case err == nil:
		case st.Advisory:
			r.res.TunnelErr = err
		case r.res.Err == nil:
			r.res.Err = err
			r.res.FailedOp = st.Op
		}
	}
	return r.res.Err == nil
}

// one runs the step at position i of steps on its own, as stage would.
func (r *run) one(i int) {
	st := &steps[i]
	if r.res.Err != nil || r.ctx.Err() != nil {
		return
	}
	if err := r.timed(st.Op, st.do); err != nil && r.res.Err == nil {
		r.res.Err = err
		r.res.FailedOp = st.Op
	}
}

// timed runs one operation, timing it and logging it. It returns the
// operation's error as an OpError.
func (r *run) timed(op Op, do func(*run) error) error {
	o := &r.opts
	if o.BeforeOp != nil {
		o.BeforeOp(op)
	}
	start := o.Now()
	if o.Log != nil {
		o.Log.begin(op, start)
	}
	err := do(r)
	end := o.Now()
	d := end.Sub(start)
	if err != nil {
		err = &OpError{Op: op, Err: err}
	}
	r.res.Ops = append(r.res.Ops, OpResult{Op: op, Start: start, Duration: d, Err: err})
	if o.Log != nil {
		o.Log.end(d, err, end)
	}
	return err
}

// reset drops the operations after the first keep and the failure.
func (r *run) reset(keep int) {
	r.res.Ops, r.res.Err, r.res.FailedOp = r.res.Ops[:keep], nil, ""
}

// Check runs one check of the mount at root: the preflight steps, then
// read-write unless creating the probe file is refused, in which case it
// runs the read-only steps: as ModeReadOnly when the refusal is EROFS (a
// read-only mount), as ModeWriteDenied when it is EACCES/EPERM and
// Options.RequireWriteCheck is off (a root-squashed export). When the
// probe file vanishes mid-check (removed by something else) the
// read-write steps run once more with a fresh name. A failed tunnel step
// fails nothing by itself (see Result.TunnelErr). It blocks for as long
// as the filesystem does; ctx is only consulted between operations.
func Check(ctx context.Context, root string, opts Options) Result {
	if opts.InRoot {
		return check(ctx, root, opts, ModeReadWriteRoot)
	}
	return check(ctx, root, opts, ModeReadWrite)
}

// CheckTransport runs the transport check of a mount whose file system
// another mount's full check proves: the preflight steps, open and statfs,
// no probe file. statfs is a round trip to the server on NFS (the client
// never answers it from a cache: fs/nfs/super.c nfs_statfs sends FSSTAT
// or a GETATTR of the space attributes on every call, Linux 6.1), so the
// check proves that this mount's own connection and server answer. Its
// Result.Mode is empty and Result.Transport set.
func CheckTransport(ctx context.Context, root string, opts Options) Result {
	return check(ctx, root, opts, modeTransport)
}

// modeTransport is CheckTransport's; never in a Result.
const modeTransport Mode = "transport"

// CheckReadOnly runs the check's read-only variant (preflight, open,
// statfs, stat, bounded readdir) whatever the mount's flags.
func CheckReadOnly(ctx context.Context, root string, opts Options) Result {
	return check(ctx, root, opts, ModeReadOnly)
}

func check(ctx context.Context, root string, opts Options, mode Mode) Result {
	r, _ := runPool.Get().(*run)
	if r == nil {
		r = new(run)
	}
	*r = run{ctx: ctx, root: root, opts: opts, res: Result{Mode: mode}}
	if mode == modeTransport {
		r.res.Mode, r.res.Transport = "", true
	}
	r.opts.defaults()
	res := r.runStages(mode)
	// Back to the pool only once the check returned: a check stuck in the
	// kernel keeps its run.
	*r = run{}
	runPool.Put(r)
	return res
}

// runPool recycles the state of checks that returned: it would otherwise
// be one allocation per check.
var runPool sync.Pool

// runStages runs the stages of a check in order, with the runner's
// rules: the read-only fallback, one retry of a lost probe file, and a
// failed tunnel step explaining a later failure.
func (r *run) runStages(mode Mode) Result {
	if !r.stage(StagePreflight) {
		return r.res
	}
	r.res.Ops = r.res.Ops[:0]
	r.runIO(mode)
	if r.res.TunnelErr != nil && r.res.Err != nil && !errors.Is(r.res.Err, ErrTunnelDown) {
		// The tunnel could not be reached and the check failed: the
		// tunnel is the likely cause. The reason becomes tunnel_down; the
		// message keeps both errors, and the failed step its own.
		var oe *OpError
		inner := r.res.Err
		if errors.As(inner, &oe) {
			inner = oe.Err
		}
		r.res.Err = &OpError{Op: r.res.FailedOp, Err: fmt.Errorf("%w (%w)", inner, r.res.TunnelErr)}
	}
	return r.res
}

// runIO runs the stages on the mount.
func (r *run) runIO(mode Mode) {
	ctx := r.ctx
	defer r.sys.close()
	if !r.stage(StageRoot) {
		return
	}
	keep := len(r.res.Ops) // open stays when falling back to read-only
	if mode == modeTransport {
		r.one(StepIndex(OpStatfs))
		return
	}
	if mode == ModeReadOnly {
		r.stage(StageReadOnly)
		return
	}
	r.stage(StageReadWrite)
	if !r.refused && !r.denied && !r.dirRefused && errors.Is(r.res.Err, ErrProbeFileLost) && ctx.Err() == nil {
		// Something else removed the probe file mid-check. That is not an
		// outage of the mount: try once more at once with a fresh name,
		// and report it only if it happens again.
		r.reset(keep)
		r.res.Retried = true
		r.stage(StageReadWrite)
	}
	// Back to the pool only here: a check stuck in the kernel keeps its
	// buffers until the call returns.
	r.sys.release()
	switch {
	case r.refused:
		// Creation failed with EROFS: the mount is read-only. Check it as such.
		r.res.Mode = ModeReadOnly
	case r.denied:
		// Creation failed with EACCES/EPERM on a root that opened: the
		// agent may not write here (a root-squashed export, an access
		// point or directory owned by someone else), which is no outage
		// of the volume. Check that the root answers, as on a read-only
		// mount, and say so.
		r.res.Mode = ModeWriteDenied
		r.res.WriteDenied = r.res.Err
	case r.dirRefused:
		// DirName is not the agent's to use (see ModeDirRefused): no
		// outage of the volume either. Check that the root answers,
		// and say why.
		r.res.Mode = ModeDirRefused
		r.res.DirRefused = r.res.Err
	default:
		return
	}
	r.reset(keep)
	r.stage(StageReadOnly)
}
