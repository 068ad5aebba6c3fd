package hostilehttp

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Counts is what a group of clients saw: answers (200, read in full),
// refusals (503 or 429 with Retry-After), connections refused or dropped
// before an answer (the connection cap at work), and anything else.
type Counts struct {
	OK, Refused, ConnErr, Bad atomic.Int64
}

func (c *Counts) String() string {
	return fmt.Sprintf("%d answered, %d refused with Retry-After, %d connection errors, %d bad", c.OK.Load(), c.Refused.Load(), c.ConnErr.Load(), c.Bad.Load())
}

// Scrapers runs n clients that GET base+path in a loop until ctx ends,
// asking for gzip as Prometheus does and reading every answer; each
// request is given timeout.
func Scrapers(ctx context.Context, wg *sync.WaitGroup, base, path string, n int, timeout time.Duration, c *Counts) {
	for i := 0; i < n; i++ {
		wg.Go(func() {
			client := &http.Client{Timeout: timeout, Transport: &http.Transport{DisableKeepAlives: true}}
			for ctx.Err() == nil {
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
				req.Header.Set("Accept-Encoding", "gzip")
				resp, err := client.Do(req)
				if err != nil {
					if ctx.Err() == nil {
						c.ConnErr.Add(1)
					}
					continue
				}
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				switch {
				case err != nil && ctx.Err() != nil:
				case err == nil && resp.StatusCode == http.StatusOK:
					c.OK.Add(1)
				case (resp.StatusCode == http.StatusServiceUnavailable || resp.StatusCode == http.StatusTooManyRequests) &&
					resp.Header.Get("Retry-After") != "":
					c.Refused.Add(1)
				case err != nil:
					c.ConnErr.Add(1)
				default:
					c.Bad.Add(1)
				}
			}
		})
	}
}

// DialSmallWindow connects with a 4 KiB receive buffer set before the
// connection is made, so a client that does not read stops the server's
// writes early, as across a pod network.
func DialSmallWindow(addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: 2 * time.Second, Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		return errors.Join(err, serr)
	}}
	return d.Dial("tcp", addr)
}

// NonReaders keeps n connections to addr, each of which sends one GET of
// path (without gzip: the largest answer), never reads, and is replaced by
// a new one after hold. Opened counts the connections made. They are all
// closed when ctx ends.
func NonReaders(ctx context.Context, wg *sync.WaitGroup, addr, path string, n int, hold time.Duration, opened *atomic.Int64) {
	for i := 0; i < n; i++ {
		wg.Go(func() {
			for ctx.Err() == nil {
				c, err := DialSmallWindow(addr)
				if err != nil {
					pause(ctx, 100*time.Millisecond)
					continue
				}
				opened.Add(1)
				if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: agent\r\n\r\n"); err == nil {
					pause(ctx, hold)
				}
				c.Close()
			}
		})
	}
}

// OpenFDs is the number of open file descriptors of process pid.
func OpenFDs(pid int) int {
	es, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return -1
	}
	return len(es)
}

// SlowBodies keeps n connections to addr, each sending a GET of path
// that declares a 200 KB body and sends it at 10 B/s, reconnecting when
// the server drops it. Dropped counts the connections the server closed.
func SlowBodies(ctx context.Context, wg *sync.WaitGroup, addr, path string, n int, dropped *atomic.Int64) {
	for i := 0; i < n; i++ {
		wg.Go(func() {
			for ctx.Err() == nil {
				c, err := net.DialTimeout("tcp", addr, 2*time.Second)
				if err != nil {
					pause(ctx, 100*time.Millisecond)
					continue
				}
				stop := context.AfterFunc(ctx, func() { c.Close() })
				_, err = io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: agent\r\nContent-Type: text/plain\r\nContent-Length: 200000\r\n\r\n")
				for sent := 0; err == nil && ctx.Err() == nil && sent < 200000; sent++ {
					_, err = c.Write([]byte("x"))
					pause(ctx, 100*time.Millisecond)
				}
				if err != nil && ctx.Err() == nil {
					dropped.Add(1)
				}
				stop()
				c.Close()
			}
		})
	}
}

// Probe is the kubelet: GET base+path on a fresh connection every period,
// each within timeout.
type Probe struct {
	Probes, Failed atomic.Int64
	slowest        atomic.Int64
	last           atomic.Value
}

// Slowest is the slowest probe's duration.
func (p *Probe) Slowest() time.Duration { return time.Duration(p.slowest.Load()) }

// LastError is the last failure, or "".
func (p *Probe) LastError() string { s, _ := p.last.Load().(string); return s }

// Run probes until ctx ends.
func (p *Probe) Run(ctx context.Context, base, path string, period, timeout time.Duration) {
	c := &http.Client{Timeout: timeout, Transport: &http.Transport{DisableKeepAlives: true}}
	for ctx.Err() == nil {
		start := time.Now()
		resp, err := c.Get(base + path)
		d := time.Since(start)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				err = fmt.Errorf("status %d", resp.StatusCode)
			}
		}
		if ctx.Err() != nil {
			return
		}
		p.Probes.Add(1)
		if err != nil {
			p.Failed.Add(1)
			p.last.Store(err.Error())
		}
		if int64(d) > p.slowest.Load() {
			p.slowest.Store(int64(d))
		}
		pause(ctx, period)
	}
}

func pause(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// ReadResponse is http.ReadResponse on a fresh reader of c.
func ReadResponse(c net.Conn) (*http.Response, error) {
	return http.ReadResponse(bufio.NewReader(c), nil)
}
