package attribution

import (
	"strconv"
	"strings"
	"testing"
)

// FuzzStateName: a state file name either is rejected or splits into a
// file system id, a key and a port that rebuild the name, as efs-utils'
// get_mount_specific_filename builds it from the mount point.
func FuzzStateName(f *testing.F) {
	for _, s := range []string{
		"fs-deadbeef.mnt.efs.20407",
		"fs-0123456789abcdef0.var.lib.kubelet.pods.u.volumes.kubernetes.io~csi.pv.mount.20127",
		"~fs-deadbeef.mnt.20000", "stunnel-config.fs-deadbeef.mnt.20000", "fs-deadbeef.20049", "fs-.x.1", "fs-a..0",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		key, fsID, port, ok := parseStateName(name)
		if !ok {
			return
		}
		if !bareFSID.MatchString(fsID) || port <= 0 || port > 65535 {
			t.Fatalf("parseStateName(%q) = %q %q %d", name, key, fsID, port)
		}
		if fsID+"."+key != name || !strings.HasSuffix(name, strconv.Itoa(port)) {
			t.Fatalf("parseStateName(%q) = %q %q %d does not rebuild the name", name, key, fsID, port)
		}
	})
}
