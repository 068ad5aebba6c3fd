package exporters

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Tail sampling of check spans. A check records its operations in a small
// fixed array while it runs and creates no span. When it ends, its span tree
// is created after the fact, with the recorded timestamps, if the check
// failed, hit its deadline, or took at least the slow threshold; a healthy,
// fast check keeps its spans only when the sampler chosen by
// OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG says so. The latency
// histogram and the check counter see every check either way.

// Sampler environment variables, read through Options.Getenv.
const (
	envSampler    = "OTEL_TRACES_SAMPLER"
	envSamplerArg = "OTEL_TRACES_SAMPLER_ARG"
)

const (
	// DefaultTraceSlowThreshold is the default of Options.TraceSlowThreshold:
	// a check of a healthy EFS mount takes tens of milliseconds, so one
	// that takes half a second is worth a trace; it is a tenth of the
	// default check timeout.
	DefaultTraceSlowThreshold = 500 * time.Millisecond
	// DefaultHealthySampler is the sampler of healthy, fast checks when
	// OTEL_TRACES_SAMPLER is not set.
	DefaultHealthySampler = "parentbased_traceidratio"
	// DefaultHealthySampleRatio is its ratio when OTEL_TRACES_SAMPLER_ARG
	// is not set either: one healthy check in a hundred keeps its spans,
	// a baseline to compare slow and failed checks with.
	DefaultHealthySampleRatio = 0.01
)

// samplerNames are the OTEL_TRACES_SAMPLER values understood.
var samplerNames = []string{"always_on", "always_off", "traceidratio",
	"parentbased_always_on", "parentbased_always_off", "parentbased_traceidratio"}

// healthySampler builds the sampler of healthy, fast checks from
// OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG. A check span is always
// a root span, so the parentbased_ variants decide as their root sampler
// does. With OTEL_TRACES_SAMPLER unset the default is
// parentbased_traceidratio with DefaultHealthySampleRatio (or the ratio in
// OTEL_TRACES_SAMPLER_ARG); a ratio sampler named explicitly without an
// argument samples everything, as the specification says. Unknown names
// and ratios outside [0, 1] are errors naming the variable and the value.
func healthySampler(getenv func(string) string) (sdktrace.Sampler, error) {
	name := strings.ToLower(strings.TrimSpace(getenv(envSampler)))
	arg := strings.TrimSpace(getenv(envSamplerArg))
	ratio := 1.0
	if name == "" {
		name, ratio = DefaultHealthySampler, DefaultHealthySampleRatio
	}
	switch name {
	case "always_on", "parentbased_always_on":
		return sdktrace.AlwaysSample(), nil
	case "always_off", "parentbased_always_off":
		return sdktrace.NeverSample(), nil
	case "traceidratio", "parentbased_traceidratio":
		if arg != "" {
			r, err := strconv.ParseFloat(arg, 64)
			if err != nil || r < 0 || r > 1 {
				return nil, fmt.Errorf("invalid %s=%q: must be a ratio from 0 to 1 (%s=%s)", envSamplerArg, arg, envSampler, name)
			}
			ratio = r
		}
		switch ratio {
		case 0:
			return sdktrace.NeverSample(), nil
		case 1:
			return sdktrace.AlwaysSample(), nil
		}
		return sdktrace.TraceIDRatioBased(ratio), nil
	}
	return nil, fmt.Errorf("invalid %s=%q: must be one of %s", envSampler, getenv(envSampler), strings.Join(samplerNames, ", "))
}

// ValidateEnv reports a bad OTEL_TRACES_SAMPLER or OTEL_TRACES_SAMPLER_ARG
// in getenv, naming the variable and the value, as New would.
func ValidateEnv(getenv func(string) string) error {
	_, err := healthySampler(getenv)
	return err
}

// sampled asks s whether a healthy, fast check with trace id tid keeps its
// spans.
func sampled(s sdktrace.Sampler, tid trace.TraceID) bool {
	res := s.ShouldSample(sdktrace.SamplingParameters{
		ParentContext: context.Background(), TraceID: tid, Name: checkSpanName, Kind: trace.SpanKindInternal,
	})
	return res.Decision == sdktrace.RecordAndSample
}

// newTraceID returns a random, valid trace id from the runtime's per-thread
// generator: no lock and no allocation.
func newTraceID() trace.TraceID {
	var tid trace.TraceID
	for !tid.IsValid() {
		binary.BigEndian.PutUint64(tid[:8], rand.Uint64())
		binary.BigEndian.PutUint64(tid[8:], rand.Uint64())
	}
	return tid
}

func newSpanID() trace.SpanID {
	var sid trace.SpanID
	for !sid.IsValid() {
		binary.BigEndian.PutUint64(sid[:], rand.Uint64())
	}
	return sid
}

// traceIDKey carries, in the context of a check span created after the
// fact, the trace id the sampling decision was made with.
type traceIDKey struct{}

// idGenerator gives a check span the trace id its sampling decision used
// (from the context), and random ids otherwise.
type idGenerator struct{}

func (idGenerator) NewIDs(ctx context.Context) (trace.TraceID, trace.SpanID) {
	if tid, ok := ctx.Value(traceIDKey{}).(*trace.TraceID); ok && tid.IsValid() {
		return *tid, newSpanID()
	}
	return newTraceID(), newSpanID()
}

func (idGenerator) NewSpanID(context.Context, trace.TraceID) trace.SpanID { return newSpanID() }
