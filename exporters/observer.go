package exporters

import (
	"context"
	"errors"
	"math"
	"slices"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/efs-health-agent/efs-health-agent/agent"
	"github.com/efs-health-agent/efs-health-agent/probes"
)

// Observer returns the agent.Observer that records spans, the latency
// histogram and the check counter. Pass it in agent.Config.Observer.
func (t *Telemetry) Observer() agent.Observer { return observer{t} }

type observer struct{ t *Telemetry }

var (
	outcomeSuccess = attribute.String("outcome", "success")
	outcomeFailure = attribute.String("outcome", "failure")
)

// knownOps are the operations a check reports, from the probes pipeline.
// Their histogram attribute sets are precomputed, and /debug/checks
// stores an operation as its index here.
var knownOps = probes.Ops()

// opAttrs are the precomputed attribute sets of the histogram, one per
// operation, so recording allocates nothing.
var opAttrs = func() map[probes.Op]metric.RecordOption {
	m := map[probes.Op]metric.RecordOption{}
	for _, op := range knownOps {
		m[op] = metric.WithAttributeSet(attribute.NewSet(attribute.String("operation", string(op))))
	}
	return m
}()

// opOther stands for an operation missing from knownOps in /debug/checks.
const opOther = probes.Op("other")

func opCode(op probes.Op) uint8 {
	if i := slices.Index(knownOps, op); i >= 0 {
		return uint8(i)
	}
	return math.MaxUint8
}

func opName(code uint8) probes.Op {
	if int(code) < len(knownOps) {
		return knownOps[code]
	}
	return opOther
}

// checkSpanName is the root span of a check.
const checkSpanName = "efs.mount.check"

// CheckStart starts recording a check. No span is created yet: End
// decides whether the check keeps its spans.
func (o observer) CheckStart(m agent.Mount, start time.Time) agent.CheckRecorder {
	r, _ := o.t.recorders.Get().(*recorder)
	if r == nil {
		r = new(recorder)
	}
	*r = recorder{t: o.t, mount: m, start: start}
	return r
}

// CheckSkipped counts a check that could not start because the previous
// one is stuck: efs_mount_checks_total{outcome="failure",reason="hung"}.
func (o observer) CheckSkipped(m agent.Mount, _ time.Time) {
	o.t.checks.Add(context.Background(), 1, checkAttrs(false, probes.ReasonHung))
}

// checkOpts holds the precomputed attribute sets of the check counter:
// hashing a fresh set on every check costs more than the rest of the
// recording.
var checkOpts = func() map[probes.Reason][2]metric.AddOption {
	m := map[probes.Reason][2]metric.AddOption{}
	for _, r := range append([]probes.Reason{probes.ReasonNone}, probes.Reasons...) {
		reason := attribute.String("reason", string(r))
		m[r] = [2]metric.AddOption{
			metric.WithAttributeSet(attribute.NewSet(outcomeFailure, reason)),
			metric.WithAttributeSet(attribute.NewSet(outcomeSuccess, reason)),
		}
	}
	return m
}()

func checkAttrs(success bool, r probes.Reason) metric.AddOption {
	opts, ok := checkOpts[r]
	if !ok {
		outcome := outcomeFailure
		if success {
			outcome = outcomeSuccess
		}
		return metric.WithAttributes(outcome, attribute.String("reason", string(r)))
	}
	if success {
		return opts[1]
	}
	return opts[0]
}

// maxOps bounds the operations a check records for its spans; a check
// reports at most seven (mounttable, tunnel, open, statfs, write, read,
// delete). Further operations are still timed into the histogram.
const maxOps = 8

// opRecord is one operation as a check records it: enough to create its
// span after the fact.
type opRecord struct {
	op    probes.Op
	start time.Time
	d     time.Duration
	err   error
	// ended is set by OpEnd; an operation that never reported its end is
	// closed by the next OpStart or by End, with no latency recorded.
	ended bool
}

// recorder follows one check. It records the operations in a fixed array
// and creates no span until End, which keeps the span tree only for a
// failed, timed-out, slow or sampled check. The agent calls it from one
// goroutine at a time (the check's, then the deadline timer's) and never
// after End. Every method only records in memory.
type recorder struct {
	t     *Telemetry
	mount agent.Mount
	start time.Time
	ops   [maxOps]opRecord
	nops  int
	// open is set while ops[nops-1] has started and not ended.
	open bool
	// overflow is set while an operation beyond maxOps is open.
	overflow bool
	// rec collects the operations for /debug/checks.
	rec debugRecord
}

// OpStart notes the operation's start.
func (r *recorder) OpStart(op probes.Op, at time.Time) {
	r.closeOpen(at)
	if r.nops == maxOps {
		r.overflow = true
		return
	}
	r.ops[r.nops] = opRecord{op: op, start: at}
	r.nops++
	r.open = true
}

// closeOpen ends an operation that never reported its end at at.
func (r *recorder) closeOpen(at time.Time) {
	if r.open {
		o := &r.ops[r.nops-1]
		o.d = at.Sub(o.start)
		r.open = false
	}
	r.overflow = false
}

// OpEnd notes the operation's duration and error. At the deadline the
// agent calls it for the stuck operation with an error wrapping
// agent.ErrTimeout. The latency is recorded into the histogram at End,
// in the context of the operation's span when the check keeps its spans,
// so that the exemplar carries its trace.
func (r *recorder) OpEnd(op probes.Op, d time.Duration, err error) {
	switch {
	case r.open:
		o := &r.ops[r.nops-1]
		o.d, o.err, o.ended = d, err, true
		r.open = false
	case r.overflow:
		r.t.opDuration.Record(context.Background(), d.Seconds(), opRecordOption(op))
		r.overflow = false
	default:
		return // no OpStart
	}
	r.rec.addOp(op, d, err)
}

func opRecordOption(op probes.Op) metric.RecordOption {
	if rec, ok := opAttrs[op]; ok {
		return rec
	}
	return metric.WithAttributes(attribute.String("operation", string(op)))
}

// reasonOf classifies an operation error; the agent's deadline error is
// a timeout.
func reasonOf(err error) probes.Reason {
	if errors.Is(err, agent.ErrTimeout) {
		return probes.ReasonTimeout
	}
	return probes.Classify(err)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// End counts the check by outcome and reason, decides whether it keeps its
// spans (always when it failed, hit its deadline or took at least the
// slow threshold; otherwise when the healthy-check sampler says so),
// creates them after the fact if so, records every operation's latency,
// and files the check for /debug/checks with its trace id (zero when no
// span was kept). o is the check's own outcome, whatever the mount's
// status has become since.
func (r *recorder) End(o agent.Outcome, at time.Time) {
	r.closeOpen(at)
	state, reason, errMsg := o.State, o.Reason, ""
	if o.Err != nil {
		errMsg = o.Err.Error()
	}
	failed := state == agent.StateUnhealthy || state == agent.StateHung
	r.t.checks.Add(context.Background(), 1, checkAttrs(!failed, reason))

	var tid trace.TraceID
	keep := failed || at.Sub(r.start) >= r.t.slow
	if keep || r.t.sampler != nil {
		tid = newTraceID()
		keep = keep || sampled(r.t.sampler, tid)
	}
	if keep {
		r.spans(tid, state, reason, errMsg, failed, at)
	} else {
		tid = trace.TraceID{}
		for i := range r.ops[:r.nops] {
			if o := &r.ops[i]; o.ended {
				r.t.opDuration.Record(context.Background(), o.d.Seconds(), opRecordOption(o.op))
			}
		}
	}

	r.rec.trace = tid
	r.rec.start = r.start.UnixNano()
	r.rec.dur = at.Sub(r.start)
	r.rec.state = stateCode(state)
	if reason != probes.ReasonNone || errMsg != "" {
		if r.rec.fail == nil {
			r.rec.fail = &debugFailure{}
		}
		r.rec.fail.reason, r.rec.fail.err = reason, errMsg
	}
	t := r.t
	t.debug.add(r.mount.Path, r.rec)
	// End is the last call the agent makes (agent.CheckRecorder): the
	// recorder is reused by a later check.
	*r = recorder{}
	t.recorders.Put(r)
}

// spans creates the check's span tree after the fact, with trace id tid
// and the recorded timestamps: efs.mount.check and a child per operation,
// children first, as they would have ended. Each operation's latency is
// recorded in its span's context, so the histogram's exemplar points at
// it.
func (r *recorder) spans(tid trace.TraceID, state agent.State, reason probes.Reason, errMsg string, failed bool, at time.Time) {
	attrs := make([]attribute.KeyValue, 0, 8)
	attrs = append(attrs, SpanMountPath.String(pathValue(r.mount.Path)))
	if r.mount.FSType != "" {
		attrs = append(attrs, SpanFSType.String(pathValue(r.mount.FSType)))
	}
	attrs = spanAttribution(attrs, r.mount)
	attrs = append(attrs, SpanState.String(string(state)))
	if failed {
		attrs = append(attrs, SpanFailureReason.String(string(reason)))
	}
	ctx := context.WithValue(context.Background(), traceIDKey{}, &tid)
	ctx, span := r.t.tracer.Start(ctx, checkSpanName,
		trace.WithTimestamp(r.start), trace.WithAttributes(attrs...), trace.WithSpanKind(trace.SpanKindInternal))
	for i := range r.ops[:r.nops] {
		o := &r.ops[i]
		end := o.start.Add(o.d)
		opCtx, opSpan := r.t.tracer.Start(ctx, "efs.mount."+string(o.op),
			trace.WithTimestamp(o.start), trace.WithAttributes(SpanOperation.String(string(o.op))))
		if o.ended {
			if o.op == probes.OpWrite || o.op == probes.OpRead {
				opSpan.SetAttributes(SpanBytes.Int(probes.PayloadSize))
			}
			if o.err != nil {
				opSpan.SetAttributes(SpanFailureReason.String(string(reasonOf(o.err))))
				rerr := o.err
				if msg := o.err.Error(); !utf8.ValidString(msg) { // errors may quote a mount path
					rerr = errors.New(pathValue(msg))
				}
				opSpan.RecordError(rerr, trace.WithTimestamp(end))
				opSpan.SetStatus(codes.Error, rerr.Error())
			}
			r.t.opDuration.Record(opCtx, o.d.Seconds(), opRecordOption(o.op))
		}
		opSpan.End(trace.WithTimestamp(end))
	}
	if failed {
		span.SetStatus(codes.Error, pathValue(errMsg))
	}
	span.End(trace.WithTimestamp(at))
}
