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
	script := `echo $$ > "$0" && shift && exec "$@"`
	return exec.Command("/bin/sh", append([]string{"-c", script, procs, "--", name}, args...)...)
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
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := os.Remove(g.Dir)
		if err == nil || errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("remove %s: %w", g.Dir, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
