//go:build linux && nfsguest

package nfs

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Neighbour scenario bounds.
const (
	// neighbourWindow is how long the application's loop is measured,
	// once without the agent and once with it.
	neighbourWindow = 20 * time.Second
	// neighbourPace is the application's loop period.
	neighbourPace = 50 * time.Millisecond
	// neighbourNoise is how many more RPCs of one operation per second
	// the application may send with the agent running than without it:
	// less than one in five seconds. Revalidating a root that changed
	// costs a LOOKUP and an ACCESS each time the 1 s directory cache
	// runs out, about one each per second.
	neighbourNoise = 0.2
)

// neighbourFile is the application's file in the volume root.
const neighbourFile = "app.dat"

// appLoop is an application on the mount nbapp: every neighbourPace it
// opens, fstats and closes a file in the volume root and stats it by
// path, for neighbourWindow. It returns the RPCs of the mount by
// operation, per second of the window, and the loop's iterations.
func appLoop(t *testing.T) (map[string]float64, int) {
	t.Helper()
	mp := mountPath("nbapp")
	p := filepath.Join(mp, neighbourFile)
	before := opCounts(t, mp)
	start := time.Now()
	tick := time.NewTicker(neighbourPace)
	defer tick.Stop()
	n := 0
	for time.Since(start) < neighbourWindow {
		<-tick.C
		fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatalf("the application's open: %v", err)
		}
		var st unix.Stat_t
		err = unix.Fstat(fd, &st)
		unix.Close(fd)
		if err == nil {
			err = unix.Stat(p, &st)
		}
		if err != nil {
			t.Fatalf("the application's stat: %v", err)
		}
		n++
	}
	secs := time.Since(start).Seconds()
	after := opCounts(t, mp)
	per := map[string]float64{}
	for op, v := range after {
		if d := v - before[op]; d > 0 {
			per[op] = float64(d) / secs
		}
	}
	return per, n
}

// testNeighbour: an application's mount of a volume (nbapp, which the
// agent does not check) opens and stats a file in the volume root in a
// loop, while the agent checks two other mounts of the same directory,
// each through its own server and transport. The application's round
// trips per operation (its mountstats) are the same with the agent
// running as without it: the agent's checks do not change the volume
// root, so the application's cached view of it stays valid.
func testNeighbour(t *testing.T) {
	if err := os.WriteFile(filepath.Join(exportPath("nb"), neighbourFile), []byte("application data\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Warm the application's caches (the file's lookup, the root's
	// access) before the first window.
	warm := func() { _, _ = os.Stat(filepath.Join(mountPath("nbapp"), neighbourFile)) }
	warm()
	without, n0 := appLoop(t)

	a := startAgent(t, agentOpts{}, "nb1", "nb2")
	for _, m := range []string{"nb1", "nb2"} {
		a.waitMount(30*time.Second, m, "healthy", healthy)
	}
	// Past each mount's first checks and the first listing of its
	// leftovers (which may create the agent's directory once).
	first := a.checks()
	waitFor(t, 30*time.Second, "four more checks", func() (bool, string) { return a.checks() >= first+4, "" })
	warm()
	c0 := a.checks()
	with, n1 := appLoop(t)
	checks := a.checks() - c0

	ops := map[string]bool{}
	for op := range without {
		ops[op] = true
	}
	for op := range with {
		ops[op] = true
	}
	names := make([]string, 0, len(ops))
	for op := range ops {
		names = append(names, op)
	}
	sort.Strings(names)
	var b strings.Builder
	fmt.Fprintf(&b, "the application's RPCs per second on %s (%d and %d loop iterations of open+fstat+close+stat in %v; the agent made %.0f checks of nb1 and nb2 during the second window):\n",
		mountPath("nbapp"), n0, n1, neighbourWindow, checks)
	fmt.Fprintf(&b, "  %-12s %9s %9s\n", "op", "without", "with")
	var worse []string
	for _, op := range names {
		fmt.Fprintf(&b, "  %-12s %9.2f %9.2f\n", op, without[op], with[op])
		if with[op]-without[op] > neighbourNoise {
			worse = append(worse, fmt.Sprintf("%s %.2f/s more", op, with[op]-without[op]))
		}
	}
	t.Log(b.String())
	_ = os.WriteFile(filepath.Join(workDir, "neighbour.txt"), []byte(b.String()), 0o644)
	if checks < 10 {
		t.Errorf("the agent made %.0f checks during the window, want at least 10", checks)
	}
	if len(worse) > 0 {
		t.Errorf("the application sends more RPCs with the agent running (beyond %.1f/s of noise): %s", neighbourNoise, strings.Join(worse, ", "))
	}
}
