package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/efs-health-agent/efs-health-agent/agent"
)

// TestShutdownBoundStated: the timers of a shutdown fit in shutdownBound,
// and the DaemonSets say that bound, with a grace period no shorter, so
// an operator reading either learns when kubelet's SIGKILL could come.
// (The end-to-end tests measure the exit itself: test/e2e.)
func TestShutdownBoundStated(t *testing.T) {
	t.Parallel()
	if timers := max(httpShutdownGrace, agent.ShutdownDrain) + telemetryFlushGrace; timers >= shutdownBound {
		t.Fatalf("shutdown timers add up to %v, not within the stated %v", timers, shutdownBound)
	}
	said := regexp.MustCompile(`SIGTERM exits within (\d+) ?s\b`)
	grace := regexp.MustCompile(`terminationGracePeriodSeconds: (\d+)`)
	for _, f := range []string{"deploy/kustomize/base/daemonset.yaml", "deploy/helm/efs-health-agent/templates/daemonset.yaml"} {
		b, err := os.ReadFile(filepath.Join("..", "..", f))
		if err != nil {
			t.Fatal(err)
		}
		m := said.FindSubmatch(b)
		if m == nil {
			t.Errorf("%s does not say when SIGTERM exits (%s)", f, said)
			continue
		}
		if n, _ := strconv.Atoi(string(m[1])); time.Duration(n)*time.Second != shutdownBound {
			t.Errorf("%s says SIGTERM exits within %s s; the bound is %v", f, m[1], shutdownBound)
		}
		g := grace.FindSubmatch(b)
		if g == nil {
			t.Errorf("%s sets no terminationGracePeriodSeconds", f)
			continue
		}
		if n, _ := strconv.Atoi(string(g[1])); time.Duration(n)*time.Second < shutdownBound {
			t.Errorf("%s: terminationGracePeriodSeconds shorter than the shutdown bound %v", f, shutdownBound)
		}
	}
}
