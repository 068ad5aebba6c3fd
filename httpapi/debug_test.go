package httpapi_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/efs-health-agent/efs-health-agent/httpapi"
)

// TestDebugChecksConcurrency: while DebugConcurrency /debug/checks
// requests are in progress, a further one is refused at once with 429 and
// Retry-After, and the health endpoints answer as usual; once one ends,
// /debug/checks is served again.
func TestDebugChecksConcurrency(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	entered := make(chan struct{}, 2)
	debug := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("block") != "" {
			entered <- struct{}{}
			<-release
		}
		_, _ = io.WriteString(w, "{}")
	})
	h := httpapi.NewRouter(&fakeSource{live: true}, httpapi.Options{DebugChecks: debug, DebugConcurrency: 2, Now: func() time.Time { return now }})
	srv := httptest.NewServer(h)
	defer srv.Close()
	done := make(chan error, 2)
	for i := 0; i < 2; i++ {
		go func() {
			resp, err := http.Get(srv.URL + "/debug/checks?block=1")
			if err == nil {
				resp.Body.Close()
			}
			done <- err
		}()
		<-entered
	}
	code, body, hdr := get(t, h, http.MethodGet, "/debug/checks")
	if code != http.StatusTooManyRequests || hdr.Get("Retry-After") == "" || !strings.Contains(body, "/debug/checks") {
		t.Errorf("third concurrent /debug/checks: %d %q Retry-After %q, want 429 with Retry-After", code, body, hdr.Get("Retry-After"))
	}
	for _, p := range []string{httpapi.PathLive, httpapi.PathHealthz, httpapi.PathReady} {
		if code, _, _ := get(t, h, http.MethodGet, p); code == http.StatusTooManyRequests {
			t.Errorf("%s refused while /debug/checks is busy", p)
		}
	}
	close(release)
	for i := 0; i < 2; i++ {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if code, _, _ := get(t, h, http.MethodGet, "/debug/checks"); code != http.StatusOK {
		t.Errorf("/debug/checks after the others ended: %d", code)
	}
}

// TestDebugRoutes: httpapi registers the debug routes it is given, and
// only those.
func TestDebugRoutes(t *testing.T) {
	t.Parallel()
	src := &fakeSource{live: true}
	plain := httpapi.NewRouter(src, httpapi.Options{})
	for _, p := range []string{httpapi.PathDebugChecks, httpapi.PathPprof, httpapi.PathPprof + "cmdline"} {
		if code, _, _ := get(t, plain, http.MethodGet, p); code != http.StatusNotFound {
			t.Errorf("%s without the option: %d, want 404", p, code)
		}
	}
	opts := httpapi.Options{DebugChecks: http.NotFoundHandler(), Pprof: true}
	full := httpapi.NewRouter(src, opts)
	if code, body, _ := get(t, full, http.MethodGet, httpapi.PathPprof+"cmdline"); code != http.StatusOK || body == "" {
		t.Errorf("pprof cmdline: %d %q", code, body)
	}
	if r := httpapi.Routes(opts); !slices.Contains(r, httpapi.PathDebugChecks) || !slices.Contains(r, httpapi.PathPprof) {
		t.Errorf("Routes = %v", r)
	}
}
