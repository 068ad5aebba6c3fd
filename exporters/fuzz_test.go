package exporters_test

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/efs-health-agent/efs-health-agent/agent"
	"github.com/efs-health-agent/efs-health-agent/exporters"
	"github.com/efs-health-agent/efs-health-agent/internal/pathesc"
)

// FuzzMetricsMountPaths scrapes /metrics with mount paths made of any bytes
// (quotes, backslashes, newlines, invalid UTF-8): the scrape must succeed,
// parse as Prometheus text, and carry exactly one efs_mount_health_status
// series per mount, labelled with the path escaped by pathesc.Escape
// (invalid UTF-8 as \xNN, since a label value must be UTF-8): distinct
// paths are always distinct series.
func FuzzMetricsMountPaths(f *testing.F) {
	f.Add("/mnt/\"quoted\"", "/mnt/line\nbreak")
	f.Add("/mnt/\xff\xfe", "/mnt/a\\b")
	f.Add("/mnt/}{,=", "/mnt/\u2028#")
	f.Add("/mnt/a\xff", "/mnt/a\xfe")
	f.Add("/mnt/a\xff", `/mnt/a\xff`)
	f.Fuzz(func(t *testing.T, a, b string) {
		if a == b {
			return
		}
		src := &source{}
		sts, sum := live(a, b)
		sts[1].State = agent.StateUnhealthy
		src.set(sts, sum)
		tel := newTel(t, src, exporters.Options{})
		body := scrape(t, tel, "")
		parser := expfmt.NewTextParser(model.LegacyValidation)
		fams, err := parser.TextToMetricFamilies(strings.NewReader(body))
		if err != nil {
			t.Fatalf("scrape does not parse: %v\n%s", err, body)
		}
		fam := fams["efs_mount_health_status"]
		if fam == nil || len(fam.Metric) != 2 {
			t.Fatalf("efs_mount_health_status: %v\n%s", fam, body)
		}
		want := map[string]float64{pathesc.Escape(a): 1, pathesc.Escape(b): 0}
		for _, m := range fam.Metric {
			var path string
			for _, l := range m.Label {
				if l.GetName() == "mount_path" {
					path = l.GetValue()
				}
			}
			if !utf8.ValidString(path) || !model.LabelValue(path).IsValid() {
				t.Fatalf("label value %q", path)
			}
			v, ok := want[path]
			if !ok || m.GetGauge().GetValue() != v {
				t.Fatalf("series %q = %v, want one of %v", path, m.GetGauge().GetValue(), want)
			}
			delete(want, path)
		}
	})
}
