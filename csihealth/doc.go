// Package csihealth embeds the agent in a CSI node plugin: register a
// volume's mount in NodePublishVolume (PublishVolume also records the EFS
// file system and access point its volume id names), unregister it in
// NodeUnpublishVolume, answer NodeGetVolumeStats with a CSI
// VolumeCondition, and serve the health routes on the plugin's own HTTP
// server. Every call reads or updates in-memory state only: none blocks,
// even while the volume's check is stuck in the kernel.
package csihealth
