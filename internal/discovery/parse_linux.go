package discovery

import (
	"fmt"
	"io"

	"github.com/moby/sys/mountinfo"
)

// Parse reads a mountinfo table, one line at a time, and returns the
// entries keep accepts (all of them when keep is nil), by mount point.
// Where several mounts stack on one mount point, the last (topmost) one
// decides: if keep rejects it, the mount point is absent even when a mount
// below it was accepted. Memory is proportional to the entries kept, not
// to the size of the table.
func Parse(r io.Reader, keep func(mountpoint, fstype string) bool) (map[string]Entry, error) {
	out := map[string]Entry{}
	_, err := mountinfo.GetMountsFromReader(r, func(in *mountinfo.Info) (skip, stop bool) {
		if keep == nil || keep(in.Mountpoint, in.FSType) {
			out[in.Mountpoint] = Entry{Mountpoint: in.Mountpoint, FSType: in.FSType, Source: in.Source,
				Options: in.Options + "," + in.VFSOptions}
		} else {
			delete(out, in.Mountpoint)
		}
		return true, false // kept here, not in the library's list
	})
	if err != nil {
		return nil, fmt.Errorf("parse mountinfo: %w", err)
	}
	return out, nil
}
