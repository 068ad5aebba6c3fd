package exporters_test

import (
	"strings"
	"testing"

	"github.com/prometheus/procfs"

	"github.com/efs-health-agent/efs-health-agent/agent"
	"github.com/efs-health-agent/efs-health-agent/exporters"
)

// TestNFSStatsFromFixture: the NFS client statistics of a registered NFS
// mount appear in base units; unregistered mounts' do not.
func TestNFSStatsFromFixture(t *testing.T) {
	t.Parallel()
	fixture := func() ([]*procfs.Mount, error) {
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
	src := &source{}
	path := "/var/lib/kubelet/pods/abc123/volumes/efs-pv/mount"
	src.set([]*agent.MountStatus{{Mount: agent.Mount{Path: path, FSType: "nfs4"}, State: agent.StateHealthy, LastCheck: t0}}, agent.Summary{Mounts: 1})
	tel := newTel(t, src, exporters.Options{MountStats: fixture})
	if s := scrape(t, tel, ""); strings.Contains(s, "efs_nfs_") {
		t.Fatal("NFS statistics served before they were read")
	}
	if err := tel.RefreshNFSStats(); err != nil {
		t.Fatal(err)
	}
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
	if strings.Contains(s, "/mnt/not-registered") || strings.Contains(s, `operation="NULL"`) {
		t.Error("statistics of an unregistered mount or an unlisted operation exported")
	}
}
