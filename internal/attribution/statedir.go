package attribution

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/efs-health-agent/efs-health-agent/agent"
)

// DefaultStateDir is efs-utils' state directory (STATE_FILE_DIR), which
// the EFS CSI driver's node DaemonSet keeps on the host.
const DefaultStateDir = "/var/run/efs"

// Bounds of one read of the state directory.
const (
	// MaxStateFiles is the most directory entries looked at per read; a
	// directory with more is read in part (the rest stays unattributed).
	MaxStateFiles = 4096
	// MaxStateFileBytes is the most bytes read from one state file; a
	// larger file is attributed from its name only.
	MaxStateFileBytes = 64 << 10
)

// TunnelState is what one efs-utils state file says about a mount through
// its local proxy: efs-proxy for every mount.efs mount since efs-utils v2,
// TLS or not, stunnel only with the legacy stunnel option.
type TunnelState struct {
	// FileSystemID comes from the file's name (and its fsId key).
	FileSystemID string
	// AccessPoint is the accessPoint key, written only for TLS mounts
	// made with the accesspoint option (a non-TLS mount's file has
	// neither fsId nor accessPoint).
	AccessPoint string
	// Mountpoint is the mountpoint key (absent in files of old versions).
	Mountpoint string
	// MountTime is the mount_time key (seconds since the epoch), zero
	// when absent; of two files that name one mount point, the newer is
	// the mount's.
	MountTime float64
	// Port is the tunnel's local port, from the file's name.
	Port int
	// Service is ServiceS3Files for an S3 Files mount, ServiceEFS for an
	// EFS one, from the file's service_type key; empty when the key is
	// absent or null (files of older versions).
	Service string
}

// stateFile are the keys of an efs-utils state file that matter here
// (write_tunnel_state_file in src/efs_utils_common/proxy.py; fsId and
// accessPoint come from the certificate details of TLS mounts).
type stateFile struct {
	FSID        string  `json:"fsId"`
	AccessPoint string  `json:"accessPoint"`
	Mountpoint  string  `json:"mountpoint"`
	MountTime   float64 `json:"mount_time"`
	// ServiceType is MountContext().service: "elasticfilesystem" or
	// "s3files" (EFS_SERVICE_NAME, S3FILES_SERVICE_NAME in
	// src/efs_utils_common/constants.py, efs-utils v3.2.0).
	ServiceType string `json:"service_type"`
}

// serviceOf maps efs-utils' service_type to Attribution.Service.
func serviceOf(serviceType string) string {
	switch serviceType {
	case "elasticfilesystem":
		return agent.ServiceEFS
	case "s3files":
		return agent.ServiceS3Files
	}
	return ""
}

// SafeMountpoint is efs-utils' get_file_safe_mountpoint_name: the mount
// path with every "/" replaced by "." and the leading dots removed, as it
// appears in state file names ("/mnt/efs" -> "mnt.efs").
func SafeMountpoint(mountpoint string) string {
	return strings.TrimLeft(strings.ReplaceAll(filepath.Clean(mountpoint), "/", "."), ".")
}

// parseStateName splits a state file name, "<fs id>.<safe mountpoint>.<port>"
// (get_mount_specific_filename), into its key (the part the watchdog
// matches mounts by: "<safe mountpoint>.<port>"), file system id and port.
func parseStateName(name string) (key, fsID string, port int, ok bool) {
	first := strings.IndexByte(name, '.')
	last := strings.LastIndexByte(name, '.')
	if first <= 0 || last == len(name)-1 {
		return "", "", 0, false
	}
	fsID = name[:first]
	if !bareFSID.MatchString(fsID) {
		return "", "", 0, false
	}
	p, err := strconv.Atoi(name[last+1:])
	if err != nil || p <= 0 || p > 65535 {
		return "", "", 0, false
	}
	return name[first+1:], fsID, p, true
}

// tempPrefix marks the state file of a mount in progress. efs-utils
// (bootstrap_proxy and write_tunnel_state_file in
// src/efs_utils_common/proxy.py, v3.2.0) writes the complete state, file
// system id, mountpoint, service and certificate details included, to
// "~<name>" before it starts the tunnel, rewrites it with the tunnel's pid,
// runs mount.nfs4 inside that context and renames the file to "<name>" only
// when the context exits, after mount.nfs4 has returned. A mount that has
// just appeared in the mount table is therefore usually still described by
// its "~" file.
const tempPrefix = "~"

// StateDir reads efs-utils' state directory and remembers what it found.
// A file is parsed the first time its name is seen; the file system id and
// access point of a tunnel never change under the same name. A "~" file
// (a mount in progress) is read as well, so a new mount is attributed by
// the first refresh that sees it; the final file, once renamed, takes its
// place. It is not
// safe for concurrent use: one goroutine (discovery's refresh) owns it.
type StateDir struct {
	dir   string
	known map[string]TunnelState // by file name
	byKey map[string]TunnelState // "<safe mountpoint>.<port>"
	// byMount holds the files by the safe mount point of their name:
	// more than one when a stale file names the same mount point.
	byMount map[string][]TunnelState
	// byPort holds ports that exactly one state file uses.
	byPort map[int]TunnelState
}

// NewStateDir returns a reader of dir; an empty dir reads as nothing.
func NewStateDir(dir string) *StateDir {
	s := &StateDir{dir: dir, known: map[string]TunnelState{}}
	s.index(nil)
	return s
}

// Dir is the directory read.
func (s *StateDir) Dir() string { return s.dir }

// Refresh re-reads the directory: at most MaxStateFiles entries, at most
// MaxStateFileBytes of each new file. A missing directory is no error
// (efs-utils creates it with its first TLS mount). A file that cannot be
// read or parsed is attributed from its name and read again next time.
// The returned error, if any, is the first such problem; what was read
// is kept either way.
func (s *StateDir) Refresh() error {
	if s.dir == "" {
		return nil
	}
	ents, first, err := s.list()
	if err != nil {
		return err
	}
	if ents == nil {
		s.known = map[string]TunnelState{}
		s.index(nil)
		return nil
	}
	all := make(map[string]TunnelState, len(ents))
	parsed := make(map[string]TunnelState, len(ents))
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue // the per-mount "<name>+" directories, sockets, links
		}
		name := e.Name()
		ts, final, ok, err := s.read(name)
		if !ok {
			continue // stunnel-config.*, others
		}
		if err != nil && first == nil {
			first = err
		}
		all[name] = ts
		if final {
			parsed[name] = ts
		}
	}
	s.known = parsed
	s.index(all)
	return first
}

// list reads at most MaxStateFiles entries of the state directory: nil
// entries and no error when it does not exist; first is the error to
// report when there were more.
func (s *StateDir) list() (ents []fs.DirEntry, first, err error) {
	f, err := os.Open(s.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("efs-utils state dir: %w", err)
	}
	defer f.Close()
	ents, err = f.ReadDir(MaxStateFiles)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, nil, fmt.Errorf("efs-utils state dir %s: %w", s.dir, err)
	}
	if len(ents) == MaxStateFiles {
		first = fmt.Errorf("efs-utils state dir %s: more than %d entries, the rest are not read", s.dir, MaxStateFiles)
	}
	if ents == nil {
		ents = []fs.DirEntry{}
	}
	return ents, first, nil
}

// read returns what the state file name says: ok is false for a name that
// is not a tunnel's state file; final is set when the result may be kept
// without reading the file again (read and not a "~" file being written);
// err is a read failure worth reporting.
func (s *StateDir) read(name string) (ts TunnelState, final, ok bool, err error) {
	base, temp := strings.CutPrefix(name, tempPrefix)
	_, fsID, port, ok := parseStateName(base)
	if !ok {
		return TunnelState{}, false, false, nil
	}
	if ts, ok := s.known[name]; ok {
		return ts, true, true, nil
	}
	ts = TunnelState{FileSystemID: fsID, Port: port}
	sf, err := readStateFile(filepath.Join(s.dir, name))
	if err != nil {
		// Use the name for now, and read the file again next time. A
		// "~" file being written is expected, not a problem to report.
		if temp {
			err = nil
		}
		return ts, false, true, err
	}
	if bareFSID.MatchString(sf.FSID) {
		ts.FileSystemID = sf.FSID
	}
	if apID.MatchString(sf.AccessPoint) {
		ts.AccessPoint = sf.AccessPoint
	}
	ts.Mountpoint = sf.Mountpoint
	ts.MountTime = sf.MountTime
	ts.Service = serviceOf(sf.ServiceType)
	// A "~" file is rewritten (the tunnel's pid) until renamed: read it
	// again next time.
	return ts, !temp, true, nil
}

// index rebuilds the lookups by state-file key and by tunnel port from
// all; a port two state files claim is left out.
func (s *StateDir) index(all map[string]TunnelState) {
	s.byKey = make(map[string]TunnelState, len(all))
	s.byMount = make(map[string][]TunnelState, len(all))
	s.byPort = make(map[int]TunnelState, len(all))
	shared := map[int]bool{}
	for name, ts := range all {
		base, temp := strings.CutPrefix(name, tempPrefix)
		if _, done := all[base]; temp && done {
			continue // renamed since (a leftover of a crash): the final file wins
		}
		key, _, _, _ := parseStateName(base)
		s.byKey[key] = ts
		safe := key[:strings.LastIndexByte(key, '.')]
		s.byMount[safe] = append(s.byMount[safe], ts)
		if _, dup := s.byPort[ts.Port]; dup {
			shared[ts.Port] = true
		}
		s.byPort[ts.Port] = ts
	}
	for p := range shared {
		delete(s.byPort, p)
	}
}

// apID is an access point id as efs-utils accepts it (AP_REGEX_PATTERN is
// exactly 17 hex digits; the EFS CSI driver allows 8 to 40).
var apID = regexp.MustCompile(`^fsap-[0-9a-f]{8,40}$`)

func readStateFile(p string) (stateFile, error) {
	var sf stateFile
	f, err := os.Open(p)
	if err != nil {
		return sf, fmt.Errorf("efs-utils state file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxStateFileBytes+1))
	if err != nil {
		return sf, fmt.Errorf("efs-utils state file %s: %w", p, err)
	}
	if len(b) > MaxStateFileBytes {
		return sf, fmt.Errorf("efs-utils state file %s: larger than %d bytes", p, MaxStateFileBytes)
	}
	if err := json.Unmarshal(b, &sf); err != nil {
		return sf, fmt.Errorf("efs-utils state file %s: %w", p, err)
	}
	return sf, nil
}

// Lookup finds the state file of the NFS mount at mountpoint whose client
// talks to the given local port (the port= mount option; 2049 when the
// option is absent), in this order:
//
//   - by "<safe mountpoint>.<port>", the way efs-utils' watchdog matches
//     them;
//   - by mount point alone: the file whose mountpoint key (or, in files of
//     versions without the key, whose name) names this mount point, the
//     newest (mount_time) when a stale file names it too. This is what
//     keeps a trunked mount attributed: when the NFS client trunks a
//     second mount of one server onto the first mount's connection, the
//     mount table shows the second mount with the first one's port, and
//     only its mount point still leads to its own state file (and so to
//     its own access point). A mount table read under another root
//     (/host/var/lib/...) matches a file whose mount point ends the path;
//   - failing both, by port, when exactly one state file uses it
//     (efs-utils never gives two live tunnels the same port), which covers
//     a mount bound or moved to a path no state file names.
//
// efs-utils writes the mountpoint key into every tunnel state file at
// mount: write_tunnel_state_file, src/mount_efs/__init__.py (v2.4.2) and
// src/efs_utils_common/proxy.py (v3.2.0), as the path mount.efs was given.
func (s *StateDir) Lookup(mountpoint string, port int) (TunnelState, bool) {
	safe := SafeMountpoint(mountpoint)
	if ts, ok := s.byKey[safe+"."+strconv.Itoa(port)]; ok {
		return ts, true
	}
	if ts, ok := s.byMountpoint(filepath.Clean(mountpoint), safe); ok {
		return ts, true
	}
	ts, ok := s.byPort[port]
	return ts, ok
}

// byMountpoint finds the state file that names path (safe is its safe
// form): one whose mount point is path, else one whose mount point ends
// path after a root; the newest of several, none when they tie.
func (s *StateDir) byMountpoint(path, safe string) (TunnelState, bool) {
	for whole := true; ; whole = false {
		var best TunnelState
		n := 0
		for _, ts := range s.byMount[safe] {
			if !namesMount(ts, path, whole) {
				continue
			}
			switch {
			case n == 0 || ts.MountTime > best.MountTime:
				best, n = ts, 1
			case ts.MountTime == best.MountTime:
				n++
			}
		}
		if n == 1 {
			return best, true
		}
		if n > 1 {
			return TunnelState{}, false
		}
		// The path seen under a root: try the shorter safe names, at
		// each "." (a "/" of the mount point, or a "." in a name, which
		// the mountpoint key then rules out).
		i := strings.IndexByte(safe, '.')
		if i < 0 {
			return TunnelState{}, false
		}
		safe = safe[i+1:]
	}
}

// namesMount reports whether the state file ts names the mount at path:
// exactly (whole) or as the end of path after a root. A file without the
// mountpoint key was matched by its name's safe mount point only.
func namesMount(ts TunnelState, path string, whole bool) bool {
	if ts.Mountpoint == "" {
		return true
	}
	mp := filepath.Clean(ts.Mountpoint)
	if whole {
		return mp == path
	}
	return strings.HasPrefix(mp, "/") && len(path) > len(mp) && strings.HasSuffix(path, mp)
}

// Attribution is the attribution of a tunnel.
func (ts TunnelState) Attribution() agent.Attribution {
	return agent.Attribution{FileSystemID: ts.FileSystemID, AccessPoint: ts.AccessPoint, Service: ts.Service}
}
