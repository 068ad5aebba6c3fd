// Package discovery follows the kernel's mount table. It keeps an
// in-memory copy of the entries that matter, the configured mount points
// and the mounts of the wanted types under the prefix (so its size follows
// what is monitored, not the size of the table), which the agent consults
// to tell whether a path is still the mount it registered (without
// touching the path); and, when asked, it registers every mount of given
// filesystem types under a prefix (the kubelet's pods directory) and
// unregisters each one that disappears.
//
// It reads /proc/<pid>/mountinfo, parsed by github.com/moby/sys/mountinfo,
// and, when a mount goes through efs-proxy, efs-utils' state directory (a
// local directory, bounded by package attribution); it never stats or
// opens a mount point, so a hung mount cannot block it.
//
// Since efs-utils v2 every mount.efs (and mount.s3files) mount goes through
// efs-proxy, TLS or not (only the legacy stunnel option uses stunnel): the
// kernel mounts NFS 4.1 from 127.0.0.1 on the proxy's port, so the table
// shows the source 127.0.0.1:<subpath> and the options
// addr=127.0.0.1,port=<port> (Entry.TunnelAddr). Such a mount is attributed
// from its state file, whose name carries the file system id and port; TLS
// mounts add fsId and accessPoint, non-TLS ones carry neither. The file of
// a mount in progress, "~<name>", is read too (efs-utils renames it only
// after mount.nfs4 has returned), so a new mount is attributed when first
// seen. Each entry says what the mount is (Entry.Attribution): file system,
// access point and service (EFS or S3 Files), pod and volume.
//
// Changes are noticed at once through the kernel's notification on the
// mountinfo file (poll with POLLPRI), with a periodic re-read as fallback.
//
// The table is an input that may block or lie, and is read accordingly:
// opened with O_NONBLOCK and refused unless fstat says it is a regular
// file (a FIFO, a device, a socket), read on a goroutine of its own that
// is abandoned after ReadStall without progress (at most one such reader
// is ever stuck), and at most MaxTableBytes. A failed read keeps the last
// table and is retried, so discovery recovers by itself. An entry that a
// read lacks is dropped only when a second read, ConfirmDelay later,
// lacks it too (a torn read is not a departure), and a mount that left is
// unregistered before the table without it is published.
package discovery
