package attribution_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/efs-health-agent/efs-health-agent/attribution"
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
		{"/mnt/new", 20400, "", ""}, // "~" file: the mount is not done
		{"/mnt/efs", 20999, "", ""},
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
