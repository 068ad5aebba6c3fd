package exporters

// DebugMounts is the number of mounts /debug/checks holds a history for.
func DebugMounts(t *Telemetry) int { return t.debug.mounts() }
