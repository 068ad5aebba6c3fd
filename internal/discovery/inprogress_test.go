package discovery_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/efs-health-agent/efs-health-agent/agent"
	"github.com/efs-health-agent/efs-health-agent/internal/attribution"
	"github.com/efs-health-agent/efs-health-agent/internal/discovery"
	"github.com/efs-health-agent/efs-health-agent/internal/testenv/testutil"
)

// lockedBuffer is a log sink safe for the watcher's goroutine.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestMountInProgressAttributedAtOnce: a mount that has just appeared in
// the table is still described by efs-utils' "~<name>" state file, renamed
// only after mount.nfs4 has returned (bootstrap_proxy,
// src/efs_utils_common/proxy.py, efs-utils v3.2.0). It is attributed when
// discovered, in its "mount discovered" line and its registration, not one
// discovery interval later; its service_type names it an S3 Files mount.
func TestMountInProgressAttributedAtOnce(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pods := filepath.Join(dir, "pods")
	target := filepath.Join(pods, "7f3c", "volumes", "kubernetes.io~csi", "pv-s3", "mount")
	state := filepath.Join(dir, "efs")
	if err := os.MkdirAll(state, 0o750); err != nil {
		t.Fatal(err)
	}
	name := "fs-0123456789abcdef0." + attribution.SafeMountpoint(target) + ".20500"
	body := fmt.Sprintf(`{"pid": 7171, "cmd": ["/usr/bin/efs-proxy"], "files": [], "mount_time": 1764079200.5, "mountpoint": %q, "service_type": "s3files", "fsId": "fs-0123456789abcdef0"}`, target)
	if err := os.WriteFile(filepath.Join(state, "~"+name), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	mi := filepath.Join(dir, "mountinfo")
	line := fmt.Sprintf("101 22 0:51 / %s rw,relatime shared:61 - nfs4 127.0.0.1:/ rw,vers=4.1,hard,noresvport,proto=tcp,port=20500,timeo=600,retrans=2,sec=sys,clientaddr=127.0.0.1,local_lock=none,addr=127.0.0.1\n", target)
	if err := os.WriteFile(mi, []byte(line), 0o644); err != nil {
		t.Fatal(err)
	}
	var logs lockedBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	w, err := discovery.New(discovery.Config{MountInfo: mi, FSTypes: []string{"nfs4"}, Prefix: pods, Interval: time.Minute, StateDir: state, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	cfg := agent.DefaultConfig()
	cfg.Hostname, cfg.Logger = "n", log
	mon, err := agent.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx, mon, nil) }()
	defer func() { cancel(); <-done }()
	testutil.WaitFor(t, "the mount discovered", func() bool { return strings.Contains(logs.String(), "mount discovered") })
	want := agent.Attribution{FileSystemID: "fs-0123456789abcdef0", Service: agent.ServiceS3Files, PodUID: "7f3c", Volume: "pv-s3"}
	st, ok := mon.Status(target)
	if !ok {
		t.Fatal("not registered")
	}
	if st.Attribution != want {
		t.Fatalf("registered %+v, want %+v", st.Attribution, want)
	}
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, "mount discovered") && (!strings.Contains(l, "filesystem_id=fs-0123456789abcdef0") || !strings.Contains(l, "service=s3files")) {
			t.Fatalf("mount discovered line unattributed: %s", l)
		}
	}
}
