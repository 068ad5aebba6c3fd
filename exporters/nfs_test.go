package exporters_test

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/efs-health-agent/efs-health-agent/agent"
	"github.com/efs-health-agent/efs-health-agent/exporters"
	"github.com/efs-health-agent/efs-health-agent/internal/nfsstats"
)

// TestNFSStats: the NFS client statistics of a registered NFS mount appear
// in base units, per operation; unregistered mounts' do not; nothing
// appears before the first snapshot.
func TestNFSStats(t *testing.T) {
	t.Parallel()
	path := "/var/lib/kubelet/pods/abc123/volumes/efs-pv/mount"
	var snap atomic.Pointer[nfsstats.Snapshot]
	src := &source{}
	src.set([]*agent.MountStatus{{Mount: &agent.Mount{Path: path, FSType: "nfs4"}, State: agent.StateHealthy, LastCheck: t0}}, agent.Summary{Mounts: 1})
	tel := newTel(t, src, exporters.Options{NFSStats: func() nfsstats.Snapshot {
		if s := snap.Load(); s != nil {
			return *s
		}
		return nil
	}})
	if s := scrape(t, tel, ""); strings.Contains(s, "efs_nfs_") {
		t.Fatal("NFS statistics served before they were read")
	}
	snap.Store(&nfsstats.Snapshot{
		path: {Backlog: 37, Ops: []nfsstats.Op{
			{Name: "READ", Requests: 120, Transmissions: 121, RTT: 2400 * time.Millisecond, Execute: 2600 * time.Millisecond},
			{Name: "WRITE", Requests: 200, Transmissions: 203, MajorTimeouts: 1, RTT: 30 * time.Second, Execute: 31200 * time.Millisecond},
		}},
		"/mnt/not-registered": {Backlog: 1, Ops: []nfsstats.Op{{Name: "READ", Requests: 1}}},
	})
	s := scrape(t, tel, "")
	for _, want := range []string{
		`efs_nfs_rpc_requests_total{mount_path="` + path + `",operation="WRITE"} 200`,
		`efs_nfs_rpc_retransmissions_total{mount_path="` + path + `",operation="WRITE"} 3`,
		`efs_nfs_rpc_major_timeouts_total{mount_path="` + path + `",operation="WRITE"} 1`,
		`efs_nfs_rpc_rtt_seconds_total{mount_path="` + path + `",operation="WRITE"} 30`,
		`efs_nfs_rpc_execute_seconds_total{mount_path="` + path + `",operation="READ"} 2.6`,
		`efs_nfs_transport_backlog_total{mount_path="` + path + `"} 37`,
		"# TYPE efs_nfs_rpc_rtt_seconds_total counter",
	} {
		if !strings.Contains(s, want+"\n") {
			t.Errorf("scrape lacks %s", want)
		}
	}
	if strings.Contains(s, "/mnt/not-registered") {
		t.Error("statistics of an unregistered mount exported")
	}
}
