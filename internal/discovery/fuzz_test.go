package discovery

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParse feeds arbitrary mount tables to Parse and everything built on
// it: nothing may panic, every mount point is absolute, a tunnel address is
// only ever a loopback host:port, and Diff only proposes mounts under the
// prefix of the wanted types; a filtered parse keeps exactly the entries of
// the full table that pass the filter.
func FuzzParse(f *testing.F) {
	if b, err := os.ReadFile(filepath.Join("testdata", "mountinfo")); err == nil {
		f.Add(b)
	}
	f.Add([]byte("36 35 98:0 / /var/lib/kubelet/pods/a/volumes/x rw,noatime master:1 - nfs4 127.0.0.1:/ rw,vers=4.1,addr=127.0.0.1,port=20049\n"))
	f.Add([]byte("1 1 0:1 / /mnt\\040with\\012newline rw - tmpfs tmpfs rw\n"))
	f.Add([]byte("1 1 0:1 / /\"quote\xff rw - nfs4 fs:/ rw,addr=::1,port=-1\n"))
	f.Add([]byte("garbage\n"))
	f.Add([]byte("1 1 0:1 / /mnt rw - nfs4 a:/ rw\n2 1 0:2 / /mnt rw - tmpfs t rw\n3 1 0:3 / /x rw - nfs4 b:/ rw\n4 3 0:4 / /x rw - ext4 c rw\n5 1 0:5 / /x rw - nfs4 d:/ rw\n"))
	f.Add([]byte("1 1 0:1 / /a rw shared:1 master:2 - nfs4 x addr=127.0.0.1,port=2049,port=1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		table, err := Parse(bytes.NewReader(data), nil)
		if err != nil {
			return
		}
		for mp, e := range table {
			if mp != e.Mountpoint {
				t.Fatalf("key %q for entry %q", mp, e.Mountpoint)
			}
			if addr := e.TunnelAddr(); addr != "" &&
				!strings.HasPrefix(addr, "127.0.0.1:") && !strings.HasPrefix(addr, "[::1]:") {
				t.Fatalf("tunnel address %q is not loopback", addr)
			}
			_ = e.Mount()
		}
		// Keeping only some entries gives exactly the full table's
		// (topmost) entries that pass: a covered mount never reappears.
		keep := func(mp, fstype string) bool { return fstype == "nfs4" || mp == "/mnt" }
		kept, err := Parse(bytes.NewReader(data), keep)
		if err != nil {
			t.Fatalf("filtered parse failed where the full one did not: %v", err)
		}
		want := 0
		for mp, e := range table {
			if keep(mp, e.FSType) {
				want++
				if kept[mp] != e {
					t.Fatalf("kept %+v at %q, the table has %+v", kept[mp], mp, e)
				}
			}
		}
		if len(kept) != want {
			t.Fatalf("kept %d entries, want %d", len(kept), want)
		}
		add, _ := Diff(nil, table, []string{"nfs4", "tmpfs"}, "/var/lib/kubelet/pods")
		for _, m := range add {
			if !under(m.Path, "/var/lib/kubelet/pods") || !typeWanted(m.FSType, []string{"nfs4", "tmpfs"}) {
				t.Fatalf("Diff proposed %+v", m)
			}
		}
	})
}
