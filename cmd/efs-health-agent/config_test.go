package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"

	"golang.org/x/sys/unix"

	"github.com/efs-health-agent/efs-health-agent/internal/discovery"
	"github.com/efs-health-agent/efs-health-agent/internal/pathesc"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestBadConfigExits2(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"interval not a duration (env)", nil, map[string]string{"HEALTH_CHECK_INTERVAL": "soon"}, `HEALTH_CHECK_INTERVAL="soon": not a duration`},
		{"interval not a duration (flag)", []string{"--check-interval", "10"}, nil, `--check-interval="10": not a duration`},
		{"zero interval", []string{"--check-interval=0s"}, nil, `--check-interval="0s": must be from 100ms to 24h`},
		{"negative timeout", nil, map[string]string{"HEALTH_CHECK_TIMEOUT": "-5s"}, `HEALTH_CHECK_TIMEOUT="-5s": must be from 100ms to 24h`},
		{"interval 1ns", []string{"--check-interval", "1ns", "--check-timeout", "1ns"}, nil, `--check-interval="1ns": must be from 100ms to 24h`},
		{"interval just under the minimum", nil, map[string]string{"HEALTH_CHECK_INTERVAL": "99ms"}, `HEALTH_CHECK_INTERVAL="99ms": must be from 100ms to 24h`},
		{"interval over a day", []string{"--check-interval=24h1ms"}, nil, `--check-interval="24h1ms": must be from 100ms to 24h`},
		{"interval at the int64 maximum", []string{"--check-interval=9223372036854775807ns"}, nil, `--check-interval="9223372036854775807ns": must be from 100ms to 24h`},
		{"interval over the int64 maximum", nil, map[string]string{"HEALTH_CHECK_INTERVAL": "2562048h"}, `HEALTH_CHECK_INTERVAL="2562048h": out of range: must be from 100ms to 24h`},
		{"timeout 1ns", []string{"--check-timeout=1ns"}, nil, `--check-timeout="1ns": must be from 100ms to 24h`},
		{"timeout near the int64 maximum", []string{"--check-interval=24h", "--check-timeout=2562047h"}, nil, `--check-timeout="2562047h": must be from 100ms to 24h`},
		{"discovery interval 1ns", []string{"--discovery-interval=1ns"}, nil, `--discovery-interval="1ns": must be from 1s to 1h`},
		{"discovery interval over an hour", nil, map[string]string{"HEALTH_DISCOVERY_INTERVAL": "61m"}, `HEALTH_DISCOVERY_INTERVAL="61m": must be from 1s to 1h`},
		{"discovery interval overflows", nil, map[string]string{"HEALTH_DISCOVERY_INTERVAL": "99999999999h"}, `HEALTH_DISCOVERY_INTERVAL="99999999999h": out of range`},
		{"bad boolean (env)", nil, map[string]string{"HEALTH_ENABLE_DEBUG": "maybe"}, `HEALTH_ENABLE_DEBUG="maybe": must be true or false`},
		{"bad boolean (flag)", []string{"--enable-debug=yes please"}, nil, `--enable-debug="yes please": must be true or false`},
		{"timeout over interval", []string{"--check-interval=5s", "--check-timeout=6s"}, nil, `--check-timeout="6s": must not exceed the check interval (--check-interval="5s")`},
		{"timeout over default interval", nil, map[string]string{"HEALTH_CHECK_TIMEOUT": "31s"}, `HEALTH_CHECK_TIMEOUT="31s": must not exceed the check interval (30s, the default)`},
		{"port zero", nil, map[string]string{"HEALTH_PORT": "0"}, `HEALTH_PORT="0": must be a port number from 1 to 65535`},
		{"port too big", []string{"--port=70000"}, nil, `--port="70000": must be a port number`},
		{"port not a number", nil, map[string]string{"HEALTH_PORT": "http"}, `HEALTH_PORT="http"`},
		{"relative mount (env)", nil, map[string]string{"HEALTH_MOUNTS": "/ok,relative/dir"}, `HEALTH_MOUNTS="relative/dir": mount path "relative/dir": must be absolute`},
		{"relative mount (flag)", []string{"--mount", "data"}, nil, `--mount="data"`},
		{"bad bind address", []string{"--bind-address", "not an ip"}, nil, `--bind-address="not an ip"`},
		{"bad log level", nil, map[string]string{"HEALTH_LOG_LEVEL": "loud"}, `HEALTH_LOG_LEVEL="loud"`},
		{"unknown flag", []string{"--frobnicate"}, nil, "frobnicate"},
		{"relative discovery prefix", nil, map[string]string{"HEALTH_DISCOVER_PREFIX": "pods"}, `HEALTH_DISCOVER_PREFIX="pods": must be an absolute`},
		{"relative mountinfo", []string{"--mountinfo", "proc/1/mountinfo"}, nil, `--mountinfo="proc/1/mountinfo"`},
		{"relative state dir", nil, map[string]string{"HEALTH_EFS_STATE_DIR": "var/run/efs"}, `HEALTH_EFS_STATE_DIR="var/run/efs"`},
		{"bad discovery interval", nil, map[string]string{"HEALTH_DISCOVERY_INTERVAL": "often"}, `HEALTH_DISCOVERY_INTERVAL="often": not a duration`},
		{"too few connections", nil, map[string]string{"HEALTH_MAX_CONNECTIONS": "2"}, `HEALTH_MAX_CONNECTIONS="2": must be a number from 16 to 65536`},
		{"connections not a number", []string{"--max-connections", "many"}, nil, `--max-connections="many"`},
		{"bad fstype", nil, map[string]string{"HEALTH_DISCOVER_FSTYPES": "nfs4,a/b"}, `HEALTH_DISCOVER_FSTYPES="nfs4,a/b"`},
		{"bad trace slow threshold", nil, map[string]string{"HEALTH_TRACE_SLOW_THRESHOLD": "0"}, `HEALTH_TRACE_SLOW_THRESHOLD="0": must be from 1ms to 24h`},
		{"bad trace sampler", nil, map[string]string{"OTEL_TRACES_SAMPLER": "sometimes"}, `invalid OTEL_TRACES_SAMPLER="sometimes"`},
		{"bad trace sampler ratio", nil, map[string]string{"OTEL_TRACES_SAMPLER_ARG": "2"}, `invalid OTEL_TRACES_SAMPLER_ARG="2": must be a ratio from 0 to 1`},
		{"stray argument", []string{"/mnt/x"}, nil, `unexpected argument "/mnt/x"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var out, errb bytes.Buffer
			code := run(tc.args, env(tc.env), &out, &errb)
			if code != 2 {
				t.Fatalf("exit %d, want 2 (stderr %q)", code, errb.String())
			}
			msg := errb.String()
			if !strings.Contains(msg, tc.want) {
				t.Fatalf("stderr %q does not contain %q", msg, tc.want)
			}
			if strings.Count(strings.TrimSpace(msg), "\n") != 0 {
				t.Fatalf("error is not one line: %q", msg)
			}
		})
	}
}

// freePort returns a loopback port nothing listens on (the listener used
// to find it is closed again).
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}

// TestBadMountTableExits2 starts the agent with a mount table that cannot
// be read or parsed: like every other bad setting, one line naming it and
// exit status 2.
func TestBadMountTableExits2(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage")
	if err := os.WriteFile(garbage, []byte("not a mount table\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct{ name, mountinfo, want string }{
		{"missing", filepath.Join(dir, "missing"), `invalid HEALTH_MOUNTINFO="` + filepath.Join(dir, "missing") + `": read mount table: open`},
		{"a directory", dir, `invalid HEALTH_MOUNTINFO="` + dir + `": ` + dir + ` is a directory: not a regular file`},
		{"not a mount table", garbage, `invalid HEALTH_MOUNTINFO="` + garbage + `"`},
		// Opening a FIFO for reading waits for a writer, and reading
		// it waits for data: it is refused from its mode.
		{"a FIFO", fifo, `invalid HEALTH_MOUNTINFO="` + fifo + `": ` + fifo + ` is a named pipe (FIFO): not a regular file`},
		{"a device", "/dev/zero", `invalid HEALTH_MOUNTINFO="/dev/zero": /dev/zero is a character device: not a regular file`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var out, errb bytes.Buffer
			// At the default log level: the error is the first and only
			// line, before the memory limit or anything else is logged.
			e := env(map[string]string{"HEALTH_MOUNTINFO": tc.mountinfo, "HEALTH_PORT": freePort(t)})
			done := make(chan int, 1)
			go func() { done <- run([]string{"--bind-address", "127.0.0.1", "--mount", dir}, e, &out, &errb) }()
			var code int
			select {
			case code = <-done:
			case <-time.After(30 * time.Second):
				t.Fatal("the agent did not exit within 30 s") // leaks the hung run: the test has failed anyway
			}
			msg := errb.String()
			if code != 2 || !strings.Contains(msg, tc.want) || strings.Count(strings.TrimSpace(msg), "\n") != 0 {
				t.Fatalf("exit %d, stderr %q; want 2 and one line containing %q", code, msg, tc.want)
			}
		})
	}
}

// TestJoinedErrorsOneLine logs a joined error, as the telemetry's flush
// at shutdown returns one (traces and metrics, each possibly joined
// again by the SDK): its parts are separated with "; ", not with a
// newline that the escaping would show as a literal \x0a.
func TestJoinedErrorsOneLine(t *testing.T) {
	t.Parallel()
	err := errors.Join(fmt.Errorf("traces: %w", errors.Join(errors.New("exporter a: refused"), errors.New("exporter b: timeout"))),
		nil, fmt.Errorf("metrics: %w", context.DeadlineExceeded))
	want := "traces: exporter a: refused; exporter b: timeout; metrics: context deadline exceeded"
	for _, format := range []string{"text", "json"} {
		t.Run(format, func(t *testing.T) {
			t.Parallel()
			c, _, perr := parseConfig("t", []string{"--log-format=" + format}, env(nil), &bytes.Buffer{})
			if perr != nil {
				t.Fatal(perr)
			}
			var buf bytes.Buffer
			newLogger(c, &buf).Warn("telemetry flush", "err", err)
			out := buf.String()
			if strings.Contains(out, `\x0a`) || !strings.Contains(out, want) || strings.Count(out, "\n") != 1 {
				t.Fatalf("logged %q, want one line with %q", out, want)
			}
		})
	}
	// A path with a newline in a part is still escaped.
	if got := errorText(errors.Join(errors.New("open /mnt/a\nb"), errors.New("x"))); got != `open /mnt/a\x0ab; x` {
		t.Fatalf("errorText = %q", got)
	}
}

func TestBounds(t *testing.T) {
	t.Parallel()
	cases := []struct {
		args []string
		want func(c *config) bool
	}{
		{[]string{"--check-interval=100ms", "--check-timeout=100ms"}, func(c *config) bool { return c.Interval == 100*time.Millisecond && c.Timeout == 100*time.Millisecond }},
		{[]string{"--check-interval=24h", "--check-timeout=24h"}, func(c *config) bool { return c.Interval == 24*time.Hour && c.Timeout == 24*time.Hour }},
		{[]string{"--discovery-interval=1s"}, func(c *config) bool { return c.DiscoveryInterval == time.Second }},
		{[]string{"--discovery-interval=1h"}, func(c *config) bool { return c.DiscoveryInterval == time.Hour }},
	}
	for _, tc := range cases {
		c, _, err := parseConfig("t", tc.args, env(nil), &bytes.Buffer{})
		if err != nil || !tc.want(c) {
			t.Errorf("%v: %+v, %v", tc.args, c, err)
		}
		if err == nil {
			ac := c.agentConfig()
			ac.Hostname = "node"
			if err := ac.Validate(); err != nil {
				t.Errorf("%v: the agent rejects a setting within bounds: %v", tc.args, err)
			}
		}
	}
}

func TestBooleanFlags(t *testing.T) {
	t.Parallel()
	cases := []struct {
		args []string
		env  map[string]string
		want bool
		rest []string
	}{
		{nil, nil, false, nil},
		{[]string{"--enable-debug"}, nil, true, nil},
		{[]string{"-enable-debug"}, nil, true, nil},
		{[]string{"--enable-debug", "--port=9911"}, nil, true, nil},
		{[]string{"--enable-debug=false"}, map[string]string{"HEALTH_ENABLE_DEBUG": "true"}, false, nil},
		{[]string{"--enable-debug=1"}, nil, true, nil},
		{nil, map[string]string{"HEALTH_ENABLE_DEBUG": "true"}, true, nil},
		// A boolean flag takes no separate value, as with Go's flag package.
		{[]string{"--enable-debug", "/mnt/x"}, nil, true, []string{"/mnt/x"}},
	}
	for _, tc := range cases {
		c, rest, err := parseConfig("t", tc.args, env(tc.env), &bytes.Buffer{})
		if err != nil || c.EnableDebug != tc.want || strings.Join(rest, " ") != strings.Join(tc.rest, " ") {
			t.Errorf("%v %v: debug %v rest %q err %v; want %v", tc.args, tc.env, c != nil && c.EnableDebug, rest, err, tc.want)
		}
	}
}

func TestVersion(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"--version"}, {"-version"}, {"version"}, {"--port=1", "--version"}} {
		var out, errb bytes.Buffer
		if code := run(args, env(nil), &out, &errb); code != 0 || out.String() != "efs-health-agent "+version+"\n" || errb.Len() != 0 {
			t.Errorf("%v: exit %d stdout %q stderr %q", args, code, out.String(), errb.String())
		}
	}
}

func TestWarnNothingMonitored(t *testing.T) {
	t.Parallel()
	cases := []struct {
		env  map[string]string
		warn bool
	}{
		{nil, true},
		{map[string]string{"HEALTH_MOUNTS": "/mnt/a"}, false},
		{map[string]string{"HEALTH_DISCOVER_FSTYPES": "nfs4"}, false},
	}
	for _, tc := range cases {
		c, _, err := parseConfig("t", nil, env(tc.env), &bytes.Buffer{})
		if err != nil {
			t.Fatal(err)
		}
		var logs bytes.Buffer
		warnNothingMonitored(c, newLogger(c, &logs))
		if got := strings.Contains(logs.String(), "level=WARN") && strings.Contains(logs.String(), "nothing is monitored"); got != tc.warn {
			t.Errorf("%v: logged %q, want warning %v", tc.env, logs.String(), tc.warn)
		}
	}
}

// TestWarnPlainDirectories: a configured mount that is no mount point
// when the agent starts is checked as a plain directory (make run's), and
// the agent warns once for it, naming it; a mount point gets no warning.
func TestWarnPlainDirectories(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	mi := filepath.Join(dir, "mountinfo")
	line := "101 22 0:51 / /mnt/efs rw,relatime shared:61 - nfs4 127.0.0.1:/ rw,vers=4.1,hard,noresvport,proto=tcp,port=20127,addr=127.0.0.1\n"
	if err := os.WriteFile(mi, []byte(line), 0o644); err != nil {
		t.Fatal(err)
	}
	c, _, err := parseConfig("t", []string{"--mountinfo", mi}, env(map[string]string{"HEALTH_MOUNTS": "/mnt/efs,/tmp/demo"}), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	w, err := discovery.New(discovery.Config{MountInfo: mi, Paths: c.Mounts, Interval: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	table, err := w.Refresh()
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	warnPlainDirectories(c, table, newLogger(c, &logs))
	want := `level=WARN msg="configured mount is not a mount point: checked as a plain directory, with no mount-table check" mount=/tmp/demo`
	if strings.Count(logs.String(), "level=WARN") != 1 || !strings.Contains(logs.String(), want) {
		t.Fatalf("logged %q, want one warning %q", logs.String(), want)
	}
}

func TestPortInUse(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	var out, errb bytes.Buffer
	code := run([]string{"--bind-address", "127.0.0.1"}, env(map[string]string{"HEALTH_PORT": port}), &out, &errb)
	// The value is fine: the message says the port is in use, names the
	// address and the setting that chooses another, and calls nothing
	// invalid.
	want := "efs-health-agent: cannot listen on 127.0.0.1:" + port + ": the port is already in use by another process (another agent?); stop it, or choose another port with HEALTH_PORT\n"
	if code != 2 || errb.String() != want {
		t.Fatalf("exit %d stderr %q, want %q", code, errb.String(), want)
	}
	errb.Reset()
	if code := run([]string{"--port", port}, env(nil), &out, &errb); code != 2 ||
		!strings.Contains(errb.String(), "cannot listen on :"+port+" (all interfaces): the port is already in use") ||
		!strings.Contains(errb.String(), "with --port\n") {
		t.Fatalf("all interfaces: exit %d stderr %q", code, errb.String())
	}
}

func TestPrecedence(t *testing.T) {
	t.Parallel()
	e := env(map[string]string{"HEALTH_CHECK_INTERVAL": "1m", "HEALTH_CHECK_TIMEOUT": "10s", "HEALTH_PORT": "1234", "HEALTH_MOUNTS": "/a, /b,,/a", "NODE_NAME": "node-7"})
	c, _, err := parseConfig("t", []string{"--check-interval=2m", "--port=4321"}, e, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if c.Interval != 2*time.Minute || c.Timeout != 10*time.Second || c.Port != 4321 {
		t.Fatalf("precedence: %+v", c)
	}
	if strings.Join(c.Mounts, ",") != "/a,/b" {
		t.Fatalf("mounts %v", c.Mounts)
	}
	if c.NodeName != "node-7" {
		t.Fatalf("node name %q, want NODE_NAME", c.NodeName)
	}
	c, _, err = parseConfig("t", []string{"--mount", "/x", "--mount", "/y"}, e, &bytes.Buffer{})
	if err != nil || strings.Join(c.Mounts, ",") != "/x,/y" {
		t.Fatalf("--mount should replace HEALTH_MOUNTS: %v %v", c.Mounts, err)
	}
	d, _, err := parseConfig("t", nil, env(nil), &bytes.Buffer{})
	if err != nil || d.Interval != 30*time.Second || d.Timeout != 5*time.Second || d.Port != 9910 || d.BindAddress != "" {
		t.Fatalf("defaults: %+v %v", d, err)
	}
}

func TestHelpDocumentsEverySetting(t *testing.T) {
	t.Parallel()
	var out, errb bytes.Buffer
	if code := run([]string{"--help"}, env(nil), &out, &errb); code != 0 {
		t.Fatalf("--help exit %d", code)
	}
	for _, s := range settings {
		if !strings.Contains(out.String(), "--"+s.flag) || !strings.Contains(out.String(), s.env) {
			t.Errorf("--help lacks %s / %s", s.flag, s.env)
		}
	}
}

// TestHelpDefaults: --help states each setting's default once, and a
// setting without a default value says what it then means.
func TestHelpDefaults(t *testing.T) {
	t.Parallel()
	var out, errb bytes.Buffer
	if code := run([]string{"--help"}, env(nil), &out, &errb); code != 0 {
		t.Fatalf("--help exit %d", code)
	}
	for _, s := range settings {
		if strings.Contains(s.usage, "(default") {
			t.Errorf("--%s states its default twice: %q", s.flag, s.usage)
		}
		if s.def == "" && s.none == "" {
			t.Errorf("--%s has no default to show", s.flag)
		}
	}
	for _, w := range []string{"HEALTH_BIND_ADDRESS      default all interfaces\n", "HEALTH_NODE_NAME         default $NODE_NAME, else the hostname\n"} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("--help lacks %q:\n%s", w, out.String())
		}
	}
}

// TestHelpDiscoveryTypes: the filesystem types --help offers for
// discovery are ones the kernel lists. An EFS mount is listed as nfs4:
// mount.efs mounts NFSv4.1 (see csihealth's TestPublishVolumeKernelFSType),
// so "efs" would discover nothing.
func TestHelpDiscoveryTypes(t *testing.T) {
	t.Parallel()
	var out, errb bytes.Buffer
	if code := run([]string{"--help"}, env(nil), &out, &errb); code != 0 {
		t.Fatalf("--help exit %d", code)
	}
	_, after, ok := strings.Cut(out.String(), "--discover-fstypes")
	if !ok {
		t.Fatal("--help lacks --discover-fstypes")
	}
	_, ex, ok := strings.Cut(after, "e.g. ")
	if !ok {
		t.Fatalf("--discover-fstypes gives no example:\n%s", after)
	}
	ex, _, _ = strings.Cut(ex, " ")
	for _, fstype := range strings.Split(ex, ",") {
		if fstype != "nfs4" && fstype != "nfs" {
			t.Errorf("--help offers the discovery type %q, which the kernel never lists for an NFS or EFS mount", fstype)
		}
	}
}

func TestCheckSubcommand(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var out, errb bytes.Buffer
	if code := run([]string{"check", "--mount", dir}, env(nil), &out, &errb); code != 0 {
		t.Fatalf("healthy dir: exit %d\n%s%s", code, out.String(), errb.String())
	}
	for _, w := range []string{"write", "read", "delete", "HEALTHY"} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("output lacks %q:\n%s", w, out.String())
		}
	}
	out.Reset()
	missing := filepath.Join(dir, "gone")
	if code := run([]string{"check", "--mount", dir, missing}, env(nil), &out, &errb); code != 1 {
		t.Fatalf("missing dir: exit %d\n%s", code, out.String())
	}
	if !strings.Contains(out.String(), "UNHEALTHY") || !strings.Contains(out.String(), "not_mounted") || !strings.Contains(out.String(), "action") {
		t.Errorf("output:\n%s", out.String())
	}
	if ents := leftBehind(t, dir); len(ents) != 0 {
		t.Fatalf("left behind %v", ents)
	}
	if code := run([]string{"check"}, env(nil), &out, &errb); code != 2 {
		t.Fatalf("no path: exit %d", code)
	}
	if code := run([]string{"check", "rel"}, env(nil), &out, &errb); code != 2 {
		t.Fatalf("relative path: exit %d", code)
	}
}

// TestLogsEscapeControls logs a hostile mount path and an error quoting it
// in both formats: no control or bidi character reaches the log, invalid
// UTF-8 is escaped rather than replaced, and the JSON stays one valid
// object per line.
func TestLogsEscapeControls(t *testing.T) {
	t.Parallel()
	hostile := "/mnt/\x1b[2J\x1b]0;owned\x07\u202eevil\u2066\u2028\r\nlevel=ERROR fake\xff"
	for _, format := range []string{"text", "json"} {
		t.Run(format, func(t *testing.T) {
			t.Parallel()
			c, _, err := parseConfig("t", []string{"--log-format=" + format}, env(nil), &bytes.Buffer{})
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			log := newLogger(c, &buf)
			log.Warn("mount gone "+hostile, "mount", hostile, "err", fmt.Errorf("open %s: %w", hostile, os.ErrNotExist),
				"op", stringer(hostile), "count", 3)
			out := buf.String()
			if strings.Count(out, "\n") != 1 || !strings.HasSuffix(out, "\n") {
				t.Fatalf("not one line: %q", out)
			}
			for _, r := range strings.TrimSuffix(out, "\n") {
				if !unicode.IsPrint(r) {
					t.Fatalf("log line keeps %U: %q", r, out)
				}
			}
			if strings.Contains(out, "\uFFFD") {
				t.Fatalf("invalid UTF-8 replaced instead of escaped: %q", out)
			}
			want := pathesc.Display(hostile)
			if format == "json" {
				var rec map[string]any
				if err := json.Unmarshal([]byte(out), &rec); err != nil {
					t.Fatalf("invalid JSON %q: %v", out, err)
				}
				if rec["mount"] != want || rec["op"] != want || rec["msg"] != "mount gone "+want || rec["count"] != 3.0 {
					t.Fatalf("record %v, want mount %q", rec, want)
				}
				if back, err := pathesc.Unescape(rec["mount"].(string)); err != nil || back != hostile {
					t.Fatalf("mount %q does not unescape to the path: %q %v", rec["mount"], back, err)
				}
				return
			}
			if !strings.Contains(out, "mount="+strconv.Quote(want)) {
				t.Fatalf("text log %q lacks mount=%q", out, want)
			}
		})
	}
}

type stringer string

func (s stringer) String() string { return string(s) }

// TestCheckOutputEscapesControls checks paths holding terminal escapes,
// bidi overrides, line separators and invalid UTF-8: the output shows them
// escaped by pathesc.Display, so nothing reaches the terminal raw.
func TestCheckOutputEscapesControls(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	healthy := filepath.Join(dir, "ok\x1b[2J\x1b]0;title\x07\u202e\u2066\u2028\xff")
	if err := os.Mkdir(healthy, 0o755); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "gone\x1b[31m\u202e\r")
	var out, errb bytes.Buffer
	if code := run([]string{"check", "--mount", healthy, missing}, env(nil), &out, &errb); code != 1 {
		t.Fatalf("exit %d\n%s%s", code, out.String(), errb.String())
	}
	for _, r := range out.String() {
		if r != '\n' && !unicode.IsPrint(r) {
			t.Fatalf("output holds %U:\n%q", r, out.String())
		}
	}
	for _, p := range []string{healthy, missing} {
		if !strings.Contains(out.String(), pathesc.Display(p)+"\n") {
			t.Errorf("output lacks the path %q:\n%s", pathesc.Display(p), out.String())
		}
	}
	if !strings.Contains(out.String(), "HEALTHY") || !strings.Contains(out.String(), "not_mounted") {
		t.Errorf("output:\n%s", out.String())
	}
	// The flag package prints an unknown flag's name as given.
	out.Reset()
	if code := run([]string{"check", "--\x1b[2J\u202e", dir}, env(nil), &out, &errb); code != 2 {
		t.Fatalf("unknown flag: exit %d", code)
	}
	for _, r := range errb.String() {
		if r != '\n' && !unicode.IsPrint(r) {
			t.Fatalf("stderr holds %U: %q", r, errb.String())
		}
	}
}

// TestBoolSettings: each on/off setting is off by default, taken from the
// flag or the environment (the flag winning), reaches the agent's
// configuration, and a bad value is refused naming the setting.
func TestBoolSettings(t *testing.T) {
	t.Parallel()
	for _, s := range []struct {
		flag, env string
		get       func(*config) (setting, agent bool)
	}{
		{"require-write-check", "HEALTH_REQUIRE_WRITE_CHECK", func(c *config) (bool, bool) {
			return c.RequireWriteCheck, c.agentConfig().RequireWriteCheck
		}},
		{"group-checks", "HEALTH_GROUP_CHECKS", func(c *config) (bool, bool) {
			return c.GroupChecks, c.agentConfig().Grouping
		}},
	} {
		for _, tc := range []struct {
			args []string
			env  map[string]string
			want bool
		}{
			{nil, nil, false},
			{[]string{"--" + s.flag}, nil, true},
			{nil, map[string]string{s.env: "true"}, true},
			{[]string{"--" + s.flag + "=false"}, map[string]string{s.env: "true"}, false},
		} {
			c, _, err := parseConfig("t", tc.args, env(tc.env), &bytes.Buffer{})
			if err != nil {
				t.Errorf("%v %v: %v", tc.args, tc.env, err)
				continue
			}
			if got, agent := s.get(c); got != tc.want || agent != tc.want {
				t.Errorf("%v %v: setting %v, agent's configuration %v; want %v", tc.args, tc.env, got, agent, tc.want)
			}
		}
		_, _, err := parseConfig("t", nil, env(map[string]string{s.env: "maybe"}), &bytes.Buffer{})
		if want := `invalid ` + s.env + `="maybe": must be true or false`; err == nil || err.Error() != want {
			t.Errorf("%s bad value: %v, want %s", s.env, err, want)
		}
	}
}

// TestProbeLocation: HEALTH_PROBE_LOCATION / --probe-location says where
// probe files are made, dir by default; any other value is refused by
// name.
func TestProbeLocation(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args   []string
		env    map[string]string
		inRoot bool
	}{
		{nil, nil, false},
		{[]string{"--probe-location=root"}, nil, true},
		{nil, map[string]string{"HEALTH_PROBE_LOCATION": "ROOT"}, true},
		{[]string{"--probe-location", "dir"}, map[string]string{"HEALTH_PROBE_LOCATION": "root"}, false},
	} {
		c, _, err := parseConfig("t", tc.args, env(tc.env), &bytes.Buffer{})
		if err != nil || c.agentConfig().ProbeInRoot != tc.inRoot {
			t.Errorf("%v %v: %v; want in root %v", tc.args, tc.env, err, tc.inRoot)
		}
	}
	_, _, err := parseConfig("t", nil, env(map[string]string{"HEALTH_PROBE_LOCATION": "subdir"}), &bytes.Buffer{})
	if err == nil || err.Error() != `invalid HEALTH_PROBE_LOCATION="subdir": must be dir or root` {
		t.Fatalf("bad value: %v", err)
	}
	_, _, err = parseConfig("t", []string{"--probe-location=/tmp"}, env(nil), &bytes.Buffer{})
	if err == nil || err.Error() != `invalid --probe-location="/tmp": must be dir or root` {
		t.Fatalf("bad flag value: %v", err)
	}
}
