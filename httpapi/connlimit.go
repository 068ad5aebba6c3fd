package httpapi

import (
	"container/list"
	"net"
	"net/http"
	"strings"
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

// MaxUnreadChecks bounds how many connections within the cap, and how many
// in the reserve, one admission peeks at (see connLimiter): past it, no
// further connection is closed for that newcomer.
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
// probe. A connection is never closed as waiting while it holds a request
// the server has not parsed: bytes the kernel has received on it that the
// server has not read (a peek, pendingRequest), or a request the server
// has read whole but not yet parsed (trackedConn). Its client has sent its
// request, and only a starved server (a CPU quota throttled by a scrape
// storm) has not got to it yet.
// Without that, a kubelet probe that connected and sent its GET at once
// would be closed, unanswered, by the next newcomer once its grace ran
// out. The peek also tells a request for a health route from any other:
// one for another route is closed before a newcomer is refused (see
// admitReserveLocked). At most MaxUnreadChecks connections within the cap,
// and as many in the reserve, are peeked at per newcomer, so that an
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
	// pending reports what the kernel holds received on c and not yet
	// read by the server: nothing, or the start of a request.
	pending func(c net.Conn) pending

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
	return &connLimiter{max: max, spare: max, now: time.Now, pending: pendingOf, conns: map[net.Conn]*connEntry{},
		waiting: list.New(), busy: list.New(), reserve: list.New()}
}

// pending is what a connection holds unread in the kernel.
type pending uint8

const (
	pendingNone   pending = iota // nothing: idle, or a client still silent
	pendingHealth                // a request for a health route, or too little of one to tell
	pendingOther                 // a request for any other route
)

// pendingOf is what c holds of a request the server has not yet parsed:
// one it has read whole (trackedConn), else what the kernel holds unread.
func pendingOf(c net.Conn) pending {
	if t, ok := c.(*trackedConn); ok {
		if p := t.readRequest(); p != pendingNone {
			return p
		}
	}
	return pendingRequest(c)
}

// healthPaths are the O(1) routes a connection's unread request is
// protected for: the kubelet's probes.
var healthPaths = [...]string{PathHealthz, PathReady, PathLive}

// classifyRequest tells from the first bytes of a request (b, unread)
// whether it is for a health route. A request too short to tell counts as
// one.
func classifyRequest(b []byte) pending {
	if len(b) == 0 {
		return pendingNone
	}
	s := string(b)
	rest, ok := strings.CutPrefix(s, "GET ")
	if !ok {
		rest, ok = strings.CutPrefix(s, "HEAD ")
	}
	if !ok {
		if strings.HasPrefix("GET ", s) || strings.HasPrefix("HEAD ", s) {
			return pendingHealth
		}
		return pendingOther
	}
	path, complete := rest, false
	if i := strings.IndexAny(rest, " ?"); i >= 0 {
		path, complete = rest[:i], true
	}
	for _, h := range healthPaths {
		if path == h || (!complete && strings.HasPrefix(h, path)) {
			return pendingHealth
		}
	}
	return pendingOther
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
		var shed *list.Element
		victim, shed = l.victimLocked(now)
		if victim == nil {
			return l.admitReserveLocked(c, now, shed)
		}
		l.evicted++
	}
	l.conns[c] = &connEntry{e: l.waiting.PushBack(c), since: now}
	return victim, true
}

// victimLocked removes and returns the connection within the cap to close
// for a newcomer, or nil; shed is the oldest waiting connection seen whose
// unread request is for a route other than the health routes, the one
// closed before the newcomer is refused.
func (l *connLimiter) victimLocked(now time.Time) (victim net.Conn, shed *list.Element) {
	asked := 0
	for e := l.waiting.Front(); e != nil && asked < MaxUnreadChecks; e = e.Next() {
		c := e.Value.(net.Conn)
		ce := l.conns[c]
		// A new connection within its grace is left alone, unpeeked:
		// the budget goes to those that could be closed. The list is in
		// arrival order, so once one is too young, all after it that
		// are new are too; idle ones may still follow.
		if !ce.since.IsZero() && now.Sub(ce.since) < NewGrace {
			continue
		}
		asked++
		p := l.pending(c)
		if p == pendingOther && shed == nil {
			shed = e
		}
		// Idle after a request, or silent past the grace, and with
		// nothing unread.
		if p == pendingNone {
			l.waiting.Remove(e)
			delete(l.conns, c)
			return c, nil
		}
	}
	if e := l.busy.Front(); e != nil && now.Sub(l.conns[e.Value.(net.Conn)].since) >= BusyEvictAfter {
		c := l.busy.Remove(e).(net.Conn)
		delete(l.conns, c)
		return c, nil
	}
	return nil, shed
}

// admitReserveLocked admits c beyond the cap, making room in a full
// reserve by closing, in this order: the oldest reserve connection not in
// a request, silent past the grace, with nothing unread; the connection
// busy longest, if for ShedBusyAfter (c then takes its slot within the
// cap); the oldest reserve connection whose unread request is for another
// route than the health routes (it would be answered 503); capShed, a
// waiting connection within the cap with such a request (c takes its
// slot). Only when none of them exists is c refused.
func (l *connLimiter) admitReserveLocked(c net.Conn, now time.Time, capShed *list.Element) (victim net.Conn, ok bool) {
	if l.reserve.Len() >= l.spare {
		var shed *list.Element
		asked := 0
		for e := l.reserve.Front(); e != nil && asked < MaxUnreadChecks; e = e.Next() {
			v := e.Value.(net.Conn)
			if l.conns[v].busy {
				continue
			}
			asked++
			p := l.pending(v)
			if p == pendingOther && shed == nil {
				shed = e
			}
			if p == pendingNone && now.Sub(l.conns[v].since) >= NewGrace {
				l.reserve.Remove(e)
				delete(l.conns, v)
				victim = v
				break
			}
		}
		if victim == nil {
			switch {
			case l.busy.Front() != nil && now.Sub(l.conns[l.busy.Front().Value.(net.Conn)].since) >= ShedBusyAfter:
				// Shed an O(n) request rather than refuse what may
				// be the kubelet's probe.
				victim = l.busy.Remove(l.busy.Front()).(net.Conn)
				delete(l.conns, victim)
				l.evicted++
				l.conns[c] = &connEntry{e: l.waiting.PushBack(c), since: now}
				return victim, true
			case shed != nil:
				victim = l.reserve.Remove(shed).(net.Conn)
				delete(l.conns, victim)
			case capShed != nil:
				victim = l.waiting.Remove(capShed).(net.Conn)
				delete(l.conns, victim)
				l.evicted++
				l.conns[c] = &connEntry{e: l.waiting.PushBack(c), since: now}
				return victim, true
			default:
				l.refused++
				return nil, false
			}
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
	if t, ok := c.(*trackedConn); ok && s == http.StateActive {
		t.parsed()
	}
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
// closed and Accept waits for the next. Each is a trackedConn.
func (ln *limitListener) Accept() (net.Conn, error) {
	for {
		raw, err := ln.Listener.Accept()
		if err != nil {
			return nil, err
		}
		c := newTrackedConn(raw)
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
