package main

import (
	"bytes"
	"os"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/efs-health-agent/efs-health-agent/internal/testenv/faultfs"
	"github.com/efs-health-agent/efs-health-agent/internal/testenv/testutil"
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
		ents, err := os.ReadDir(fs.Mountpoint())
		return err == nil && len(ents) == 0
	})
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
