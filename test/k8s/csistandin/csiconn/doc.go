// Package csiconn connects the stand-in's sidecars (registrar and
// livenessprobe) to the driver's CSI socket, as csi-lib-utils' connection
// package does for upstream's: the address is a path or a unix URL, the
// connection waits for the driver to listen, and the driver's name comes
// from its GetPluginInfo.
package csiconn
