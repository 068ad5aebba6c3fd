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

// NewGrace is how long a new connection has to send its request headers
// before a newcomer at the cap may close it: a client is never dropped in
// the instant between its connect and its request.
const NewGrace = 250 * time.Millisecond

// ShedBusyAfter: when neither the cap nor the reserve has room, a
// connection busy with one request for this long is closed for the
// newcomer. The health routes answer in microseconds, so only an O(n)
// request (or a client not reading its answer) is ever busy this long:
// the load is shed there rather than on a probe.
const ShedBusyAfter = 100 * time.Millisecond

// MaxUnreadChecks bounds how many connections one admission asks the
// kernel about (see connLimiter): past it, no waiting connection is closed
// for that newcomer, which goes on to the reserve.
const MaxUnreadChecks = 32

// The probe reserve: when no open connection can make room, a newcomer
// takes one of as many extra slots as the cap. A reserve connection is
// served the O(1) health routes only (/healthz, /healthz/ready,
// /healthz/live), anything else is answered 503 with Retry-After, and it
// is closed after its answer, so that the kubelet's probe still gets in
// while every slot is busy, even under a storm of new connections (each
// costs a goroutine and two 4 KiB buffers until it is closed).

// connLimiter caps the open connections of a server. When the cap is
// reached, a new connection is admitted by closing the connection that has
// been waiting longest without a request in progress (idle between
// keep-alive requests, or accepted and not through its request headers
// within NewGrace: net/http reports a connection active only once a
// request's headers are read), so that a flood of idle or dribbling
// connections can never lock out a new client such as the kubelet's
// probe. A connection is never closed as waiting while the kernel holds
// bytes it has received on it that the server has not read (FIONREAD):
// its client has sent its request, and only a starved server (a CPU quota
// throttled by a scrape storm) has not got to it yet. Without that, a
// kubelet probe that connected and sent its GET at once would be closed,
// unanswered, by the next newcomer once its grace ran out. At most
// MaxUnreadChecks connections are asked about per newcomer, so that an
// admission costs a bounded number of system calls under the lock. When
// every open connection is in the middle of a request, the one
// busy longest is closed if it has been busy for BusyEvictAfter. When none
// can be closed, the newcomer takes one of the probe reserve's slots
// (closing the oldest reserve connection silent past NewGrace if they are
// all taken); failing that, the connection busy longest, if for
// ShedBusyAfter, is closed; and only when that fails too is the newcomer
// closed itself.
//
// The listener side (Accept) and the server side (ConnState) share the
// state; conns holds every open connection, waiting the ones within the
// cap without a request in progress, oldest first, busy the others, in
// the order their requests started, and reserve the ones beyond the cap.
type connLimiter struct {
	max, spare int
	now        func() time.Time
	// unread reports whether the kernel holds bytes received on c that
	// the server has not read.
	unread func(c net.Conn) bool

	mu      sync.Mutex
	conns   map[net.Conn]*connEntry
	waiting *list.List // of net.Conn
	busy    *list.List // of net.Conn
	reserve *list.List // of net.Conn, in the order admitted
	evicted uint64
	refused uint64
}

// connEntry is where a connection is: in waiting, busy or reserve.
type connEntry struct {
	e        *list.Element
	busy     bool
	reserved bool
	since    time.Time // admitted, or its current request started
}

func newConnLimiter(max int) *connLimiter {
	return &connLimiter{max: max, spare: max, now: time.Now, unread: hasUnread, conns: map[net.Conn]*connEntry{},
		waiting: list.New(), busy: list.New(), reserve: list.New()}
}

// admit registers c, making room for it. It reports false when c must be
// closed because no connection could make room; otherwise it returns the
// connection to close to make room, if any.
func (l *connLimiter) admit(c net.Conn) (victim net.Conn, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	inCap := len(l.conns) - l.reserve.Len()
	if inCap >= l.max {
		victim = l.victimLocked(now)
		if victim == nil {
			return l.admitReserveLocked(c, now)
		}
		l.evicted++
	}
	l.conns[c] = &connEntry{e: l.waiting.PushBack(c), since: now}
	return victim, true
}

// victimLocked removes and returns the connection within the cap to close
// for a newcomer, or nil.
func (l *connLimiter) victimLocked(now time.Time) net.Conn {
	asked := 0
	for e := l.waiting.Front(); e != nil && asked < MaxUnreadChecks; e = e.Next() {
		c := e.Value.(net.Conn)
		ce := l.conns[c]
		// Idle after a request, or silent past the grace, and with
		// nothing unread. The list is in arrival order, so once one is
		// too young, all after it that are new are too; idle ones may
		// still follow.
		if ce.since.IsZero() || now.Sub(ce.since) >= NewGrace {
			if asked++; l.unread(c) {
				continue
			}
			l.waiting.Remove(e)
			delete(l.conns, c)
			return c
		}
	}
	if e := l.busy.Front(); e != nil && now.Sub(l.conns[e.Value.(net.Conn)].since) >= BusyEvictAfter {
		c := l.busy.Remove(e).(net.Conn)
		delete(l.conns, c)
		return c
	}
	return nil
}

// admitReserveLocked admits c beyond the cap, closing the oldest reserve
// connection not in a request if the reserve is full.
func (l *connLimiter) admitReserveLocked(c net.Conn, now time.Time) (victim net.Conn, ok bool) {
	if l.reserve.Len() >= l.spare {
		asked := 0
		for e := l.reserve.Front(); e != nil && asked < MaxUnreadChecks; e = e.Next() {
			v := e.Value.(net.Conn)
			if l.conns[v].busy || now.Sub(l.conns[v].since) < NewGrace {
				continue
			}
			if asked++; !l.unread(v) {
				l.reserve.Remove(e)
				delete(l.conns, v)
				victim = v
				break
			}
		}
		if victim == nil {
			// Shed an O(n) request rather than refuse what may be
			// the kubelet's probe.
			if e := l.busy.Front(); e != nil && now.Sub(l.conns[e.Value.(net.Conn)].since) >= ShedBusyAfter {
				victim = l.busy.Remove(e).(net.Conn)
				delete(l.conns, victim)
				l.evicted++
				l.conns[c] = &connEntry{e: l.waiting.PushBack(c), since: now}
				return victim, true
			}
			l.refused++
			return nil, false
		}
		l.evicted++
	}
	l.conns[c] = &connEntry{e: l.reserve.PushBack(c), reserved: true, since: now}
	return victim, true
}

// reserved reports whether c was admitted beyond the cap.
func (l *connLimiter) reserved(c net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	ce, ok := l.conns[c]
	return ok && ce.reserved
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
	if ce.reserved {
		switch s {
		case http.StateActive:
			ce.busy = true
		case http.StateIdle:
			ce.busy = false
		case http.StateClosed, http.StateHijacked:
			l.reserve.Remove(ce.e)
			delete(l.conns, c)
		}
		return
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
		ce.e, ce.busy, ce.since = l.waiting.PushBack(c), false, time.Time{}
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

// Accept returns the next connection, having closed one to make room for
// it when the cap is reached (see connLimiter). A connection refused is
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
