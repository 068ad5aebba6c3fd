package attribution_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/efs-health-agent/efs-health-agent/agent"
	"github.com/efs-health-agent/efs-health-agent/internal/attribution"
)

const (
	tlsMount = "/var/lib/kubelet/pods/7f3c2a9e-1b4d-4e8a-9c61-2d5f0e8b7a13/volumes/kubernetes.io~csi/pv-shared/mount"
	tlsName  = "fs-0123456789abcdef0.var.lib.kubelet.pods.7f3c2a9e-1b4d-4e8a-9c61-2d5f0e8b7a13.volumes.kubernetes.io~csi.pv-shared.mount.20127"
)

func TestSafeMountpoint(t *testing.T) {
	t.Parallel()
	// The examples of efs-utils' get_file_safe_mountpoint_name.
	for in, want := range map[string]string{"/mnt/efs": "mnt.efs", "/.efs": "efs", "/": "", "/mnt/efs/": "mnt.efs", tlsMount: strings.TrimSuffix(strings.TrimPrefix(tlsName, "fs-0123456789abcdef0."), ".20127")} {
		if got := attribution.SafeMountpoint(in); got != want {
			t.Errorf("SafeMountpoint(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestStateDirFixture reads a state directory laid out as efs-utils
// writes it (testdata/efs-state): a TLS mount with an access point (its
// certificate directory and stunnel config beside it), a plain mount
// through efs-proxy (no certificate details), a temporary file of a mount
// in progress, and a file caught half rewritten.
func TestStateDirFixture(t *testing.T) {
	t.Parallel()
	s := attribution.NewStateDir("testdata/efs-state")
	err := s.Refresh()
	if err == nil || !strings.Contains(err.Error(), "fs-0ccccddddeeeeffff.mnt.torn.20411") {
		t.Errorf("Refresh() = %v, want the torn file named", err)
	}
	for _, tc := range []struct {
		mount  string
		port   int
		fs, ap string
	}{
		{tlsMount, 20127, "fs-0123456789abcdef0", "fsap-0fedcba9876543210"},
		// The same tunnel seen under another root (a mount table read
		// through /host): the port alone identifies it.
		{"/host" + tlsMount, 20127, "fs-0123456789abcdef0", "fsap-0fedcba9876543210"},
		{"/mnt/efs", 20310, "fs-0aaaabbbbccccdddd", ""},
		// Unreadable JSON: attributed from the name.
		{"/mnt/torn", 20411, "fs-0ccccddddeeeeffff", ""},
		// A "~" file (mount.nfs4 has not returned yet), caught half
		// written: attributed from its name, and no error.
		{"/mnt/new", 20400, "fs-0bbbbccccddddeeee", ""},
		// Another port than its file's (a trunked mount shows the port of
		// the connection that carries it): its mount point names it.
		{"/mnt/efs", 20999, "fs-0aaaabbbbccccdddd", ""},
		{"/mnt/none", 20999, "", ""},
	} {
		ts, ok := s.Lookup(tc.mount, tc.port)
		a := ts.Attribution()
		if ok != (tc.fs != "") || a.FileSystemID != tc.fs || a.AccessPoint != tc.ap {
			t.Errorf("Lookup(%q, %d) = %+v %v, want %s %s", tc.mount, tc.port, ts, ok, tc.fs, tc.ap)
		}
	}
	if ts, _ := s.Lookup(tlsMount, 20127); ts.Mountpoint != tlsMount {
		t.Errorf("mountpoint key %q", ts.Mountpoint)
	}
}

func TestStateDirChanges(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := attribution.NewStateDir(filepath.Join(dir, "efs"))
	if err := s.Refresh(); err != nil {
		t.Fatalf("missing dir: %v", err)
	}
	if err := os.Mkdir(filepath.Join(dir, "efs"), 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name, body string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, "efs", name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("fs-11112222.mnt.a.20001", `{"accessPoint":"fsap-11112222","mountpoint":"/mnt/a"}`)
	if err := s.Refresh(); err != nil {
		t.Fatal(err)
	}
	if ts, ok := s.Lookup("/mnt/a", 20001); !ok || ts.AccessPoint != "fsap-11112222" {
		t.Fatalf("new file: %+v %v", ts, ok)
	}
	// Two files on one port (a stale one left behind): only the exact
	// mount point matches.
	write("fs-33334444.mnt.b.20001", `{}`)
	if err := s.Refresh(); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Lookup("/elsewhere", 20001); ok {
		t.Fatal("an ambiguous port matched")
	}
	if ts, ok := s.Lookup("/mnt/b", 20001); !ok || ts.FileSystemID != "fs-33334444" {
		t.Fatalf("exact key: %+v %v", ts, ok)
	}
	if err := os.Remove(filepath.Join(dir, "efs", "fs-11112222.mnt.a.20001")); err != nil {
		t.Fatal(err)
	}
	if err := s.Refresh(); err != nil {
		t.Fatal(err)
	}
	if ts, ok := s.Lookup("/mnt/a", 20001); !ok || ts.FileSystemID != "fs-33334444" {
		t.Fatalf("after removal the port is unique again and names the remaining tunnel: %+v %v", ts, ok)
	}
	// An access point that is not one is ignored, the rest kept.
	write("fs-55556666.mnt.c.20002", `{"accessPoint":"../../etc","fsId":"fs-55556666"}`)
	if err := s.Refresh(); err != nil {
		t.Fatal(err)
	}
	if ts, ok := s.Lookup("/mnt/c", 20002); !ok || ts.AccessPoint != "" || ts.FileSystemID != "fs-55556666" {
		t.Fatalf("bad access point: %+v %v", ts, ok)
	}
}

// TestStateDirBounds holds the two bounds: a file larger than
// MaxStateFileBytes is not parsed (named in the error, attributed from its
// name), and no more than MaxStateFiles entries are looked at.
func TestStateDirBounds(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	big := `{"accessPoint":"fsap-77778888","pad":"` + strings.Repeat("x", attribution.MaxStateFileBytes) + `"}`
	if err := os.WriteFile(filepath.Join(dir, "fs-77778888.mnt.big.20003"), []byte(big), 0o644); err != nil {
		t.Fatal(err)
	}
	s := attribution.NewStateDir(dir)
	if err := s.Refresh(); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("Refresh() = %v", err)
	}
	if ts, ok := s.Lookup("/mnt/big", 20003); !ok || ts.FileSystemID != "fs-77778888" || ts.AccessPoint != "" {
		t.Fatalf("big file: %+v %v", ts, ok)
	}

	many := t.TempDir()
	for i := range attribution.MaxStateFiles + 10 {
		name := fmt.Sprintf("fs-%08x.mnt.m%d.%d", i, i, 10000+i)
		if err := os.WriteFile(filepath.Join(many, name), []byte(`{}`), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s = attribution.NewStateDir(many)
	if err := s.Refresh(); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("more than %d entries", attribution.MaxStateFiles)) {
		t.Fatalf("Refresh() = %v", err)
	}
	found := 0
	for i := range attribution.MaxStateFiles + 10 {
		if _, ok := s.Lookup(fmt.Sprintf("/mnt/m%d", i), 10000+i); ok {
			found++
		}
	}
	if found != attribution.MaxStateFiles {
		t.Fatalf("%d tunnels known, want the bound %d", found, attribution.MaxStateFiles)
	}
}

// TestStateDirMountInProgress: efs-utils writes the complete state file as
// "~<name>" before mount.nfs4 runs and renames it only after mount.nfs4
// has returned (bootstrap_proxy, src/efs_utils_common/proxy.py, efs-utils
// v3.2.0), so a mount that has just appeared in the mount table is
// described by its "~" file. It is attributed from that file at once,
// service included, and stays attributed across the rename.
func TestStateDirMountInProgress(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := attribution.NewStateDir(dir)
	const name = "fs-0123456789abcdef0.mnt.s3.20500"
	// As write_tunnel_state_file writes it for a TLS S3 Files mount, then
	// rewritten with the tunnel's pid.
	body := `{"pid": 7171, "cmd": ["/usr/bin/efs-proxy", "/var/run/efs/stunnel-config.` + name + `", "--tls"], "files": [], "mount_time": 1764079200.5, "mountpoint": "/mnt/s3", "service_type": "s3files", "accessPoint": "fsap-0fedcba9876543210", "fsId": "fs-0123456789abcdef0"}`
	if err := os.WriteFile(filepath.Join(dir, "~"+name), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	want := agent.Attribution{FileSystemID: "fs-0123456789abcdef0", AccessPoint: "fsap-0fedcba9876543210", Service: agent.ServiceS3Files}
	if err := s.Refresh(); err != nil {
		t.Fatalf("Refresh with a mount in progress: %v", err)
	}
	if ts, ok := s.Lookup("/mnt/s3", 20500); !ok || ts.Attribution() != want || ts.Mountpoint != "/mnt/s3" {
		t.Fatalf("\"~\" file: %+v %v, want %+v", ts, ok, want)
	}
	if err := os.Rename(filepath.Join(dir, "~"+name), filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
	if err := s.Refresh(); err != nil {
		t.Fatal(err)
	}
	if ts, ok := s.Lookup("/mnt/s3", 20500); !ok || ts.Attribution() != want {
		t.Fatalf("renamed: %+v %v, want %+v", ts, ok, want)
	}
	// A "~" leftover beside its final file (a crash between write and
	// rename of a later mount on the same name): the final file wins.
	if err := os.WriteFile(filepath.Join(dir, "~"+name), []byte(`{"fsId": "fs-0aaaabbbbccccdddd"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.Refresh(); err != nil {
		t.Fatal(err)
	}
	if ts, ok := s.Lookup("/mnt/s3", 20500); !ok || ts.Attribution() != want {
		t.Fatalf("leftover: %+v %v, want %+v", ts, ok, want)
	}
}

// TestStateDirService: service_type "elasticfilesystem" is EFS, null or
// absent (older efs-utils) is unknown.
func TestStateDirService(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for name, body := range map[string]string{
		"fs-11112222.mnt.a.20001": `{"service_type": "elasticfilesystem"}`,
		"fs-11112222.mnt.b.20002": `{"service_type": null}`,
		"fs-11112222.mnt.c.20003": `{"service_type": "s3files"}`,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s := attribution.NewStateDir(dir)
	if err := s.Refresh(); err != nil {
		t.Fatal(err)
	}
	for mp, want := range map[string]string{"/mnt/a": agent.ServiceEFS, "/mnt/b": "", "/mnt/c": agent.ServiceS3Files} {
		port := map[string]int{"/mnt/a": 20001, "/mnt/b": 20002, "/mnt/c": 20003}[mp]
		if ts, ok := s.Lookup(mp, port); !ok || ts.Service != want {
			t.Errorf("Lookup(%s) = %+v %v, want service %q", mp, ts, ok, want)
		}
	}
}

// TestStateDirTrunked: two TLS mounts of one file system, each through its
// own efs-proxy (testdata/efs-state-trunked, written as efs-utils v3.2.0's
// write_tunnel_state_file writes them). The NFS client trunked the second
// (/mnt/b, its proxy on 20101) onto the first's connection, so the mount
// table shows /mnt/b with port=20100, the first one's. /mnt/b is still
// attributed from its own file (its access point, not /mnt/a's), by the
// mountpoint key efs-utils writes; so it is after /mnt/a is unmounted and
// its file removed, when the port names no file at all. The fixture also
// holds a stale file of an earlier mount at /mnt/b (older mount_time) and
// a file of an efs-utils version without the mountpoint key.
func TestStateDirTrunked(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ents, err := os.ReadDir("testdata/efs-state-trunked")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("testdata/efs-state-trunked", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	const (
		apA   = "fsap-0aaaaaaaaaaaaaaaa"
		apB   = "fsap-0bbbbbbbbbbbbbbbb"
		apOld = "fsap-0dddddddddddddddd"
	)
	s := attribution.NewStateDir(dir)
	check := func(when string, cases []struct {
		mount string
		port  int
		ap    string
	}) {
		t.Helper()
		if err := s.Refresh(); err != nil {
			t.Fatal(err)
		}
		for _, tc := range cases {
			ts, ok := s.Lookup(tc.mount, tc.port)
			if ok != (tc.ap != "") || ts.AccessPoint != tc.ap || (ok && ts.FileSystemID != "fs-0123456789abcdef0") {
				t.Errorf("%s: Lookup(%s, %d) = %+v %v, want access point %q", when, tc.mount, tc.port, ts, ok, tc.ap)
			}
		}
	}
	type lookup = struct {
		mount string
		port  int
		ap    string
	}
	check("both mounted", []lookup{
		{"/mnt/a", 20100, apA},
		// Trunked: the first one's port in the table, its own file.
		{"/mnt/b", 20100, apB},
		{"/host/mnt/b", 20100, apB},
		// Not trunked: the exact key.
		{"/mnt/b", 20101, apB},
		// The stale file's own key still names it exactly.
		{"/mnt/b", 20090, "fsap-0cccccccccccccccc"},
		// A file without the mountpoint key, by its name, also trunked
		// and under a root.
		{"/mnt/old", 20200, apOld},
		{"/mnt/old", 20100, apOld},
		{"/host/mnt/old", 20100, apOld},
		// A bind of /mnt/a that no file names: its port.
		{"/srv/bound", 20100, apA},
		// A path ending in a file's mount point only within a name.
		{"/mnt/xb", 20999, ""},
	})
	if err := os.Remove(filepath.Join(dir, "fs-0123456789abcdef0.mnt.a.20100")); err != nil {
		t.Fatal(err)
	}
	check("first unmounted", []lookup{
		{"/mnt/b", 20100, apB},
		{"/srv/bound", 20100, ""},
	})
	// Two files that name /mnt/b with one mount time: neither is
	// believed, and the port decides.
	tie := `{"mount_time": 1796641260.5, "mountpoint": "/mnt/b", "accessPoint": "fsap-0eeeeeeeeeeeeeeee"}`
	if err := os.WriteFile(filepath.Join(dir, "fs-0123456789abcdef0.mnt.b.20102"), []byte(tie), 0o644); err != nil {
		t.Fatal(err)
	}
	check("tie", []lookup{
		{"/mnt/b", 20100, ""},
		{"/mnt/b", 20102, "fsap-0eeeeeeeeeeeeeeee"},
	})
}
