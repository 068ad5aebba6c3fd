//go:build linux

package node

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"
)

// hostPaths are what kubelet, containerd and the CNI plugins create on a
// real node; on the host they must not appear.
var hostPaths = []string{
	"/var/lib/kubelet", "/var/lib/containerd", "/var/lib/cni", "/var/log/pods",
	"/var/log/containers", "/run/containerd", "/run/efs", "/etc/cni/net.d",
	"/opt/cni", "/opt/containerd", "/usr/libexec/kubernetes", "/etc/kubernetes",
}

// hostSysctls are the global settings the node could change: kubelet's,
// and the hostname the namespaces set.
func hostSysctls() []string {
	s := []string{"kernel/hostname", "net/ipv4/ip_forward"}
	for k := range kubeletSysctls {
		s = append(s, k)
	}
	sort.Strings(s)
	return s
}

// hostState is what the node could leave on the host.
type hostState struct {
	mounts  map[string]bool   // "mountpoint fstype source" of the host's mount namespace
	cgroups map[string]bool   // directories at the top of each cgroup hierarchy
	sysctls map[string]string // hostSysctls' values
	links   map[string]bool   // network links of the host's namespace
	paths   map[string]bool   // hostPaths that exist
}

func snapshotHost(id string) (*hostState, error) {
	s := &hostState{mounts: map[string]bool{}, cgroups: map[string]bool{}, sysctls: map[string]string{}, links: map[string]bool{}, paths: map[string]bool{}}
	mounts, err := readMounts()
	if err != nil {
		return nil, err
	}
	for _, m := range mounts {
		s.mounts[m.point+" "+m.fstype+" "+m.source] = true
	}
	for _, h := range cgroupHierarchies(mounts) {
		entries, err := os.ReadDir(h)
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			if e.IsDir() {
				s.cgroups[filepath.Join(h, e.Name())] = true
			}
		}
	}
	for _, k := range hostSysctls() {
		b, err := os.ReadFile("/proc/sys/" + k)
		if err != nil {
			return nil, err
		}
		s.sysctls[k] = strings.TrimSpace(string(b))
	}
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	for _, i := range ifs {
		s.links[i.Name] = true
	}
	for _, p := range hostPaths {
		if _, err := os.Lstat(p); err == nil {
			s.paths[p] = true
		}
	}
	return s, nil
}

// diff lists what after has that s had not and that the node made: a
// mount naming the run's directory or a node path, a cgroup of the run
// or named kubepods, a changed sysctl, a new link, a node path. Mounts
// elsewhere are other programs' on a shared machine and are not counted.
func (s *hostState) diff(after *hostState, dir string) []string {
	var left []string
	for m := range after.mounts {
		if s.mounts[m] {
			continue
		}
		if strings.Contains(m, dir) || strings.Contains(m, " overlay ") || slices.ContainsFunc(append(hostPaths, "/sys/fs/cgroup", "/run/netns"), func(p string) bool { return strings.HasPrefix(m, p) }) {
			left = append(left, "mount "+m)
		}
	}
	for c := range after.cgroups {
		if !s.cgroups[c] && (strings.Contains(c, filepath.Base(dir)) || strings.Contains(c, "kubepods")) {
			left = append(left, "cgroup "+c)
		}
	}
	for k, v := range s.sysctls {
		if after.sysctls[k] != v {
			left = append(left, fmt.Sprintf("sysctl %s changed from %s to %s", k, v, after.sysctls[k]))
		}
	}
	for l := range after.links {
		if !s.links[l] {
			left = append(left, "network link "+l)
		}
	}
	for p := range after.paths {
		if !s.paths[p] {
			left = append(left, "path "+p)
		}
	}
	sort.Strings(left)
	return left
}

func (s *hostState) summary() string {
	return fmt.Sprintf("%d mounts, %d top-level cgroups, %d sysctls, %d links, %d node paths compared", len(s.mounts), len(s.cgroups), len(s.sysctls), len(s.links), len(hostPaths))
}

type mount struct{ point, fstype, source string }

func readMounts() ([]mount, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var ms []mount
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		fields, tail := strings.Fields(pre), strings.Fields(post)
		if !ok || len(fields) < 5 || len(tail) < 2 {
			continue
		}
		ms = append(ms, mount{point: fields[4], fstype: tail[0], source: tail[1]})
	}
	return ms, sc.Err()
}

// cgroupHierarchies are the mounted cgroup hierarchies (v1 controllers,
// the v2 tree of a hybrid or unified host).
func cgroupHierarchies(ms []mount) []string {
	var hs []string
	for _, m := range ms {
		if (m.fstype == "cgroup" || m.fstype == "cgroup2") && !slices.Contains(hs, m.point) {
			hs = append(hs, m.point)
		}
	}
	return hs
}

// cgroupRoot is kubelet's cgroupRoot for the run: its pods' cgroups are
// under <hierarchy>/<id>/kubepods, apart from any other node's.
func cgroupRoot(id string) string { return "/" + id }

// makeCgroupRoot creates the run's cgroup root in every hierarchy (kubelet
// requires it to exist), with the cpusets of its parent.
func makeCgroupRoot(id string) error {
	ms, err := readMounts()
	if err != nil {
		return err
	}
	for _, h := range cgroupHierarchies(ms) {
		d := filepath.Join(h, id)
		if err := os.Mkdir(d, 0o755); err != nil {
			return fmt.Errorf("cgroup root: %w", err)
		}
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			if b, err := os.ReadFile(filepath.Join(h, f)); err == nil && filepath.Base(h) == "cpuset" {
				if err := os.WriteFile(filepath.Join(d, f), b, 0o644); err != nil {
					return fmt.Errorf("cgroup root: %w", err)
				}
			}
		}
	}
	return nil
}

// removeCgroupRoot removes the run's cgroups, deepest first, once the
// processes in them are gone (the kernel kills them when the namespaces
// end, which takes a moment).
func removeCgroupRoot(id string) error {
	ms, err := readMounts()
	if err != nil {
		return err
	}
	deadline := time.Now().Add(time.Minute)
	for _, h := range cgroupHierarchies(ms) {
		root := filepath.Join(h, id)
		for {
			err := removeTree(root)
			if err == nil || !errors.Is(err, syscall.EBUSY) || time.Now().After(deadline) {
				if err != nil {
					return fmt.Errorf("remove cgroup %s: %w", root, err)
				}
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return nil
}

// removeTree rmdirs a cgroup directory and its children; a cgroup's files
// cannot be removed, only its directories.
func removeTree(root string) error {
	var dirs []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := syscall.Rmdir(dirs[i]); err != nil && !errors.Is(err, syscall.ENOENT) {
			return err
		}
	}
	return nil
}
