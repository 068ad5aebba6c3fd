package attribution_test

import (
	"strings"
	"testing"

	"github.com/efs-health-agent/efs-health-agent/internal/attribution"
)

// FuzzParsers feeds arbitrary strings to the source, path and volume id
// parsers: nothing may panic, and whatever comes out is well formed (a
// file system id is fs- and hex, an access point fsap- and hex, a pod UID
// and a volume are one non-empty path element each).
func FuzzParsers(f *testing.F) {
	for _, s := range []string{
		"fs-0123456789abcdef0.efs.us-east-1.amazonaws.com:/",
		"us-east-1a.fs-0123456789abcdef0.efs.us-east-1.amazonaws.com:/x",
		"/var/lib/kubelet/pods/uid/volumes/kubernetes.io~csi/pv/mount",
		"/pods//volumes/kubernetes.io~nfs/..",
		"fs-0123456789abcdef0::fsap-0123456789abcdef0",
		"efs:fs-abcd1234:/p:fsap-abcd1234",
		"127.0.0.1:/", ":", "", "\xff",
	} {
		f.Add(s)
	}
	hexID := func(id, prefix string) bool {
		rest, ok := strings.CutPrefix(id, prefix)
		return ok && rest != "" && strings.Trim(rest, "0123456789abcdef") == ""
	}
	element := func(s string) bool { return s != "" && s != "." && s != ".." && !strings.Contains(s, "/") }
	f.Fuzz(func(t *testing.T, s string) {
		if a := attribution.FromSource(s); a.FileSystemID != "" && !hexID(a.FileSystemID, "fs-") {
			t.Fatalf("FromSource(%q) = %+v", s, a)
		}
		if a := attribution.FromPath(s); (a.PodUID != "" || a.Volume != "") && (!element(a.PodUID) || !element(a.Volume)) {
			t.Fatalf("FromPath(%q) = %+v", s, a)
		}
		a, err := attribution.FromVolumeID(s)
		if err == nil && (!hexID(a.FileSystemID, "fs-") || (a.AccessPoint != "" && !hexID(a.AccessPoint, "fsap-"))) {
			t.Fatalf("FromVolumeID(%q) = %+v", s, a)
		}
		if err != nil && !a.IsZero() {
			t.Fatalf("FromVolumeID(%q) = %+v with error %v", s, a, err)
		}
		_ = attribution.SafeMountpoint(s)
	})
}
