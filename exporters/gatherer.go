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
)

// sink receives the series of the observable rows, as each row's
// producer reports them (see metricDef); it knows nothing of any row but
// its kind and labels.
//
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
type sink interface {
	// global reports value v of row id, a series without mount_path,
	// with the values of the row's labels in order.
	global(id metricID, v float64, values []string)
	// mount reports value v of row id for mount path (raw): its labels
	// are mount_path and, if the row has another, other.
	mount(id metricID, v float64, path, other string)
	// labelled reports value v of row id with the label names given (a
	// subset of the row's, in order) and their values.
	labelled(id metricID, v float64, names, values []string)
}

// The rows of each producer kind, in table order.
var mountRows, nfsMountRows, nfsOpRows = rowsWhere(func(d *metricDef) bool { return d.mount != nil || d.mountLabels != nil }),
	rowsWhere(func(d *metricDef) bool { return d.nfsMount != nil }),
	rowsWhere(func(d *metricDef) bool { return d.nfsOp != nil })

func rowsWhere(keep func(*metricDef) bool) []metricID {
	var ids []metricID
	for id := range metricDefs {
		if keep(&metricDefs[id]) {
			ids = append(ids, metricID(id))
		}
	}
	return ids
}

// observeState reports every series of the observable rows to s, each
// from its row's producer. Series of one mount are reported one after the
// other, so a sink can build the mount's labels once.
func (t *Telemetry) observeState(s sink) {
	g := globals{goVersion: runtime.Version(), version: t.version}
	src := t.source()
	if src != nil {
		g.sum = src.Summary()
		g.sts = src.Statuses()
	}
	for id := range metricDefs {
		if p := metricDefs[id].global; p != nil {
			p(g, func(v float64, values ...string) { s.global(metricID(id), v, values) })
		}
	}
	if src == nil {
		return
	}
	sts := g.sts
	for _, st := range sts {
		for _, id := range mountRows {
			d := &metricDefs[id]
			if d.mountLabels != nil {
				names, values := d.mountLabels(st)
				s.labelled(id, 1, names, values)
				continue
			}
			if v, other, ok := d.mount(st); ok {
				s.mount(id, v, st.Path, other)
			}
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
		for _, id := range nfsMountRows {
			s.mount(id, metricDefs[id].nfsMount(ns), st.Path, "")
		}
		for i := range ns.Ops {
			op := &ns.Ops[i]
			for _, id := range nfsOpRows {
				s.mount(id, metricDefs[id].nfsOp(op), st.Path, op.Name)
			}
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

// stateGatherer is what /metrics serves: the registries' families (the
// OTel exporter's recorded instruments; the process and Go collectors'
// process_* and go_* series) and the observable rows' families,
// built directly from the state in one pass (see observeState). The
// registry would check every sample's labels for consistency and hash
// them, which costs more than building them; the names table test and
// the golden scrape check instead that the families are well formed and
// their names unique.
type stateGatherer struct {
	t   *Telemetry
	reg prometheus.Gatherer
}

// Gather implements prometheus.Gatherer.
func (g *stateGatherer) Gather() ([]*dto.MetricFamily, error) {
	mfs, err := g.reg.Gather()
	s := &familySink{}
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
	fams [numMetrics]*dto.MetricFamily
	// path, other, names and labels are the last series' mount, other
	// label, label names and labels, shared by the next series of the
	// same mount and label names (they are only read).
	path, other string
	names       []string
	labels      []*dto.LabelPair
	// gauges and counters are the samples not yet used of the last
	// block allocated: samples are allocated sampleBlock at a time.
	gauges   []gaugeSample
	counters []counterSample
	// pairs, ptrs and strs are the label pairs, pointers to them and
	// label values not yet used, allocated in blocks alike.
	pairs []dto.LabelPair
	ptrs  []*dto.LabelPair
	strs  []string
}

// sampleBlock is how many samples familySink allocates at once: a scrape
// of 10,000 mounts has about 100,000, and one allocation each would cost
// more than building them.
const sampleBlock = 512

var (
	gaugeType   = dto.MetricType_GAUGE
	counterType = dto.MetricType_COUNTER
)

func (s *familySink) global(id metricID, v float64, values []string) {
	s.add(id, v, s.labelPairs(metricDefs[id].labels, values))
}

func (s *familySink) mount(id metricID, v float64, path, other string) {
	n := metricDefs[id].labels
	if s.labels == nil || path != s.path || other != s.other || !slices.Equal(n, s.names) {
		vals := s.values(len(n))
		fillSeriesValues(vals, n, path, other)
		s.labels = s.labelPairs(n, vals)
		s.path, s.other, s.names = path, other, n
	}
	s.add(id, v, s.labels)
}

func (s *familySink) labelled(id metricID, v float64, names, values []string) {
	s.add(id, v, s.labelPairs(names, values))
}

// values returns n label values to fill, from the block.
func (s *familySink) values(n int) []string {
	if len(s.strs) < n {
		s.strs = make([]string, max(sampleBlock, n))
	}
	out := s.strs[:n:n]
	s.strs = s.strs[n:]
	return out
}

// labelPairs returns the label pairs names[i]=values[i], from the blocks;
// names are sorted, as Prometheus requires, and neither slice may change
// afterwards. A row of the names table whose labels do not fit what its
// producer reports panics, in every test.
func (s *familySink) labelPairs(names, values []string) []*dto.LabelPair {
	n := len(names)
	if n != len(values) {
		panic(fmt.Sprintf("exporters: label names %q for values %q", names, values))
	}
	if len(s.pairs) < n {
		s.pairs = make([]dto.LabelPair, max(sampleBlock, n))
	}
	if len(s.ptrs) < n {
		s.ptrs = make([]*dto.LabelPair, max(sampleBlock, n))
	}
	out := s.ptrs[:n:n]
	s.ptrs = s.ptrs[n:]
	for i := range out {
		lp := &s.pairs[i]
		lp.Name, lp.Value = &names[i], &values[i]
		out[i] = lp
	}
	s.pairs = s.pairs[n:]
	return out
}

// add appends the sample v with labels to row id's family.
func (s *familySink) add(id metricID, v float64, labels []*dto.LabelPair) {
	n := &metricDefs[id]
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
		if len(s.counters) == 0 {
			s.counters = make([]counterSample, sampleBlock)
		}
		c := &s.counters[0]
		s.counters = s.counters[1:]
		c.v = v
		c.c.Value = &c.v
		c.m.Counter = &c.c
		m = &c.m
	} else {
		if len(s.gauges) == 0 {
			s.gauges = make([]gaugeSample, sampleBlock)
		}
		g := &s.gauges[0]
		s.gauges = s.gauges[1:]
		g.v = v
		g.g.Value = &g.v
		g.m.Gauge = &g.g
		m = &g.m
	}
	m.Label = labels
	f.Metric = append(f.Metric, m)
}

// gaugeSample and counterSample hold one sample, with its value.
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
// the label names: the escaped path for mount_path, other for the other
// label if any (lMount, lMountOp, lMode).
func seriesValues(names []string, path, other string) []string {
	vals := make([]string, len(names))
	fillSeriesValues(vals, names, path, other)
	return vals
}

// fillSeriesValues sets vals to seriesValues(names, path, other).
func fillSeriesValues(vals, names []string, path, other string) {
	for i, n := range names {
		if n == string(MountPathKey) {
			vals[i] = pathValue(path)
		} else {
			vals[i] = other
		}
	}
}

// otelSink observes each series on the OTel instruments, in a callback.
type otelSink struct {
	o  metric.Observer
	in *instrumentSet
	// path, other, names and attrs are the last series' mount, other
	// label, label names and attribute set, reused by the next series of
	// the same mount and label names.
	path, other string
	names       []string
	attrs       metric.ObserveOption
}

func (s *otelSink) global(id metricID, v float64, values []string) {
	var opts []metric.ObserveOption
	if names := metricDefs[id].labels; len(names) > 0 {
		opts = []metric.ObserveOption{attributeSet(names, values)}
	}
	s.observe(id, v, opts...)
}

func (s *otelSink) mount(id metricID, v float64, path, other string) {
	if names := metricDefs[id].labels; s.attrs == nil || path != s.path || other != s.other || !slices.Equal(names, s.names) {
		s.attrs = attributeSet(names, seriesValues(names, path, other))
		s.path, s.other, s.names = path, other, names
	}
	s.observe(id, v, s.attrs)
}

func (s *otelSink) labelled(id metricID, v float64, names, values []string) {
	s.observe(id, v, attributeSet(names, values))
}

// observe records v on row id's instrument.
func (s *otelSink) observe(id metricID, v float64, opts ...metric.ObserveOption) {
	switch metricDefs[id].kind {
	case int64Gauge, int64ObservableCounter:
		s.o.ObserveInt64(s.in.int64Observable(id), int64(v), opts...)
	case float64Gauge, float64ObservableCounter:
		s.o.ObserveFloat64(s.in.float64Observable(id), v, opts...)
	}
}

// attributeSet is the attributes names[i]=values[i].
func attributeSet(names, values []string) metric.ObserveOption {
	kvs := make([]attribute.KeyValue, len(names))
	for i := range names {
		kvs[i] = attribute.String(names[i], values[i])
	}
	return metric.WithAttributeSet(attribute.NewSet(kvs...))
}

// observeInstruments registers the callback of every observable
// instrument and builds the gatherer that serves them on /metrics.
func (t *Telemetry) observeInstruments(m metric.Meter, in *instrumentSet, version string) error {
	obs := in.observables(mounts)
	if t.nfsStats != nil {
		obs = append(obs, in.observables(nfs)...)
	}
	t.version = version
	_, err := m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		t.observeState(&otelSink{o: o, in: in})
		return nil
	}, obs...)
	if err != nil {
		return fmt.Errorf("register metric callback: %w", err)
	}
	t.gatherer = &stateGatherer{t: t, reg: prometheus.Gatherers{t.registry, t.runtime}}
	return nil
}
