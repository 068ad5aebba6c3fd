package connguard

import (
	"bytes"
	"errors"
	"net"
	"sync/atomic"
	"syscall"
)

// trackedConn is a connection as the connection cap admits it: it notes
// what the server has read of the request it is reading, so that a
// request read whole but not yet parsed (a starved server, its goroutine
// descheduled between the read and net/http's StateActive) is not taken
// for a silent client. Only the connection's own goroutine reads, so the
// scratch fields need no lock; what the cap reads is atomic.
type trackedConn struct {
	net.Conn
	routes probeRoutes
	// read is what the server has read of the current request: zero
	// (nothing, or its headers not yet complete), or
	// pendingHealth/pendingOther once the headers are complete.
	read  atomic.Uint32
	reset atomic.Bool // set when a request has been parsed (StateActive)

	head    []byte  // the request's first bytes, up to len(headBuf)
	tail    [3]byte // the last bytes read, for a terminator split across reads
	ntail   int
	headBuf [32]byte
}

func newTrackedConn(c net.Conn, routes probeRoutes) *trackedConn {
	t := &trackedConn{Conn: c, routes: routes}
	t.head = t.headBuf[:0]
	return t
}

// headerEnd ends a request's header block.
var headerEnd = []byte("\r\n\r\n")

// Read reads from the connection, noting the request's first bytes and
// the end of its headers.
func (t *trackedConn) Read(p []byte) (int, error) {
	n, err := t.Conn.Read(p)
	if n > 0 {
		t.note(p[:n])
	}
	return n, err
}

func (t *trackedConn) note(b []byte) {
	if t.reset.Swap(false) {
		t.read.Store(0)
		t.head, t.ntail = t.headBuf[:0], 0
	}
	if t.read.Load() != 0 {
		return // this request's headers are complete already
	}
	if room := cap(t.head) - len(t.head); room > 0 {
		t.head = append(t.head, b[:min(room, len(b))]...)
	}
	// The terminator within b, or across the last bytes and b's start.
	var seam [6]byte
	k := copy(seam[:], t.tail[:t.ntail])
	k += copy(seam[k:], b[:min(len(b), 3)])
	if bytes.Contains(seam[:k], headerEnd) || bytes.Contains(b, headerEnd) {
		t.read.Store(uint32(t.routes.classify(t.head)))
		return
	}
	if len(b) >= 3 {
		t.ntail = copy(t.tail[:], b[len(b)-3:])
	} else {
		keep := append(t.tail[:t.ntail:t.ntail], b...)
		t.ntail = copy(t.tail[:], keep[max(0, len(keep)-3):])
	}
}

// parsed marks the current request parsed: what is read next belongs to
// the next one.
func (t *trackedConn) parsed() { t.reset.Store(true); t.read.Store(0) }

// readRequest reports what the server has read whole of the current
// request: pendingNone unless its headers are complete.
func (t *trackedConn) readRequest() pending { return pending(t.read.Load()) }

// SyscallConn exposes the socket, for the cap's peek.
func (t *trackedConn) SyscallConn() (syscall.RawConn, error) {
	if sc, ok := t.Conn.(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, errors.ErrUnsupported
}

// CloseWrite half-closes the connection, as net/http does before closing
// one after an error, when the connection can.
func (t *trackedConn) CloseWrite() error {
	if cw, ok := t.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}
