package connguard

import (
	"container/list"
	"context"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// Config is what a Guard protects: how many connections it holds, and the
// routes it keeps reachable when they are all taken.
type Config struct {
	// Max caps the open connections (at least 1); as many again form the
	// probe reserve.
	Max int
	// ProbePaths are the O(1) routes the kubelet's probes ask for: a
	// connection whose unread request is for one of them is not closed
	// as silent, and a reserve connection is served these only.
	ProbePaths []string
	// Refuse answers a request for any other path on a reserve
	// connection (default: 503 with Retry-After). The guard has already
	// set Connection: close.
	Refuse http.Handler
}

// Guard caps the open connections of an http.Server; see the package
// documentation for what it closes, in which order, to admit a newcomer.
// Install it on the server and serve its Listener.
type Guard struct {
	l      *limiter
	refuse http.Handler
}

// New returns a Guard for cfg.
func New(cfg Config) *Guard {
	g := &Guard{l: newLimiter(max(cfg.Max, 1), slices.Clone(cfg.ProbePaths)), refuse: cfg.Refuse}
	if g.refuse == nil {
		g.refuse = http.HandlerFunc(refuse)
	}
	return g
}

// Install chains the guard's hooks onto s's ConnState and ConnContext and
// wraps s.Handler (nil: http.DefaultServeMux) so that a reserve connection
// is served the probe routes only and closed after its answer. Call it
// once, before serving g.Listener.
func (g *Guard) Install(s *http.Server) {
	prev := s.ConnState
	s.ConnState = func(c net.Conn, st http.ConnState) {
		g.l.connState(c, st)
		if prev != nil {
			prev(c, st)
		}
	}
	prevCtx := s.ConnContext
	s.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
		if prevCtx != nil {
			ctx = prevCtx(ctx, c)
		}
		if g.l.reserved(c) {
			ctx = context.WithValue(ctx, reserveKey{}, true)
		}
		return ctx
	}
	h := s.Handler
	if h == nil {
		h = http.DefaultServeMux
	}
	s.Handler = g.probesOnlyInReserve(h)
}

// Listener returns ln with the cap applied to the connections it accepts
// (see limitListener).
func (g *Guard) Listener(ln net.Listener) net.Listener {
	return &limitListener{Listener: ln, l: g.l}
}

// Stats is what a Guard holds and has done.
type Stats struct {
	// Open is every open connection; Waiting those within the cap with no
	// request in progress (idle, or not through their request headers);
	// Reserve those admitted beyond the cap.
	Open, Waiting, Reserve int
	// Closed counts the connections closed to make room for a newcomer;
	// Refused the newcomers closed because none could be.
	Closed, Refused uint64
}

// Stats returns what g holds now and has done so far.
func (g *Guard) Stats() Stats {
	l := g.l
	l.mu.Lock()
	defer l.mu.Unlock()
	return Stats{Open: len(l.conns), Waiting: l.waiting.Len(), Reserve: l.reserve.Len(), Closed: l.evicted, Refused: l.refused}
}

// reserveKey marks the context of a connection admitted beyond the cap.
type reserveKey struct{}

// probesOnlyInReserve serves a connection admitted beyond the cap the
// probe routes only, and closes it after the answer.
func (g *Guard) probesOnlyInReserve(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Context().Value(reserveKey{}) == nil {
			next.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Connection", "close")
		if slices.Contains(g.l.routes, r.URL.Path) {
			next.ServeHTTP(w, r)
			return
		}
		g.refuse.ServeHTTP(w, r)
	})
}

// refuse is the default answer to a request for another route than the
// probes' on a reserve connection.
func refuse(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Retry-After", "1")
	http.Error(w, "too many connections; retry later", http.StatusServiceUnavailable)
}

// busyEvictAfter is how long a connection must have been in the middle of
// one request before, with every slot busy, it is closed to admit a new
// connection. Every route answers from memory within milliseconds, so a
// request busy this long is a client that does not read its answer (the
// write deadline drops it later anyway) or a scrape far slower than any
// scraper waits.
const busyEvictAfter = time.Second

// newGrace is how long a new connection has to send its request headers
// before a newcomer at the cap may close it: a client is never dropped in
// the instant between its connect and its request.
const newGrace = 250 * time.Millisecond

// shedBusyAfter: when neither the cap nor the reserve has room, a
// connection busy with one request for this long is closed for the
// newcomer. The health routes answer in microseconds, so only an O(n)
// request (or a client not reading its answer) is ever busy this long:
// the load is shed there rather than on a probe.
const shedBusyAfter = 100 * time.Millisecond

// maxUnreadChecks bounds how many connections within the cap, and how many
// in the reserve, one admission peeks at (see limiter): past it, no
// further connection is closed for that newcomer.
const maxUnreadChecks = 32

// limiter caps the open connections of a server. When the cap is
// reached, a new connection is admitted by closing the connection that has
// been waiting longest without a request in progress (idle between
// keep-alive requests, or accepted and not through its request headers
// within newGrace: net/http reports a connection active only once a
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
// admitReserveLocked). At most maxUnreadChecks connections within the cap,
// and as many in the reserve, are peeked at per newcomer, so that an
// admission costs a bounded number of system calls under the lock. When
// every open connection is in the middle of a request, the one
// busy longest is closed if it has been busy for busyEvictAfter. When none
// can be closed, the newcomer takes one of the probe reserve's slots
// (closing the oldest reserve connection silent past newGrace if they are
// all taken); failing that, the connection busy longest, if for
// shedBusyAfter, is closed; and only when that fails too is the newcomer
// closed itself.
//
// The listener side (Accept) and the server side (ConnState) share the
// state; conns holds every open connection, waiting the ones within the
// cap without a request in progress, oldest first, busy the others, in
// the order their requests started, and reserve the ones beyond the cap.
type limiter struct {
	max, spare int
	now        func() time.Time
	routes     probeRoutes // what a request must ask for to count as a probe's
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

func newLimiter(max int, routes probeRoutes) *limiter {
	l := &limiter{max: max, spare: max, now: time.Now, routes: routes, conns: map[net.Conn]*connEntry{},
		waiting: list.New(), busy: list.New(), reserve: list.New()}
	l.pending = func(c net.Conn) pending { return pendingOf(c, routes) }
	return l
}

// pending is what a connection holds unread in the kernel.
type pending uint8

const (
	pendingNone   pending = iota // nothing: idle, or a client still silent
	pendingHealth                // a request for a health route, or too little of one to tell
	pendingOther                 // a request for any other route
)

// pendingOf is what c holds of a request the server has not yet parsed:
// one it has read whole (trackedConn), else what the kernel holds unread,
// told apart by routes.
func pendingOf(c net.Conn, routes probeRoutes) pending {
	if t, ok := c.(*trackedConn); ok {
		if p := t.readRequest(); p != pendingNone {
			return p
		}
	}
	return pendingRequest(c, routes)
}

// probeRoutes are the O(1) routes a connection's unread request is
// protected for: the kubelet's probes (Config.ProbePaths).
type probeRoutes []string

// classify tells from the first bytes of a request (b, unread) whether it
// is for a probe route. A request too short to tell counts as one.
func (routes probeRoutes) classify(b []byte) pending {
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
	for _, h := range routes {
		if path == h || (!complete && strings.HasPrefix(h, path)) {
			return pendingHealth
		}
	}
	return pendingOther
}

// admit registers c, making room for it. It reports false when c must be
// closed because no connection could make room; otherwise it returns the
// connection to close to make room, if any.
func (l *limiter) admit(c net.Conn) (victim net.Conn, ok bool) {
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
func (l *limiter) victimLocked(now time.Time) (victim net.Conn, shed *list.Element) {
	asked := 0
	for e := l.waiting.Front(); e != nil && asked < maxUnreadChecks; e = e.Next() {
		c := e.Value.(net.Conn)
		ce := l.conns[c]
		// A new connection within its grace is left alone, unpeeked:
		// the budget goes to those that could be closed. The list is in
		// arrival order, so once one is too young, all after it that
		// are new are too; idle ones may still follow.
		if !ce.since.IsZero() && now.Sub(ce.since) < newGrace {
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
	if e := l.busy.Front(); e != nil && now.Sub(l.conns[e.Value.(net.Conn)].since) >= busyEvictAfter {
		c := l.busy.Remove(e).(net.Conn)
		delete(l.conns, c)
		return c, nil
	}
	return nil, shed
}

// admitReserveLocked admits c beyond the cap, making room in a full
// reserve by closing, in this order: the oldest reserve connection not in
// a request, silent past the grace, with nothing unread; the connection
// busy longest, if for shedBusyAfter (c then takes its slot within the
// cap); the oldest reserve connection whose unread request is for another
// route than the health routes (it would be answered 503); capShed, a
// waiting connection within the cap with such a request (c takes its
// slot). Only when none of them exists is c refused.
func (l *limiter) admitReserveLocked(c net.Conn, now time.Time, capShed *list.Element) (victim net.Conn, ok bool) {
	if l.reserve.Len() >= l.spare {
		var shed *list.Element
		asked := 0
		for e := l.reserve.Front(); e != nil && asked < maxUnreadChecks; e = e.Next() {
			v := e.Value.(net.Conn)
			if l.conns[v].busy {
				continue
			}
			asked++
			p := l.pending(v)
			if p == pendingOther && shed == nil {
				shed = e
			}
			if p == pendingNone && now.Sub(l.conns[v].since) >= newGrace {
				l.reserve.Remove(e)
				delete(l.conns, v)
				victim = v
				break
			}
		}
		if victim == nil {
			switch {
			case l.busy.Front() != nil && now.Sub(l.conns[l.busy.Front().Value.(net.Conn)].since) >= shedBusyAfter:
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
func (l *limiter) reserved(c net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	ce, ok := l.conns[c]
	return ok && ce.reserved
}

// connState is the http.Server's ConnState hook: a connection waits while
// idle, is busy while active, and is forgotten once closed or hijacked.
func (l *limiter) connState(c net.Conn, s http.ConnState) {
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

// limitListener applies a limiter to the connections it accepts.
type limitListener struct {
	net.Listener
	l *limiter
}

// Accept returns the next connection, having closed one to make room for
// it when the cap is reached (see limiter). A connection refused is
// closed and Accept waits for the next. Each is a trackedConn.
func (ln *limitListener) Accept() (net.Conn, error) {
	for {
		raw, err := ln.Listener.Accept()
		if err != nil {
			return nil, err
		}
		c := newTrackedConn(raw, ln.l.routes)
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
