package httpapi

import (
	"container/list"
	"net"
	"net/http"
	"sync"
)

// DefaultMaxConnections is the default cap on open HTTP connections.
const DefaultMaxConnections = 256

// connLimiter caps the open connections of a server. When the cap is
// reached, a new connection is admitted by closing the connection that has
// been waiting longest without a request in progress (idle between
// keep-alive requests, or accepted and not yet through its request
// headers: net/http reports a connection active only once a request's
// headers are read), so that a flood of idle or dribbling connections can
// never lock out a new client such as the kubelet's probe. Only when every open connection is in the middle of a
// request is the newcomer closed instead.
//
// The listener side (Accept) and the server side (ConnState) share the
// state; conns holds every open connection, waiting the ones without a
// request in progress, oldest first.
type connLimiter struct {
	max int

	mu      sync.Mutex
	conns   map[net.Conn]*list.Element // element in waiting, or nil while active
	waiting *list.List                 // of net.Conn
	evicted uint64
	refused uint64
}

func newConnLimiter(max int) *connLimiter {
	return &connLimiter{max: max, conns: map[net.Conn]*list.Element{}, waiting: list.New()}
}

// admit registers c, making room for it. It reports false when c must be
// closed because every open connection is busy; otherwise it returns the
// connection to close to make room, if any.
func (l *connLimiter) admit(c net.Conn) (victim net.Conn, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.conns) >= l.max {
		front := l.waiting.Front()
		if front == nil {
			l.refused++
			return nil, false
		}
		victim = l.waiting.Remove(front).(net.Conn)
		delete(l.conns, victim)
		l.evicted++
	}
	l.conns[c] = l.waiting.PushBack(c)
	return victim, true
}

// connState is the http.Server's ConnState hook: a connection waits while
// idle, is busy while active, and is forgotten once closed or hijacked.
func (l *connLimiter) connState(c net.Conn, s http.ConnState) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e, known := l.conns[c]
	if !known {
		return // evicted already, or never admitted
	}
	switch s {
	case http.StateNew:
	case http.StateActive:
		if e != nil {
			l.waiting.Remove(e)
			l.conns[c] = nil
		}
	case http.StateIdle:
		if e != nil {
			l.waiting.Remove(e)
		}
		l.conns[c] = l.waiting.PushBack(c)
	case http.StateClosed, http.StateHijacked:
		if e != nil {
			l.waiting.Remove(e)
		}
		delete(l.conns, c)
	}
}

// limitListener applies a connLimiter to the connections it accepts.
type limitListener struct {
	net.Listener
	l *connLimiter
}

// Accept returns the next connection, having closed the oldest waiting one
// when the cap is reached. A connection refused because all are busy is
// closed and Accept waits for the next.
func (ln *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := ln.Listener.Accept()
		if err != nil {
			return nil, err
		}
		victim, ok := ln.l.admit(c)
		if victim != nil {
			_ = victim.Close()
		}
		if !ok {
			_ = c.Close()
			continue
		}
		return c, nil
	}
}
