// Command csi-standin is the stand-in for the three images of the EFS CSI
// driver's node DaemonSet (aws-efs-csi-driver v3.4.1,
// deploy/kubernetes/base/node-daemonset.yaml), which cannot be pulled where
// make k8s-e2e runs. One binary plays each role by the name it is invoked
// under, the entrypoint of the image it replaces, or by its first argument:
//
//	aws-efs-csi-driver          efs-plugin: the CSI Identity and Node
//	                            services on --endpoint, with the agent
//	                            embedded (package driver)
//	csi-node-driver-registrar   csi-driver-registrar: kubelet's plugin
//	                            registration (package registrar)
//	livenessprobe               liveness-probe: /healthz on --health-port
//	                            from the driver's Probe (package liveness)
//
// Each role takes the arguments the DaemonSet passes to the image it
// replaces. Flags that only tune what the stand-in does not do (upstream's
// volume metrics, mount limits, CloudWatch) are accepted with upstream's
// types and ignored; any other flag is an error.
package main
