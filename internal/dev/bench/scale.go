//go:build linux

package main

import (
	"context"
	"fmt"
	"os"
	"runtime/pprof"
	"sort"
	"time"
)

// scale: 10,000 mounts at a 30s interval: CPU share of one core and how
// evenly check starts spread over the interval.
func scale(r *report, d time.Duration) {
	r.add("## 3. CPU at scale: 10,000 mounts, interval 30s (target: ≤ 1%% of one core, checks spread evenly)")
	r.add("")
	dir, done := tmpfsDir()
	defer done()
	tel := newTelemetry()
	defer tel.Shutdown(context.Background())
	mon, stop := withMounts(dir, 10000, tel)
	defer stop()
	// Let the first random phase settle, then measure.
	time.Sleep(35 * time.Second)
	// The sampler counts each mount's new checks once a second, by index
	// into the sorted status list (no mount is registered or removed
	// during the run), and its own CPU is measured below and subtracted.
	sts := mon.Statuses()
	prev := make([]uint64, len(sts))
	sample := func() int {
		n := 0
		for i, st := range mon.Statuses() {
			if d := st.Checks - prev[i]; d != 0 {
				n += int(d)
				prev[i] = st.Checks
			}
		}
		return n
	}
	sample()
	buckets := map[int64]int{}
	if scaleProfile != "" {
		f, err := os.Create(scaleProfile)
		if err != nil {
			panic(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			panic(err)
		}
		// Closed only once the profile is written: an unreachable *os.File
		// is closed by its finalizer.
		defer func() { pprof.StopCPUProfile(); _ = f.Close() }()
	}
	c0, w0 := cpuTime(), time.Now()
	for time.Since(w0) < d {
		time.Sleep(time.Second)
		buckets[int64(time.Since(w0)/time.Second)] += sample()
	}
	cpu := cpuTime() - c0
	wall := time.Since(w0)
	// The sampler's own cost: the same pass, 10 times back to back.
	s0 := cpuTime()
	for i := 0; i < 10; i++ {
		_ = sample()
	}
	sampling := (cpuTime() - s0) / 10 * time.Duration(len(buckets))
	total := 0
	max := 0
	var counts []int
	for _, c := range buckets {
		total += c
		counts = append(counts, c)
		if c > max {
			max = c
		}
	}
	mean := float64(total) / float64(len(buckets))
	sort.Ints(counts)
	r.add("| run | checks | CPU share of one core (agent, without the sampler) | checks per second: mean | min | max | max / mean |")
	r.add("|---|---|---|---|---|---|---|")
	share := 100 * float64(cpu-sampling) / float64(wall)
	r.add("| %v | %d | %.2f%% | %.0f | %d | %d | %.2f |", wall.Round(time.Second), total, share, mean, counts[0], max, float64(max)/mean)
	r.add("")
	r.target("3. CPU at 10,000 mounts every 30 s", fmt.Sprintf("%.2f%% of a core", share), share, 1, "%")
}
