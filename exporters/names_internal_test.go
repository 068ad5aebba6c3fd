package exporters

import (
	"slices"
	"testing"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
)

// TestNamesTable: every row is complete and unique, and a synchronous
// instrument is recorded while an observable one has exactly one producer.
func TestNamesTable(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for id, n := range metricDefs {
		if n.otel == "" || n.prom == "" || n.help == "" {
			t.Errorf("row %d incomplete: %+v", id, n)
		}
		if seen[n.otel] || seen[n.prom] {
			t.Errorf("row %d repeats a name: %+v", id, n)
		}
		seen[n.otel], seen[n.prom] = true, true
		sync := n.kind == float64Histogram || n.kind == int64Counter
		if sync != (n.group() == recorded) {
			t.Errorf("%s: kind %d with group %d", n.otel, n.kind, n.group())
		}
		producers := 0
		for _, set := range []bool{n.global != nil, n.mount != nil, n.mountLabels != nil, n.nfsMount != nil, n.nfsOp != nil} {
			if set {
				producers++
			}
		}
		if want := map[bool]int{true: 0, false: 1}[sync]; producers != want {
			t.Errorf("%s: %d producers, want %d", n.otel, producers, want)
		}
		if (n.mount != nil || n.nfsMount != nil || n.nfsOp != nil) && !slices.Contains(n.labels, string(MountPathKey)) {
			t.Errorf("%s: a per-mount row without the %s label", n.otel, MountPathKey)
		}
		if (n.buckets != nil) != (n.kind == float64Histogram) {
			t.Errorf("%s: buckets on a non-histogram, or a histogram without buckets", n.otel)
		}
	}
}

// TestPromAggregation: the OTel Prometheus exporter drops exactly the
// observable rows, which the state gatherer serves, so that /metrics has
// every row once.
func TestPromAggregation(t *testing.T) {
	t.Parallel()
	kinds := map[kind]sdkmetric.InstrumentKind{
		float64Histogram: sdkmetric.InstrumentKindHistogram, int64Counter: sdkmetric.InstrumentKindCounter,
		int64Gauge: sdkmetric.InstrumentKindObservableGauge, float64Gauge: sdkmetric.InstrumentKindObservableGauge,
		int64ObservableCounter: sdkmetric.InstrumentKindObservableCounter, float64ObservableCounter: sdkmetric.InstrumentKindObservableCounter,
	}
	for _, n := range metricDefs {
		k, ok := kinds[n.kind]
		if !ok {
			t.Fatalf("%s: kind %d not mapped", n.otel, n.kind)
		}
		_, dropped := promAggregation(k).(sdkmetric.AggregationDrop)
		if dropped != n.observable() {
			t.Errorf("%s: dropped by the Prometheus exporter %v, served by the state gatherer %v", n.otel, dropped, n.observable())
		}
	}
}
