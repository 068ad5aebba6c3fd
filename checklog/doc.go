// Package checklog keeps the checks /debug/checks shows, for all mounts
// together: the last checks (a ring), the slowest since start, and the
// last failed check of each of the most recently failed mounts. Each is
// filed from the check's one agent.CheckRecord with the trace id its spans
// were kept under, in a compact record (88 bytes, nothing allocated for a
// check without errors), and rendered only when asked for.
//
// The log's size does not depend on the number of mounts: at most
// recent + slowest + failures entries of 112 bytes, plus for a failed
// check its error texts, each cut at MaxText bytes. Add and Select take
// only the log's own lock; Select copies at most Query.Limit entries per
// list under it, whatever the log holds. The query parameters and the
// JSON and text renderings of the route are httpapi's.
package checklog
