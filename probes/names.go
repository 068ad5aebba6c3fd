package probes

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
)

const (
	// MaxNodeTag is the longest node part of a probe file name.
	MaxNodeTag = 128
	// hashedKeep is how much of a long node name is kept before its hash.
	hashedKeep = 96
	// instanceSep separates the node from the instance id.
	instanceSep = "@"
	// hashSep separates a shortened node name from its hash.
	hashSep  = "+"
	idLen    = 16 // hex digits of an instance id and of a nonce
	fileExt  = ".tmp"
	unknownN = "unknown"
)

// Owner identifies the agent instance that writes probe files: the node
// and a random instance id. Two agents on one node (a rolling update, a
// sidecar next to the DaemonSet) have different Owners and never take each
// other's files for their own.
//
// A probe file's name says which agent instance wrote it:
//
//	.efs-health-probe-<node>@<instance>-<nonce>.tmp
//
// <node> is the node name with every byte outside [A-Za-z0-9._-] replaced
// by "_"; a name longer than MaxNodeTag is cut to its first 96 bytes
// followed by "+" and 16 hex digits of the SHA-256 of the full node name,
// so the whole file name stays at most 184 bytes (NAME_MAX is 255) and two
// long names that share a beginning stay apart. <instance> is 16 random
// hex digits drawn once per Owner (one per running agent), <nonce> 16
// random hex digits per check. "@" and "+" never occur in a sanitised node
// name, so a name parses one way only.
//
// Earlier versions wrote .efs-health-probe-<node>-<16 hex>.tmp with the
// full sanitised node name; those names are recognised as leftovers of an
// earlier instance of that node.
type Owner struct {
	node     string // as given
	tag      string // node part of new-format names
	legacy   string // name prefix of earlier versions' files
	instance string // idLen hex digits
}

// NewOwner returns an Owner for node with a fresh random instance id.
func NewOwner(node string) (Owner, error) {
	var b [idLen / 2]byte
	if _, err := rand.Read(b[:]); err != nil {
		return Owner{}, fmt.Errorf("random instance id: %w", err)
	}
	return Owner{node: node, tag: NodeTag(node), legacy: HostPrefix(node), instance: hex.EncodeToString(b[:])}, nil
}

// Node is the node name the Owner was made for.
func (o Owner) Node() string { return o.node }

// Instance is the Owner's random instance id.
func (o Owner) Instance() string { return o.instance }

// valid reports whether o came from NewOwner.
func (o Owner) valid() bool { return o.instance != "" }

// NewFileName returns a fresh, unpredictable probe file name of o.
func (o Owner) NewFileName() (string, error) {
	var b [idLen / 2]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("random probe name: %w", err)
	}
	return FilePrefix + o.tag + instanceSep + o.instance + "-" + hex.EncodeToString(b[:]) + fileExt, nil
}

// Ownership says whose a directory entry is, as far as its name tells.
type Ownership int

// Ownerships of a name relative to an Owner.
const (
	// NotOurs: not a probe file of this node (another node's, or no probe
	// file at all). Never touched.
	NotOurs Ownership = iota
	// ThisInstance: written by this very Owner.
	ThisInstance
	// EarlierInstance: written by another instance on this node, an
	// earlier run or a second agent running now, or by an earlier version.
	EarlierInstance
)

// Classify says whose the file called name is.
func (o Owner) Classify(name string) Ownership {
	if !strings.HasPrefix(name, FilePrefix) || !strings.HasSuffix(name, fileExt) {
		return NotOurs
	}
	if tag, inst, ok := parseName(name); ok {
		switch {
		case tag != o.tag:
			return NotOurs
		case inst == o.instance:
			return ThisInstance
		}
		return EarlierInstance
	}
	if isLegacy(name, o.legacy) {
		return EarlierInstance
	}
	return NotOurs
}

// parseName splits a new-format name into node tag and instance id.
func parseName(name string) (tag, instance string, ok bool) {
	mid := name[len(FilePrefix) : len(name)-len(fileExt)]
	i := strings.LastIndex(mid, instanceSep)
	if i <= 0 {
		return "", "", false
	}
	tag, rest := mid[:i], mid[i+1:]
	if len(rest) != 2*idLen+1 || rest[idLen] != '-' || !isHex(rest[:idLen]) || !isHex(rest[idLen+1:]) {
		return "", "", false
	}
	return tag, rest[:idLen], true
}

func isLegacy(name, prefix string) bool {
	if !strings.HasPrefix(name, prefix) || !strings.HasSuffix(name, fileExt) {
		return false
	}
	mid := name[len(prefix) : len(name)-len(fileExt)]
	return len(mid) == idLen && isHex(mid)
}

func isHex(s string) bool {
	_, err := hex.DecodeString(s)
	return err == nil && len(s)%2 == 0
}

// sanitise maps node to the bytes allowed in a file name part.
func sanitise(node string) string {
	s := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '.', r == '_':
			return r
		}
		return '_'
	}, node)
	if s == "" {
		s = unknownN
	}
	return s
}

// NodeTag is the node part of probe file names for node: the sanitised
// name, shortened with a hash of the full name when it is longer than
// MaxNodeTag. The same node always gives the same tag.
func NodeTag(node string) string {
	s := sanitise(node)
	if len(s) <= MaxNodeTag {
		return s
	}
	sum := sha256.Sum256([]byte(node))
	return s[:hashedKeep] + hashSep + hex.EncodeToString(sum[:idLen/2])
}

// HostPrefix is the name prefix of the probe files earlier versions wrote
// for host: FilePrefix + sanitised host + "-". Host names are sanitised so
// that they cannot add path separators.
func HostPrefix(host string) string { return FilePrefix + sanitise(host) + "-" }

// IsProbeFile reports whether name is a probe file written on node host,
// in this version's format or an earlier one's.
func IsProbeFile(name, host string) bool {
	o := Owner{tag: NodeTag(host), legacy: HostPrefix(host), instance: "-"}
	return o.Classify(name) != NotOurs
}
