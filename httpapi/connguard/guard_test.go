package connguard_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/efs-health-agent/efs-health-agent/httpapi/connguard"
)

// TestReserveServesProbePathsOnly: with the one slot busy, newcomers are
// served from the reserve: the probe paths the guard was given are
// answered by the server's handler, any other by Config.Refuse, and each
// reserve connection is closed after its answer.
func TestReserveServesProbePathsOnly(t *testing.T) {
	t.Parallel()
	entered, release := make(chan struct{}), make(chan struct{})
	g := connguard.New(connguard.Config{Max: 1, ProbePaths: []string{"/probe"},
		Refuse: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusTeapot) })})
	s := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/block" {
			close(entered)
			<-release
		}
		io.WriteString(w, "ok")
	})}
	g.Install(s)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Serve(g.Listener(ln)) }()
	t.Cleanup(func() { s.Close() })
	addr := ln.Addr().String()

	busy := make(chan error, 1)
	go func() {
		resp, err := http.Get("http://" + addr + "/block")
		if err == nil {
			resp.Body.Close()
		}
		busy <- err
	}()
	<-entered
	for _, tc := range []struct {
		path string
		code int
	}{{"/probe", http.StatusOK}, {"/other", http.StatusTeapot}, {"/probe/x", http.StatusTeapot}} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		if _, err := io.WriteString(c, "GET "+tc.path+" HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("GET %s with the slot busy: %v", tc.path, err)
		}
		resp.Body.Close()
		c.Close()
		if resp.StatusCode != tc.code || !resp.Close {
			t.Errorf("GET %s from the reserve: %d (close %v), want %d and the connection closed", tc.path, resp.StatusCode, resp.Close, tc.code)
		}
	}
	if st := g.Stats(); st.Open < 1 || st.Refused != 0 {
		t.Errorf("stats %+v: want the busy connection open and nobody refused", st)
	}
	close(release)
	if err := <-busy; err != nil {
		t.Fatalf("busy request: %v", err)
	}
}
