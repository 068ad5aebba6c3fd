//go:build linux

// Command soak runs the agent for minutes against 200 mounts — 190 tmpfs
// directories and 10 FUSE fault mounts whose faults rotate (EIO, ESTALE,
// slow, flapping, and two that hang) — while a client polls every endpoint.
// It checks that goroutines and OS threads stay bounded by the mounts plus
// a constant, RSS stays flat, every endpoint keeps answering, and no probe
// file is left behind, and records the figures in BENCHMARKS.md.
//
// A second phase (hostile.go) runs the agent binary in a 128 MiB memory
// cgroup, as the manifests limit it, with a 100,000-line mount table,
// while thousands of idle keep-alive connections and 16 /debug/checks
// clients hit it at once, and records its peak RSS and slowest
// /healthz/live. Run both with `make soak` (root and /dev/fuse needed).
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"time"
)

func main() { os.Exit(run()) }

func procStatus(key string) int {
	b, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, key+":"); ok {
			var n int
			fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &n)
			return n
		}
	}
	return -1
}

func run() int {
	dur := flag.Duration("duration", 3*time.Minute, "how long the rotating-faults phase lasts (0 skips it)")
	out := flag.String("out", "BENCHMARKS.md", "file whose soak sections are rewritten")
	agentBin := flag.String("agent", "", "agent binary for the hostile-load phase (default: built from ./cmd/efs-health-agent)")
	hostile := flag.Duration("hostile", time.Minute, "how long the hostile-load phase lasts (0 skips it)")
	note := flag.String("note", "", "sentence added to the hostile-load figures' method line (e.g. that the machine was shared)")
	flag.Parse()
	code := 0
	if *dur > 0 {
		code = rotating(*dur, out)
	}
	if *hostile > 0 {
		if c := hostilePhase(*agentBin, *hostile, *note, *out); c != 0 {
			code = c
		}
	}
	return code
}

// hostilePhase runs the hostile-load phase and records it in out.
func hostilePhase(bin string, dur time.Duration, note, out string) int {
	if bin == "" {
		dir, err := os.MkdirTemp("", "efs-soak-bin")
		if err != nil {
			fmt.Fprintln(os.Stderr, "soak:", err)
			return 1
		}
		defer os.RemoveAll(dir)
		if bin, err = buildAgent(dir); err != nil {
			fmt.Fprintln(os.Stderr, "soak:", err)
			return 1
		}
	}
	res, err := runHostile(bin, dur)
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak: hostile load:", err)
		return 1
	}
	md := res.markdown(dur, note)
	fmt.Print(md)
	if out != "" {
		if err := replaceSection(out, "<!-- soak-hostile -->\n", "<!-- /soak-hostile -->\n", md); err != nil {
			fmt.Fprintln(os.Stderr, "soak:", err)
			return 1
		}
	}
	if !res.ok() {
		fmt.Println("soak: hostile load FAILED (bounds above)")
		return 1
	}
	return 0
}
