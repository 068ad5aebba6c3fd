package attribution

import (
	"fmt"
	"path"
	"regexp"
	"strings"
)

// Attribution says what a mount is. Every field may be empty (unknown).
type Attribution struct {
	// FileSystemID is the EFS file system, e.g. "fs-0123456789abcdef0".
	FileSystemID string
	// AccessPoint is the EFS access point, e.g. "fsap-0123456789abcdef0".
	AccessPoint string
	// Service is the AWS service the file system belongs to: ServiceEFS or
	// ServiceS3Files (Amazon S3 Files, mounted with mount.s3files through
	// the same efs-proxy), empty when unknown.
	Service string
	// PodUID is the UID of the pod whose volume this is.
	PodUID string
	// Volume is the volume's directory name in the kubelet layout: the
	// PersistentVolume name for a CSI volume backed by one.
	Volume string
}

// The values of Attribution.Service.
const (
	// ServiceEFS is Amazon EFS (efs-utils' service_type "elasticfilesystem").
	ServiceEFS = "efs"
	// ServiceS3Files is Amazon S3 Files (service_type "s3files").
	ServiceS3Files = "s3files"
)

// IsZero reports whether nothing is known.
func (a Attribution) IsZero() bool { return a == Attribution{} }

// Or returns a with each empty field taken from b.
func (a Attribution) Or(b Attribution) Attribution {
	if a.FileSystemID == "" {
		a.FileSystemID = b.FileSystemID
	}
	if a.AccessPoint == "" {
		a.AccessPoint = b.AccessPoint
	}
	if a.Service == "" {
		a.Service = b.Service
	}
	if a.PodUID == "" {
		a.PodUID = b.PodUID
	}
	if a.Volume == "" {
		a.Volume = b.Volume
	}
	return a
}

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
func FromSource(source string) Attribution {
	i := strings.LastIndexByte(source, ':')
	if i <= 0 {
		return Attribution{}
	}
	host := strings.ToLower(source[:i])
	if m := efsHost.FindStringSubmatch(host); m != nil {
		// The label after the id names the service: "efs" (efs-utils'
		// dns_name_format {fs_id}.efs.{region}.{dns_name_suffix}) or
		// "s3files" ({az_id}.{fs_id}.s3files.{region}.{dns_name_suffix},
		// dist/s3files-utils.conf, efs-utils v3.2.0).
		a := Attribution{FileSystemID: m[1]}
		rest := host[strings.Index(host, m[1])+len(m[1])+1:]
		switch rest[:strings.IndexByte(rest+".", '.')] {
		case "efs":
			a.Service = ServiceEFS
		case "s3files":
			a.Service = ServiceS3Files
		}
		return a
	}
	if bareFSID.MatchString(host) {
		return Attribution{FileSystemID: host}
	}
	return Attribution{}
}

// FromPath attributes a mount by where the kubelet put it:
// <root>/pods/<pod uid>/volumes/kubernetes.io~csi/<volume>/mount for a CSI
// volume, <root>/pods/<pod uid>/volumes/<plugin>/<volume> for an in-tree
// one (kubernetes.io~nfs, for instance). Any other path yields nothing. p
// is taken as given (cleaned, not resolved).
func FromPath(p string) Attribution {
	parts := strings.Split(path.Clean(p), "/")
	n := len(parts)
	// …/pods/<uid>/volumes/<plugin>/<volume>[/mount]
	if n >= 6 && parts[n-1] == "mount" && parts[n-3] == "kubernetes.io~csi" {
		parts, n = parts[:n-1], n-1
	} else if n >= 5 && parts[n-2] == "kubernetes.io~csi" {
		return Attribution{} // the CSI volume directory itself, not its mount
	}
	if n < 5 || parts[n-5] != "pods" || parts[n-3] != "volumes" || !strings.HasPrefix(parts[n-2], "kubernetes.io~") {
		return Attribution{}
	}
	uid, vol := parts[n-4], parts[n-1]
	if uid == "" || vol == "" || uid == "." || uid == ".." || vol == "." || vol == ".." {
		return Attribution{}
	}
	return Attribution{PodUID: uid, Volume: vol}
}

// hexSuffix is the EFS CSI driver's rule for the part of an id after its
// prefix (pkg/driver/node.go).
var hexSuffix = regexp.MustCompile(`^[0-9a-f]{8,40}$`)

// FromVolumeID attributes a volume by its EFS CSI volume id, in the forms
// the EFS CSI driver accepts (parseVolumeId in pkg/driver/node.go):
// "fs-…", "fs-…:<subpath>", "fs-…:<subpath>:fsap-…" (usually "fs-…::fsap-…"),
// and the same prefixed by the file system type, "efs:fs-…:<subpath>:fsap-…"
// or "s3files:…". It returns an error naming the id for anything else.
func FromVolumeID(id string) (Attribution, error) {
	tokens := strings.Split(id, ":")
	// An id without the type prefix is EFS (parseVolumeId, v3.4.1).
	service := ServiceEFS
	if tokens[0] == "efs" || tokens[0] == "s3files" {
		service = map[string]string{"efs": ServiceEFS, "s3files": ServiceS3Files}[tokens[0]]
		tokens = tokens[1:]
	}
	if len(tokens) == 0 || len(tokens) > 3 {
		return Attribution{}, fmt.Errorf("volume id %q: want [efs:]fs-…[:subpath[:fsap-…]]", id)
	}
	fsID, ok := strings.CutPrefix(tokens[0], "fs-")
	if !ok || !hexSuffix.MatchString(fsID) {
		return Attribution{}, fmt.Errorf("volume id %q: file system id %q is not fs- followed by 8 to 40 hex digits", id, tokens[0])
	}
	a := Attribution{FileSystemID: tokens[0], Service: service}
	if len(tokens) == 3 && tokens[2] != "" {
		ap, ok := strings.CutPrefix(tokens[2], "fsap-")
		if !ok || !hexSuffix.MatchString(ap) {
			return Attribution{}, fmt.Errorf("volume id %q: access point id %q is not fsap- followed by 8 to 40 hex digits", id, tokens[2])
		}
		a.AccessPoint = tokens[2]
	}
	return a, nil
}
