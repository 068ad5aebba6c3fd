package main

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
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
		{"zero interval", []string{"--check-interval=0s"}, nil, `--check-interval="0s": must be greater than zero`},
		{"negative timeout", nil, map[string]string{"HEALTH_CHECK_TIMEOUT": "-5s"}, `HEALTH_CHECK_TIMEOUT="-5s": must be greater than zero`},
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
		{"bad fstype", nil, map[string]string{"HEALTH_DISCOVER_FSTYPES": "nfs4,a/b"}, `HEALTH_DISCOVER_FSTYPES="nfs4,a/b"`},
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
	if code != 2 || !strings.Contains(errb.String(), "HEALTH_PORT=") || !strings.Contains(errb.String(), "address already in use") {
		t.Fatalf("exit %d stderr %q", code, errb.String())
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

func TestCheckSubcommand(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var out, errb bytes.Buffer
	if code := run([]string{"check", dir}, env(nil), &out, &errb); code != 0 {
		t.Fatalf("healthy dir: exit %d\n%s%s", code, out.String(), errb.String())
	}
	for _, w := range []string{"write", "read", "delete", "HEALTHY"} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("output lacks %q:\n%s", w, out.String())
		}
	}
	out.Reset()
	missing := filepath.Join(dir, "gone")
	if code := run([]string{"check", dir, missing}, env(nil), &out, &errb); code != 1 {
		t.Fatalf("missing dir: exit %d\n%s", code, out.String())
	}
	if !strings.Contains(out.String(), "UNHEALTHY") || !strings.Contains(out.String(), "not_mounted") || !strings.Contains(out.String(), "action") {
		t.Errorf("output:\n%s", out.String())
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("left behind %v", ents)
	}
	if code := run([]string{"check"}, env(nil), &out, &errb); code != 2 {
		t.Fatalf("no path: exit %d", code)
	}
	if code := run([]string{"check", "rel"}, env(nil), &out, &errb); code != 2 {
		t.Fatalf("relative path: exit %d", code)
	}
}
