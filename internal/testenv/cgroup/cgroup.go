package cgroup

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Root is where the cgroup filesystems are mounted.
const Root = "/sys/fs/cgroup"

// Group is a memory cgroup created by New.
type Group struct {
	// Dir is the group's directory.
	Dir string
	// V2 is true on the unified hierarchy, false on the v1 memory
	// controller.
	V2 bool
	// cpuDir is the v1 cpu controller's group LimitCPU made, if any.
	cpuDir string
}

// cfsPeriod is the CFS period of a CPU limit, in microseconds: the
// kernel's default, as the kubelet sets it.
const cfsPeriod = 100000

// LimitCPU limits the group's processes to milli thousandths of a CPU,
// as a Kubernetes CPU limit does (a CFS quota of milli×100 µs every
// 100 ms). On v2 it sets cpu.max in the group (the cpu controller must be
// enabled for it in the parent); on v1 it makes a group of the same name
// under the cpu controller, which Command joins too. Call it before
// Command.
func (g *Group) LimitCPU(milli int) error {
	quota := strconv.Itoa(milli * cfsPeriod / 1000)
	if g.V2 {
		if err := os.WriteFile(filepath.Join(g.Dir, "cpu.max"), []byte(quota+" "+strconv.Itoa(cfsPeriod)), 0o644); err != nil {
			return fmt.Errorf("set %s/cpu.max: %w", g.Dir, err)
		}
		return nil
	}
	dir := filepath.Join(Root, "cpu", filepath.Base(g.Dir))
	if err := os.Mkdir(dir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	for _, f := range [][2]string{{"cpu.cfs_period_us", strconv.Itoa(cfsPeriod)}, {"cpu.cfs_quota_us", quota}} {
		if err := os.WriteFile(filepath.Join(dir, f[0]), []byte(f[1]), 0o644); err != nil {
			_ = os.Remove(dir)
			return fmt.Errorf("set %s/%s: %w", dir, f[0], err)
		}
	}
	g.cpuDir = dir
	return nil
}

// Throttled is how many CFS periods the group's processes were throttled
// in (nr_throttled of cpu.stat), or -1 when no CPU limit is set or the
// kernel does not say.
func (g *Group) Throttled() int {
	dir := g.cpuDir
	if g.V2 {
		dir = g.Dir
	}
	if dir == "" {
		return -1
	}
	b, err := os.ReadFile(filepath.Join(dir, "cpu.stat"))
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "nr_throttled "); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	return -1
}

// ErrUnavailable is returned when the machine has no writable memory
// cgroup (not root, or no memory controller).
var ErrUnavailable = errors.New("no writable memory cgroup (needs root and the cgroup v2 or v1 memory controller)")

// New creates a group named name (made unique with the process id) whose
// memory, swap included where the kernel accounts it, is limited to limit
// bytes.
func New(name string, limit int64) (*Group, error) {
	name = fmt.Sprintf("%s-%d-%d", name, os.Getpid(), time.Now().UnixNano())
	var errs []error
	for _, parent := range candidates() {
		g, err := create(parent.dir, parent.v2, name, limit)
		if err == nil {
			return g, nil
		}
		errs = append(errs, err)
	}
	return nil, fmt.Errorf("%w: %w", ErrUnavailable, errors.Join(errs...))
}

type parent struct {
	dir string
	v2  bool
}

// candidates are the directories a child may be created in, best first:
// the caller's own cgroup, then the hierarchy's root.
func candidates() []parent {
	own := ownCgroups()
	var out []parent
	if _, err := os.Stat(filepath.Join(Root, "cgroup.controllers")); err == nil { // pure v2
		if p, ok := own[""]; ok {
			out = append(out, parent{filepath.Join(Root, p), true})
		}
		out = append(out, parent{Root, true})
	}
	if _, err := os.Stat(filepath.Join(Root, "memory", "memory.limit_in_bytes")); err == nil { // v1
		if p, ok := own["memory"]; ok {
			out = append(out, parent{filepath.Join(Root, "memory", p), false})
		}
		out = append(out, parent{filepath.Join(Root, "memory"), false})
	}
	return out
}

// ownCgroups maps each controller list of /proc/self/cgroup ("" for v2)
// to this process's path in it.
func ownCgroups() map[string]string {
	f, err := os.Open("/proc/self/cgroup")
	if err != nil {
		return nil
	}
	defer f.Close()
	m := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			m[c] = parts[2]
		}
	}
	return m
}

func create(parentDir string, v2 bool, name string, limit int64) (*Group, error) {
	dir := filepath.Join(parentDir, name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	g := &Group{Dir: dir, V2: v2}
	file := "memory.limit_in_bytes"
	if v2 {
		file = "memory.max"
	}
	if err := os.WriteFile(filepath.Join(dir, file), []byte(strconv.FormatInt(limit, 10)), 0o644); err != nil {
		_ = os.Remove(dir)
		return nil, fmt.Errorf("set %s/%s: %w", dir, file, err)
	}
	if v2 {
		_ = os.WriteFile(filepath.Join(dir, "memory.swap.max"), []byte("0"), 0o644)
	} else {
		_ = os.WriteFile(filepath.Join(dir, "memory.memsw.limit_in_bytes"), []byte(strconv.FormatInt(limit, 10)), 0o644)
	}
	return g, nil
}

// Command is exec.Command for a program that starts inside the group: a
// shell joins the group and then execs the program, so the program's
// first instruction already runs under the limit.
func (g *Group) Command(name string, args ...string) *exec.Cmd {
	procs := filepath.Join(g.Dir, "cgroup.procs")
	cpuProcs := procs // v2, or no CPU limit: the same group twice
	if g.cpuDir != "" {
		cpuProcs = filepath.Join(g.cpuDir, "cgroup.procs")
	}
	script := `echo $$ > "$0" && echo $$ > "$1" && shift 2 && exec "$@"`
	return exec.Command("/bin/sh", append([]string{"-c", script, procs, cpuProcs, "--", name}, args...)...)
}

// PeakBytes is the most memory the group has used since it was created
// (memory.peak on v2, memory.max_usage_in_bytes on v1); 0 if the kernel
// does not report it.
func (g *Group) PeakBytes() int64 {
	file := "memory.max_usage_in_bytes"
	if g.V2 {
		file = "memory.peak"
	}
	b, err := os.ReadFile(filepath.Join(g.Dir, file))
	if err != nil {
		return 0
	}
	n, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	return n
}

// OOMKills is how many processes the kernel killed in the group for
// exceeding its memory limit, or -1 if the kernel does not say.
func (g *Group) OOMKills() int {
	file, key := "memory.oom_control", "oom_kill"
	if g.V2 {
		file = "memory.events"
	}
	b, err := os.ReadFile(filepath.Join(g.Dir, file))
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, key+" "); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	return -1
}

// Remove deletes the group once its processes have exited, waiting up to
// five seconds for them.
func (g *Group) Remove() error {
	if g.cpuDir != "" {
		if err := removeDir(g.cpuDir); err != nil {
			return err
		}
	}
	return removeDir(g.Dir)
}

func removeDir(dir string) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := os.Remove(dir)
		if err == nil || errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("remove %s: %w", dir, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
