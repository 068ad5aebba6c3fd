// Package nfs is the NFS test bed (make nfs-e2e): the agent checked
// against the Linux kernel's own NFSv4.1 client and server, with faults
// made by the network (netem) and the servers, in a QEMU guest.
//
// The host side (TestNFS, run with NFS_E2E=1) builds the agent and the
// guest's scenario driver (this package built with the nfsguest tag),
// an initramfs, and boots one guest for the whole run; it reports each
// guest scenario as a subtest with the guest's verdict and log. The guest
// side (files tagged nfsguest) starts one nfsd per server in a network
// namespace of its own behind a veth pair, mounts the exports with EFS's
// mount options and runs the scenarios against the agent binary. It has
// tests only.
package nfs
