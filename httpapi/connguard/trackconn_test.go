package connguard

import (
	"io"
	"net"
	"testing"
	"time"
)

// TestTrackedConnReadRequest: a request counts as read whole once the end
// of its headers has been read, however the reads split it, with its
// route told from its first bytes; a part of one counts as nothing; once
// the request is parsed the next one starts from nothing.
func TestTrackedConnReadRequest(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		reads []string
		want  pending
	}{
		{"probe in one read", []string{"GET /healthz/live HTTP/1.1\r\nHost: x\r\n\r\n"}, pendingHealth},
		{"terminator split", []string{"GET /healthz/live HTTP/1.1\r\nHost: x\r", "\n\r", "\n"}, pendingHealth},
		{"byte by byte", splitBytes("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"), pendingOther},
		{"headers not complete", []string{"GET /healthz/live HTTP/1.1\r\nHost: x\r\n"}, pendingNone},
		{"a few bytes", []string{"GE"}, pendingNone},
	} {
		a, b := net.Pipe()
		c := newTrackedConn(a, testRoutes)
		go func() {
			for _, r := range tc.reads {
				_, _ = io.WriteString(b, r)
			}
			b.Close()
		}()
		_, _ = io.Copy(io.Discard, c)
		a.Close()
		if got := c.readRequest(); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.want)
		}
	}
}

// TestTrackedConnNextRequest: once a request is parsed, what is read next
// belongs to the next request.
func TestTrackedConnNextRequest(t *testing.T) {
	t.Parallel()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	c := newTrackedConn(a, testRoutes)
	buf := make([]byte, 256)
	send := func(s string) {
		go func() { _, _ = io.WriteString(b, s) }()
		if _, err := io.ReadFull(c, buf[:len(s)]); err != nil {
			t.Fatal(err)
		}
	}
	send("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
	if got := c.readRequest(); got != pendingOther {
		t.Fatalf("first request: %d, want other", got)
	}
	c.parsed()
	if got := c.readRequest(); got != pendingNone {
		t.Fatalf("after parsing: %d, want nothing", got)
	}
	send("GET /healthz HTTP/1.1\r\n")
	if got := c.readRequest(); got != pendingNone {
		t.Fatalf("next request, headers incomplete: %d, want nothing", got)
	}
	send("\r\n")
	if got := c.readRequest(); got != pendingHealth {
		t.Fatalf("next request read whole: %d, want health", got)
	}
}

// TestReadRequestNotClosed: a connection whose request the server has
// read whole, but not yet parsed (nothing left unread in the kernel), is
// not closed as silent; the silent one is.
func TestReadRequestNotClosed(t *testing.T) {
	t.Parallel()
	pair := loopbackPairs(t)
	accept := func(send string) *trackedConn {
		t.Helper()
		cl, raw := pair()
		s := newTrackedConn(raw, testRoutes)
		if send != "" {
			if _, err := io.WriteString(cl, send); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(s, make([]byte, len(send))); err != nil {
				t.Fatal(err)
			}
		}
		return s
	}
	read, silent := accept("GET /healthz/live HTTP/1.1\r\nHost: x\r\n\r\n"), accept("")
	if pendingRequest(read, testRoutes) != pendingNone || pendingOf(read, testRoutes) != pendingHealth {
		t.Fatalf("read whole: kernel holds %d, cap sees %d; want nothing unread and a probe read", pendingRequest(read, testRoutes), pendingOf(read, testRoutes))
	}
	now := time.Unix(1000, 0)
	l := newTestLimiter(2)
	l.now = func() time.Time { return now }
	for _, c := range []net.Conn{read, silent} {
		if _, ok := l.admit(c); !ok {
			t.Fatal("refused under the cap")
		}
	}
	now = now.Add(newGrace)
	if v, ok := l.admit(accept("")); v != silent || !ok {
		t.Fatalf("newcomer closed %v (admitted %v), want the silent connection, not the one whose request was read", v, ok)
	}
}

func splitBytes(s string) (out []string) {
	for i := range len(s) {
		out = append(out, s[i:i+1])
	}
	return out
}
