package rendercache

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// errOverBudget is a rendering that would hold more than the byte budget.
var errOverBudget = errors.New("response memory budget exhausted")

// maxVariants bounds the renderings one endpoint keeps (one per response
// format a client can ask for, e.g. text, OpenMetrics and protobuf for
// /metrics).
const maxVariants = 8

// Cache is shared by the O(n) endpoints of one router: it holds the
// render slots and the byte budget they all draw from, and each
// endpoint's renderings (Endpoint).
type Cache struct {
	lim    Limits
	tokens chan struct{} // one per rendering in progress
	bytes  *byteBudget
	now    func() time.Time
	log    *slog.Logger // rate-limited
	// gen is the state a rendering was made from: while it returns the
	// same value (the monitor's published summary) and the rendering is
	// younger than MaxAge, requests share it.
	gen func() any

	gz sync.Pool // *gzip.Writer
	zr sync.Pool // *gzip.Reader
}

// New returns a Cache bounded by lim (zero fields take their defaults).
// gen returns the state a rendering is made from (the monitor's published
// summary): while it returns the same value, a rendering is shared for up
// to lim.MaxAge. log receives refusals and failed renderings; it should
// be rate-limited.
func New(lim Limits, gen func() any, log *slog.Logger) *Cache {
	lim = lim.WithDefaults()
	return &Cache{lim: lim, tokens: make(chan struct{}, lim.Renders), bytes: &byteBudget{limit: lim.Bytes},
		now: time.Now, log: log, gen: gen}
}

// rendering is one encoded answer, gzip-compressed, shared by every
// request it is served to. refs counts the cache's reference and each
// request writing it; the last release returns its bytes to the budget.
type rendering struct {
	header   http.Header
	status   int
	gz       []byte
	plainLen int64
	gen      any
	at       time.Time
	took     time.Duration // how long the rendering took

	reserved int64
	budget   *byteBudget
	refs     atomic.Int32
}

// shareFactor: a rendering that took d is shared for at least
// shareFactor×d (at most maxShare), whatever the state does since, so
// that renderings take at most a fifth of the time whatever the clients
// ask; a cheap one is renewed as soon as the state changes.
const (
	shareFactor = 4
	maxShare    = 15 * time.Second
)

// fresh reports whether r may be served at now, the state being gen: it
// is younger than shareFactor times its rendering time, or the state is
// the one it was made from and it is younger than maxAge.
func (r *rendering) fresh(gen any, now time.Time, maxAge time.Duration) bool {
	age := now.Sub(r.at)
	return age < min(shareFactor*r.took, maxShare) || (r.gen == gen && age < maxAge)
}

func (r *rendering) release() {
	if r.refs.Add(-1) == 0 {
		r.budget.release(r.reserved)
	}
}

// flight is a rendering in progress; waiters counts the requests that
// will take a reference when it is done.
type flight struct {
	done    chan struct{}
	res     *rendering // nil when the rendering failed
	waiters int32
}

// slot is the cache of one variant of one endpoint.
type slot struct {
	cur      *rendering
	inflight *flight
	used     time.Time
}

// endpoint serves an O(n) handler through the cache: concurrent requests
// for the same variant share one rendering, gzip-compressed once, and
// each client is written with a deadline sized to the response.
type endpoint struct {
	r       *Cache
	h       http.Handler
	variant func(*http.Request) string

	mu    sync.Mutex
	slots map[string]*slot
}

// Endpoint returns h served through the cache. variant is the cache key
// of a request (nil: one answer for every request): requests of the same
// variant share renderings, and an endpoint keeps at most maxVariants.
func (r *Cache) Endpoint(h http.Handler, variant func(*http.Request) string) http.Handler {
	if variant == nil {
		variant = func(*http.Request) string { return "" }
	}
	return &endpoint{r: r, h: h, variant: variant, slots: map[string]*slot{}}
}

// unavailable answers 503 with Retry-After and logs why, rate-limited.
// The answer gets a write deadline of its own: the request may have
// waited for a rendering past the one its route was given. It closes the
// connection: a client refused for load holds no connection slot while it
// waits to retry (kubelet's probes dial a new connection every time).
func (r *Cache) unavailable(w http.ResponseWriter, req *http.Request, why string) {
	// The reason is in the message: the rate limit is per cause.
	r.log.Warn("request refused: "+why, "path", req.URL.Path)
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(r.lim.WriteBase))
	w.Header().Set("Retry-After", strconv.Itoa(int(retryAfter/time.Second)))
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Connection", "close")
	w.WriteHeader(http.StatusServiceUnavailable)
	fmt.Fprintln(w, req.URL.Path+": "+why+"; retry later")
}

// retryAfter is the Retry-After of a request refused for want of a render
// slot or of budget.
const retryAfter = time.Second

func (e *endpoint) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	rd, why := e.get(req)
	if rd == nil {
		e.r.unavailable(w, req, why)
		return
	}
	defer rd.release()
	e.r.write(w, req, rd)
}

// get returns a rendering for req with a reference taken, or nil and why
// there is none.
func (e *endpoint) get(req *http.Request) (*rendering, string) {
	key := e.variant(req)
	now := e.r.now()
	gen := e.r.gen()
	e.mu.Lock()
	s := e.slots[key]
	if s == nil {
		if len(e.slots) >= maxVariants && !e.evictLocked() {
			e.mu.Unlock()
			return nil, "too many response formats in use"
		}
		s = &slot{}
		e.slots[key] = s
	}
	s.used = now
	if c := s.cur; c != nil && c.fresh(gen, now, e.r.lim.MaxAge) {
		c.refs.Add(1)
		e.mu.Unlock()
		return c, ""
	}
	if f := s.inflight; f != nil {
		f.waiters++
		e.mu.Unlock()
		return e.wait(f, req)
	}
	if c := s.cur; c != nil {
		select {
		case e.r.tokens <- struct{}{}:
		default:
			// Every render slot is busy: the last rendering, however
			// old, costs nothing more to serve.
			c.refs.Add(1)
			e.mu.Unlock()
			return c, ""
		}
	} else {
		// Nothing to serve meanwhile: wait for a render slot, as the
		// flight requests for this variant now wait for.
		f := &flight{done: make(chan struct{})}
		s.inflight = f
		e.mu.Unlock()
		if !e.r.takeToken(req) {
			e.finish(s, f, nil)
			return nil, "too many responses being rendered"
		}
		return e.renderFlight(s, f, req, gen)
	}
	f := &flight{done: make(chan struct{})}
	s.inflight = f
	e.mu.Unlock()
	return e.renderFlight(s, f, req, gen)
}

// takeToken waits up to RenderWait for a render slot.
func (r *Cache) takeToken(req *http.Request) bool {
	select {
	case r.tokens <- struct{}{}:
		return true
	default:
	}
	t := time.NewTimer(r.lim.RenderWait)
	defer t.Stop()
	select {
	case r.tokens <- struct{}{}:
		return true
	case <-t.C:
	case <-req.Context().Done():
	}
	return false
}

// renderFlight renders f holding a render slot, which it gives back, and
// returns the rendering with this request's reference.
func (e *endpoint) renderFlight(s *slot, f *flight, req *http.Request, gen any) (*rendering, string) {
	res, err := e.render(req, gen)
	<-e.r.tokens
	e.finish(s, f, res)
	if err != nil {
		e.r.log.Warn("rendering failed: "+err.Error(), "path", req.URL.Path)
		return nil, err.Error()
	}
	return res, ""
}

// finish ends flight f of slot s with res (nil: failed), which becomes
// the slot's rendering, referenced by the cache, f's waiters and the
// request that rendered it.
func (e *endpoint) finish(s *slot, f *flight, res *rendering) {
	e.mu.Lock()
	var old *rendering
	if res != nil {
		res.refs.Store(2 + f.waiters)
		old, s.cur = s.cur, res
	}
	f.res = res
	s.inflight = nil
	close(f.done)
	e.mu.Unlock()
	if old != nil {
		old.release()
	}
}

// wait waits for f, whose waiters count includes this request.
func (e *endpoint) wait(f *flight, req *http.Request) (*rendering, string) {
	t := time.NewTimer(e.r.lim.RenderWait)
	defer t.Stop()
	select {
	case <-f.done:
		if f.res == nil {
			return nil, "rendering failed"
		}
		return f.res, ""
	case <-t.C:
	case <-req.Context().Done():
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	select {
	case <-f.done: // done meanwhile: the reference was taken for us
		if f.res != nil {
			f.res.release()
		}
	default:
		f.waiters--
	}
	return nil, "rendering took too long"
}

// evictLocked drops the least recently used slot with no rendering in
// progress; it reports false when there is none.
func (e *endpoint) evictLocked() bool {
	var victim string
	var found bool
	for k, s := range e.slots {
		if s.inflight == nil && (!found || s.used.Before(e.slots[victim].used)) {
			victim, found = k, true
		}
	}
	if !found {
		return false
	}
	if c := e.slots[victim].cur; c != nil {
		c.release()
	}
	delete(e.slots, victim)
	return true
}

// render runs the handler into a gzip stream held in the byte budget.
func (e *endpoint) render(req *http.Request, gen any) (*rendering, error) {
	start := e.r.now()
	r2 := req.Clone(req.Context())
	r2.Header.Del("Accept-Encoding")
	buf := &heldBuffer{budget: e.r.bytes}
	zw, _ := e.r.gz.Get().(*gzip.Writer)
	if zw == nil {
		zw, _ = gzip.NewWriterLevel(buf, gzip.BestSpeed)
	} else {
		zw.Reset(buf)
	}
	cw := &captureWriter{header: http.Header{}, zw: zw}
	cw.bw = bufio.NewWriterSize(&cw.counted, 32<<10)
	cw.counted.w = zw
	err := serveCaught(e.h, cw, r2)
	if ferr := cw.bw.Flush(); err == nil {
		err = ferr
	}
	if cerr := zw.Close(); err == nil {
		err = cerr
	}
	e.r.gz.Put(zw)
	if err == nil {
		err = cw.err
	}
	if err != nil {
		buf.discard()
		return nil, err
	}
	if cw.status == 0 {
		cw.status = http.StatusOK
	}
	body, reserved := buf.finish()
	for _, k := range []string{"Content-Length", "Content-Encoding"} {
		cw.header.Del(k)
	}
	return &rendering{header: cw.header, status: cw.status, gz: body, plainLen: cw.counted.n, gen: gen, at: start, took: e.r.now().Sub(start),
		reserved: reserved, budget: e.r.bytes}, nil
}

// serveCaught runs h, turning a panic into an error, so that a failed
// rendering still ends its flight.
func serveCaught(h http.Handler, w http.ResponseWriter, r *http.Request) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("rendering %s: panic: %v", r.URL.Path, p)
		}
	}()
	h.ServeHTTP(w, r)
	return nil
}

// captureWriter is the ResponseWriter a rendering is made with: the body
// goes through a buffer into the gzip stream.
type captureWriter struct {
	header  http.Header
	status  int
	zw      *gzip.Writer
	bw      *bufio.Writer
	counted countingWriter
	err     error
}

func (c *captureWriter) Header() http.Header { return c.header }

func (c *captureWriter) WriteHeader(code int) {
	if c.status == 0 {
		c.status = code
	}
}

func (c *captureWriter) Write(p []byte) (int, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.bw.Write(p)
	if err != nil {
		c.err = err
	}
	return n, err
}

// countingWriter counts the uncompressed bytes.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// acceptsGzip reports whether the request's Accept-Encoding allows gzip.
func acceptsGzip(r *http.Request) bool {
	for _, v := range r.Header.Values("Accept-Encoding") {
		for _, part := range strings.Split(v, ",") {
			name, params, _ := strings.Cut(strings.TrimSpace(part), ";")
			if !strings.EqualFold(strings.TrimSpace(name), "gzip") && strings.TrimSpace(name) != "*" {
				continue
			}
			if q, ok := strings.CutPrefix(strings.ReplaceAll(params, " ", ""), "q="); ok {
				if f, err := strconv.ParseFloat(q, 64); err == nil && f == 0 {
					return false
				}
			}
			return true
		}
	}
	return false
}

// write sends rd to the client with a write deadline sized to the
// response: compressed when the client accepts gzip, otherwise
// decompressed as it is written, within plainStreamCost of the budget.
func (r *Cache) write(w http.ResponseWriter, req *http.Request, rd *rendering) {
	h := w.Header()
	for k, v := range rd.header {
		h[k] = v
	}
	h.Add("Vary", "Accept-Encoding")
	rc := http.NewResponseController(w)
	if acceptsGzip(req) {
		_ = rc.SetWriteDeadline(time.Now().Add(r.lim.writeDeadline(int64(len(rd.gz)))))
		h.Set("Content-Encoding", "gzip")
		h.Set("Content-Length", strconv.Itoa(len(rd.gz)))
		w.WriteHeader(rd.status)
		_, _ = w.Write(rd.gz)
		return
	}
	if !r.bytes.reserve(plainStreamCost) {
		r.unavailable(w, req, "response memory budget exhausted")
		return
	}
	defer r.bytes.release(plainStreamCost)
	_ = rc.SetWriteDeadline(time.Now().Add(r.lim.writeDeadline(rd.plainLen)))
	h.Set("Content-Length", strconv.FormatInt(rd.plainLen, 10))
	w.WriteHeader(rd.status)
	if req.Method == http.MethodHead {
		return
	}
	zr, _ := r.zr.Get().(*gzip.Reader)
	var err error
	if zr == nil {
		zr, err = gzip.NewReader(bytes.NewReader(rd.gz))
	} else {
		err = zr.Reset(bytes.NewReader(rd.gz))
	}
	if err != nil {
		return
	}
	buf := make([]byte, 32<<10)
	_, _ = io.CopyBuffer(w, struct{ io.Reader }{zr}, buf)
	r.zr.Put(zr)
}
