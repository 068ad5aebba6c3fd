package discovery_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/efs-health-agent/efs-health-agent/agent"
	"github.com/efs-health-agent/efs-health-agent/discovery"
)

const pods = "/var/lib/kubelet/pods"

func fixture(t *testing.T) map[string]discovery.Entry {
	t.Helper()
	f, err := os.Open("testdata/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tab, err := discovery.Parse(f)
	if err != nil {
		t.Fatal(err)
	}
	return tab
}

func TestParseFixture(t *testing.T) {
	t.Parallel()
	tab := fixture(t)
	tls := pods + "/bbb/volumes/kubernetes.io~csi/efs tls/mount"
	e, ok := tab[tls]
	if !ok {
		t.Fatalf("escaped mount point not decoded; have %v", keys(tab))
	}
	if e.FSType != "nfs4" || e.Source != "127.0.0.1:/" || e.TunnelAddr() != "127.0.0.1:20127" {
		t.Fatalf("TLS mount %+v tunnel %q", e, e.TunnelAddr())
	}
	plain := tab[pods+"/aaa/volumes/kubernetes.io~csi/efs-pv/mount"]
	if plain.TunnelAddr() != "" || plain.Source != "fs-0123.efs.us-east-1.amazonaws.com:/" {
		t.Fatalf("plain EFS mount %+v tunnel %q", plain, plain.TunnelAddr())
	}
	if tab[pods+"/ddd/volumes/kubernetes.io~nfs/legacy"].TunnelAddr() != "" {
		t.Fatal("port 2049 is not a tunnel")
	}
}

func keys(m map[string]discovery.Entry) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func TestDiff(t *testing.T) {
	t.Parallel()
	tab := fixture(t)
	add, remove := discovery.Diff(map[string]agent.Mount{
		pods + "/gone/volumes/x/mount": {Path: pods + "/gone/volumes/x/mount", FSType: "nfs4"},
	}, tab, []string{"nfs4", "nfs"}, pods)
	var got []string
	for _, m := range add {
		got = append(got, m.Path)
	}
	sort.Strings(got)
	want := []string{
		pods + "/aaa/volumes/kubernetes.io~csi/efs-pv/mount",
		pods + "/bbb/volumes/kubernetes.io~csi/efs tls/mount",
		pods + "/ddd/volumes/kubernetes.io~nfs/legacy",
	}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("add %v, want %v (tmpfs and mounts outside the prefix excluded)", got, want)
	}
	if len(remove) != 1 || remove[0] != pods+"/gone/volumes/x/mount" {
		t.Fatalf("remove %v", remove)
	}
	// A mount point whose filesystem changed is registered again.
	cur := map[string]agent.Mount{}
	for _, m := range add {
		cur[m.Path] = m
	}
	changed := cur[want[0]]
	changed.Source = "fs-other:/"
	cur[want[0]] = changed
	add, remove = discovery.Diff(cur, tab, []string{"nfs4", "nfs"}, pods)
	if len(add) != 1 || add[0].Path != want[0] || len(remove) != 0 {
		t.Fatalf("changed source: add %v remove %v", add, remove)
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		cfg  discovery.Config
		want string
	}{
		{discovery.Config{MountInfo: "proc/mountinfo", Interval: time.Second}, `mountinfo path "proc/mountinfo"`},
		{discovery.Config{MountInfo: "/proc/self/mountinfo", FSTypes: []string{"nfs4"}, Prefix: "pods", Interval: time.Second}, `discovery prefix`},
		{discovery.Config{MountInfo: "/proc/self/mountinfo", FSTypes: []string{"nfs 4"}, Prefix: "/p", Interval: time.Second}, `filesystem type "nfs 4"`},
		{discovery.Config{MountInfo: "/proc/self/mountinfo", Interval: 0}, "discovery interval 0s"},
	} {
		if err := tc.cfg.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%+v) = %v, want %q", tc.cfg, err, tc.want)
		}
	}
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("needs root to mount tmpfs, and CI must run it")
		}
		t.Skip("needs root to mount tmpfs")
	}
}

// TestFollowsRealMounts mounts and unmounts tmpfs under a temp prefix on
// this machine; with a one-minute interval, only the kernel's change
// notification can make discovery notice within seconds.
func TestFollowsRealMounts(t *testing.T) {
	requireRoot(t)
	prefix := t.TempDir()
	cfg := agent.DefaultConfig()
	cfg.Hostname = "h"
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	mon, err := agent.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	w, err := discovery.New(discovery.Config{MountInfo: "/proc/self/mountinfo", FSTypes: []string{"tmpfs"},
		Prefix: prefix, Interval: time.Minute, Logger: cfg.Logger})
	if err != nil {
		t.Fatal(err)
	}
	static := filepath.Join(prefix, "static")
	for _, d := range []string{"pod-a", "pod-b", "static"} {
		if err := os.Mkdir(filepath.Join(prefix, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := mon.Register(agent.Mount{Path: static}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx, mon, []string{static}) }()
	defer func() { cancel(); <-done }()
	time.Sleep(300 * time.Millisecond) // the first read has happened

	mount := func(dir string) {
		t.Helper()
		if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=1m"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	}
	registered := func(p string) bool { _, ok := mon.Status(p); return ok }
	wait := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	a := filepath.Join(prefix, "pod-a")
	mount(a)
	wait("pod-a registered", func() bool { return registered(a) })
	if st, _ := mon.Status(a); st.FSType != "tmpfs" {
		t.Fatalf("registered as %+v", st)
	}
	if fstype, _, ok := w.Lookup(a); !ok || fstype != "tmpfs" {
		t.Fatal("Lookup does not see the new mount")
	}
	mount(static)
	mount(filepath.Join(prefix, "pod-b"))
	wait("pod-b registered", func() bool { return registered(filepath.Join(prefix, "pod-b")) })

	if err := unix.Unmount(a, 0); err != nil {
		t.Fatal(err)
	}
	wait("pod-a unregistered", func() bool { return !registered(a) })
	if _, _, ok := w.Lookup(a); ok {
		t.Fatal("Lookup still sees the unmounted path")
	}
	if err := unix.Unmount(static, 0); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if !registered(static) {
		t.Fatal("a statically configured mount was unregistered by discovery")
	}
	if mon.Summary().Mounts != 2 {
		t.Fatalf("%d mounts registered, want static and pod-b", mon.Summary().Mounts)
	}
}
