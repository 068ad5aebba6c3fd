// Package liveness is the stand-in for livenessprobe, the liveness-probe
// container of the EFS CSI driver's node DaemonSet: it serves /healthz on
// the health port (9809 in the DaemonSet, which efs-plugin's liveness
// probe names), and answers each request with the driver's CSI Probe,
// bounded by the probe timeout, as livenessprobe v2.19.0 does
// (healthProbe.checkProbe, cmd/livenessprobe/main.go): 200 "ok" when the
// driver is ready, 500 with the reason when the call fails, times out or
// the driver says it is not ready.
package liveness
