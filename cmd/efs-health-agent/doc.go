// Command efs-health-agent checks EFS/NFS mounts with real I/O and serves
// their health for kubelet probes, Prometheus and people.
//
// This package only parses configuration and wires the packages together;
// see README.md for the settings and endpoints.
package main
