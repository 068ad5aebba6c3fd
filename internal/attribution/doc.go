// Package attribution tells what a mount is from what the node already
// knows, without any cloud API call: the file system, access point and
// service, EFS or S3 Files (from the mount source, from efs-utils' state
// files of the mounts through efs-proxy, or from an EFS CSI volume id) and
// the pod and volume that use it (from the kubelet's directory layout).
//
// Everything here is parsing of strings, except StateDir, which reads
// efs-utils' state directory; it is meant to run in a background refresh
// (discovery's), never on a request path, and is bounded in the number of
// files it looks at and in the bytes it reads from each.
package attribution
