// Package connguard caps the open connections of an http.Server so that
// no flood of clients can lock out the kubelet's probes.
//
// When the cap (Config.Max) is reached, a new connection is admitted by
// closing one that can spare its slot: the one waiting longest without a
// request in progress (idle between keep-alive requests, or silent past a
// short grace after its connect), else the one busy longest with a single
// request, if for long enough that it is a client not reading its answer.
// A connection whose request the server has not yet parsed (bytes the
// kernel holds unread, found with a peek, or a request read whole and not
// yet parsed: trackedConn) is never taken for a silent one: its client
// has asked, and only a starved server has not got to it.
//
// # The probe reserve
//
// When no open connection can make room, a newcomer takes one of as many
// extra slots as the cap. A reserve connection is served the probe routes
// only (Config.ProbePaths: the O(1) /healthz, /healthz/ready,
// /healthz/live), anything else is answered by Config.Refuse (503 with
// Retry-After), and it is closed after its answer, so that the kubelet's
// probe still gets in while every slot is busy, even under a storm of new
// connections (each costs a goroutine and two 4 KiB buffers until it is
// closed). Only when neither the cap nor the reserve can make room is the
// newcomer itself closed.
//
// The guard knows nothing of the routes beyond the list it is given: the
// router (package httpapi) owns them and passes the probe routes in once.
package connguard
