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
// and, when a mount goes through efs-utils' local TLS tunnel, efs-utils'
// state directory (a local directory, bounded by package attribution); it
// never stats or opens a mount point, so a hung mount cannot block it.
// Each entry says what the mount is (Entry.Attribution): EFS file system
// and access point, pod and volume.
// Changes are noticed at once through the kernel's notification on the
// mountinfo file (poll with POLLPRI), with a periodic re-read as fallback.
package discovery
