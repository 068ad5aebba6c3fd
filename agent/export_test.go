package agent

// HoldAfterProbe makes f run on every check's goroutine of mon once the
// check's calls have returned, before the check completes. Call it before
// the first check starts.
func HoldAfterProbe(mon *Monitor, f func()) { mon.afterProbe = f }
