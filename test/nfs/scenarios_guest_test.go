//go:build linux && nfsguest

package nfs

import (
	"strings"
	"testing"
	"time"
)

// TestScenarios runs the scenarios in order, each timed; one may be
// picked with -test.run '^TestScenarios$/Name' (NFS_RUN=Name).
func TestScenarios(t *testing.T) {
	for _, sc := range []struct {
		name string
		run  func(t *testing.T)
	}{
		{"Healthy", testHealthy},
		{"Partition", testPartition},
		{"Slow", testSlow},
		{"Restart", testRestart},
		{"Stale", testStale},
		{"ReadOnly", testReadOnly},
		{"Full", testFull},
		{"RootSquash", testRootSquash},
		{"ProbeDir", testProbeDir},
		{"Tunnel", testTunnel},
		{"TunnelNetns", testTunnelNetns},
		{"SigtermHung", testSigtermHung},
		{"SigtermMidCheck", testSigtermMidCheck},
		{"KillHung", testKillHung},
		{"LazyUnmount", testLazyUnmount},
		{"ClockStep", testClockStep},
		{"BigRoot", testBigRoot},
		{"Neighbour", testNeighbour},
		{"GroupRPCs", testGroupRPCs},
		{"GroupTunnel", testGroupTunnel},
		{"RPCCost", testRPCCost},
		{"Leftovers", testLeftovers},
	} {
		t.Run(sc.name, func(t *testing.T) {
			start := time.Now()
			defer func() { t.Logf("scenario %s took %v", sc.name, time.Since(start).Round(time.Millisecond)) }()
			sc.run(t)
		})
	}
}

// testHealthy: NFSv4.1 mounts with EFS's options are healthy, and the
// kernel's mountstats of the mount are exported as efs_nfs_* series.
func testHealthy(t *testing.T) {
	out := mustSh(t, "grep", " "+mountPath("a1")+" ", "/proc/self/mountinfo")
	for _, want := range []string{"nfs4", "vers=4.1", "rsize=1048576", "wsize=1048576", "hard", "timeo=600", "retrans=2", "noresvport"} {
		if !strings.Contains(out, want) {
			t.Errorf("mount of a1 lacks %q: %s", want, out)
		}
	}
	a := startAgent(t, agentOpts{}, "a1", "b1")
	for _, m := range []string{"a1", "b1"} {
		took, st := a.waitMount(20*time.Second, m, "healthy", healthy)
		t.Logf("%s healthy after %v: %s", m, took.Round(time.Millisecond), st)
		if st.Mode != "read-write" || st.FSType != "nfs4" {
			t.Errorf("%s: mode %q fsType %q, want read-write on nfs4", m, st.Mode, st.FSType)
		}
	}
	// The agent reads mountstats every 15 s.
	waitFor(t, 40*time.Second, "efs_nfs_* series of a1 with non-zero counts", func() (bool, string) {
		text := a.metrics()
		lbl := `mount_path="` + mountPath("a1") + `"`
		var missing []string
		for _, op := range []string{"OPEN", "WRITE", "READ", "CLOSE", "REMOVE"} {
			if v, _ := metric(text, "efs_nfs_rpc_requests_total", lbl, `operation="`+op+`"`); v == 0 {
				missing = append(missing, op)
			}
		}
		if v, _ := metric(text, "efs_nfs_rpc_rtt_seconds_total", lbl); v == 0 {
			missing = append(missing, "rtt")
		}
		return len(missing) == 0, "zero or absent: " + strings.Join(missing, ",")
	})
}
