package httpapi_test

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/efs-health-agent/efs-health-agent/httpapi"
)

// keepAlive is a client connection that has completed one request and
// stays open, idle, as a keep-alive client leaves it.
type keepAlive struct {
	net.Conn
	r *bufio.Reader
}

func dialIdle(t *testing.T, addr string) *keepAlive {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	k := &keepAlive{Conn: c, r: bufio.NewReader(c)}
	if err := k.get("/"); err != nil {
		t.Fatalf("first request on a new connection: %v", err)
	}
	return k
}

// get sends one keep-alive GET and reads the answer.
func (k *keepAlive) get(path string) error {
	_ = k.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(k, "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		return err
	}
	resp, err := http.ReadResponse(k.r, nil)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.Body.Close()
}

// closedByServer waits (bounded) for the server to close the connection.
func (k *keepAlive) closedByServer() bool {
	_ = k.SetReadDeadline(time.Now().Add(30 * time.Second))
	_, err := k.r.ReadByte()
	return errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || isReset(err)
}

func isReset(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && !op.Timeout()
}

func serveLimited(t *testing.T, h http.Handler, max int) (string, *httpapi.Server) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := httpapi.NewServer("", h, nil)
	s.MaxConnections = max
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(func() { _ = s.Close() })
	return ln.Addr().String(), s
}

// waitIdle waits (bounded) until the server sees n connections waiting:
// a client has its response before the server marks the connection idle.
func waitIdle(t *testing.T, s *httpapi.Server, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for httpapi.Waiting(s) != n {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %d idle connections (have %d)", n, httpapi.Waiting(s))
		}
		time.Sleep(time.Millisecond)
	}
}

// TestConnectionCapEvictsOldestIdle: at the cap, each new connection is
// served and the longest-idle one is closed to make room, in order.
func TestConnectionCapEvictsOldestIdle(t *testing.T) {
	t.Parallel()
	addr, s := serveLimited(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }), 4)
	var conns []*keepAlive
	for i := 0; i < 4; i++ {
		conns = append(conns, dialIdle(t, addr))
		waitIdle(t, s, i+1)
	}
	// Reuse conns[1]: it becomes the most recently idle of the first four.
	if err := conns[1].get("/"); err != nil {
		t.Fatal(err)
	}
	waitIdle(t, s, 4)
	for i := 0; i < 3; i++ {
		conns = append(conns, dialIdle(t, addr))
		waitIdle(t, s, 4)
	}
	// Evicted in idle order: 0, 2, 3; 1 and the three new ones stay.
	for _, i := range []int{0, 2, 3} {
		if !conns[i].closedByServer() {
			t.Errorf("connection %d (among the oldest idle) was not closed", i)
		}
	}
	if err := conns[1].get("/"); err != nil {
		t.Errorf("connection 1 was idle for less time than three others, yet closed: %v", err)
	}
}

// TestConnectionCapAllBusy: with every slot busy (not yet for
// the guard's busy limit), a newcomer is served from the probe reserve: the
// health probes are answered, anything else 503 with Retry-After.
func TestConnectionCapAllBusy(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	entered := make(chan struct{}, 2)
	addr, s := serveLimited(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/block" {
			entered <- struct{}{}
			<-release
		}
		_, _ = io.WriteString(w, "ok")
	}), 2)
	busy := make(chan error, 2)
	for i := 0; i < 2; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		k := &keepAlive{Conn: c, r: bufio.NewReader(c)}
		go func() { busy <- k.get("/block") }()
		<-entered
	}
	// Two of two busy for less than the guard's busy limit: a third connection
	// takes a reserve slot, which serves the health probes only and is
	// closed after its answer.
	for _, tc := range []struct {
		path string
		code int
	}{{"/", http.StatusServiceUnavailable}, {httpapi.PathLive, http.StatusOK}} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		if _, err := io.WriteString(c, "GET "+tc.path+" HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("GET %s with two of two busy: %v", tc.path, err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.code || !resp.Close || (tc.code == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") == "") {
			t.Fatalf("GET %s with two of two busy: %d (close %v, Retry-After %q), want %d and the connection closed",
				tc.path, resp.StatusCode, resp.Close, resp.Header.Get("Retry-After"), tc.code)
		}
		// The server's own refusal carries the security headers too.
		if got := resp.Header.Get("X-Content-Type-Options"); tc.code == http.StatusServiceUnavailable && got != "nosniff" {
			t.Errorf("GET %s refused in the reserve: X-Content-Type-Options %q: the security headers are missing", tc.path, got)
		}
	}
	close(release)
	for i := 0; i < 2; i++ {
		if err := <-busy; err != nil {
			t.Fatalf("busy request: %v", err)
		}
	}
	waitIdle(t, s, 2)
	dialIdle(t, addr) // both are idle now: the oldest makes room
}

// TestConnectionCapSlowHeaders: connections dribbling their request
// headers count as waiting, so they make room for a new client in the
// order they came.
func TestConnectionCapSlowHeaders(t *testing.T) {
	t.Parallel()
	addr, _ := serveLimited(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }), 2)
	var slow []*keepAlive
	for i := 0; i < 2; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n"); err != nil { // no blank line yet
			t.Fatal(err)
		}
		slow = append(slow, &keepAlive{Conn: c, r: bufio.NewReader(c)})
	}
	dialIdle(t, addr)
	if !slow[0].closedByServer() {
		t.Error("the oldest connection still sending its headers was not closed for a new one")
	}
}
