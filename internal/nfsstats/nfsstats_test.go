package nfsstats_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/procfs"

	"github.com/efs-health-agent/efs-health-agent/internal/nfsstats"
)

// fixture reads the committed mountstats of testdata/proc/1.
func fixture() ([]*procfs.Mount, error) {
	fs, err := procfs.NewFS("testdata/proc")
	if err != nil {
		return nil, err
	}
	p, err := fs.Proc(1)
	if err != nil {
		return nil, err
	}
	return p.MountStats()
}

const efs = "/var/lib/kubelet/pods/abc123/volumes/efs-pv/mount"

// TestFromFixture: NFS mounts only, the listed operations only, times in
// base units, backlog summed over the transports.
func TestFromFixture(t *testing.T) {
	t.Parallel()
	c := nfsstats.NewCache(fixture, nil)
	if c.Snapshot() != nil {
		t.Fatal("snapshot before the first read")
	}
	if err := c.Refresh(); err != nil {
		t.Fatal(err)
	}
	s := c.Snapshot()
	if _, ok := s["/proc"]; ok || len(s) != 2 {
		t.Fatalf("snapshot has %d mounts, want the 2 NFS ones: %v", len(s), s)
	}
	m := s[efs]
	if m == nil || m.Backlog != 37 {
		t.Fatalf("%s: %+v", efs, m)
	}
	ops := map[string]nfsstats.Op{}
	for _, op := range m.Ops {
		ops[op.Name] = op
	}
	if _, ok := ops["NULL"]; ok {
		t.Error("unlisted operation NULL kept")
	}
	w := ops["WRITE"]
	if w.Requests != 200 || w.Retransmissions() != 3 || w.MajorTimeouts != 1 || w.RTT != 30*time.Second || w.Execute != 31200*time.Millisecond {
		t.Errorf("WRITE: %+v", w)
	}
	if r := ops["READ"]; r.Execute != 2600*time.Millisecond {
		t.Errorf("READ: %+v", r)
	}
}

// TestRetransmissionsNeverNegative: a counter read mid-update cannot make
// the retransmissions wrap around.
func TestRetransmissionsNeverNegative(t *testing.T) {
	t.Parallel()
	if n := (nfsstats.Op{Requests: 5, Transmissions: 4}).Retransmissions(); n != 0 {
		t.Fatalf("retransmissions %d, want 0", n)
	}
}

// TestReadErrorKeepsLastSnapshot: a failed read is reported with its cause
// and leaves the last good statistics in place; Run stops with ctx.
func TestReadErrorKeepsLastSnapshot(t *testing.T) {
	t.Parallel()
	broken := errors.New("no mountstats")
	fail := false
	c := nfsstats.NewCache(func() ([]*procfs.Mount, error) {
		if fail {
			return nil, broken
		}
		return fixture()
	}, nil)
	if err := c.Refresh(); err != nil {
		t.Fatal(err)
	}
	fail = true
	if err := c.Refresh(); !errors.Is(err, broken) {
		t.Fatalf("err = %v, want it to wrap the read error", err)
	}
	if c.Snapshot()[efs] == nil {
		t.Fatal("last snapshot lost")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	c.Run(ctx, time.Hour) // returns at once: ctx is done
}
