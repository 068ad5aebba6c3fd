// Package registrar is the stand-in for node-driver-registrar, the
// csi-driver-registrar container of the EFS CSI driver's node DaemonSet:
// it serves kubelet's plugin registration API (k8s.io/kubelet's
// pluginregistration v1) on <registration dir>/<driver>-reg.sock, the
// socket kubelet's plugin watcher finds in
// /var/lib/kubelet/plugins_registry.
//
// It follows node-driver-registrar v2.17.0
// (cmd/csi-node-driver-registrar/main.go and node_register.go), the
// version the driver's v3.4.1 manifests run: GetInfo answers type
// CSIPlugin, the driver's name (from the driver's GetPluginInfo), the CSI
// socket's path on the host (--kubelet-registration-path) and the
// supported versions ["1.0.0"]; NotifyRegistrationStatus with
// PluginRegistered false ends the registrar with kubelet's error (upstream
// exits 1 "restarting registration container"); on SIGTERM it removes its
// socket, which is how kubelet learns the driver left.
package registrar
