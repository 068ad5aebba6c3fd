package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/efs-health-agent/efs-health-agent/internal/testenv/faultfs"
	"github.com/efs-health-agent/efs-health-agent/internal/testenv/testutil"
	"github.com/efs-health-agent/efs-health-agent/probes"
)

// TestCheckStuck: a check stuck in the kernel is reported at its
// deadline, naming the operation; its probe file is removed by name once
// the call returns.
func TestCheckStuck(t *testing.T) {
	t.Parallel()
	fs := testutil.MountFaultFS(t)
	fs.Set(faultfs.OpFsync, faultfs.Fault{Hang: true})
	var out, errb bytes.Buffer
	code := run([]string{"check", "--check-interval", "10s", "--check-timeout", "500ms", fs.Mountpoint()}, env(nil), &out, &errb)
	if code != 1 {
		t.Fatalf("exit %d\n%s%s", code, out.String(), errb.String())
	}
	for _, w := range []string{"stuck", "timeout after 500ms in write (reason: timeout)", "action", "cleanup"} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("output lacks %q:\n%s", w, out.String())
		}
	}
	fs.Clear()
	testutil.WaitFor(t, "the probe file removed once the call returned", func() bool {
		return len(leftBehind(t, fs.Mountpoint())) == 0
	})
}

// leftBehind lists what a check may not leave in the mount root dir:
// every entry but the probe directory, and every entry of that directory
// (which stays, empty, for the next check).
func leftBehind(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if e.Name() != probes.DirName || !e.IsDir() {
			out = append(out, e.Name())
		}
	}
	in, _ := os.ReadDir(filepath.Join(dir, probes.DirName))
	for _, e := range in {
		out = append(out, filepath.Join(probes.DirName, e.Name()))
	}
	return out
}

// TestCheckWriteDenied: a mount where the probe file may not be created
// is healthy, checked read-only, and the output says why; with
// --require-write-check it is the failure permission_denied.
func TestCheckWriteDenied(t *testing.T) {
	t.Parallel()
	fs := testutil.MountFaultFS(t)
	fs.Set(faultfs.OpCreate, faultfs.Fault{Errno: syscall.EACCES})
	// A slow listing widens the duration column, as a loaded machine
	// does: the cells are compared, not the spacing.
	fs.Set(faultfs.OpGetdents, faultfs.Fault{Delay: 15 * time.Millisecond})
	var out, errb bytes.Buffer
	if code := run([]string{"check", fs.Mountpoint()}, env(nil), &out, &errb); code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out.String(), errb.String())
	}
	rows := checkRows(out.String())
	for _, w := range []struct{ row, col, text string }{
		{"write", "denied", "permission denied: checked read-only instead"},
		{"statfs", "", ""},
		{"readdir", "", ""},
		{"verdict", "HEALTHY", "write-denied"},
	} {
		r, ok := rows[w.row]
		if !ok || w.col != "" && (len(r) < 2 || r[0] != w.col || !strings.Contains(r[1], w.text)) {
			t.Errorf("row %s: got %q, want %q then a cell with %q:\n%s", w.row, r, w.col, w.text, out.String())
		}
	}
	out.Reset()
	if code := run([]string{"check", "--require-write-check", fs.Mountpoint()}, env(nil), &out, &errb); code != 1 ||
		!strings.Contains(out.String(), "(reason: permission_denied)") {
		t.Fatalf("write check required: exit %d\n%s%s", code, out.String(), errb.String())
	}
}

// TestCheckPlainDirectory: a PATH argument must be a mount point. A plain
// directory (an unmounted volume's, say) is not_mounted, "not a mount
// point", and is not touched: its modification time stays, which a probe
// file created and removed in it would change. Given with --mount or
// HEALTH_MOUNTS it is checked as the agent checks a configured path, as
// the plain directory it is, and the output says so.
func TestCheckPlainDirectory(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	before, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if code := run([]string{"check", dir}, env(nil), &out, &errb); code != 1 {
		t.Fatalf("plain directory as a PATH: exit %d\n%s%s", code, out.String(), errb.String())
	}
	for _, w := range []string{"mounttable", "not a mount point (reason: not_mounted)", "UNHEALTHY", "action"} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("output lacks %q:\n%s", w, out.String())
		}
	}
	if after, err := os.Stat(dir); err != nil || !after.ModTime().Equal(before.ModTime()) {
		t.Errorf("the directory was touched: modified %v, then %v (%v)", before.ModTime(), after.ModTime(), err)
	}
	for _, tc := range []struct {
		args []string
		env  map[string]string
	}{
		{[]string{"check", "--mount", dir}, nil},
		{[]string{"check"}, map[string]string{"HEALTH_MOUNTS": dir}},
	} {
		out.Reset()
		if code := run(tc.args, env(tc.env), &out, &errb); code != 0 {
			t.Fatalf("%v %v: exit %d\n%s%s", tc.args, tc.env, code, out.String(), errb.String())
		}
		for _, w := range []string{"not a mount point: checked as a plain directory", "HEALTHY"} {
			if !strings.Contains(out.String(), w) {
				t.Errorf("%v %v: output lacks %q:\n%s", tc.args, tc.env, w, out.String())
			}
		}
	}
	// Without a mount table nothing can be told: a bad setting, as for
	// the agent.
	errb.Reset()
	if code := run([]string{"check", "--mountinfo", filepath.Join(dir, "none"), dir}, env(nil), &out, &errb); code != 2 ||
		!strings.Contains(errb.String(), `invalid --mountinfo="`+filepath.Join(dir, "none")+`"`) {
		t.Fatalf("unreadable mount table: exit %d, stderr %q", code, errb.String())
	}
}

// checkRows splits check's table into its cells by row name: the columns
// are padded to the widest cell, which depends on the durations printed,
// so tests compare cells, never spacing.
func checkRows(out string) map[string][]string {
	rows := map[string][]string{}
	for _, line := range strings.Split(out, "\n") {
		cells := columnGap.Split(strings.TrimSpace(line), -1)
		if len(cells) > 0 && cells[0] != "" {
			rows[cells[0]] = cells[1:]
		}
	}
	return rows
}

// columnGap is tabwriter's padding between cells (at least 2 spaces).
var columnGap = regexp.MustCompile(`\s{2,}`)
