package discovery_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/efs-health-agent/efs-health-agent/agent"
	"github.com/efs-health-agent/efs-health-agent/internal/discovery"
	"github.com/efs-health-agent/efs-health-agent/internal/testenv/faultfs"
	"github.com/efs-health-agent/efs-health-agent/internal/testenv/testutil"
	"github.com/efs-health-agent/efs-health-agent/internal/testenv/tmpfs"
)

func abs(t *testing.T, p string) string {
	t.Helper()
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestAttributionFromTableAndStateFiles: every mount of the fixture table
// is attributed from what the node knows: the EFS name in the source, the
// kubelet path, and, for the TLS mount whose source is only 127.0.0.1:/,
// efs-utils' state file for its tunnel port (testdata/efs-state, laid out
// and filled as efs-utils writes it).
func TestAttributionFromTableAndStateFiles(t *testing.T) {
	t.Parallel()
	for _, withState := range []bool{true, false} {
		// The table keeps what is monitored: NFS mounts under the kubelet
		// directory, and the configured paths of any type.
		cfg := discovery.Config{MountInfo: abs(t, "testdata/mountinfo"), Interval: time.Second,
			FSTypes: []string{"nfs4", "nfs"}, Prefix: pods, Paths: []string{"/mnt/other-efs", "/proc"},
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
		if withState {
			cfg.StateDir = abs(t, "testdata/efs-state")
		}
		w, err := discovery.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		tab, err := w.Refresh()
		if err != nil {
			t.Fatal(err)
		}
		tls := agent.Attribution{PodUID: "bbb", Volume: "efs tls"}
		if withState {
			tls.FileSystemID, tls.AccessPoint = "fs-0123456789abcdef0", "fsap-0fedcba9876543210"
		}
		for path, want := range map[string]agent.Attribution{
			pods + "/bbb/volumes/kubernetes.io~csi/efs tls/mount": tls,
			pods + "/aaa/volumes/kubernetes.io~csi/efs-pv/mount":  {FileSystemID: "fs-0123", Service: agent.ServiceEFS, PodUID: "aaa", Volume: "efs-pv"},
			pods + "/ddd/volumes/kubernetes.io~nfs/legacy":        {PodUID: "ddd", Volume: "legacy"},
			"/mnt/other-efs": {FileSystemID: "fs-9", Service: agent.ServiceEFS},
			"/proc":          {},
		} {
			e, ok := tab[path]
			if !ok {
				t.Fatalf("%s not in the table", path)
			}
			if got := e.Mount().Attribution; got != want {
				t.Errorf("state files %v: %s attributed %+v, want %+v", withState, path, got, want)
			}
		}
	}
}

func TestStateDirValidate(t *testing.T) {
	t.Parallel()
	_, err := discovery.New(discovery.Config{MountInfo: "/proc/self/mountinfo", Interval: time.Second, StateDir: "var/run/efs"})
	if err == nil || err.Error() != `efs-utils state dir "var/run/efs": must be absolute` {
		t.Fatalf("New = %v", err)
	}
}

// TestAttributesRealMounts: a FUSE volume mounted with an EFS source under
// the kubelet layout is discovered with its file system, pod and volume;
// a tmpfs registered by configuration under the same layout gets its pod
// and volume from the watcher, the rest of its registration kept.
func TestAttributesRealMounts(t *testing.T) {
	testutil.RequireFUSE(t)
	testutil.RequireRoot(t, "mount tmpfs")
	prefix := filepath.Join(t.TempDir(), "pods")
	const uid, pv = "0b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d", "pv-efs-shared"
	vol := filepath.Join(prefix, uid, "volumes", "kubernetes.io~csi", pv, "mount")
	static := filepath.Join(prefix, "static-uid", "volumes", "kubernetes.io~csi", "pv-static", "mount")
	for _, d := range []string{vol, static} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	fs, err := faultfs.Mount(vol, t.TempDir(), faultfs.Options{Source: "fs-0123456789abcdef0.efs.us-east-1.amazonaws.com:/"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = fs.Unmount() })
	unmount, err := tmpfs.Mount(static, "size=1m")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(unmount)

	cfg := agent.DefaultConfig()
	cfg.Hostname = "h"
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	mon, err := agent.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := mon.Register(agent.Mount{Path: static, FSType: "tmpfs"}); err != nil {
		t.Fatal(err)
	}
	w, err := discovery.New(discovery.Config{MountInfo: "/proc/self/mountinfo", FSTypes: []string{"fuse.faultfs"},
		Prefix: prefix, Interval: time.Minute, Logger: cfg.Logger, StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx, mon, []string{static}) }()
	defer func() { cancel(); <-done }()

	attr := func(p string) agent.Attribution {
		st, ok := mon.Status(p)
		if !ok {
			return agent.Attribution{}
		}
		return st.Attribution
	}
	want := agent.Attribution{FileSystemID: "fs-0123456789abcdef0", Service: agent.ServiceEFS, PodUID: uid, Volume: pv}
	wantStatic := agent.Attribution{PodUID: "static-uid", Volume: "pv-static"}
	deadline := time.Now().Add(10 * time.Second)
	for attr(vol) != want || attr(static) != wantStatic {
		if time.Now().After(deadline) {
			t.Fatalf("discovered %+v, want %+v; configured %+v, want %+v", attr(vol), want, attr(static), wantStatic)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if st, _ := mon.Status(static); st.FSType != "tmpfs" || st.Source != "" {
		t.Fatalf("the configured registration changed: %+v", st.Mount)
	}
	if st, _ := mon.Status(vol); st.FSType != "fuse.faultfs" || st.Source != "fs-0123456789abcdef0.efs.us-east-1.amazonaws.com:/" {
		t.Fatalf("discovered as %+v", st.Mount)
	}
}
