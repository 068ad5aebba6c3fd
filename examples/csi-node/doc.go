// Command csi-node is a minimal CSI node plugin that embeds the health
// agent: NodePublishVolume registers the target path, NodeUnpublishVolume
// unregisters it, NodeGetVolumeStats answers with the volume's condition,
// and the health routes are served on the plugin's HTTP port. It shows the
// wiring an EFS CSI node server needs; its "mount" is a directory.
package main
