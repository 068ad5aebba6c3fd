package exporters

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"strings"

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
//   - stateGatherer, which /metrics serves, turns each series straight
//     into a Prometheus sample, next to the private registry's families.
//     A scrape therefore costs one pass over the mounts; the OTel
//     Prometheus exporter, which would aggregate every observation in the
//     SDK and then convert it back, drops these instruments
//     (promAggregation) and serves only the recorded ones (the latency
//     histogram with its exemplars, the check counter).
//   - otelSink, the callback of the OTel instruments, for OTLP push and
//     any other reader. With no such reader every observable instrument
//     is dropped, the SDK registers no callback, and nothing runs.
//
// Both take names, HELP texts, types and label names from the names table,
// and the golden scrape pins the result.

// sink receives the series of the observable rows: value v of row id, for
// mount path (raw, "" for a series without labels) and op, the value of
// the row's other label ("" for none): the NFS operation, or the check
// mode. The build info's labels are fixed.
type sink interface {
	observe(id metricID, v float64, path, op string)
	// info reports the mount's efs_mount_info series, whose labels are
	// those of its attribution that are known.
	info(path string, a agent.Attribution)
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
	for c := range agent.NumSelfDelayCauses {
		s.observe(mSelfDelays, float64(sum.SelfDelays[c]), "", c.String())
	}
	sts := src.Statuses()
	shared := 0
	for _, st := range sts {
		if st.SharedProof != nil {
			shared++
		}
	}
	s.observe(mSharedProof, float64(shared), "", "")
	for _, st := range sts {
		p := st.Path
		s.info(p, st.Attribution)
		s.observe(mErrors, float64(st.ErrorCount), p, "")
		s.observe(mConsecutiveErrors, float64(st.ConsecutiveErrors), p, "")
		if st.State == agent.StatePending {
			continue
		}
		s.observe(mHealth, float64(b2i(st.Healthy())), p, "")
		s.observe(mResponseTime, float64(st.ResponseTime.Microseconds())/1000, p, "")
		s.observe(mHung, float64(b2i(st.State == agent.StateHung)), p, "")
		s.observe(mLastCheck, float64(st.LastCheck.UnixMilli())/1000, p, "")
		if st.Mode != "" {
			s.observe(mMode, 1, p, string(st.Mode))
		}
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
// the observable instruments, which stateGatherer serves.
func promAggregation(k sdkmetric.InstrumentKind) sdkmetric.Aggregation {
	switch k {
	case sdkmetric.InstrumentKindObservableGauge, sdkmetric.InstrumentKindObservableCounter,
		sdkmetric.InstrumentKindObservableUpDownCounter:
		return sdkmetric.AggregationDrop{}
	}
	return sdkmetric.DefaultAggregationSelector(k)
}

// observable reports whether row n is read from state (served by
// stateGatherer) rather than recorded.
func (n metricName) observable() bool { return n.group != recorded }

// stateGatherer is what /metrics serves: the registry's families (the
// OTel exporter's recorded instruments) and the observable rows' families,
// built directly from the state in one pass (see observeState). The
// registry would check every sample's labels for consistency and hash
// them, which costs more than building them; the names table test and
// the golden scrape check instead that the families are well formed and
// their names unique.
type stateGatherer struct {
	t   *Telemetry
	reg prometheus.Gatherer
	// build are the labels of the build info series.
	build []*dto.LabelPair
}

func newStateGatherer(t *Telemetry, reg prometheus.Gatherer, version string) *stateGatherer {
	// lBuild: goversion, version.
	return &stateGatherer{t: t, reg: reg, build: labelPairs(metricNames[mBuildInfo].labels, runtime.Version(), version)}
}

// Gather implements prometheus.Gatherer.
func (g *stateGatherer) Gather() ([]*dto.MetricFamily, error) {
	mfs, err := g.reg.Gather()
	s := &familySink{build: g.build}
	g.t.observeState(s)
	for id := range s.fams {
		if f := s.fams[id]; f != nil {
			// Sorted by label values, as a registry sorts them; the
			// source lists mounts sorted by path, so this is one pass.
			if !slices.IsSortedFunc(f.Metric, compareLabels) {
				slices.SortStableFunc(f.Metric, compareLabels)
			}
			mfs = append(mfs, f)
		}
	}
	slices.SortFunc(mfs, func(a, b *dto.MetricFamily) int { return strings.Compare(a.GetName(), b.GetName()) })
	return mfs, err
}

// compareLabels orders two samples of one family by their label values.
func compareLabels(a, b *dto.Metric) int {
	for i := range min(len(a.Label), len(b.Label)) {
		if c := strings.Compare(a.Label[i].GetValue(), b.Label[i].GetValue()); c != 0 {
			return c
		}
	}
	return len(a.Label) - len(b.Label)
}

// familySink builds the families of the observable rows.
type familySink struct {
	fams  [numMetrics]*dto.MetricFamily
	build []*dto.LabelPair
	// path, op, names and labels are the last series' mount, operation,
	// label names and labels, shared by the next series of the same mount
	// and label names (they are only read).
	path, op string
	names    []string
	labels   []*dto.LabelPair
}

var (
	gaugeType   = dto.MetricType_GAUGE
	counterType = dto.MetricType_COUNTER
)

func (s *familySink) observe(id metricID, v float64, path, op string) {
	n := &metricNames[id]
	var labels []*dto.LabelPair
	switch {
	case id == mBuildInfo:
		labels = s.build
	case id == mSelfDelays:
		labels = labelPairs(n.labels, op)
	case path == "":
	default:
		if s.labels == nil || path != s.path || op != s.op || !slices.Equal(n.labels, s.names) {
			s.labels = labelPairs(n.labels, seriesValues(n.labels, path, op)...)
			s.path, s.op, s.names = path, op, n.labels
		}
		labels = s.labels
	}
	f := s.fams[id]
	if f == nil {
		f = &dto.MetricFamily{Name: &n.prom, Help: &n.help, Type: &gaugeType}
		if isCounter(n.kind) {
			f.Type = &counterType
		}
		s.fams[id] = f
	}
	var m *dto.Metric
	if isCounter(n.kind) {
		c := &counterSample{v: v}
		c.c.Value = &c.v
		c.m.Counter = &c.c
		m = &c.m
	} else {
		g := &gaugeSample{v: v}
		g.g.Value = &g.v
		g.m.Gauge = &g.g
		m = &g.m
	}
	m.Label = labels
	f.Metric = append(f.Metric, m)
}

func (s *familySink) info(path string, a agent.Attribution) {
	names, values := infoLabels(path, a)
	f := s.fams[mInfo]
	if f == nil {
		n := &metricNames[mInfo]
		f = &dto.MetricFamily{Name: &n.prom, Help: &n.help, Type: &gaugeType}
		s.fams[mInfo] = f
	}
	g := &gaugeSample{v: 1}
	g.g.Value = &g.v
	g.m.Gauge = &g.g
	g.m.Label = labelPairs(names, values...)
	f.Metric = append(f.Metric, &g.m)
}

// gaugeSample and counterSample hold one sample in one allocation.
type gaugeSample struct {
	m dto.Metric
	g dto.Gauge
	v float64
}

type counterSample struct {
	m dto.Metric
	c dto.Counter
	v float64
}

func isCounter(k kind) bool { return k == int64ObservableCounter || k == float64ObservableCounter }

// seriesValues are the label values of a mount's series, in the order of
// the label names: the escaped path for mount_path, op for the other
// label if any (lMount, lMountOp, lMode).
func seriesValues(names []string, path, op string) []string {
	vals := make([]string, len(names))
	for i, n := range names {
		if n == string(MountPathKey) {
			vals[i] = pathValue(path)
		} else {
			vals[i] = op
		}
	}
	return vals
}

// labelPairs returns the label pairs names[i]=values[i]; names are sorted,
// as Prometheus requires. A row of the names table whose labels do not fit
// what observeState reports panics, in every test.
func labelPairs(names []string, values ...string) []*dto.LabelPair {
	if len(names) != len(values) {
		panic(fmt.Sprintf("exporters: label names %q for values %q", names, values))
	}
	pairs := make([]*dto.LabelPair, len(names))
	for i := range names {
		pairs[i] = &dto.LabelPair{Name: &names[i], Value: &values[i]}
	}
	return pairs
}

// otelSink observes each series on the OTel instruments, in a callback.
type otelSink struct {
	o     metric.Observer
	in    *instrumentSet
	build metric.ObserveOption
	// path, op, names and attrs are the last series' mount, operation,
	// label names and attribute set, reused by the next series of the
	// same mount and label names.
	path, op string
	names    []string
	attrs    metric.ObserveOption
}

func (s *otelSink) observe(id metricID, v float64, path, op string) {
	var opt metric.ObserveOption
	switch {
	case id == mBuildInfo:
		opt = s.build
	case id == mSelfDelays:
		opt = metric.WithAttributes(attribute.String(metricNames[id].labels[0], op))
	case path == "":
	default:
		if names := metricNames[id].labels; s.attrs == nil || path != s.path || op != s.op || !slices.Equal(names, s.names) {
			values := seriesValues(names, path, op)
			kvs := make([]attribute.KeyValue, len(names))
			for i := range names {
				kvs[i] = attribute.String(names[i], values[i])
			}
			s.attrs = metric.WithAttributeSet(attribute.NewSet(kvs...))
			s.path, s.op, s.names = path, op, names
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

func (s *otelSink) info(path string, a agent.Attribution) {
	names, values := infoLabels(path, a)
	kvs := make([]attribute.KeyValue, len(names))
	for i := range names {
		kvs[i] = attribute.String(names[i], values[i])
	}
	s.o.ObserveInt64(s.in.int64Observable(mInfo), 1, metric.WithAttributeSet(attribute.NewSet(kvs...)))
}

// observeInstruments registers the callback of every observable
// instrument and builds the gatherer that serves them on /metrics.
func (t *Telemetry) observeInstruments(m metric.Meter, in *instrumentSet, version string) error {
	obs := in.observables(mounts)
	if t.nfsStats != nil {
		obs = append(obs, in.observables(nfs)...)
	}
	bl := metricNames[mBuildInfo].labels // lBuild: goversion, version
	build := metric.WithAttributes(attribute.String(bl[0], runtime.Version()), attribute.String(bl[1], version))
	_, err := m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		t.observeState(&otelSink{o: o, in: in, build: build})
		return nil
	}, obs...)
	if err != nil {
		return fmt.Errorf("register metric callback: %w", err)
	}
	t.gatherer = newStateGatherer(t, t.registry, version)
	return nil
}
