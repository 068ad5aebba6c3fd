//go:build linux

package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/efs-health-agent/efs-health-agent/internal/testenv/testutil"
)

// TestFIFOTableAtStart starts the binary with a FIFO as its mount table:
// opening a FIFO for reading waits for a writer, and reading it waits for
// data, so it is refused from its mode, like any bad setting: exit status
// 2 and one line naming the setting and the value, before any log line.
func TestFIFOTableAtStart(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "mountinfo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(agentBinary(t), "--bind-address", "127.0.0.1", "--port", fmt.Sprint(freePort(t)), "--mount", t.TempDir())
	cmd.Env = append(os.Environ(), "HEALTH_MOUNTINFO="+fifo)
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("the agent did not exit within 20 s with a FIFO as its mount table; output:\n%s", out.String())
	}
	var ee *exec.ExitError
	msg := strings.TrimSpace(out.String())
	want := `efs-health-agent: invalid HEALTH_MOUNTINFO="` + fifo + `": ` + fifo + ` is a named pipe (FIFO): not a regular file`
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || msg != want {
		t.Fatalf("exit %v, output %q; want status 2 and exactly %q", err, msg, want)
	}
}

// TestFIFOTableAtRuntime swaps a FIFO in for the binary's mount table,
// then a valid table again: the agent stays live, keeps the last table
// (the static mount stays healthy, not not_mounted), and discovers the
// new table's mount by itself. With the FIFO in place again, SIGTERM
// ends it within 5 s.
func TestFIFOTableAtRuntime(t *testing.T) {
	dir := t.TempDir()
	static := filepath.Join(dir, "static")
	prefix := filepath.Join(dir, "pods")
	for _, d := range []string{static, prefix} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	table := filepath.Join(dir, "mountinfo")
	write := func(paths ...string) {
		t.Helper()
		var b bytes.Buffer
		b.WriteString("22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n")
		for i, p := range paths {
			fmt.Fprintf(&b, "%d 22 0:%d / %s rw,relatime shared:%d - nfs4 fs-%d.efs.us-east-1.amazonaws.com:/ rw,vers=4.1\n", 100+i, 100+i, p, 100+i, i)
		}
		if err := os.WriteFile(table+".new", b.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(table+".new", table); err != nil {
			t.Fatal(err)
		}
	}
	fifo := func() {
		t.Helper()
		if err := unix.Mkfifo(table+".fifo", 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(table+".fifo", table); err != nil {
			t.Fatal(err)
		}
	}
	podA, podB := filepath.Join(prefix, "a"), filepath.Join(prefix, "b")
	write(podA)
	agent := startAgent(t, []string{"HEALTH_MOUNTINFO=" + table, "HEALTH_DISCOVER_FSTYPES=nfs4", "HEALTH_DISCOVER_PREFIX=" + prefix,
		"HEALTH_DISCOVERY_INTERVAL=1s"}, "--check-interval", "1s", "--check-timeout", "500ms", "--mount", static)
	testutil.WaitForWithin(t, 10*time.Second, "static healthy, pod a discovered", func() bool {
		m := mounts(t, agent.base)
		_, a := m[podA]
		return a && m[static]["state"] == "healthy"
	})
	fifo()
	testutil.WaitForWithin(t, 10*time.Second, "the FIFO logged", func() bool {
		return strings.Contains(logsOf(agent), "named pipe")
	})
	resp, err := http.Get(agent.base + "/healthz/live")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("/healthz/live with a FIFO table: %v %v", resp, err)
	}
	resp.Body.Close()
	write(podA, podB)
	testutil.WaitForWithin(t, 10*time.Second, "pod b discovered from the valid table", func() bool { _, ok := mounts(t, agent.base)[podB]; return ok })
	if m := mounts(t, agent.base)[static]; m["state"] != "healthy" || m["reason"] == "not_mounted" {
		t.Fatalf("static mount %v", m)
	}
	fifo()
	testutil.WaitForWithin(t, 10*time.Second, "the FIFO logged again", func() bool {
		return strings.Count(logsOf(agent), "named pipe") >= 2
	})
	if err := agent.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-agent.done:
		agent.done <- err // for the cleanup
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the agent did not exit within 5 s of SIGTERM with a FIFO as its mount table")
	}
}

// logsOf is what the agent has logged so far.
func logsOf(a *agentProc) string { return a.logs.Text() }

// Text is what was written so far.
func (b *syncBuffer) Text() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.String()
}
