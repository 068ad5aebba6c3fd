package attribution

import (
	"fmt"
	"path"
	"regexp"
	"strings"

	"github.com/efs-health-agent/efs-health-agent/agent"
)

// efsHost is efs-utils' FQDN_REGEX_PATTERN (src/mount_efs/__init__.py):
// an optional availability-zone label, the file system id, then the
// service, region and DNS suffix, as in
// fs-0123.efs.us-east-1.amazonaws.com or us-east-1a.fs-0123.efs.us-east-1.amazonaws.com,
// and S3 Files' use1-az1.fs-0123.s3files.us-east-1.on.aws.
var efsHost = regexp.MustCompile(`^(?:[a-z0-9-]+\.)?(fs-[0-9a-f]+)\.(?:[a-z0-9-]+\.)+[a-z0-9-]+\.[a-z0-9.-]+$`)

// bareFSID is a file system id on its own (efs-utils' FS_ID_REGEX_PATTERN).
var bareFSID = regexp.MustCompile(`^fs-[0-9a-f]+$`)

// FromSource attributes a mount by its source (the device column of the
// mount table). An EFS mount made by name, "fs-….efs.<region>.amazonaws.com:/path"
// (or with an availability-zone label in front, or the bare "fs-…:/path"),
// yields the file system id. Anything else, including the
// "127.0.0.1:<subpath>" of a mount through efs-proxy (every mount.efs
// mount since efs-utils v2), yields nothing: see StateDir.
func FromSource(source string) agent.Attribution {
	i := strings.LastIndexByte(source, ':')
	if i <= 0 {
		return agent.Attribution{}
	}
	host := strings.ToLower(source[:i])
	if m := efsHost.FindStringSubmatch(host); m != nil {
		// The label after the id names the service: "efs" (efs-utils'
		// dns_name_format {fs_id}.efs.{region}.{dns_name_suffix}) or
		// "s3files" ({az_id}.{fs_id}.s3files.{region}.{dns_name_suffix},
		// dist/s3files-utils.conf, efs-utils v3.2.0).
		a := agent.Attribution{FileSystemID: m[1]}
		rest := host[strings.Index(host, m[1])+len(m[1])+1:]
		switch rest[:strings.IndexByte(rest+".", '.')] {
		case "efs":
			a.Service = agent.ServiceEFS
		case "s3files":
			a.Service = agent.ServiceS3Files
		}
		return a
	}
	if bareFSID.MatchString(host) {
		return agent.Attribution{FileSystemID: host}
	}
	return agent.Attribution{}
}

// FromPath attributes a mount by where the kubelet put it:
// <root>/pods/<pod uid>/volumes/kubernetes.io~csi/<volume>/mount for a CSI
// volume, <root>/pods/<pod uid>/volumes/<plugin>/<volume> for an in-tree
// one (kubernetes.io~nfs, for instance). Any other path yields nothing. p
// is taken as given (cleaned, not resolved).
func FromPath(p string) agent.Attribution {
	parts := strings.Split(path.Clean(p), "/")
	n := len(parts)
	// …/pods/<uid>/volumes/<plugin>/<volume>[/mount]
	if n >= 6 && parts[n-1] == "mount" && parts[n-3] == "kubernetes.io~csi" {
		parts, n = parts[:n-1], n-1
	} else if n >= 5 && parts[n-2] == "kubernetes.io~csi" {
		return agent.Attribution{} // the CSI volume directory itself, not its mount
	}
	if n < 5 || parts[n-5] != "pods" || parts[n-3] != "volumes" || !strings.HasPrefix(parts[n-2], "kubernetes.io~") {
		return agent.Attribution{}
	}
	uid, vol := parts[n-4], parts[n-1]
	if uid == "" || vol == "" || uid == "." || uid == ".." || vol == "." || vol == ".." {
		return agent.Attribution{}
	}
	return agent.Attribution{PodUID: uid, Volume: vol}
}

// hexSuffix is the EFS CSI driver's rule for the part of an id after its
// prefix (pkg/driver/node.go).
var hexSuffix = regexp.MustCompile(`^[0-9a-f]{8,40}$`)

// FromVolumeID attributes a volume by its EFS CSI volume id, in the forms
// the EFS CSI driver accepts (parseVolumeId in pkg/driver/node.go):
// "fs-…", "fs-…:<subpath>", "fs-…:<subpath>:fsap-…" (usually "fs-…::fsap-…"),
// and the same prefixed by the file system type, "efs:fs-…:<subpath>:fsap-…"
// or "s3files:…". It returns an error naming the id for anything else.
func FromVolumeID(id string) (agent.Attribution, error) {
	tokens := strings.Split(id, ":")
	// An id without the type prefix is EFS (parseVolumeId, v3.4.1).
	service := agent.ServiceEFS
	if tokens[0] == "efs" || tokens[0] == "s3files" {
		service = map[string]string{"efs": agent.ServiceEFS, "s3files": agent.ServiceS3Files}[tokens[0]]
		tokens = tokens[1:]
	}
	if len(tokens) == 0 || len(tokens) > 3 {
		return agent.Attribution{}, fmt.Errorf("volume id %q: want [efs:]fs-…[:subpath[:fsap-…]]", id)
	}
	fsID, ok := strings.CutPrefix(tokens[0], "fs-")
	if !ok || !hexSuffix.MatchString(fsID) {
		return agent.Attribution{}, fmt.Errorf("volume id %q: file system id %q is not fs- followed by 8 to 40 hex digits", id, tokens[0])
	}
	a := agent.Attribution{FileSystemID: tokens[0], Service: service}
	if len(tokens) == 3 && tokens[2] != "" {
		ap, ok := strings.CutPrefix(tokens[2], "fsap-")
		if !ok || !hexSuffix.MatchString(ap) {
			return agent.Attribution{}, fmt.Errorf("volume id %q: access point id %q is not fsap- followed by 8 to 40 hex digits", id, tokens[2])
		}
		a.AccessPoint = tokens[2]
	}
	return a, nil
}
