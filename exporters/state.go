package exporters

import (
	"context"
	"fmt"
	"runtime"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/efs-health-agent/efs-health-agent/agent"
)

// The observable rows of the names table (groups mounts and nfs) describe
// state that already exists in memory: the source's statuses, its summary
// and the NFS statistics. observeState walks that state once per
// collection and reports every series to a sink. Two sinks read it:
//
//   - stateCollector, registered on the /metrics registry, turns each
//     series straight into a Prometheus sample. A scrape therefore costs
//     one pass over the mounts; the OTel Prometheus exporter, which would
//     aggregate every observation in the SDK and then convert it back,
//     drops these instruments (promAggregation) and serves only the
//     recorded ones (the latency histogram with its exemplars, the check
//     counter).
//   - otelSink, the callback of the OTel instruments, for OTLP push and
//     any other reader. With no such reader every observable instrument
//     is dropped, the SDK registers no callback, and nothing runs.
//
// Both take names, HELP texts, types and label names from the names table,
// and the golden scrape pins the result.

// sink receives the series of the observable rows: value v of row id, for
// mount path (raw, "" for a series without labels) and NFS operation op
// ("" for none). The build info's labels are fixed.
type sink interface {
	observe(id metricID, v float64, path, op string)
}

// observeState reports every series of the observable rows to s. Series
// of one mount are reported one after the other, so a sink can build the
// mount's labels once.
func (t *Telemetry) observeState(s sink) {
	s.observe(mBuildInfo, 1, "", "")
	src := t.source()
	if src == nil {
		return
	}
	sum := src.Summary()
	s.observe(mDriverHealthy, float64(b2i(sum.Healthy())), "", "")
	s.observe(mInFlight, float64(sum.InFlight), "", "")
	s.observe(mHungMounts, float64(sum.Hung), "", "")
	sts := src.Statuses()
	for _, st := range sts {
		p := st.Path
		s.observe(mErrors, float64(st.ErrorCount), p, "")
		s.observe(mConsecutiveErrors, float64(st.ConsecutiveErrors), p, "")
		if st.State == agent.StatePending {
			continue
		}
		s.observe(mHealth, float64(b2i(st.Healthy())), p, "")
		s.observe(mResponseTime, float64(st.ResponseTime.Microseconds())/1000, p, "")
		s.observe(mHung, float64(b2i(st.State == agent.StateHung)), p, "")
		s.observe(mLastCheck, float64(st.LastCheck.UnixMilli())/1000, p, "")
	}
	if t.nfsStats == nil {
		return
	}
	// NFS client statistics of registered mounts only, from memory.
	stats := t.nfsStats()
	if len(stats) == 0 {
		return
	}
	for _, st := range sts {
		ns, ok := stats[st.Path]
		if !ok {
			continue
		}
		p := st.Path
		s.observe(mNFSBacklog, float64(ns.Backlog), p, "")
		for _, op := range ns.Ops {
			s.observe(mNFSRequests, float64(op.Requests), p, op.Name)
			s.observe(mNFSRetransmissions, float64(op.Retransmissions()), p, op.Name)
			s.observe(mNFSMajorTimeouts, float64(op.MajorTimeouts), p, op.Name)
			s.observe(mNFSRTT, op.RTT.Seconds(), p, op.Name)
			s.observe(mNFSExecute, op.Execute.Seconds(), p, op.Name)
		}
	}
}

// promAggregation is the OTel Prometheus exporter's aggregation: it drops
// the observable instruments, which stateCollector serves.
func promAggregation(k sdkmetric.InstrumentKind) sdkmetric.Aggregation {
	switch k {
	case sdkmetric.InstrumentKindObservableGauge, sdkmetric.InstrumentKindObservableCounter,
		sdkmetric.InstrumentKindObservableUpDownCounter:
		return sdkmetric.AggregationDrop{}
	}
	return sdkmetric.DefaultAggregationSelector(k)
}

// observable reports whether row n is read from state (served by
// stateCollector) rather than recorded.
func (n metricName) observable() bool { return n.group != recorded }

// stateCollector serves the observable rows of the names table to the
// /metrics registry (see observeState).
type stateCollector struct {
	t     *Telemetry
	descs [numMetrics]*prometheus.Desc
	// build are the labels of the build info series.
	build []*dto.LabelPair
}

func newStateCollector(t *Telemetry, version string) *stateCollector {
	c := &stateCollector{t: t}
	for id, n := range metricNames {
		if n.observable() {
			c.descs[id] = prometheus.NewDesc(n.prom, n.help, n.labels, nil)
		}
	}
	// lBuild: goversion, version.
	c.build = labelPairs(lBuild, runtime.Version(), version)
	return c
}

// Describe implements prometheus.Collector.
func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		if d != nil {
			ch <- d
		}
	}
}

// Collect implements prometheus.Collector.
func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	c.t.observeState(&promSink{c: c, ch: ch})
}

// promSink sends each series to a Prometheus collection.
type promSink struct {
	c  *stateCollector
	ch chan<- prometheus.Metric
	// path, op and labels are the last series' mount, operation and
	// labels, reused by the next series of the same mount.
	path, op string
	labels   []*dto.LabelPair
}

func (s *promSink) observe(id metricID, v float64, path, op string) {
	var labels []*dto.LabelPair
	switch {
	case id == mBuildInfo:
		labels = s.c.build
	case path == "":
	default:
		if s.labels == nil || path != s.path || op != s.op {
			if op == "" {
				s.labels = labelPairs(lMount, pathValue(path))
			} else {
				s.labels = labelPairs(lMountOp, pathValue(path), op)
			}
			s.path, s.op = path, op
		}
		labels = s.labels
	}
	s.ch <- &sample{desc: s.c.descs[id], labels: labels, v: v, counter: isCounter(metricNames[id].kind)}
}

func isCounter(k kind) bool { return k == int64ObservableCounter || k == float64ObservableCounter }

// labelPairs returns the label pairs names[i]=values[i]; names are sorted,
// as Prometheus requires.
func labelPairs(names []string, values ...string) []*dto.LabelPair {
	pairs := make([]*dto.LabelPair, len(names))
	for i := range names {
		pairs[i] = &dto.LabelPair{Name: &names[i], Value: &values[i]}
	}
	return pairs
}

// sample is one series of an observable row. The registry calls Write
// once per collection; the label pairs may be shared between samples
// (they are only read).
type sample struct {
	desc    *prometheus.Desc
	labels  []*dto.LabelPair
	v       float64
	counter bool
}

func (s *sample) Desc() *prometheus.Desc { return s.desc }

func (s *sample) Write(m *dto.Metric) error {
	m.Label = s.labels
	if s.counter {
		m.Counter = &dto.Counter{Value: &s.v}
	} else {
		m.Gauge = &dto.Gauge{Value: &s.v}
	}
	return nil
}

// otelSink observes each series on the OTel instruments, in a callback.
type otelSink struct {
	o     metric.Observer
	in    *instrumentSet
	build metric.ObserveOption
	// path, op and attrs are the last series' mount, operation and
	// attribute set, reused by the next series of the same mount.
	path, op string
	attrs    metric.ObserveOption
}

func (s *otelSink) observe(id metricID, v float64, path, op string) {
	var opt metric.ObserveOption
	switch {
	case id == mBuildInfo:
		opt = s.build
	case path == "":
	default:
		if s.attrs == nil || path != s.path || op != s.op {
			kv := MountPathKey.String(pathValue(path))
			if op == "" {
				s.attrs = metric.WithAttributeSet(attribute.NewSet(kv))
			} else {
				s.attrs = metric.WithAttributeSet(attribute.NewSet(kv, attribute.String("operation", op)))
			}
			s.path, s.op = path, op
		}
		opt = s.attrs
	}
	var opts []metric.ObserveOption
	if opt != nil {
		opts = []metric.ObserveOption{opt}
	}
	switch metricNames[id].kind {
	case int64Gauge, int64ObservableCounter:
		s.o.ObserveInt64(s.in.int64Observable(id), int64(v), opts...)
	case float64Gauge, float64ObservableCounter:
		s.o.ObserveFloat64(s.in.float64Observable(id), v, opts...)
	}
}

// observeInstruments registers the callback of every observable
// instrument and the collector that serves them on /metrics.
func (t *Telemetry) observeInstruments(m metric.Meter, in *instrumentSet, version string) error {
	obs := in.observables(mounts)
	if t.nfsStats != nil {
		obs = append(obs, in.observables(nfs)...)
	}
	build := metric.WithAttributes(attribute.String("version", version), attribute.String("goversion", runtime.Version()))
	_, err := m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		t.observeState(&otelSink{o: o, in: in, build: build})
		return nil
	}, obs...)
	if err != nil {
		return fmt.Errorf("register metric callback: %w", err)
	}
	if err := t.registry.Register(newStateCollector(t, version)); err != nil {
		return fmt.Errorf("register /metrics collector: %w", err)
	}
	return nil
}
