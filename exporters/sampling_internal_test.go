package exporters

import (
	"strings"
	"testing"

	"go.opentelemetry.io/otel/trace"
)

// TestHealthySampler: OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG
// choose the sampler of healthy, fast checks; bad values are errors naming
// the variable and the value.
func TestHealthySampler(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, sampler, arg string
		want               string // sampler description; "" when an error is expected
		wantErr            string
	}{
		{name: "default", want: "TraceIDRatioBased{0.01}"},
		{name: "default with ratio", arg: "0.25", want: "TraceIDRatioBased{0.25}"},
		{name: "always_on", sampler: "always_on", want: "AlwaysOnSampler"},
		{name: "parentbased_always_on", sampler: "parentbased_always_on", arg: "0.5", want: "AlwaysOnSampler"},
		{name: "always_off", sampler: "always_off", want: "AlwaysOffSampler"},
		{name: "parentbased_always_off", sampler: " PARENTBASED_ALWAYS_OFF ", want: "AlwaysOffSampler"},
		{name: "ratio without argument samples all", sampler: "traceidratio", want: "AlwaysOnSampler"},
		{name: "ratio", sampler: "traceidratio", arg: "0.1", want: "TraceIDRatioBased{0.1}"},
		{name: "parentbased ratio zero", sampler: "parentbased_traceidratio", arg: "0", want: "AlwaysOffSampler"},
		{name: "ratio one", sampler: "parentbased_traceidratio", arg: "1", want: "AlwaysOnSampler"},
		{name: "unknown sampler", sampler: "jaeger_remote", wantErr: `invalid OTEL_TRACES_SAMPLER="jaeger_remote": must be one of always_on`},
		{name: "ratio not a number", sampler: "traceidratio", arg: "often", wantErr: `invalid OTEL_TRACES_SAMPLER_ARG="often": must be a ratio from 0 to 1`},
		{name: "ratio above one", arg: "1.5", wantErr: `invalid OTEL_TRACES_SAMPLER_ARG="1.5"`},
		{name: "ratio below zero", sampler: "traceidratio", arg: "-0.1", wantErr: `invalid OTEL_TRACES_SAMPLER_ARG="-0.1"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env := map[string]string{envSampler: tc.sampler, envSamplerArg: tc.arg}
			s, err := healthySampler(func(k string) string { return env[k] })
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := s.Description(); got != tc.want {
				t.Errorf("sampler %s, want %s", got, tc.want)
			}
		})
	}
}

// TestIDs: generated ids are valid and distinct; a check span gets the
// trace id its sampling decision used.
func TestIDs(t *testing.T) {
	t.Parallel()
	seen := map[trace.TraceID]bool{}
	for i := 0; i < 1000; i++ {
		id := newTraceID()
		if !id.IsValid() || seen[id] {
			t.Fatalf("trace id %v invalid or repeated", id)
		}
		seen[id] = true
	}
	if !newSpanID().IsValid() {
		t.Fatal("invalid span id")
	}
}
