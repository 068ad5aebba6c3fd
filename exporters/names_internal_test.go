package exporters

import "testing"

// TestNamesTable: every row is complete and unique, and a synchronous
// instrument is recorded while an observable one has a callback.
func TestNamesTable(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for id, n := range metricNames {
		if n.otel == "" || n.prom == "" || n.help == "" {
			t.Errorf("row %d incomplete: %+v", id, n)
		}
		if seen[n.otel] || seen[n.prom] {
			t.Errorf("row %d repeats a name: %+v", id, n)
		}
		seen[n.otel], seen[n.prom] = true, true
		sync := n.kind == float64Histogram || n.kind == int64Counter
		if sync != (n.group == recorded) {
			t.Errorf("%s: kind %d with group %d", n.otel, n.kind, n.group)
		}
		if (n.buckets != nil) != (n.kind == float64Histogram) {
			t.Errorf("%s: buckets on a non-histogram, or a histogram without buckets", n.otel)
		}
	}
}
