package rendercache

import (
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// testCache is a Cache whose clock stands still unless the test moves it,
// and whose state is *gen.
func testCache(t *testing.T, lim Limits, gen *atomic.Int64) (*Cache, *time.Time) {
	t.Helper()
	now := time.Unix(1000, 0)
	c := New(lim, func() any { return gen.Load() }, slog.New(slog.NewTextHandler(io.Discard, nil)))
	c.now = func() time.Time { return now }
	return c, &now
}

func get(h http.Handler, url string, gz bool) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodGet, url, nil)
	if gz {
		req.Header.Set("Accept-Encoding", "gzip")
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

// counting answers "rendering N" and counts its calls.
func counting(calls *atomic.Int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "rendering "+strconv.FormatInt(calls.Add(1), 10)+"\n")
	})
}

// TestRenderingShared: requests share one rendering while the state is
// unchanged and it is younger than MaxAge; a new state, or age, renders
// anew.
func TestRenderingShared(t *testing.T) {
	t.Parallel()
	var gen, calls atomic.Int64
	c, now := testCache(t, Limits{MaxAge: time.Minute}, &gen)
	h := c.Endpoint(counting(&calls), nil)
	for range 5 {
		if w := get(h, "/x", false); w.Code != http.StatusOK || w.Body.String() != "rendering 1\n" {
			t.Fatalf("unchanged state: %d %q, want the first rendering", w.Code, w.Body.String())
		}
	}
	gen.Add(1)
	if w := get(h, "/x", false); w.Body.String() != "rendering 2\n" {
		t.Fatalf("new state: %q, want a new rendering", w.Body.String())
	}
	*now = now.Add(time.Minute)
	if w := get(h, "/x", false); w.Body.String() != "rendering 3\n" {
		t.Fatalf("past MaxAge: %q, want a new rendering", w.Body.String())
	}
}

// TestGzipAndPlainAgree: a client that accepts gzip gets the rendering
// as it is held, one that does not gets it decompressed; both the same
// bytes, each with its own Content-Length.
func TestGzipAndPlainAgree(t *testing.T) {
	t.Parallel()
	var gen atomic.Int64
	c, _ := testCache(t, Limits{}, &gen)
	body := bytes.Repeat([]byte("efs_mount_health_status 1\n"), 10000)
	h := c.Endpoint(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write(body) }), nil)
	zw := get(h, "/x", true)
	if zw.Header().Get("Content-Encoding") != "gzip" || zw.Header().Get("Content-Length") != strconv.Itoa(zw.Body.Len()) {
		t.Fatalf("gzip answer: encoding %q, length %q for %d bytes", zw.Header().Get("Content-Encoding"), zw.Header().Get("Content-Length"), zw.Body.Len())
	}
	zr, err := gzip.NewReader(zw.Body)
	if err != nil {
		t.Fatal(err)
	}
	unz, err := io.ReadAll(zr)
	if err != nil || !bytes.Equal(unz, body) {
		t.Fatalf("gzip answer decompresses to %d bytes (%v), want the %d rendered", len(unz), err, len(body))
	}
	pw := get(h, "/x", false)
	if pw.Header().Get("Content-Encoding") != "" || !bytes.Equal(pw.Body.Bytes(), body) || pw.Header().Get("Content-Length") != strconv.Itoa(len(body)) {
		t.Fatalf("plain answer: encoding %q, %d bytes, length %q; want the %d rendered", pw.Header().Get("Content-Encoding"), pw.Body.Len(), pw.Header().Get("Content-Length"), len(body))
	}
}

// TestOverBudget: a rendering larger than the byte budget is answered 503
// with Retry-After, and gives back what it had taken.
func TestOverBudget(t *testing.T) {
	t.Parallel()
	var gen atomic.Int64
	c, _ := testCache(t, Limits{Bytes: 256 << 10}, &gen)
	noise := make([]byte, 1<<20) // incompressible
	rand.Read(noise)
	h := c.Endpoint(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write(noise) }), nil)
	w := get(h, "/big", true)
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" || w.Header().Get("Connection") != "close" {
		t.Fatalf("over budget: %d, Retry-After %q, Connection %q; want 503 with Retry-After, closing the connection",
			w.Code, w.Header().Get("Retry-After"), w.Header().Get("Connection"))
	}
	if used := c.bytes.used; used != 0 {
		t.Fatalf("a failed rendering left %d bytes of the budget taken", used)
	}
}

// TestBudgetHeldByCachedRenderingsOnly: however many states are rendered
// in turn, the budget holds the current rendering only.
func TestBudgetHeldByCachedRenderingsOnly(t *testing.T) {
	t.Parallel()
	var gen, calls atomic.Int64
	c, _ := testCache(t, Limits{}, &gen)
	h := c.Endpoint(counting(&calls), nil)
	get(h, "/x", true)
	one := c.bytes.used
	if one <= 0 {
		t.Fatalf("a cached rendering holds %d bytes of the budget", one)
	}
	for range 20 {
		gen.Add(1)
		get(h, "/x", true)
	}
	if used := c.bytes.used; used != one {
		t.Fatalf("after 20 renderings the budget holds %d bytes, want %d (one rendering)", used, one)
	}
}

// TestVariantsBounded: an endpoint keeps at most maxVariants renderings,
// dropping the least recently used; every variant is still answered.
func TestVariantsBounded(t *testing.T) {
	t.Parallel()
	var gen, calls atomic.Int64
	c, _ := testCache(t, Limits{}, &gen)
	h := c.Endpoint(counting(&calls), func(r *http.Request) string { return r.URL.RawQuery })
	for i := range 3 * maxVariants {
		if w := get(h, "/x?"+strconv.Itoa(i), false); w.Code != http.StatusOK {
			t.Fatalf("variant %d: %d", i, w.Code)
		}
	}
	e := h.(*endpoint)
	e.mu.Lock()
	n := len(e.slots)
	e.mu.Unlock()
	if n > maxVariants {
		t.Fatalf("%d variants kept, bound %d", n, maxVariants)
	}
}

// TestPanicIs503: a handler that panics while rendering fails that
// request with 503, and the next request renders again.
func TestPanicIs503(t *testing.T) {
	t.Parallel()
	var gen atomic.Int64
	c, _ := testCache(t, Limits{}, &gen)
	var fail atomic.Bool
	fail.Store(true)
	h := c.Endpoint(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if fail.Load() {
			panic("broken")
		}
		io.WriteString(w, "ok")
	}), nil)
	if w := get(h, "/x", false); w.Code != http.StatusServiceUnavailable {
		t.Fatalf("panicking handler: %d, want 503", w.Code)
	}
	fail.Store(false)
	if w := get(h, "/x", false); w.Code != http.StatusOK || w.Body.String() != "ok" {
		t.Fatalf("after the panic: %d %q, want a new rendering", w.Code, w.Body.String())
	}
}

// TestWriteDeadline: a response's write deadline grows with its size.
func TestWriteDeadline(t *testing.T) {
	t.Parallel()
	l := Limits{WriteBase: time.Second, WriteRate: 1 << 20}.WithDefaults()
	if got := l.writeDeadline(4 << 20); got != 5*time.Second {
		t.Fatalf("4 MiB at 1 MiB/s after 1 s: %v, want 5s", got)
	}
}

// TestRefusalAfterLongWaitIsSent: a request that waited for a rendering
// past the write deadline its route gave it still gets its 503, not a
// closed connection.
func TestRefusalAfterLongWaitIsSent(t *testing.T) {
	t.Parallel()
	var gen atomic.Int64
	c := New(Limits{RenderWait: 50 * time.Millisecond}, func() any { return gen.Load() }, slog.New(slog.NewTextHandler(io.Discard, nil)))
	entered, release := make(chan struct{}), make(chan struct{})
	h := c.Endpoint(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		close(entered)
		<-release
		io.WriteString(w, "ok")
	}), nil)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The route's own deadline, passed long before the wait ends.
		_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(time.Millisecond))
		h.ServeHTTP(w, r)
	}))
	defer srv.Close()
	first := make(chan error, 1)
	go func() {
		resp, err := http.Get(srv.URL)
		if err == nil {
			resp.Body.Close()
		}
		first <- err
	}()
	<-entered
	defer func() { close(release); <-first }()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatalf("request waiting on a slow rendering: %v, want a 503", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("request waiting on a slow rendering: %d, Retry-After %q; want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
}
