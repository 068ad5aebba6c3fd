//go:build linux && nfsguest

package nfs

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// netem puts a netem qdisc with args on the client's side of the
// server's veth pair (the client's requests are lost or delayed), removed
// when the test ends.
func netem(t testing.TB, s *server, args ...string) {
	t.Helper()
	mustSh(t, "tc", append([]string{"qdisc", "replace", "dev", s.hostIf(), "root", "netem"}, args...)...)
	t.Cleanup(func() { heal(t, s) })
}

// heal removes the server's netem qdisc, if any.
func heal(t testing.TB, s *server) {
	if out, err := sh(10*time.Second, "tc", "qdisc", "show", "dev", s.hostIf()); err == nil && strings.Contains(out, "netem") {
		if _, err := sh(10*time.Second, "tc", "qdisc", "del", "dev", s.hostIf(), "root"); err != nil {
			t.Errorf("heal %s: %v", s.spec.name, err)
		}
	}
}

// awaitMountsAnswer waits until a create on each mount point is answered
// again, so a scenario leaves its server usable for the next one.
func awaitMountsAnswer(t testing.TB, limit time.Duration, names ...string) {
	t.Helper()
	for _, n := range names {
		if err := awaitGrace(mountPath(n), limit); err != nil {
			t.Fatalf("after the scenario: %v", err)
		}
	}
}

// endpointWatch polls every endpoint until stopped, recording the slowest
// answer and every answer beyond budget, and what cond says of each
// /healthz/mounts answer.
type endpointWatch struct {
	a       *agentProc
	stopCh  chan struct{}
	wg      sync.WaitGroup
	mu      sync.Mutex
	slowest time.Duration
	slowAt  string
	errs    []string
	polls   int
}

func watchEndpoints(a *agentProc, cond func(map[string]mountJSON) string) *endpointWatch {
	w := &endpointWatch{a: a, stopCh: make(chan struct{})}
	paths := []string{"/healthz/live", "/healthz", "/healthz/ready", "/healthz/mounts", "/metrics", "/"}
	// The first answer of each is not judged: it pays for lazy set-up
	// (the first collection of the metrics), not for the mounts' state.
	for _, p := range paths {
		_, _, _ = a.get(p)
	}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		for i := 0; ; i++ {
			select {
			case <-w.stopCh:
				return
			case <-time.After(250 * time.Millisecond):
			}
			p := paths[i%len(paths)]
			start := time.Now()
			code, body, err := a.get(p)
			took := time.Since(start)
			w.mu.Lock()
			w.polls++
			if took > w.slowest {
				w.slowest, w.slowAt = took, p
			}
			switch {
			case err != nil:
				w.errs = append(w.errs, fmt.Sprintf("GET %s: %v after %v", p, err, took))
			case took > budget:
				w.errs = append(w.errs, fmt.Sprintf("GET %s answered %d in %v, beyond its %v budget", p, code, took, budget))
			case p == "/healthz/mounts" && cond != nil:
				var ms map[string]mountJSON
				if err := json.Unmarshal(body, &ms); err != nil {
					w.errs = append(w.errs, fmt.Sprintf("/healthz/mounts: %v", err))
				} else if msg := cond(ms); msg != "" {
					w.errs = append(w.errs, msg)
				}
			}
			w.mu.Unlock()
		}
	}()
	return w
}

// stop ends the watch and fails t with what it saw wrong.
func (w *endpointWatch) stop(t testing.TB) {
	t.Helper()
	close(w.stopCh)
	w.wg.Wait()
	t.Logf("endpoints: %d answers, slowest %v (%s)", w.polls, w.slowest.Round(time.Millisecond), w.slowAt)
	for i, e := range w.errs {
		if i == 10 {
			t.Errorf("... and %d more", len(w.errs)-10)
			break
		}
		t.Error(e)
	}
}

// testPartition: a silent partition of one server (every request lost,
// no RST) makes its mounts unhealthy within interval + timeout + margin
// and hung after; the other server's mount stays healthy; every endpoint
// answers within budget; the mounts recover after the partition heals.
func testPartition(t *testing.T) {
	srv := bed.servers["a"]
	a := startAgent(t, agentOpts{}, "a1", "a2", "b1")
	for _, m := range []string{"a1", "a2", "b1"} {
		a.waitMount(30*time.Second, m, "healthy", healthy)
	}
	w := watchEndpoints(a, func(ms map[string]mountJSON) string {
		if b := ms[mountPath("b1")]; !healthy(b) {
			return "b1 (another server) not healthy during a's partition: " + b.String()
		}
		return ""
	})
	netem(t, srv, "loss", "100%")
	cut := time.Now()
	// interval 2s + timeout 1s, and a margin for a loaded machine.
	const limit = 2*time.Second + time.Second + 3*time.Second
	for _, m := range []string{"a1", "a2"} {
		_, st := a.waitMount(limit-time.Since(cut), m, "unhealthy", func(m mountJSON) bool { return !m.IsHealthy })
		t.Logf("%s unhealthy %v after the partition: %s", m, time.Since(cut).Round(time.Millisecond), st)
	}
	for _, m := range []string{"a1", "a2"} {
		_, st := a.waitMount(10*time.Second, m, "hung", func(m mountJSON) bool { return m.State == "hung" })
		t.Logf("%s hung %v after the partition: %s", m, time.Since(cut).Round(time.Millisecond), st)
	}
	// Stay partitioned for a few missed checks.
	a.waitMount(15*time.Second, "a1", "hung for 4 s", func(m mountJSON) bool { return m.State == "hung" && m.HungForMs >= 4000 })
	heal(t, srv)
	healed := time.Now()
	for _, m := range []string{"a1", "a2"} {
		a.waitMount(90*time.Second, m, "healthy after the partition healed", healthy)
		t.Logf("%s recovered %v after the partition healed", m, time.Since(healed).Round(time.Millisecond))
	}
	w.stop(t)
}

// testSlow: a server slower than usual, within the timeout: healthy, and
// the operation times show the delay.
func testSlow(t *testing.T) {
	const delay = 100 * time.Millisecond
	srv := bed.servers["slow"]
	a := startAgent(t, agentOpts{interval: "3s", timeout: "2500ms"}, "slow")
	_, before := a.waitMount(30*time.Second, "slow", "healthy", healthy)
	netem(t, srv, "delay", delay.String())
	slowed := a.checks()
	var st mountJSON
	waitFor(t, 30*time.Second, "three checks with the delay", func() (bool, string) {
		st, _ = a.mount("slow")
		if !healthy(st) {
			t.Fatalf("slow mount not healthy with a %v delay (within the timeout): %s", delay, st)
		}
		return a.checks() >= slowed+3, st.String()
	})
	t.Logf("before the delay: %v", before.OperationsMs)
	t.Logf("with a %v delay: %v", delay, st.OperationsMs)
	// Each of these is at least one round trip.
	for _, op := range []string{"write", "read", "delete"} {
		if got := st.OperationsMs[op]; got < float64(delay.Milliseconds()) {
			t.Errorf("%s took %.1f ms, less than the %v delay", op, got, delay)
		}
	}
	if st.ErrorCount != 0 {
		t.Errorf("%d errors on a slow mount within its timeout", st.ErrorCount)
	}
}

// testRestart: the server stopped (rpc.nfsd 0) and started again with a
// 10 s grace period: unhealthy while stopped, healthy again through the
// grace period.
func testRestart(t *testing.T) {
	srv := bed.servers["restart"]
	a := startAgent(t, agentOpts{}, "restart")
	a.waitMount(30*time.Second, "restart", "healthy", healthy)
	reclaims := opCounts(t, mountPath("restart"))["RECLAIM_COMPLETE"]
	if _, err := srv.inServer("rpc.nfsd", "0"); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	restarted := false
	t.Cleanup(func() {
		if !restarted {
			_, _ = srv.inServer("rpc.nfsd", "--no-udp", "-N", "3", "4")
		}
	})
	_, st := a.waitMount(10*time.Second, "restart", "unhealthy with nfsd stopped", func(m mountJSON) bool { return !m.IsHealthy })
	t.Logf("unhealthy %v after rpc.nfsd 0: %s", time.Since(stopped).Round(time.Millisecond), st)
	a.waitMount(10*time.Second, "restart", "hung with nfsd stopped", func(m mountJSON) bool { return m.State == "hung" })
	if _, err := srv.inServer("rpc.nfsd", "--no-udp", "-N", "3", "4"); err != nil {
		t.Fatal(err)
	}
	restarted = true
	started := time.Now()
	a.waitMount(120*time.Second, "restart", "healthy after the restart", healthy)
	t.Logf("healthy %v after nfsd started again (grace period %ds), %v after it stopped",
		time.Since(started).Round(time.Millisecond), leaseTime, time.Since(stopped).Round(time.Millisecond))
	// The client went through state recovery with the new server
	// instance (the reclaims of its grace period).
	if after := opCounts(t, mountPath("restart"))["RECLAIM_COMPLETE"]; after <= reclaims {
		t.Errorf("RECLAIM_COMPLETE sent %d times before the restart and %d after: the client did not recover its state", reclaims, after)
	}
	grace, err := srv.inServer("cat", "/proc/fs/nfsd/nfsv4gracetime")
	if err != nil || strings.TrimSpace(grace) != fmt.Sprint(leaseTime) {
		t.Errorf("grace time %q (%v), want %d", grace, err, leaseTime)
	}
}

// testStale: the export's directory replaced under a mount gives
// stale_file_handle.
func testStale(t *testing.T) {
	a := startAgent(t, agentOpts{}, "stale")
	a.waitMount(30*time.Second, "stale", "healthy", healthy)
	dir := filepath.Join(exportPath("stale"), "data")
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	replaced := time.Now()
	_, st := a.waitMount(15*time.Second, "stale", "stale_file_handle", func(m mountJSON) bool { return m.Reason == "stale_file_handle" })
	t.Logf("stale_file_handle %v after the directory was replaced: %s", time.Since(replaced).Round(time.Millisecond), st)
}

// testReadOnly: a read-only export gets the read-only check and is
// healthy.
func testReadOnly(t *testing.T) {
	a := startAgent(t, agentOpts{}, "ro")
	_, st := a.waitMount(30*time.Second, "ro", "healthy in read-only mode", func(m mountJSON) bool { return healthy(m) && m.Mode == "read-only" })
	t.Logf("%s", st)
	// The probe directory could not be made (EROFS): nothing on the server.
	if ents, err := os.ReadDir(exportPath("ro")); err != nil || len(ents) != 0 {
		t.Errorf("the read-only export holds %v (%v), want nothing", ents, err)
	}
}

// testFull: a full export gives no_space; freeing space recovers it.
func testFull(t *testing.T) {
	a := startAgent(t, agentOpts{}, "full")
	a.waitMount(30*time.Second, "full", "healthy", healthy)
	filler := filepath.Join(exportPath("full"), "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, unix.ENOSPC) {
				t.Fatalf("filling the export: %v", err)
			}
			break
		}
	}
	f.Close()
	filled := time.Now()
	_, st := a.waitMount(15*time.Second, "full", "no_space", func(m mountJSON) bool { return m.Reason == "no_space" })
	t.Logf("no_space %v after the export filled: %s", time.Since(filled).Round(time.Millisecond), st)
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	freed := time.Now()
	a.waitMount(30*time.Second, "full", "healthy once space is freed", healthy)
	t.Logf("healthy %v after space was freed", time.Since(freed).Round(time.Millisecond))
}

// testRootSquash: a root-squashed export whose root is a root-owned 0755
// directory answers every read; the mkdir of the probe directory gets
// EACCES. That is healthy, in mode write-denied, with its metric, and
// nothing is made on the server. Once anyone may write the root, the
// probe directory is made by the anonymous user and accepted as the
// agent's (its files get that user too): read-write.
func testRootSquash(t *testing.T) {
	st, err := os.Stat(exportPath("squash"))
	if err != nil || st.Mode().Perm() != 0o755 {
		t.Fatalf("squashed export's root: %v %v, want a root-owned 0755 directory", st.Mode(), err)
	}
	a := startAgent(t, agentOpts{}, "squash")
	_, m := a.waitMount(10*time.Second, "squash", `healthy with "mode":"write-denied"`, func(m mountJSON) bool { return healthy(m) && m.Mode == "write-denied" })
	t.Logf("%s", m)
	v, ok := metric(a.metrics(), "efs_mount_check_mode", `mount_path="`+mountPath("squash")+`"`, `mode="write-denied"`)
	if !ok || v != 1 {
		t.Errorf(`efs_mount_check_mode{mode="write-denied"} = %v (present %v), want 1`, v, ok)
	}
	// The probe directory could not be made either: nothing on the server.
	if ents, err := os.ReadDir(exportPath("squash")); err != nil || len(ents) != 0 {
		t.Errorf("the squashed export holds %v (%v), want nothing", ents, err)
	}

	// A squashed export whose root anyone may write: the agent's files
	// get the anonymous user, and so does the probe directory it makes.
	// The directory is not the agent's own user's (root), but it is the
	// user its files get here: accepted, read-write.
	root := exportPath("squash")
	if err := os.Chmod(root, 0o777); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = os.RemoveAll(filepath.Join(root, probeDirName))
		_ = os.Chmod(root, 0o755)
	})
	_, m = a.waitMount(20*time.Second, "squash", "healthy read-write with a world-writable root", func(m mountJSON) bool { return healthy(m) && m.Mode == "read-write" })
	t.Logf("world-writable squashed root: %s", m)
	var pst unix.Stat_t
	if err := unix.Lstat(filepath.Join(root, probeDirName), &pst); err != nil || pst.Uid == 0 || pst.Mode&0o777 != 0o700 {
		t.Fatalf("probe directory on the server: uid %d mode %#o (%v), want the anonymous user's, 0700", pst.Uid, pst.Mode&0o777, err)
	}
	n := a.checks()
	waitFor(t, 20*time.Second, "three more checks", func() (bool, string) {
		m, _ := a.mount("squash")
		if !healthy(m) || m.Mode != "read-write" {
			t.Fatalf("squashed, world-writable root: %s", m)
		}
		return a.checks() >= n+3, m.String()
	})
}

// tcpProxy forwards 127.0.0.1:<port> to a server, standing in for
// efs-proxy; stop closes its listener and every connection.
type tcpProxy struct {
	listen, target string
	mu             sync.Mutex
	ln             net.Listener
	conns          map[net.Conn]bool
}

func (p *tcpProxy) start(t testing.TB) {
	t.Helper()
	var ln net.Listener
	var err error
	// The port may linger a moment after a stop.
	waitFor(t, 10*time.Second, "the proxy's port", func() (bool, string) {
		ln, err = net.Listen("tcp", p.listen)
		return err == nil, fmt.Sprint(err)
	})
	p.mu.Lock()
	p.ln = ln
	if p.conns == nil {
		p.conns = map[net.Conn]bool{}
	}
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.forward(c)
		}
	}()
}

func (p *tcpProxy) forward(c net.Conn) {
	s, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	if p.ln == nil {
		p.mu.Unlock()
		c.Close()
		s.Close()
		return
	}
	p.conns[c], p.conns[s] = true, true
	p.mu.Unlock()
	go func() { _, _ = io.Copy(s, c); s.Close(); c.Close() }()
	_, _ = io.Copy(c, s)
	c.Close()
	s.Close()
}

func (p *tcpProxy) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
		delete(p.conns, c)
	}
}

// tunnelPort is where the tunnel scenarios' proxy listens, and tunnelDir
// the discovery prefix their mount is under.
const (
	tunnelPort = 20049
	tunnelDir  = "/tmp/tun"
)

// mountThroughProxy mounts the tunnel server's export through a proxy on
// 127.0.0.1:tunnelPort, as efs-utils mounts a TLS file system, under
// tunnelDir for discovery.
func mountThroughProxy(t *testing.T) (*tcpProxy, string) {
	srv := bed.servers["tunnel"]
	p := &tcpProxy{listen: fmt.Sprintf("127.0.0.1:%d", tunnelPort), target: srv.addr() + ":2049"}
	p.start(t)
	mp := filepath.Join(tunnelDir, strings.ToLower(t.Name()[strings.LastIndex(t.Name(), "/")+1:]))
	if err := os.MkdirAll(mp, 0o755); err != nil {
		t.Fatal(err)
	}
	mustSh(t, "mount", "-t", "nfs4", "-o", fmt.Sprintf("%s,port=%d", efsOptions, tunnelPort), "127.0.0.1:/tunnel", mp)
	t.Cleanup(func() {
		p.stop()
		_, _ = sh(20*time.Second, "umount", "-f", "-l", mp)
	})
	if err := awaitGrace(mp, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	out := mustSh(t, "grep", " "+mp+" ", "/proc/self/mountinfo")
	if !strings.Contains(out, "addr=127.0.0.1") || !strings.Contains(out, fmt.Sprintf("port=%d", tunnelPort)) {
		t.Fatalf("the tunnel mount's options lack addr=127.0.0.1 and port=%d: %s", tunnelPort, out)
	}
	return p, mp
}

// discoverTunnel are the agent's arguments that discover the tunnel
// mounts (discovery learns the tunnel's address from addr= and port=).
var discoverTunnel = []string{"--discover-fstypes", "nfs4", "--discover-prefix", tunnelDir}

// testTunnel: a mount through a local proxy (as through efs-proxy) is
// tunnel_down when the proxy dies, and recovers when it comes back.
func testTunnel(t *testing.T) {
	p, mp := mountThroughProxy(t)
	a := startAgent(t, agentOpts{args: discoverTunnel})
	a.waitMount(30*time.Second, mp, "healthy through the proxy", healthy)
	p.stop()
	died := time.Now()
	_, st := a.waitMount(15*time.Second, mp, "tunnel_down", func(m mountJSON) bool { return m.Reason == "tunnel_down" })
	t.Logf("tunnel_down %v after the proxy died: %s", time.Since(died).Round(time.Millisecond), st)
	p.start(t)
	back := time.Now()
	a.waitMount(90*time.Second, mp, "healthy once the proxy is back", healthy)
	t.Logf("healthy %v after the proxy came back", time.Since(back).Round(time.Millisecond))
}

// tunnelNetnsLine is the contract's once-only log line of an agent that
// cannot reach the tunnel from its network namespace.
const tunnelNetnsLine = "tunnel checks cannot be made from this network namespace"

// testTunnelNetns: an agent in a network namespace of its own beside the
// node's mounts (same mount namespace) cannot dial the tunnel on the
// node's loopback; the mount's I/O works, so it is healthy, and the agent
// says once why it cannot check the tunnel.
func testTunnelNetns(t *testing.T) {
	_, mp := mountThroughProxy(t)
	mustSh(t, "ip", "netns", "add", "agent")
	t.Cleanup(func() { _, _ = sh(10*time.Second, "ip", "netns", "del", "agent") })
	mustSh(t, "ip", "-n", "agent", "link", "set", "lo", "up")
	a := startAgent(t, agentOpts{netns: "agent", args: discoverTunnel})
	_, st := a.waitMount(15*time.Second, mp, "healthy from another network namespace", healthy)
	n := a.checks()
	waitFor(t, 20*time.Second, "three more checks", func() (bool, string) {
		st, _ = a.mount(mp)
		if !healthy(st) {
			t.Fatalf("mount not healthy from the agent's network namespace: %s", st)
		}
		return a.checks() >= n+3, st.String()
	})
	if c := strings.Count(a.logText(), tunnelNetnsLine); c != 1 {
		t.Errorf("log has %q %d times, want once:\n%s", tunnelNetnsLine, c, tailFile(a.logPath, 20))
	}
}
