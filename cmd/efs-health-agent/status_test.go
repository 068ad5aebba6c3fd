package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/efs-health-agent/efs-health-agent/internal/testenv/testutil"
)

// TestStatusPageNamesNode runs the agent and opens its status page: it
// names the node (from NODE_NAME, as the manifests set it) and the
// agent's version, and links to the JSON, the metrics and the recent
// checks.
func TestStatusPageNamesNode(t *testing.T) {
	t.Parallel()
	cfg, _, err := parseConfig("t", []string{"--mount", t.TempDir()}, env(map[string]string{"NODE_NAME": "ip-10-0-1-17.ec2.internal"}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, cfg, env(nil), ln, slog.New(slog.DiscardHandler)) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()
	client := &http.Client{Timeout: 5 * time.Second}
	var page string
	testutil.WaitFor(t, "the status page", func() bool {
		resp, err := client.Get("http://" + ln.Addr().String() + "/")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		page = b.String()
		return resp.StatusCode == http.StatusOK
	})
	for _, want := range []string{`<strong id="node">ip-10-0-1-17.ec2.internal</strong>`, `efs-health-agent <span id="version">` + version + `</span>`,
		`<a href="healthz/mounts"`, `<a href="metrics"`, `<a href="debug/checks"`} {
		if !strings.Contains(page, want) {
			t.Errorf("status page lacks %s:\n%s", want, page)
		}
	}
}
