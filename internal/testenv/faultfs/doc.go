// Package faultfs is a FUSE loopback filesystem whose operations can be
// made, at run time, to fail with an errno, slow down, or hang. It is the
// test bed for the agent: real kernel, real syscalls, real faults.
//
// A hang behaves like an NFS hard mount: the operation never returns on
// its own, but it honours the kernel's interrupt, so a caller that gets a
// fatal signal (or a process that exits) is let go with EINTR instead of
// being left unkillable in the kernel.
//
// It is for tests and demos only; nothing in the shipped binary imports it.
package faultfs
