package exporters

// DebugRecords is the number of records the /debug/checks store holds.
func DebugRecords(t *Telemetry) int { return t.debug.records() }
