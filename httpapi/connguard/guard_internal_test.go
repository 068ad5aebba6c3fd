package connguard

import (
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// TestUnreadRequestNotClosed: at the cap, a newcomer does not close a
// connection past its grace whose request the kernel holds unread (its
// client sent it at once; a starved server has not got to it), but the
// one that sent nothing; when every waiting connection has a request
// unread, none is closed and the newcomer takes a reserve slot. Real
// loopback sockets: the kernel's own count of unread bytes.
func TestUnreadRequestNotClosed(t *testing.T) {
	t.Parallel()
	pair := loopbackPairs(t)
	dial := func(send string) net.Conn {
		t.Helper()
		c, s := pair()
		if send != "" {
			if _, err := io.WriteString(c, send); err != nil {
				t.Fatal(err)
			}
			// Loopback delivers at once; bounded in case it does not.
			for deadline := time.Now().Add(10 * time.Second); pendingRequest(s, testRoutes) == pendingNone; {
				if time.Now().After(deadline) {
					t.Fatal("the request never reached the server's socket")
				}
				time.Sleep(time.Millisecond)
			}
		}
		return s
	}
	const get = "GET /healthz/live HTTP/1.1\r\nHost: x\r\n\r\n"
	probe, silent := dial(get), dial("")
	if pendingRequest(silent, testRoutes) != pendingNone {
		t.Fatal("a connection that sent nothing has unread bytes")
	}
	now := time.Unix(1000, 0)
	l := newTestLimiter(2)
	l.now = func() time.Time { return now }
	for _, c := range []net.Conn{probe, silent} { // the probe is the oldest
		if v, ok := l.admit(c); v != nil || !ok {
			t.Fatalf("under the cap: victim %v, admitted %v", v, ok)
		}
	}
	now = now.Add(newGrace)
	second := dial(get)
	if v, ok := l.admit(second); v != silent || !ok {
		t.Fatalf("newcomer at the cap closed %v (admitted %v), want the silent connection, not the probe with its request unread", v, ok)
	}
	now = now.Add(newGrace)
	third := dial(get)
	if v, ok := l.admit(third); v != nil || !ok || !l.reserved(third) {
		t.Fatalf("every waiting connection has its request unread: closed %v, admitted %v, reserved %v; want none closed and a reserve slot", v, ok, l.reserved(third))
	}
}

// TestUnreadChecksBounded: one admission asks the kernel about at most
// maxUnreadChecks connections; past them, no waiting connection is closed
// for the newcomer, even a silent one further down.
func TestUnreadChecksBounded(t *testing.T) {
	t.Parallel()
	n := maxUnreadChecks + 1
	var conns []net.Conn
	for range n {
		conns = append(conns, pipeConn(t))
	}
	silent := conns[n-1]
	asked := 0
	now := time.Unix(1000, 0)
	l := newTestLimiter(n)
	l.now = func() time.Time { return now }
	l.pending = func(c net.Conn) pending {
		asked++
		if c == silent {
			return pendingNone
		}
		return pendingHealth
	}
	for _, c := range conns {
		if _, ok := l.admit(c); !ok {
			t.Fatal("under the cap: refused")
		}
	}
	now = now.Add(newGrace)
	a := pipeConn(t)
	v, ok := l.admit(a)
	if asked > maxUnreadChecks {
		t.Fatalf("one admission asked about %d connections, bound %d", asked, maxUnreadChecks)
	}
	if v != nil || !ok || !l.reserved(a) {
		t.Fatalf("closed %v (admitted %v): want no waiting connection closed past the bound, the newcomer in the reserve", v, ok)
	}
}

// TestPendingRequestShedding: with the cap and the reserve full of
// connections whose requests are unread, a newcomer is admitted by closing
// one whose request is for another route than the health routes (in the
// reserve first, where it would be answered 503, then within the cap),
// and refused only when every unread request is for a health route.
func TestPendingRequestShedding(t *testing.T) {
	t.Parallel()
	kind := map[net.Conn]pending{}
	now := time.Unix(1000, 0)
	l := newTestLimiter(1) // one slot and one reserve slot
	l.now = func() time.Time { return now }
	l.pending = func(c net.Conn) pending { return kind[c] }
	admit := func(c net.Conn, k pending) (net.Conn, bool) {
		kind[c] = k
		now = now.Add(newGrace)
		return l.admit(c)
	}
	a, b, c, d, e := pipeConn(t), pipeConn(t), pipeConn(t), pipeConn(t), pipeConn(t)
	if v, ok := admit(a, pendingHealth); v != nil || !ok {
		t.Fatalf("first: closed %v, admitted %v", v, ok)
	}
	if v, ok := admit(b, pendingOther); v != nil || !ok || !l.reserved(b) {
		t.Fatal("second: want the reserve slot, nothing closed")
	}
	if v, ok := admit(c, pendingHealth); v != b || !ok || !l.reserved(c) {
		t.Fatalf("third: closed %v (admitted %v), want the reserve's /metrics request closed for it", v, ok)
	}
	if v, ok := admit(d, pendingHealth); v != nil || ok {
		t.Fatalf("fourth, every unread request a probe's: closed %v, admitted %v; want it refused", v, ok)
	}
	kind[a] = pendingOther
	if v, ok := admit(e, pendingHealth); v != a || !ok || l.reserved(e) {
		t.Fatalf("fifth: closed %v (admitted %v, reserved %v), want the cap's /metrics request closed and its slot taken", v, ok, l.reserved(e))
	}
}

// TestClassifyRequest: the first bytes of a request tell a health route
// from any other; too few to tell count as a health route.
func TestClassifyRequest(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]pending{
		"":                                pendingNone,
		"G":                               pendingHealth,
		"HEA":                             pendingHealth,
		"GET /healthz/live HTTP/1.1\r\n":  pendingHealth,
		"GET /healthz/ready?x=1 HTTP/1.1": pendingHealth,
		"HEAD /healthz HTTP/1.1":          pendingHealth,
		"GET /healthz/re":                 pendingHealth,
		"GET /metrics HTTP/1.1":           pendingOther,
		"GET /healthz/mounts HTTP/1.1":    pendingOther,
		"GET /healthzx HTTP/1.1":          pendingOther,
		"GET / HTTP/1.1":                  pendingOther,
		"POST /healthz HTTP/1.1":          pendingOther,
		"\x16\x03\x01":                    pendingOther,
	} {
		if got := testRoutes.classify([]byte(in)); got != want {
			t.Errorf("classify(%q) = %d, want %d", in, got, want)
		}
	}
}

// TestYoungConnectionsNotPeeked: new connections within their grace are
// passed over without a peek, so they use none of an admission's budget:
// an idle keep-alive connection behind more of them than maxUnreadChecks
// is still the one closed for a newcomer.
func TestYoungConnectionsNotPeeked(t *testing.T) {
	t.Parallel()
	n := maxUnreadChecks + 5
	now := time.Unix(1000, 0)
	l := newTestLimiter(n + 1)
	l.now = func() time.Time { return now }
	peeked := 0
	l.pending = func(net.Conn) pending { peeked++; return pendingNone }
	idle := pipeConn(t)
	if _, ok := l.admit(idle); !ok {
		t.Fatal("refused under the cap")
	}
	l.connState(idle, http.StateActive)
	for range n {
		if _, ok := l.admit(pipeConn(t)); !ok {
			t.Fatal("refused under the cap")
		}
	}
	l.connState(idle, http.StateIdle) // now behind every young one
	if v, ok := l.admit(pipeConn(t)); v != idle || !ok {
		t.Fatalf("newcomer closed %v (admitted %v), want the idle keep-alive connection behind %d young ones", v, ok, n)
	}
	if peeked != 1 {
		t.Fatalf("%d peeks, want 1: young connections are not peeked at", peeked)
	}
}

// loopbackPairs listens on loopback until the test ends; each call of the
// function it returns dials it and returns the client's and the server's
// ends of a new connection, closed when the test ends.
func loopbackPairs(t *testing.T) func() (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return func() (net.Conn, net.Conn) {
		t.Helper()
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		s, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return c, s
	}
}

// pipeConn is one end of an in-memory connection, closed with the other
// when the test ends: a connection the cap can hold, not a socket.
func pipeConn(t *testing.T) net.Conn {
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	return a
}
