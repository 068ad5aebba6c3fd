package exporters

import (
	"context"
	"errors"
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
// histogram, the check counter and /debug/checks. Pass it in
// agent.Config.Observer.
func (t *Telemetry) Observer() agent.Observer { return observer{t} }

type observer struct{ t *Telemetry }

var (
	outcomeSuccess = attribute.String("outcome", "success")
	outcomeFailure = attribute.String("outcome", "failure")
)

// opAttrs are the precomputed attribute sets of the histogram, one per
// step (by probes.StepIndex), so recording allocates nothing.
var opAttrs = func() (a [probes.NumSteps]metric.RecordOption) {
	for i := range a {
		a[i] = metric.WithAttributeSet(attribute.NewSet(attribute.String("operation", string(probes.StepOp(i)))))
	}
	return a
}()

func opRecordOption(op probes.Op) metric.RecordOption {
	if i := probes.StepIndex(op); i >= 0 {
		return opAttrs[i]
	}
	return metric.WithAttributes(attribute.String("operation", string(op)))
}

// checkSpanName is the root span of a check.
const checkSpanName = "efs.mount.check"

// CheckSkipped counts a check that could not start because the previous
// one is stuck: efs_mount_checks_total{outcome="failure",reason="hung"}.
func (o observer) CheckSkipped(*agent.Mount, time.Time) {
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

// reasonOf classifies an operation error; the agent's deadline error is
// a timeout.
func reasonOf(err error) probes.Reason {
	if errors.Is(err, agent.ErrTimeout) {
		return probes.ReasonTimeout
	}
	return probes.Classify(err)
}

// CheckDone counts the check by outcome and reason, decides whether it
// keeps its spans (always when it failed, hit its deadline or took at
// least the slow threshold; otherwise when the healthy-check sampler says
// so), creates them after the fact if so, records every operation's
// latency (the one stuck at a deadline with its time to the deadline),
// and files the check for /debug/checks with its trace id (zero when no
// span was kept). r.Outcome is the check's own outcome, whatever the
// mount's status has become since.
func (o observer) CheckDone(r *agent.CheckRecord) {
	t := o.t
	state, reason := r.Outcome.State, r.Outcome.Reason
	failed := state == agent.StateUnhealthy || state == agent.StateHung
	t.checks.Add(context.Background(), 1, checkAttrs(!failed, reason))

	var tid trace.TraceID
	keep := failed || r.End.Sub(r.Start) >= t.slow
	if keep || t.sampler != nil {
		tid = newTraceID()
		keep = keep || sampled(t.sampler, tid)
	}
	if keep {
		t.spans(r, tid, failed)
	} else {
		tid = trace.TraceID{}
		for i := range r.Ops {
			t.opDuration.Record(context.Background(), r.Ops[i].Duration.Seconds(), opRecordOption(r.Ops[i].Op))
		}
	}
	t.debug.Add(r, tid)
}

// spans creates the check's span tree after the fact, with trace id tid
// and the record's timestamps: efs.mount.check and a child per operation,
// children first, as they would have ended. Each operation's latency is
// recorded in its span's context, so the histogram's exemplar points at
// it.
func (t *Telemetry) spans(r *agent.CheckRecord, tid trace.TraceID, failed bool) {
	m, state := r.Mount, r.Outcome.State
	attrs := make([]attribute.KeyValue, 0, 8)
	attrs = append(attrs, SpanMountPath.String(pathValue(m.Path)))
	if m.FSType != "" {
		attrs = append(attrs, SpanFSType.String(pathValue(m.FSType)))
	}
	attrs = spanAttribution(attrs, *m)
	attrs = append(attrs, SpanState.String(string(state)))
	if failed {
		attrs = append(attrs, SpanFailureReason.String(string(r.Outcome.Reason)))
	}
	ctx := context.WithValue(context.Background(), traceIDKey{}, &tid)
	ctx, span := t.tracer.Start(ctx, checkSpanName,
		trace.WithTimestamp(r.Start), trace.WithAttributes(attrs...), trace.WithSpanKind(trace.SpanKindInternal))
	for i := range r.Ops {
		op := &r.Ops[i]
		end := op.Start.Add(op.Duration)
		opCtx, opSpan := t.tracer.Start(ctx, "efs.mount."+string(op.Op),
			trace.WithTimestamp(op.Start), trace.WithAttributes(SpanOperation.String(string(op.Op))))
		if op.Op == probes.OpWrite || op.Op == probes.OpRead {
			opSpan.SetAttributes(SpanBytes.Int(probes.PayloadSize))
		}
		if op.Err != nil {
			opSpan.SetAttributes(SpanFailureReason.String(string(reasonOf(op.Err))))
			rerr := op.Err
			if msg := op.Err.Error(); !utf8.ValidString(msg) { // errors may quote a mount path
				rerr = errors.New(pathValue(msg))
			}
			opSpan.RecordError(rerr, trace.WithTimestamp(end))
			opSpan.SetStatus(codes.Error, rerr.Error())
		}
		t.opDuration.Record(opCtx, op.Duration.Seconds(), opRecordOption(op.Op))
		opSpan.End(trace.WithTimestamp(end))
	}
	if failed {
		msg := ""
		if r.Outcome.Err != nil {
			msg = r.Outcome.Err.Error()
		}
		span.SetStatus(codes.Error, pathValue(msg))
	}
	span.End(trace.WithTimestamp(r.End))
}
