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

// knownOps are the operations a check reports. Their histogram attribute
// sets are precomputed, and /debug/checks stores an operation as its
// index here.
var knownOps = []probes.Op{probes.OpWrite, probes.OpRead, probes.OpDelete, probes.OpStatfs, probes.OpStat,
	probes.OpReaddir, probes.OpOpen, probes.OpMountTable, probes.OpTunnel}

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

// CheckStart starts the check span efs.mount.check.
func (o observer) CheckStart(m agent.Mount, start time.Time) agent.CheckRecorder {
	attrs := []attribute.KeyValue{SpanMountPath.String(pathValue(m.Path))}
	if m.FSType != "" {
		attrs = append(attrs, SpanFSType.String(pathValue(m.FSType)))
	}
	ctx, span := o.t.tracer.Start(context.Background(), "efs.mount.check",
		trace.WithTimestamp(start), trace.WithAttributes(attrs...), trace.WithSpanKind(trace.SpanKindInternal))
	return &recorder{t: o.t, path: m.Path, ctx: ctx, span: span, start: start}
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

// recorder follows one check: the check span, the open operation span
// and the per-operation times for /debug/checks. The agent calls it from
// one goroutine at a time (the check's, then the deadline timer's) and
// never after End. Every method only records in memory.
type recorder struct {
	t      *Telemetry
	path   string
	ctx    context.Context
	span   trace.Span
	start  time.Time
	opCtx  context.Context
	opSpan trace.Span
	opAt   time.Time
	// rec collects the operations for /debug/checks.
	rec debugRecord
}

// OpStart starts the operation's child span.
func (r *recorder) OpStart(op probes.Op, at time.Time) {
	if r.opSpan != nil {
		// An operation that never reported its end: close it here.
		r.opSpan.End(trace.WithTimestamp(at))
	}
	r.opCtx, r.opSpan = r.t.tracer.Start(r.ctx, "efs.mount."+string(op),
		trace.WithTimestamp(at), trace.WithAttributes(SpanOperation.String(string(op))))
	r.opAt = at
}

// OpEnd ends the operation's span d after its start, records the latency
// histogram in the span's context (so the exemplar carries its trace), and
// marks a failure with an error status, the error and its reason. At the
// deadline the agent calls it for the stuck operation with an error
// wrapping agent.ErrTimeout.
func (r *recorder) OpEnd(op probes.Op, d time.Duration, err error) {
	if r.opSpan == nil {
		return
	}
	if op == probes.OpWrite || op == probes.OpRead {
		r.opSpan.SetAttributes(SpanBytes.Int(probes.PayloadSize))
	}
	if err != nil {
		r.opSpan.SetAttributes(SpanFailureReason.String(string(reasonOf(err))))
		rerr := err
		if msg := err.Error(); !utf8.ValidString(msg) { // errors may quote a mount path
			rerr = errors.New(pathValue(msg))
		}
		r.opSpan.RecordError(rerr)
		r.opSpan.SetStatus(codes.Error, rerr.Error())
	}
	rec, ok := opAttrs[op]
	if !ok {
		rec = metric.WithAttributes(attribute.String("operation", string(op)))
	}
	r.t.opDuration.Record(r.opCtx, d.Seconds(), rec)
	r.opSpan.End(trace.WithTimestamp(r.opAt.Add(d)))
	r.opSpan, r.opCtx = nil, nil
	r.rec.addOp(op, d, err)
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

// End ends the check span at, counts the check by outcome and reason, and
// files it for /debug/checks.
func (r *recorder) End(o agent.Outcome, at time.Time) {
	if r.opSpan != nil {
		r.opSpan.End(trace.WithTimestamp(at))
		r.opSpan = nil
	}
	state, reason, errMsg := o.State, o.Reason, ""
	if o.Err != nil {
		errMsg = o.Err.Error()
	}
	outcome := outcomeSuccess
	if state == agent.StateUnhealthy || state == agent.StateHung {
		outcome = outcomeFailure
		r.span.SetAttributes(SpanFailureReason.String(string(reason)))
		r.span.SetStatus(codes.Error, pathValue(errMsg))
	}
	r.span.SetAttributes(SpanState.String(string(state)))
	r.t.checks.Add(context.Background(), 1, checkAttrs(outcome == outcomeSuccess, reason))
	r.span.End(trace.WithTimestamp(at))
	r.rec.trace = r.span.SpanContext().TraceID()
	r.rec.start = r.start.UnixNano()
	r.rec.dur = at.Sub(r.start)
	r.rec.state = stateCode(state)
	if reason != probes.ReasonNone || errMsg != "" {
		if r.rec.fail == nil {
			r.rec.fail = &debugFailure{}
		}
		r.rec.fail.reason, r.rec.fail.err = reason, errMsg
	}
	r.t.debug.add(r.path, r.rec, o.Registration, o.Mounts)
}
