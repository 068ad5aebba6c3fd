package discovery_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/efs-health-agent/efs-health-agent/agent"
	"github.com/efs-health-agent/efs-health-agent/internal/discovery"
	"github.com/efs-health-agent/efs-health-agent/internal/testenv/testutil"
	"github.com/efs-health-agent/efs-health-agent/internal/testenv/tmpfs"
)

const pods = "/var/lib/kubelet/pods"

func fixture(t *testing.T) map[string]discovery.Entry {
	t.Helper()
	f, err := os.Open("testdata/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tab, err := discovery.Parse(f, nil)
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
		{discovery.Config{MountInfo: "/proc/self/mountinfo", Interval: time.Nanosecond}, "discovery interval 1ns: must be from 1s to 1h0m0s"},
		{discovery.Config{MountInfo: "/proc/self/mountinfo", Interval: time.Hour + 1}, "discovery interval 1h0m0.000000001s: must be from 1s"},
	} {
		if err := tc.cfg.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%+v) = %v, want %q", tc.cfg, err, tc.want)
		}
	}
}

// TestFollowsRealMounts mounts and unmounts tmpfs under a temp prefix on
// this machine; with a one-minute interval, only the kernel's change
// notification can make discovery notice within seconds.
func TestFollowsRealMounts(t *testing.T) {
	testutil.RequireRoot(t, "mount tmpfs")
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
		unmount, err := tmpfs.Mount(dir, "size=1m")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(unmount)
	}
	registered := func(p string) bool { _, ok := mon.Status(p); return ok }
	// Within 5s: the interval is a minute, so only the kernel's change
	// notification can make discovery notice in time.
	wait := func(what string, cond func() bool) {
		t.Helper()
		testutil.WaitForWithin(t, 5*time.Second, what, cond)
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
	// Unregistered first, then out of the table that Lookup reads.
	wait("pod-a unregistered and out of the table", func() bool { _, _, ok := w.Lookup(a); return !registered(a) && !ok })
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

// TestTableKeepsWhatIsMonitored reads a 100,000-line mount table: only the
// mounts of the wanted types under the prefix and the configured mount
// points stay in memory, the topmost of stacked mounts decides, and the
// heap kept is a small fraction of what the whole table would cost.
// Not parallel, so that no other test allocates during the measurement.
func TestTableKeepsWhatIsMonitored(t *testing.T) {
	const lines, wanted = 100_000, 100
	static := "/mnt/static"                      // configured, of an unwanted type
	covered := pods + "/covered/volumes/x/mount" // nfs4 under a later tmpfs
	uncovered := "/mnt/uncovered"                // configured, tmpfs then nfs4 on top
	var b strings.Builder
	b.WriteString("22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n")
	fmt.Fprintf(&b, "23 22 0:30 / %s rw - ext4 /dev/vdb rw\n", static)
	fmt.Fprintf(&b, "24 22 0:31 / %s rw - nfs4 fs-1:/ rw,addr=10.0.0.1\n", covered)
	fmt.Fprintf(&b, "25 24 0:32 / %s rw - tmpfs tmpfs rw\n", covered)
	fmt.Fprintf(&b, "26 22 0:33 / %s rw - tmpfs tmpfs rw\n", uncovered)
	fmt.Fprintf(&b, "27 26 0:34 / %s rw - nfs4 fs-2:/ rw,addr=10.0.0.2\n", uncovered)
	for i := 0; i < lines-6; i++ {
		switch {
		case i < wanted:
			fmt.Fprintf(&b, "%d 22 0:%d / %s/pod-%06d/volumes/kubernetes.io~csi/pv/mount rw,relatime shared:%d - nfs4 fs-%d.efs.us-east-1.amazonaws.com:/ rw,vers=4.1,rsize=1048576,wsize=1048576,hard,proto=tcp,timeo=600,retrans=2,addr=10.0.1.20\n", 100+i, 100+i, pods, i, i, i)
		case i%3 == 0: // the wanted type outside the prefix
			fmt.Fprintf(&b, "%d 22 0:%d / /mnt/other/%06d rw,relatime shared:%d - nfs4 fs-%d:/ rw,vers=4.1,addr=10.0.1.21\n", 100+i, 100+i, i, i, i)
		default: // other types under the prefix: projected volumes, empty dirs, overlay
			fmt.Fprintf(&b, "%d 22 0:%d / %s/pod-%06d/volumes/kubernetes.io~projected/token-%06d rw,relatime shared:%d - tmpfs tmpfs rw,size=1024k,inode64,noswap,some,more,options\n", 100+i, 100+i, pods, i, i, i)
		}
	}
	file := filepath.Join(t.TempDir(), "mountinfo")
	if err := os.WriteFile(file, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(b.String(), "\n"); n != lines {
		t.Fatalf("generated %d lines, want %d", n, lines)
	}
	b = strings.Builder{}
	w, err := discovery.New(discovery.Config{MountInfo: file, FSTypes: []string{"nfs4"}, Prefix: pods,
		Paths: []string{static, uncovered, "/mnt/not-a-mount"}, Interval: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	table, err := w.Refresh()
	if err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if len(table) != wanted+2 {
		t.Fatalf("kept %d entries, want %d (the wanted mounts and two configured ones)", len(table), wanted+2)
	}
	for _, c := range []struct {
		path, fstype string
		ok           bool
	}{
		{static, "ext4", true},
		{uncovered, "nfs4", true},
		{covered, "", false},
		{"/mnt/not-a-mount", "", false},
		{"/mnt/other/000300", "", false},
		{pods + "/pod-000101/volumes/kubernetes.io~projected/token-000101", "", false},
		{pods + "/pod-000099/volumes/kubernetes.io~csi/pv/mount", "nfs4", true},
	} {
		if fstype, _, ok := w.Lookup(c.path); ok != c.ok || fstype != c.fstype {
			t.Errorf("Lookup(%q) = %q, %v; want %q, %v", c.path, fstype, ok, c.fstype, c.ok)
		}
	}
	// About 100 kept entries of a few hundred bytes each; the whole table
	// held in memory costs tens of megabytes.
	const bound = 2 << 20
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > bound {
		t.Errorf("heap grew by %d bytes reading the table, want at most %d", grew, bound)
	}
	runtime.KeepAlive(table)
}
