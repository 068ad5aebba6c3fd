// Package e2e runs the built efs-health-agent binary against real
// components: the FUSE fault filesystem, a real Prometheus server scraping
// it on loopback, and real signals (SIGTERM while a check is stuck in the
// kernel, SIGKILL mid-check and restart). It has tests only.
package e2e
