package exporters

import (
	"context"
	"errors"
	"time"

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

// opAttrs are the precomputed attribute sets of the histogram, one per
// operation, so recording allocates nothing.
var opAttrs = func() map[probes.Op]metric.RecordOption {
	m := map[probes.Op]metric.RecordOption{}
	for _, op := range []probes.Op{probes.OpWrite, probes.OpRead, probes.OpDelete, probes.OpStatfs, probes.OpStat,
		probes.OpReaddir, probes.OpOpen, probes.OpMountTable, probes.OpTunnel} {
		m[op] = metric.WithAttributeSet(attribute.NewSet(attribute.String("operation", string(op))))
	}
	return m
}()

func (o observer) CheckStart(m agent.Mount, start time.Time) agent.CheckRecorder {
	attrs := []attribute.KeyValue{SpanMountPath.String(m.Path)}
	if m.FSType != "" {
		attrs = append(attrs, SpanFSType.String(m.FSType))
	}
	ctx, span := o.t.tracer.Start(context.Background(), "efs.mount.check",
		trace.WithTimestamp(start), trace.WithAttributes(attrs...), trace.WithSpanKind(trace.SpanKindInternal))
	return &recorder{t: o.t, path: m.Path, ctx: ctx, span: span, start: start}
}

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

// recorder follows one check. The agent calls it from one goroutine at a
// time and never after End.
type recorder struct {
	t      *Telemetry
	path   string
	ctx    context.Context
	span   trace.Span
	start  time.Time
	opCtx  context.Context
	opSpan trace.Span
	opAt   time.Time
	ops    []debugOp
}

func (r *recorder) OpStart(op probes.Op, at time.Time) {
	r.opCtx, r.opSpan = r.t.tracer.Start(r.ctx, "efs.mount."+string(op),
		trace.WithTimestamp(at), trace.WithAttributes(SpanOperation.String(string(op))))
	r.opAt = at
}

func (r *recorder) OpEnd(op probes.Op, d time.Duration, err error) {
	if r.opSpan == nil {
		return
	}
	if op == probes.OpWrite || op == probes.OpRead {
		r.opSpan.SetAttributes(SpanBytes.Int(probes.PayloadSize))
	}
	if err != nil {
		reason := probes.Classify(err)
		if isTimeout(err) {
			reason = probes.ReasonTimeout
		}
		r.opSpan.SetAttributes(SpanFailureReason.String(string(reason)))
		r.opSpan.RecordError(err)
		r.opSpan.SetStatus(codes.Error, err.Error())
	}
	rec, ok := opAttrs[op]
	if !ok {
		rec = metric.WithAttributes(attribute.String("operation", string(op)))
	}
	// Recorded with the span's context, so the exemplar carries its trace.
	r.t.opDuration.Record(r.opCtx, d.Seconds(), rec)
	r.opSpan.End(trace.WithTimestamp(r.opAt.Add(d)))
	r.opSpan, r.opCtx = nil, nil
	r.ops = append(r.ops, debugOp{Op: string(op), Ms: float64(d.Microseconds()) / 1000, Error: errString(err)})
}

func isTimeout(err error) bool { return errors.Is(err, agent.ErrTimeout) }

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func (r *recorder) End(st *agent.MountStatus, at time.Time) {
	outcome := outcomeSuccess
	if st.State == agent.StateUnhealthy || st.State == agent.StateHung {
		outcome = outcomeFailure
		r.span.SetAttributes(SpanFailureReason.String(string(st.Reason)))
		r.span.SetStatus(codes.Error, st.LastError)
	}
	r.span.SetAttributes(SpanState.String(string(st.State)))
	r.t.checks.Add(context.Background(), 1, checkAttrs(outcome == outcomeSuccess, st.Reason))
	r.span.End(trace.WithTimestamp(at))
	r.t.debug.add(r.t, r.path, debugCheck{
		TraceID:    r.span.SpanContext().TraceID().String(),
		Start:      r.start.UTC(),
		DurationMs: float64(at.Sub(r.start).Microseconds()) / 1000,
		Outcome:    outcome.Value.AsString(),
		State:      string(st.State),
		Reason:     string(st.Reason),
		Error:      st.LastError,
		Ops:        r.ops,
	})
}
