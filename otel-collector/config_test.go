package otelcollector_test

import (
	"os"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/efs-health-agent/efs-health-agent/exporters"
)

// config is the part of a collector configuration these tests read.
type config struct {
	Receivers  map[string]any
	Processors map[string]struct {
		MetricStatements []struct {
			Context    string
			Statements []string
		} `json:"metric_statements"`
	}
	Exporters map[string]struct {
		AddMetricSuffixes  *bool `json:"add_metric_suffixes"`
		MetricDeclarations []struct {
			Dimensions          [][]string `json:"dimensions"`
			MetricNameSelectors []string   `json:"metric_name_selectors"`
		} `json:"metric_declarations"`
		IndexedAttributes []string `json:"indexed_attributes"`
	}
	Extensions map[string]any
	Service    struct {
		Extensions []string
		Pipelines  map[string]struct {
			Receivers, Processors, Exporters []string
		}
	}
}

func load(t *testing.T, name string) config {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	var c config
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return c
}

// TestEmptyReasonDropped: successful checks count with reason="", which
// awsemf would send as an empty CloudWatch dimension (rejected); the metrics
// pipeline deletes the empty attribute before any exporter.
func TestEmptyReasonDropped(t *testing.T) {
	c := load(t, "config.yaml")
	procs := c.Service.Pipelines["metrics"].Processors
	var found bool
	for _, name := range procs {
		for _, ms := range c.Processors[name].MetricStatements {
			for _, s := range ms.Statements {
				if ms.Context == "datapoint" && strings.ReplaceAll(s, " ", "") == `delete_key(attributes,"reason")whereattributes["reason"]==""` {
					found = true
				}
			}
		}
	}
	if !found {
		t.Fatalf("metrics pipeline %v does not delete an empty reason attribute", procs)
	}
	// The CloudWatch overlay counts successful checks by outcome alone.
	cw := load(t, "config-cloudwatch.yaml")
	for _, d := range cw.Exporters["awsemf"].MetricDeclarations {
		if slices.Contains(d.MetricNameSelectors, "^efs_mount_checks_total$") {
			if !slices.ContainsFunc(d.Dimensions, func(ds []string) bool { return slices.Equal(ds, []string{"outcome"}) }) {
				t.Errorf("efs_mount_checks_total has no [outcome] dimension set for checks without a reason: %v", d.Dimensions)
			}
			return
		}
	}
	t.Error("config-cloudwatch.yaml does not declare efs_mount_checks_total")
}

// TestNamesMatchTheAgent: the Prometheus exporter adds no suffixes, and the
// X-Ray indexed attributes are the agent's span attribute names.
func TestNamesMatchTheAgent(t *testing.T) {
	c := load(t, "config.yaml")
	if s := c.Exporters["prometheus"].AddMetricSuffixes; s == nil || *s {
		t.Error("prometheus exporter must set add_metric_suffixes: false")
	}
	cw := load(t, "config-cloudwatch.yaml")
	want := []string{string(exporters.SpanMountPath), string(exporters.SpanFailureReason)}
	if got := cw.Exporters["awsxray"].IndexedAttributes; !slices.Equal(got, want) {
		t.Errorf("awsxray indexed_attributes %v, want the agent's span attributes %v", got, want)
	}
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), "annotation["+string(exporters.SpanFailureReason)+"]") {
		t.Errorf("README.md does not show the X-Ray filter on annotation[%s]", exporters.SpanFailureReason)
	}
}

// TestBuilderHasEveryComponent: every component the configurations use is
// in the builder manifest, so the built collector accepts them.
func TestBuilderHasEveryComponent(t *testing.T) {
	b, err := os.ReadFile("builder-config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	manifest := string(b)
	for _, f := range []string{"config.yaml", "config-cloudwatch.yaml", "e2e-config.yaml"} {
		c := load(t, f)
		kinds := map[string][]string{"receiver": keys(c.Receivers), "extension": keys(c.Extensions)}
		for n := range c.Processors {
			kinds["processor"] = append(kinds["processor"], n)
		}
		for n := range c.Exporters {
			kinds["exporter"] = append(kinds["exporter"], n)
		}
		for kind, names := range kinds {
			for _, n := range names {
				typ, _, _ := strings.Cut(n, "/")
				typ = strings.ReplaceAll(typ, "_", "")
				if !strings.Contains(manifest, "/"+typ+kind+" ") {
					t.Errorf("%s uses %s %s, which builder-config.yaml does not build", f, kind, n)
				}
			}
		}
	}
}

func keys(m map[string]any) []string {
	var k []string
	for n := range m {
		k = append(k, n)
	}
	return k
}
