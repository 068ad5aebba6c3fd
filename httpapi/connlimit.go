package httpapi

import (
	"container/list"
	"net"
	"net/http"
	"sync"
	"time"
)

// DefaultMaxConnections is the default cap on open HTTP connections.
const DefaultMaxConnections = 256

// BusyEvictAfter is how long a connection must have been in the middle of
// one request before, with every slot busy, it is closed to admit a new
// connection. Every route answers from memory within milliseconds, so a
// request busy this long is a client that does not read its answer (the
// write deadline drops it later anyway) or a scrape far slower than any
// scraper waits.
const BusyEvictAfter = time.Second

// connLimiter caps the open connections of a server. When the cap is
// reached, a new connection is admitted by closing the connection that has
// been waiting longest without a request in progress (idle between
// keep-alive requests, or accepted and not yet through its request
// headers: net/http reports a connection active only once a request's
// headers are read), so that a flood of idle or dribbling connections can
// never lock out a new client such as the kubelet's probe. When every
// open connection is in the middle of a request, the one busy longest is
// closed if it has been busy for BusyEvictAfter; only when all are
// younger is the newcomer closed instead.
//
// The listener side (Accept) and the server side (ConnState) share the
// state; conns holds every open connection, waiting the ones without a
// request in progress, oldest first, and busy the others, in the order
// their requests started.
type connLimiter struct {
	max int
	now func() time.Time

	mu      sync.Mutex
	conns   map[net.Conn]*connEntry
	waiting *list.List // of net.Conn
	busy    *list.List // of net.Conn
	evicted uint64
	refused uint64
}

// connEntry is where a connection is: in waiting or in busy (since when).
type connEntry struct {
	e     *list.Element
	busy  bool
	since time.Time
}

func newConnLimiter(max int) *connLimiter {
	return &connLimiter{max: max, now: time.Now, conns: map[net.Conn]*connEntry{}, waiting: list.New(), busy: list.New()}
}

// admit registers c, making room for it. It reports false when c must be
// closed because every open connection is busy and none for
// BusyEvictAfter; otherwise it returns the connection to close to make
// room, if any.
func (l *connLimiter) admit(c net.Conn) (victim net.Conn, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.conns) >= l.max {
		if front := l.waiting.Front(); front != nil {
			victim = l.waiting.Remove(front).(net.Conn)
		} else if front := l.busy.Front(); front != nil && l.now().Sub(l.conns[front.Value.(net.Conn)].since) >= BusyEvictAfter {
			victim = l.busy.Remove(front).(net.Conn)
		} else {
			l.refused++
			return nil, false
		}
		delete(l.conns, victim)
		l.evicted++
	}
	l.conns[c] = &connEntry{e: l.waiting.PushBack(c)}
	return victim, true
}

// connState is the http.Server's ConnState hook: a connection waits while
// idle, is busy while active, and is forgotten once closed or hijacked.
func (l *connLimiter) connState(c net.Conn, s http.ConnState) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ce, known := l.conns[c]
	if !known {
		return // evicted already, or never admitted
	}
	list := l.waiting
	if ce.busy {
		list = l.busy
	}
	switch s {
	case http.StateNew:
	case http.StateActive:
		list.Remove(ce.e)
		ce.e, ce.busy, ce.since = l.busy.PushBack(c), true, l.now()
	case http.StateIdle:
		list.Remove(ce.e)
		ce.e, ce.busy = l.waiting.PushBack(c), false
	case http.StateClosed, http.StateHijacked:
		list.Remove(ce.e)
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
