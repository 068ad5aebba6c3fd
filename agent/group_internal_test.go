package agent

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestFullCheck holds the decision between a full and a transport check.
func TestFullCheck(t *testing.T) {
	t.Parallel()
	const iv = 30 * time.Second
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	healthy := planInput{grouped: true, healthy: true, now: now, interval: iv, slack: 3 * time.Second,
		ownFull: now.Add(-2 * iv), groupFull: now.Add(-iv / 2)}
	for _, tc := range []struct {
		name string
		edit func(*planInput)
		full bool
	}{
		{"group proved this interval: transport", func(*planInput) {}, false},
		{"grouping off or alone", func(p *planInput) { p.grouped = false }, true},
		{"not healthy: its own proof", func(p *planInput) { p.healthy = false }, true},
		{"a shared proof failed: owes its own", func(p *planInput) { p.owes = true }, true},
		{"never proved itself", func(p *planInput) { p.ownFull = time.Time{} }, true},
		{"group never proved", func(p *planInput) { p.groupFull = time.Time{} }, true},
		{"rotation: own proof RotateEvery intervals old", func(p *planInput) { p.ownFull = now.Add(-RotateEvery * iv) }, true},
		{"rotation: just under", func(p *planInput) { p.ownFull = now.Add(-RotateEvery*iv + time.Second) }, false},
		{"group due: an interval old", func(p *planInput) { p.groupFull = now.Add(-iv) }, true},
		{"group due within the slack", func(p *planInput) { p.groupFull = now.Add(-iv + 3*time.Second) }, true},
		{"group not yet due", func(p *planInput) { p.groupFull = now.Add(-iv + 4*time.Second) }, false},
	} {
		in := healthy
		tc.edit(&in)
		if got := fullCheck(in); got != tc.full {
			t.Errorf("%s: fullCheck = %v, want %v", tc.name, got, tc.full)
		}
	}
}

func TestGroupKey(t *testing.T) {
	t.Parallel()
	dev := unix.Mkdev(0, 29)
	for _, tc := range []struct {
		name     string
		spec     Mount
		devKnown bool
		want     string
	}{
		{"attributed: file system, access point and path", Mount{Source: "127.0.0.1:/data", Attribution: Attribution{FileSystemID: "fs-1", AccessPoint: "fsap-2", Service: ServiceEFS}}, true, "fs efs fs-1 fsap-2 /data"},
		{"attributed, source without path", Mount{Source: "127.0.0.1:", Attribution: Attribution{FileSystemID: "fs-1"}}, false, "fs  fs-1  /"},
		{"not attributed: the superblock", Mount{Source: "10.0.0.9:/export"}, true, "dev 0:29"},
		{"nothing known: not grouped", Mount{Source: "10.0.0.9:/export"}, false, ""},
	} {
		if got := GroupKey(&tc.spec, dev, tc.devKnown); got != tc.want {
			t.Errorf("%s: GroupKey = %q, want %q", tc.name, got, tc.want)
		}
	}
	// Two access points of one file system are two groups.
	a := Mount{Attribution: Attribution{FileSystemID: "fs-1", AccessPoint: "fsap-a"}}
	b := Mount{Attribution: Attribution{FileSystemID: "fs-1", AccessPoint: "fsap-b"}}
	if GroupKey(&a, 0, false) == GroupKey(&b, 0, false) {
		t.Error("two access points share a key")
	}
}
