// Package probes holds the I/O checks the agent runs against a mount.
//
// # The check is a list of steps
//
// A check is the ordered list of named steps in pipeline.go (Steps, and
// Ops for their operation names, which metrics and /debug/checks use):
//
//	preflight   mounttable  the path is still the registered mount (MountTable)
//	            tunnel      the mount's tunnel accepts a connection (TunnelDialer; advisory)
//	root        open        the mount root, as a directory fd
//	read-write  write       create the probe file, write and fsync a payload
//	            read        read it back (O_DIRECT where allowed) and compare
//	            delete      remove it by name (a cleanup step: runs after failures too)
//	read-only   statfs      the filesystem's statistics (a server round trip on NFS)
//	            stat        fstat of the root
//	            readdir     a bounded listing of the root
//
// Preflight steps touch nothing on the mount; a failed mount-table step
// fails the check before any I/O. Every step is timed into the caller's
// OpLog (Options.Log), in this order, with its start, duration and error;
// Options.BeforeOp, when set, is called as each step begins. The runner
// adds its rules:
//
//   - A create refused with EROFS (a read-only mount) runs the read-only
//     steps instead, in ModeReadOnly.
//   - A create refused with EACCES/EPERM on a root that opened (a
//     root-squashed export, an EFS file-system policy without
//     ClientRootAccess) runs the read-only steps too, in ModeWriteDenied:
//     the volume serves its pods, the agent may just not write there.
//     Options.RequireWriteCheck makes the refusal a failure
//     (permission_denied) instead. Result.WriteDenied keeps the refusal.
//   - A probe file that vanished mid-check (ErrProbeFileLost) is retried
//     once with a fresh name.
//   - The tunnel step is advisory: its failure never fails a check. Since
//     efs-utils v2 every EFS mount goes through efs-proxy on the host's
//     loopback, which an agent in a network namespace of its own cannot
//     reach while the mount works. A failed dial is kept in
//     Result.TunnelErr. When a later step fails, the tunnel is the likely
//     cause: the check's error wraps both errors and its reason is
//     tunnel_down. When the check works, it is healthy and TunnelErr only
//     says the tunnel could not be checked from here. A check that hangs
//     past its deadline after a failed dial is the caller's to judge (its
//     OpLog holds the tunnel step's error): package agent then
//     reports tunnel_down instead of timeout or hung.
//
// Adding a step is one edit in this package: a row in the steps table
//
//	{Op: OpChmod, Stage: StageReadWrite, do: (*run).chmod},
//
// placed where it runs, an Op constant, and the method that does it (in
// io_linux.go when it does I/O on the mount, with a stub in io_other.go).
// Metrics, /debug/checks and the check subcommand pick it up from Ops.
//
// # What a read-write check costs
//
// A read-write check creates a uniquely named file in the probe
// directory DirName under the mount root (relative to that directory's
// fd, which is looked up relative to the root's without following a
// symlink, and made when missing; O_RDWR|O_CREAT|O_NOFOLLOW, mode 0600;
// with Options.InRoot in the root itself, and O_EXCL there), sets O_DIRECT
// on it with fcntl where the filesystem allows, writes a small random
// payload at offset 0, fsyncs, reads it back at offset 0 through the same
// descriptor into a cleared buffer, compares, closes it and unlinks it. It
// proves that the data reached the server, that the read came from the
// server, and that the file is gone, and changes only DirName, never the
// root that every other client of the volume caches. On the Linux NFSv4.1
// client (as read in Linux 6.1.192) that is 5 RPCs, plus a DELEGRETURN
// from a server that grants a delegation on the open (the Linux nfsd does:
// 6 as counted on the NFS test bed, make nfs-rpcs), a COMMIT from one that
// answers the write UNSTABLE, and a SETATTR in the root:
//
//	OPEN           the create, its mode set in the OPEN (an unchecked create)
//	(SETATTR)      in the root only: an exclusive create, for which the server
//	               keeps the create verifier in the file's times, which the
//	               client then sets (fs/nfs/nfs4proc.c _nfs4_do_open,
//	               nfs4_exclusive_attrset)
//	WRITE          one, FILE_SYNC: a direct write is FLUSH_COND_STABLE, stable
//	               when it is a single request with nothing else to commit
//	               (fs/nfs/direct.c nfs_file_direct_write, fs/nfs/pagelist.c
//	               nfs_generic_pgio, nfs_pgio_rpcsetup); a server answering
//	               UNSTABLE gets a COMMIT before write(2) returns
//	               (nfs_direct_write_completion, nfs_direct_write_schedule_work)
//	(fsync)        none: no dirty pages and nothing on the inode's commit list
//	               (fs/nfs/file.c nfs_file_fsync, fs/nfs/write.c __nfs_commit_inode)
//	READ           one: a direct read always goes to the server
//	               (fs/nfs/direct.c nfs_file_direct_read)
//	CLOSE          one, for the one open
//	DELEGRETURN    one where the server delegated the file to the client: it
//	               is handed back before the REMOVE
//	REMOVE         one; the file is closed first, or the client would rename it
//	               to .nfsXXXX (silly rename) instead
//
// Earlier versions also sent a STATFS and reopened the file for the read
// (OPEN_NOATTR and a second CLOSE). statfs now runs only in the read-only
// steps: a read-only mount refuses the create with EROFS (fs/namei.c
// lookup_open, after one OPEN or LOOKUP that finds no such file), so a
// read-write check does not need it to choose its steps. Where O_DIRECT is refused (fcntl fails with EINVAL,
// fs/fcntl.c setfl) the write is buffered and the fsync sends it, the file
// is closed, and the read reopens it with O_DIRECT where allowed, else
// buffered: the proof of earlier versions.
//
// A read-only check runs statfs, stat and a bounded readdir of the root:
// on NFS a STATFS, and a GETATTR and READDIR when the client's caches of
// the root have expired; in write-denied mode the refused mkdir of
// DirName adds a CREATE (the client leaves the write permission of a
// directory to the server, fs/nfs/dir.c nfs_permission), and a LOOKUP
// when the client's note that DirName is missing has expired.
//
// Looking DirName up costs no round trip while the client's attributes
// of the root are valid. When they run out (acdirmin to acdirmax: 30 to
// 60 s with EFS's mount options) the lookup revalidates the root with a
// GETATTR, and, when something else changed the root meanwhile, DirName
// with a LOOKUP: what any client using the root pays. A create in the
// root renewed those attributes each check (fs/nfs/nfs4proc.c
// nfs4_update_changeattr_locked), which is why earlier versions did not
// pay it. A read-write check never lists the
// root.
//
// Probe file names say which agent instance wrote them (Owner, in
// names.go). SweepLeftovers and RemoveLeftovers remove the files other
// instances of the same node left behind once they are provably not in
// flight (older than LeftoverAge), and never anything else.
//
// Probes are plain blocking functions: a syscall on a hung NFS mount cannot
// be cancelled, so the timeout and the "at most one check in flight per
// mount" rule are enforced by the caller (package agent). Probes log each
// operation's start and end in the caller's OpLog, so the caller can tell
// which operation a stuck check is blocked in.
//
// The checks need Linux; on other systems the package builds and every
// step on the mount fails with ErrUnsupported.
package probes
