package agent

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
