package faultfs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// Op names an operation that can be faulted.
type Op string

// Operations that can be faulted.
const (
	OpLookup  Op = "lookup"
	OpGetattr Op = "getattr"
	OpCreate  Op = "create"
	OpOpen    Op = "open"
	OpRead    Op = "read"
	OpWrite   Op = "write"
	OpFsync   Op = "fsync"
	OpFlush   Op = "flush"
	OpRelease Op = "release"
	OpUnlink  Op = "unlink"
	// OpReaddir is opening a directory to list it (FUSE OPENDIR). A delay
	// here is a slow listing that holds no directory lock, and
	// Calls(OpReaddir) counts listings. Opening a directory with O_PATH,
	// as the checks do for the mount root, does not reach it.
	OpReaddir Op = "readdir"
	// OpGetdents is one batch of a listing (FUSE READDIR, one getdents
	// call). The kernel holds the directory's i_rwsem (shared) while it
	// waits for the batch, so a delay here also delays every create and
	// unlink in that directory meanwhile, as a slow NFS READDIR does.
	OpGetdents Op = "getdents"
	OpStatfs   Op = "statfs"
	OpMkdir    Op = "mkdir"
	OpSetattr  Op = "setattr"
	// OpAll matches every operation.
	OpAll Op = "*"
)

// Fault is what happens to an operation.
type Fault struct {
	// Errno, when non-zero, fails the operation with this error.
	Errno syscall.Errno
	// Delay sleeps before the operation (an interrupt cuts it short).
	Delay time.Duration
	// Hang blocks the operation until Release, Clear or Unmount, or until
	// the kernel interrupts the request (the caller got a fatal signal).
	Hang bool
	// Times applies the fault to the next Times matching operations only;
	// 0 means until cleared.
	Times int
}

// Options configures a mount.
type Options struct {
	Logger *slog.Logger
	// Source is the mount's source in the mount table (default
	// "faultfs"), e.g. an EFS name such as
	// "fs-0123456789abcdef0.efs.us-east-1.amazonaws.com:/". The type is
	// always fuse.faultfs.
	Source string
}

// FS is a mounted fault filesystem.
type FS struct {
	mountpoint string
	server     *fuse.Server
	log        *slog.Logger

	mu      sync.Mutex
	faults  map[Op]*Fault
	release chan struct{} // closed to let every hung request go
	blocked int
	waiters chan struct{} // signalled when blocked changes
	calls   map[Op]*atomic.Int64
	closed  bool
}

// Mount mounts a fault filesystem at mountpoint that passes through to
// backingDir. It needs root (it mounts directly, falling back to
// fusermount3) and /dev/fuse.
func Mount(mountpoint, backingDir string, opts Options) (*FS, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Source == "" {
		opts.Source = "faultfs"
	}
	f := &FS{
		mountpoint: mountpoint,
		log:        opts.Logger,
		faults:     map[Op]*Fault{},
		release:    make(chan struct{}),
		waiters:    make(chan struct{}),
		calls:      map[Op]*atomic.Int64{},
	}
	for _, op := range []Op{OpLookup, OpGetattr, OpCreate, OpOpen, OpRead, OpWrite, OpFsync, OpFlush, OpRelease, OpUnlink, OpReaddir, OpGetdents, OpStatfs, OpMkdir, OpSetattr} {
		f.calls[op] = &atomic.Int64{}
	}
	var st syscall.Stat_t
	if err := syscall.Stat(backingDir, &st); err != nil {
		return nil, fmt.Errorf("faultfs: backing dir: %w", err)
	}
	root := &fs.LoopbackRoot{Path: backingDir, Dev: uint64(st.Dev)}
	// NewNode is the loopback's documented way to substitute every node;
	// the NodeWrapChilder replacement needs a node type of its own for the
	// root as well, which this small wrapper does not warrant.
	//lint:ignore SA1019 see above
	root.NewNode = func(r *fs.LoopbackRoot, _ *fs.Inode, _ string, _ *syscall.Stat_t) fs.InodeEmbedder {
		return &node{LoopbackNode: fs.LoopbackNode{RootData: r}, f: f}
	}
	rootNode := root.NewNode(root, nil, "", &st) //lint:ignore SA1019 see above
	root.RootNode = rootNode
	zero := time.Duration(0)
	server, err := fs.Mount(mountpoint, rootNode, &fs.Options{
		// No kernel caching of entries or attributes, so faults on lookup
		// and getattr apply to every call.
		EntryTimeout:    &zero,
		AttrTimeout:     &zero,
		NegativeTimeout: &zero,
		MountOptions: fuse.MountOptions{
			FsName:      opts.Source,
			Name:        "faultfs",
			DirectMount: true,
			// Let more requests than the default run at once, so one hung
			// request never starves the others.
			MaxBackground: 64,
		},
	})
	if err != nil {
		return nil, fmt.Errorf("faultfs: mount %s: %w", mountpoint, err)
	}
	f.server = server
	return f, nil
}

// Mountpoint is where the filesystem is mounted.
func (f *FS) Mountpoint() string { return f.mountpoint }

// Set installs fault for op, replacing any fault it had.
func (f *FS) Set(op Op, fault Fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fc := fault
	f.faults[op] = &fc
}

// Clear removes every fault and releases every hung request.
func (f *FS) Clear() {
	f.mu.Lock()
	f.faults = map[Op]*Fault{}
	f.mu.Unlock()
	f.Release()
}

// Release lets every currently hung request go (they then proceed
// normally); installed faults stay.
func (f *FS) Release() {
	f.mu.Lock()
	defer f.mu.Unlock()
	close(f.release)
	f.release = make(chan struct{})
}

// Blocked is the number of requests hung right now.
func (f *FS) Blocked() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.blocked
}

// WaitBlocked waits until at least n requests are hung.
func (f *FS) WaitBlocked(ctx context.Context, n int) error {
	for {
		f.mu.Lock()
		b, ch := f.blocked, f.waiters
		f.mu.Unlock()
		if b >= n {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("faultfs: %d requests hung, waited for %d: %w", b, n, ctx.Err())
		}
	}
}

// WaitBlockedZero waits until no request is hung.
func (f *FS) WaitBlockedZero(ctx context.Context) error {
	for {
		f.mu.Lock()
		b, ch := f.blocked, f.waiters
		f.mu.Unlock()
		if b == 0 {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("faultfs: %d requests still hung: %w", b, ctx.Err())
		}
	}
}

// Calls is how many times op has been called.
func (f *FS) Calls(op Op) int64 {
	if c, ok := f.calls[op]; ok {
		return c.Load()
	}
	return 0
}

// Unmount releases every hung request and unmounts; it works while
// requests are hung, falling back to a lazy unmount when the mount is
// still busy.
func (f *FS) Unmount() error {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return nil
	}
	f.closed = true
	f.faults = map[Op]*Fault{}
	f.mu.Unlock()
	f.Release()
	var err error
	for i := 0; i < 20; i++ {
		if err = f.server.Unmount(); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		if lerr := lazyUnmount(f.mountpoint); lerr != nil {
			return errors.Join(fmt.Errorf("faultfs: unmount %s: %w", f.mountpoint, err), lerr)
		}
		return nil
	}
	f.server.Wait()
	return nil
}

func (f *FS) changed() {
	close(f.waiters)
	f.waiters = make(chan struct{})
}

// inject applies the fault installed for op, if any. It returns the errno
// to fail with, or 0 to go on with the real operation.
func (f *FS) inject(ctx context.Context, op Op) syscall.Errno {
	if c, ok := f.calls[op]; ok {
		c.Add(1)
	}
	f.mu.Lock()
	fault := f.faults[op]
	if fault == nil {
		fault = f.faults[OpAll]
	}
	if fault == nil {
		f.mu.Unlock()
		return 0
	}
	flt := *fault
	if fault.Times > 0 {
		fault.Times--
		if fault.Times == 0 {
			for k, v := range f.faults {
				if v == fault {
					delete(f.faults, k)
				}
			}
		}
	}
	release := f.release
	if flt.Hang {
		f.blocked++
		f.changed()
	}
	f.mu.Unlock()

	if flt.Delay > 0 {
		t := time.NewTimer(flt.Delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return syscall.EINTR
		}
	}
	if flt.Hang {
		f.log.Debug("faultfs: request hung", "op", op)
		var errno syscall.Errno
		select {
		case <-release:
		case <-ctx.Done():
			// The kernel interrupted the request: its caller got a fatal
			// signal. Let it go, as an NFS hard mount does.
			errno = syscall.EINTR
		}
		f.mu.Lock()
		f.blocked--
		f.changed()
		f.mu.Unlock()
		if errno != 0 {
			return errno
		}
	}
	return flt.Errno
}

// Interface checks: the node intercepts these operations.
var (
	_ fs.NodeLookuper       = (*node)(nil)
	_ fs.NodeGetattrer      = (*node)(nil)
	_ fs.NodeCreater        = (*node)(nil)
	_ fs.NodeOpener         = (*node)(nil)
	_ fs.NodeReader         = (*node)(nil)
	_ fs.NodeWriter         = (*node)(nil)
	_ fs.NodeFsyncer        = (*node)(nil)
	_ fs.NodeFlusher        = (*node)(nil)
	_ fs.NodeReleaser       = (*node)(nil)
	_ fs.NodeUnlinker       = (*node)(nil)
	_ fs.NodeReaddirer      = (*node)(nil)
	_ fs.NodeStatfser       = (*node)(nil)
	_ fs.NodeMkdirer        = (*node)(nil)
	_ fs.NodeSetattrer      = (*node)(nil)
	_ fs.NodeOpendirHandler = (*node)(nil)
)

// file wraps a loopback file handle. It hides the handle's passthrough fd:
// with kernel FUSE passthrough (root, Linux 6.9+) reads and writes would go
// straight to the backing file and never reach the fault injection.
type file struct{ h fs.FileHandle }

func unwrap(fh fs.FileHandle) fs.FileHandle {
	if f, ok := fh.(*file); ok {
		return f.h
	}
	return fh
}

// node is a loopback node whose operations pass through inject first.
type node struct {
	fs.LoopbackNode
	f *FS
}

func (n *node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if e := n.f.inject(ctx, OpLookup); e != 0 {
		return nil, e
	}
	return n.LoopbackNode.Lookup(ctx, name, out)
}

func (n *node) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if e := n.f.inject(ctx, OpGetattr); e != 0 {
		return e
	}
	return n.LoopbackNode.Getattr(ctx, unwrap(fh), out)
}

func (n *node) Setattr(ctx context.Context, fh fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if e := n.f.inject(ctx, OpSetattr); e != 0 {
		return e
	}
	return n.LoopbackNode.Setattr(ctx, unwrap(fh), in, out)
}

func (n *node) Create(ctx context.Context, name string, flags, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	if e := n.f.inject(ctx, OpCreate); e != 0 {
		return nil, nil, 0, e
	}
	ino, fh, fl, errno := n.LoopbackNode.Create(ctx, name, flags, mode, out)
	if errno != 0 {
		return ino, fh, fl, errno
	}
	return ino, &file{h: fh}, fl, 0
}

func (n *node) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if e := n.f.inject(ctx, OpOpen); e != 0 {
		return nil, 0, e
	}
	fh, fl, errno := n.LoopbackNode.Open(ctx, flags)
	if errno != 0 {
		return fh, fl, errno
	}
	return &file{h: fh}, fl, 0
}

func (n *node) OpendirHandle(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if e := n.f.inject(ctx, OpReaddir); e != 0 {
		return nil, 0, e
	}
	fh, fl, errno := n.LoopbackNode.OpendirHandle(ctx, flags)
	if errno != 0 {
		return fh, fl, errno
	}
	return &dir{h: fh, f: n.f}, fl, 0
}

// dir wraps a loopback directory handle so that each READDIR request (one
// getdents batch) passes through inject as OpGetdents.
type dir struct {
	h fs.FileHandle
	f *FS
	// last is the context of the request the last entry was read for:
	// go-fuse gives every request a context of its own and reads a
	// handle's entries one request at a time.
	last context.Context
}

var (
	_ fs.FileReaddirenter = (*dir)(nil)
	_ fs.FileReleasedirer = (*dir)(nil)
	_ fs.FileSeekdirer    = (*dir)(nil)
	_ fs.FileFsyncdirer   = (*dir)(nil)
)

func (d *dir) Readdirent(ctx context.Context) (*fuse.DirEntry, syscall.Errno) {
	if ctx != d.last {
		d.last = ctx
		if e := d.f.inject(ctx, OpGetdents); e != 0 {
			return nil, e
		}
	}
	if r, ok := d.h.(fs.FileReaddirenter); ok {
		return r.Readdirent(ctx)
	}
	return nil, 0
}

func (d *dir) Releasedir(ctx context.Context, flags uint32) {
	d.last = nil
	if r, ok := d.h.(fs.FileReleasedirer); ok {
		r.Releasedir(ctx, flags)
	}
}

func (d *dir) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	if s, ok := d.h.(fs.FileSeekdirer); ok {
		return s.Seekdir(ctx, off)
	}
	return syscall.ENOTSUP
}

func (d *dir) Fsyncdir(ctx context.Context, flags uint32) syscall.Errno {
	if s, ok := d.h.(fs.FileFsyncdirer); ok {
		return s.Fsyncdir(ctx, flags)
	}
	return 0
}

func (n *node) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	if e := n.f.inject(ctx, OpReaddir); e != 0 {
		return nil, e
	}
	return n.LoopbackNode.Readdir(ctx)
}

func (n *node) Read(ctx context.Context, fh fs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if e := n.f.inject(ctx, OpRead); e != 0 {
		return nil, e
	}
	if r, ok := unwrap(fh).(fs.FileReader); ok {
		return r.Read(ctx, dest, off)
	}
	return nil, syscall.ENOTSUP
}

func (n *node) Write(ctx context.Context, fh fs.FileHandle, data []byte, off int64) (uint32, syscall.Errno) {
	if e := n.f.inject(ctx, OpWrite); e != 0 {
		return 0, e
	}
	if w, ok := unwrap(fh).(fs.FileWriter); ok {
		return w.Write(ctx, data, off)
	}
	return 0, syscall.ENOTSUP
}

func (n *node) Fsync(ctx context.Context, fh fs.FileHandle, flags uint32) syscall.Errno {
	if e := n.f.inject(ctx, OpFsync); e != 0 {
		return e
	}
	if s, ok := unwrap(fh).(fs.FileFsyncer); ok {
		return s.Fsync(ctx, flags)
	}
	return 0
}

func (n *node) Flush(ctx context.Context, fh fs.FileHandle) syscall.Errno {
	if e := n.f.inject(ctx, OpFlush); e != 0 {
		return e
	}
	if fl, ok := unwrap(fh).(fs.FileFlusher); ok {
		return fl.Flush(ctx)
	}
	return 0
}

func (n *node) Release(ctx context.Context, fh fs.FileHandle) syscall.Errno {
	// A release cannot fail for the caller (close already returned), so
	// only count it; faulting it would leak the backing fd.
	n.f.calls[OpRelease].Add(1)
	if r, ok := unwrap(fh).(fs.FileReleaser); ok {
		return r.Release(ctx)
	}
	return 0
}

func (n *node) Unlink(ctx context.Context, name string) syscall.Errno {
	if e := n.f.inject(ctx, OpUnlink); e != 0 {
		return e
	}
	return n.LoopbackNode.Unlink(ctx, name)
}

func (n *node) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	if e := n.f.inject(ctx, OpStatfs); e != 0 {
		return e
	}
	return n.LoopbackNode.Statfs(ctx, out)
}

func (n *node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if e := n.f.inject(ctx, OpMkdir); e != 0 {
		return nil, e
	}
	return n.LoopbackNode.Mkdir(ctx, name, mode, out)
}

// Available reports why the fault filesystem cannot be mounted here, or
// nil when it can (root and /dev/fuse).
func Available() error {
	if os.Geteuid() != 0 {
		return errors.New("needs root to mount FUSE filesystems")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		return fmt.Errorf("needs /dev/fuse: %w", err)
	}
	return nil
}
