package lograte_test

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/efs-health-agent/efs-health-agent/internal/lograte"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

// TestOneLinePerCausePerInterval: a flood of one error on many
// connections is one line per interval, the next one counting the
// suppressed lines; another cause has its own allowance.
func TestOneLinePerCausePerInterval(t *testing.T) {
	t.Parallel()
	c := &clock{t: time.Unix(1000, 0)}
	var buf bytes.Buffer
	l := lograte.New(10*time.Second, c.now)
	std := lograte.StdLogger(slog.New(slog.NewTextHandler(&buf, nil)), l, slog.LevelWarn)
	for i := 0; i < 670; i++ {
		std.Printf("error encoding and sending metric family: write tcp 127.0.0.1:9910->127.0.0.1:%d: broken pipe", 40000+i)
	}
	std.Print("http: superfluous response.WriteHeader call")
	c.t = c.t.Add(10 * time.Second)
	std.Print("error encoding and sending metric family: write tcp 127.0.0.1:9910->127.0.0.1:1: broken pipe")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d lines, want 3:\n%s", len(lines), buf.String())
	}
	if !strings.Contains(lines[2], lograte.SuppressedKey+"=669") {
		t.Fatalf("the line after the interval does not count 669 suppressed: %s", lines[2])
	}
}

// TestCausesBounded: ever new causes never grow the limiter past its
// bound; they still log, sharing one allowance.
func TestCausesBounded(t *testing.T) {
	t.Parallel()
	c := &clock{t: time.Unix(1000, 0)}
	l := lograte.New(time.Minute, c.now)
	passed := 0
	for i := 0; i < 10000; i++ {
		if _, ok := l.Allow(strings.Repeat("x", i%500) + "cause"); ok {
			passed++
		}
	}
	if passed > 64+1 {
		t.Fatalf("%d of 10,000 distinct causes passed within one interval, want at most 65", passed)
	}
}

func TestCause(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"write tcp 127.0.0.1:9910->127.0.0.1:53312: broken pipe": "write tcp #.#.#.#:#->#.#.#.#:#: broken pipe",
		"plain": "plain",
	} {
		if got := lograte.Cause(in); got != want {
			t.Errorf("Cause(%q) = %q, want %q", in, got, want)
		}
	}
}
