package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/efs-health-agent/efs-health-agent/httpapi"
	"github.com/efs-health-agent/efs-health-agent/internal/pathesc"
)

// TestPathsDifferingInAnInvalidByte runs the agent on two mounts whose
// paths differ only in one invalid UTF-8 byte, one a real directory and
// one missing: /metrics has two series and /healthz/mounts two keys, each
// with its own health, so the failing mount is not masked by the healthy
// one.
func TestPathsDifferingInAnInvalidByte(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good, bad := filepath.Join(dir, "vol\xff"), filepath.Join(dir, "vol\xfe")
	if err := os.Mkdir(good, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg, _, err := parseConfig("t", []string{"--mount", good, "--mount", bad, "--check-interval=1s", "--check-timeout=1s",
		"--node-name=node-1"}, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, cfg, env(nil), ln, slog.New(slog.NewTextHandler(io.Discard, nil))) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()
	client := &http.Client{Timeout: 5 * time.Second}
	fetch := func(path string) string {
		t.Helper()
		resp, err := client.Get(base + path)
		if err != nil {
			return ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	goodKey, badKey := pathesc.Escape(good), pathesc.Escape(bad)
	var mounts map[string]httpapi.MountJSON
	deadline := time.Now().Add(30 * time.Second)
	for {
		mounts = nil
		_ = json.Unmarshal([]byte(fetch(httpapi.PathMounts)), &mounts)
		if g, b := mounts[goodKey], mounts[badKey]; g.State != "" && g.State != "pending" && b.State != "" && b.State != "pending" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("both mounts not checked in time: %v", mounts)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(mounts) != 2 || !mounts[goodKey].IsHealthy || mounts[badKey].IsHealthy ||
		mounts[goodKey].MountPath != goodKey || mounts[badKey].MountPath != badKey {
		t.Fatalf("/healthz/mounts: %+v", mounts)
	}
	if back, err := pathesc.Unescape(mounts[badKey].MountPath); err != nil || back != bad {
		t.Fatalf("mountPath %q does not unescape to the path: %q %v", mounts[badKey].MountPath, back, err)
	}
	parser := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(fetch(httpapi.PathMetrics)))
	if err != nil {
		t.Fatal(err)
	}
	series := map[string]float64{}
	for _, m := range fams["efs_mount_health_status"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "mount_path" {
				series[l.GetValue()] = m.GetGauge().GetValue()
			}
		}
	}
	if len(series) != 2 || series[goodKey] != 1 || series[badKey] != 0 {
		t.Fatalf("efs_mount_health_status series %v, want %q=1 and %q=0", series, goodKey, badKey)
	}
}
