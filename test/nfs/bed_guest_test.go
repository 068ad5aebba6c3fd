//go:build linux && nfsguest

package nfs

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// efsOptions are the options efs-utils and the EFS CSI driver mount with.
const efsOptions = "vers=4.1,rsize=1048576,wsize=1048576,hard,timeo=600,retrans=2,noresvport"

// The guest's directories: the results share, the servers' exports (each
// on a tmpfs of its own) and the client's mount points.
const (
	workDir   = "/run/work"
	logDir    = workDir + "/logs"
	exportDir = "/tmp/nfs"
	mountDir  = "/tmp/m"
)

// leaseTime is the servers' NFSv4 lease and grace time in seconds, the
// smallest nfsd accepts: a restart's grace period then lasts 10 s.
const leaseTime = 10

// guestModules are loaded with modprobe once the guest runs on the host's
// root.
var guestModules = []string{"nfs", "nfsv4", "nfsd", "veth", "sch_netem"}

// exportSpec is one export of a server, on a tmpfs of its own.
type exportSpec struct {
	name string
	// opts are exportfs options beyond the common ones.
	opts string
	// tmpfs are extra tmpfs mount options (size=…).
	tmpfs string
	// mounts are the client mount points of the export.
	mounts []string
	// sub is the directory under the export that is mounted (for the
	// stale file handle scenario); "" mounts the export's root.
	sub string
	// writable says the export takes a probe file (the readiness check
	// then writes one).
	writable bool
	// shared says the directory is another server's export of the same
	// name: this server exports it too, and mounts no tmpfs of its own.
	shared bool
	// mountOpts are client mount options beyond efsOptions.
	mountOpts string
}

// serverSpec is one NFS server: an nfsd of its own in a network namespace
// of its own, so that the client never trunks it with another server.
type serverSpec struct {
	name    string
	exports []exportSpec
}

// servers are every server of the test bed, started once for the run.
// Server i is at 10.0.i.2, reached over the veth pair h<i>/v<i>.
var servers = []serverSpec{
	{name: "a", exports: []exportSpec{{name: "a", mounts: []string{"a1", "a2"}, writable: true}}},
	{name: "b", exports: []exportSpec{{name: "b", mounts: []string{"b1"}, writable: true}}},
	{name: "slow", exports: []exportSpec{{name: "slow", mounts: []string{"slow"}, writable: true}}},
	{name: "restart", exports: []exportSpec{{name: "restart", mounts: []string{"restart"}, writable: true}}},
	// Faults of one export (a replaced directory, a full or squashed
	// file system) leave the server and its other exports alone, so
	// these share one server; each export is a superblock of its own on
	// the client, with mountstats of its own.
	{name: "misc", exports: []exportSpec{
		{name: "stale", mounts: []string{"stale"}, sub: "data", writable: true},
		{name: "ro", opts: "ro", mounts: []string{"ro"}},
		{name: "full", tmpfs: "size=1m", mounts: []string{"full"}, writable: true},
		{name: "squash", opts: "root_squash", mounts: []string{"squash"}},
		{name: "rpc", mounts: []string{"rpc"}, writable: true},
	}},
	{name: "tunnel", exports: []exportSpec{{name: "tunnel", writable: true}}},
	{name: "sig", exports: []exportSpec{{name: "sig", mounts: []string{"sig1", "sig2"}, writable: true}}},
	{name: "big", exports: []exportSpec{{name: "big", mounts: []string{"big"}, writable: true}}},
	// One directory exported by three servers, each its own nfsd in its
	// own network and UTS namespace: three superblocks and transports of
	// one volume, as EFS mounts of one file system are. nbapp is the
	// application's mount (never the agent's); its directory attributes
	// are cached for 1 s (acdirmin=acdirmax=1), so that what makes it
	// revalidate the root shows within seconds instead of the default's
	// 30-60 s.
	{name: "nb", exports: []exportSpec{{name: "nb", mounts: []string{"nbapp"}, mountOpts: "acdirmin=1,acdirmax=1", writable: true}}},
	{name: "nb1", exports: []exportSpec{{name: "nb", shared: true, mounts: []string{"nb1"}, writable: true}}},
	{name: "nb2", exports: []exportSpec{{name: "nb", shared: true, mounts: []string{"nb2"}, writable: true}}},
}

// server is a running server of the test bed.
type server struct {
	spec  serverSpec
	index int
	// pid is the server's rpc.mountd, whose namespaces are the server's.
	pid int
	cmd *exec.Cmd
}

// addr is the server's address on its veth pair.
func (s *server) addr() string { return fmt.Sprintf("10.0.%d.2", s.index) }

// hostIf is the client side of the server's veth pair, where netem
// faults go (on the client's egress: requests are lost or delayed).
func (s *server) hostIf() string { return fmt.Sprintf("h%d", s.index) }

// exportPath is the server-side directory of export e.
func exportPath(e string) string { return filepath.Join(exportDir, e) }

// mountPath is the client mount point called name (an absolute name is
// taken as it is).
func mountPath(name string) string {
	if filepath.IsAbs(name) {
		return name
	}
	return filepath.Join(mountDir, name)
}

// bed is the test bed of this run.
type testbed struct {
	servers map[string]*server
}

var bed *testbed

// TestMain sets the test bed up (servers, mounts, the end of their grace
// period) before the scenarios and tears it down after.
func TestMain(m *testing.M) {
	flag.Parse()
	if os.Getenv("NFS_GUEST") != "1" {
		fmt.Println("these scenarios run in the test bed's guest: make nfs-e2e")
		os.Exit(0)
	}
	start := time.Now()
	if up, err := os.ReadFile("/proc/uptime"); err == nil {
		fmt.Printf("test bed: guest up for %ss\n", strings.Fields(string(up))[0])
	}
	b, err := setup()
	if err != nil {
		fmt.Printf("test bed setup failed after %v: %v\n", time.Since(start).Round(time.Millisecond), err)
		os.Exit(1)
	}
	fmt.Printf("test bed: %d servers up and out of their grace period in %v\n", len(b.servers), time.Since(start).Round(time.Millisecond))
	bed = b
	code := m.Run()
	os.Exit(code)
}

// sh runs a command with a bound and returns its combined output.
func sh(timeout time.Duration, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.WaitDelay = time.Second
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		return string(out), fmt.Errorf("%s %s: killed after %v", name, strings.Join(args, " "), timeout)
	}
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// mustSh is sh that fails the test on error.
func mustSh(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := sh(30*time.Second, name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func setup() (*testbed, error) {
	bedStart := time.Now()
	for _, d := range []string{logDir, exportDir, mountDir, "/var/lib/nfs", "/run/netns"} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	for _, m := range guestModules {
		if _, err := sh(30*time.Second, "modprobe", m); err != nil {
			return nil, err
		}
	}
	fmt.Printf("test bed: modules loaded after %v\n", time.Since(bedStart).Round(time.Millisecond))
	if _, err := sh(10*time.Second, "ip", "link", "set", "lo", "up"); err != nil {
		return nil, err
	}
	// The exports' directories, each on a tmpfs of its own, before any
	// server starts in a mount namespace of its own (a shared export is
	// another server's directory).
	for _, spec := range servers {
		for _, e := range spec.exports {
			if err := makeExportDir(e); err != nil {
				return nil, err
			}
		}
	}
	b := &testbed{servers: map[string]*server{}}
	errs := make(chan error, len(servers)*4)
	var wg sync.WaitGroup
	for i, spec := range servers {
		s := &server{spec: spec, index: i + 1}
		b.servers[spec.name] = s
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.start(); err != nil {
				errs <- fmt.Errorf("server %s: %w", spec.name, err)
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		close(errs)
		var all []error
		for err := range errs {
			all = append(all, err)
		}
		return nil, errors.Join(all...)
	}
	fmt.Printf("test bed: servers started after %v\n", time.Since(bedStart).Round(time.Millisecond))
	// Mount, then wait out the grace period (a create blocks in it), all
	// servers at once.
	for _, s := range b.servers {
		for _, e := range s.spec.exports {
			for _, mp := range e.mounts {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if err := s.mount(e, mp); err != nil {
						errs <- err
					}
				}()
			}
		}
	}
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	return b, errors.Join(all...)
}

// makeExportDir mounts the tmpfs of export e (nothing for a shared
// export) and makes its subdirectory.
func makeExportDir(e exportSpec) error {
	if e.shared {
		return nil
	}
	dir := exportPath(e.name)
	opts := "mode=0755"
	if e.tmpfs != "" {
		opts += "," + e.tmpfs
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, opts); err != nil {
		return fmt.Errorf("mount tmpfs on %s: %w", dir, err)
	}
	if e.sub != "" {
		if err := os.Mkdir(filepath.Join(dir, e.sub), 0o755); err != nil {
			return err
		}
	}
	return nil
}

// start makes the server's namespace, veth pair, exports and nfsd.
func (s *server) start() error {
	t0 := time.Now()
	ns := "s" + s.spec.name
	peer := fmt.Sprintf("v%d", s.index)
	// Two ip processes (one a side) instead of one a step: a process
	// start costs much in the emulated guest.
	if err := ipBatch("", "netns add "+ns,
		fmt.Sprintf("link add %s type veth peer name %s netns %s", s.hostIf(), peer, ns),
		fmt.Sprintf("addr add 10.0.%d.1/24 dev %s", s.index, s.hostIf()),
		"link set "+s.hostIf()+" up"); err != nil {
		return err
	}
	if err := ipBatch(ns, "addr add "+s.addr()+"/24 dev "+peer, "link set "+peer+" up", "link set lo up"); err != nil {
		return err
	}
	script := []string{
		"set -e",
		"hostname nfs-" + s.spec.name,
		"mount -t tmpfs -o mode=0755 tmpfs /var/lib/nfs",
		"mkdir -p /var/lib/nfs/v4recovery /var/lib/nfs/rpc_pipefs",
		"touch /var/lib/nfs/etab /var/lib/nfs/rmtab /var/lib/nfs/xtab",
		"mount -t nfsd nfsd /proc/fs/nfsd",
		// EFS takes 1 MiB reads and writes; nfsd sizes its default by RAM.
		"echo 1048576 >/proc/fs/nfsd/max_block_size",
		fmt.Sprintf("echo %d >/proc/fs/nfsd/nfsv4leasetime", leaseTime),
		fmt.Sprintf("echo %d >/proc/fs/nfsd/nfsv4gracetime", leaseTime),
	}
	// The NFSv4 pseudo root is an export of its own (fsid=0): the host's
	// root, 9p, cannot be exported. Client paths are relative to it.
	script = append(script, fmt.Sprintf("exportfs -i -o ro,no_subtree_check,insecure,fsid=0 10.0.0.0/16:%s", exportDir))
	for i, e := range s.spec.exports {
		dir := exportPath(e.name)
		xopts := fmt.Sprintf("rw,no_subtree_check,insecure,fsid=%d", s.index*10+i+1)
		if !strings.Contains(e.opts, "root_squash") {
			xopts += ",no_root_squash"
		}
		if e.opts != "" {
			xopts += "," + e.opts
		}
		script = append(script, fmt.Sprintf("exportfs -i -o %s 10.0.0.0/16:%s", xopts, dir))
	}
	// nfsdcld keeps the server's record of its clients (for reclaims in
	// the grace period after a restart); without it nfsd waits for it
	// at every start before it gives up.
	script = append(script,
		"mkdir -p /var/lib/nfs/nfsdcld",
		"mount -t rpc_pipefs rpc_pipefs /var/lib/nfs/rpc_pipefs",
		"nfsdcld -p /var/lib/nfs/rpc_pipefs -s /var/lib/nfs/nfsdcld",
		"rpc.nfsd --no-udp -N 3 4",
		"exec rpc.mountd -F --no-udp -N 3")
	logf, err := os.Create(filepath.Join(logDir, "server-"+s.spec.name+".log"))
	if err != nil {
		return err
	}
	cmd := exec.Command("ip", "netns", "exec", ns, "unshare", "-u", "-m", "--propagation", "private",
		"sh", "-c", strings.Join(script, "\n"))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return err
	}
	s.cmd, s.pid = cmd, cmd.Process.Pid
	go func() { _ = cmd.Wait(); logf.Close() }()
	// Ready when nfsd accepts connections.
	started := time.Now()
	defer func() {
		fmt.Printf("test bed: server %s: configured in %v, listening after %v more\n", s.spec.name, started.Sub(t0).Round(time.Millisecond), time.Since(started).Round(time.Millisecond))
	}()
	// nfsd takes about 30 s to listen in the emulated guest on a loaded
	// machine, all servers starting at once.
	const listenLimit = 2 * time.Minute
	deadline := time.Now().Add(listenLimit)
	for {
		c, err := net.DialTimeout("tcp", s.addr()+":2049", time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logf.Name())
			return fmt.Errorf("nfsd not listening after %v: %w; log:\n%s", listenLimit, err, log)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// ipBatch runs ip commands in one process, in network namespace ns ("":
// the guest's own).
func ipBatch(ns string, cmds ...string) error {
	args := []string{"-batch", "-"}
	if ns != "" {
		args = append([]string{"-n", ns}, args...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", args...)
	cmd.Stdin = strings.NewReader(strings.Join(cmds, "\n") + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("ip %s: %w: %s (commands: %q)", strings.Join(args, " "), err, strings.TrimSpace(string(out)), cmds)
	}
	return nil
}

// inServer runs a command in the server's namespaces (network, mount, UTS).
func (s *server) inServer(args ...string) (string, error) {
	return sh(30*time.Second, "nsenter", append([]string{"-t", fmt.Sprint(s.pid), "-n", "-m", "-u", "-r", "-w", "--"}, args...)...)
}

// source is the NFS source of export e.
func (s *server) source(e exportSpec) string {
	return s.addr() + ":" + filepath.Join("/", e.name, e.sub)
}

// mount mounts export e at the mount point mp with EFS's options and
// waits for the server's grace period to end (a create blocks until it
// does).
func (s *server) mount(e exportSpec, mp string) error {
	dir := mountPath(mp)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	opts := efsOptions
	if e.mountOpts != "" {
		opts += "," + e.mountOpts
	}
	if _, err := sh(60*time.Second, "mount", "-t", "nfs4", "-o", opts, s.source(e), dir); err != nil {
		return err
	}
	return awaitGrace(dir, 60*time.Second)
}

// awaitGrace returns once a create in dir is answered, whatever the
// answer (EROFS on a read-only export, EACCES on a squashed one): the
// server is then out of its grace period.
func awaitGrace(dir string, limit time.Duration) error {
	done := make(chan error, 1)
	go func() {
		p := filepath.Join(dir, ".bed-ready-"+filepath.Base(dir))
		f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY, 0o600)
		if err == nil {
			f.Close()
			err = os.Remove(p)
		}
		if errors.Is(err, syscall.EROFS) || errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM) {
			err = nil
		}
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(limit):
		return fmt.Errorf("%s: no answer to a create within %v", dir, limit)
	}
}
