package agent

import (
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Grouping (Config.Grouping): mounts of one file system share what a full
// check proves about it, its ability to take a write, read it back and
// delete it, so on the healthy path one full check per group and interval
// proves that for all of them, and every other mount's check is a
// transport check (probes.CheckTransport: the preflight, open and a
// statfs, which the NFS client always sends to the server), proving that
// the mount's own connection and server answer. The rules:
//
//   - A mount's check is full when grouping is off or the mount is alone
//     in its group, when the mount is not healthy (a failure or a hang is
//     always confirmed by the mount's own full check), when a shared full
//     check failed or hung since its last full check (owes), when its own
//     last successful full check is RotateEvery intervals old or more, and
//     when the group's last successful full check is an interval old (less
//     the scheduler's coalescing window): the first member due then does
//     it, and the member whose own full check is oldest is brought
//     forward to be that member (steerLocked), so the full check rotates.
//   - A shared full check that fails or hangs makes every other member of
//     the group owe its own full check, and brings it forward to now: each
//     is then shown failing, or not, by its own I/O, within one interval.
//   - Every mount is checked on its own schedule, one check in flight at
//     most, exactly as without grouping: a hang is found by the mount's
//     own call, whichever kind of check it is in.

// RotateEvery is the longest time, in intervals, a grouped mount goes
// without a full check of its own: each mount does the full check itself
// at least once every RotateEvery intervals, so that a fault of one
// client superblock cannot stay hidden behind the group's. The rotation
// (steerLocked) gives each member of a group of n its turn about every n
// intervals; RotateEvery leaves a group of up to 10 two intervals of
// slack, so that it never forces a second full check into an interval.
// A larger group makes about n/RotateEvery full checks an interval.
const RotateEvery = 12

// Proof says that a mount's state comes from a full check another mount
// of its group made, its own check having been a transport check. One
// value is shared by the statuses of every member it covers.
type Proof struct {
	// By is the path of the mount whose full check proved the file system.
	By string
	// At is when that check started.
	At time.Time
	// Group is the group's key (see GroupKey).
	Group string
}

// GroupKey is the group of a mount: mounts of one key share what a full
// check proves about the file system. The key is, in order:
//
//   - "fs <service> <file system id> <access point> <path>" when the
//     mount is attributed to a file system (its source, its efs-utils
//     state file or its CSI volume id): every mount of that file system,
//     access point and path, whichever transport each has;
//   - "dev <major>:<minor>" when the root's device number is known: the
//     mounts that share one superblock, and so one NFS client, which is
//     what plain mounts of one export with the same options are;
//   - "" (not grouped) otherwise.
func GroupKey(spec *Mount, dev uint64, devKnown bool) string {
	if a := spec.Attribution; a.FileSystemID != "" {
		return "fs " + a.Service + " " + a.FileSystemID + " " + a.AccessPoint + " " + sourcePath(spec.Source)
	}
	if devKnown {
		return "dev " + strconv.FormatUint(uint64(unix.Major(dev)), 10) + ":" + strconv.FormatUint(uint64(unix.Minor(dev)), 10)
	}
	return ""
}

// sourcePath is the exported path of an NFS source ("host:/path"), "/"
// when it has none.
func sourcePath(source string) string {
	if i := strings.IndexByte(source, ':'); i >= 0 && i+1 < len(source) {
		return source[i+1:]
	}
	return "/"
}

// planInput is what decides the kind of a mount's next check.
type planInput struct {
	// grouped: grouping is on and the mount's group has other members.
	grouped bool
	// healthy: the mount's state is healthy.
	healthy bool
	// owes: a shared full check failed or hung since the mount's last
	// full check.
	owes bool
	// now is the check's start; ownFull and groupFull the starts of the
	// mount's and the group's last successful full checks (zero: none).
	now, ownFull, groupFull time.Time
	interval                time.Duration
	// slack is how much sooner than an interval after the group's last
	// full check a member may do the next one: the coalescing window, by
	// which a check may start early.
	slack time.Duration
}

// fullCheck reports whether the check planned by in is a full check (the
// probe file written, read back and deleted) rather than a transport
// check. It is the whole decision, a pure function.
func fullCheck(in planInput) bool {
	switch {
	case !in.grouped, !in.healthy, in.owes, in.ownFull.IsZero(), in.groupFull.IsZero():
		return true
	case in.now.Sub(in.ownFull) >= RotateEvery*in.interval:
		return true
	}
	return in.now.Sub(in.groupFull) >= in.interval-in.slack
}

// group is the state of one group of mounts, guarded by Monitor.mu.
type group struct {
	key string
	// members are the group's mounts: at most Config.MaxMounts.
	members map[*mount]*member
	// full is the start of the last successful full check of a member,
	// proof its Proof, shared by the members' statuses.
	full  time.Time
	proof *Proof
	// started is the start of a member's full check in flight, zero while
	// none is: members planned meanwhile count it as the group's proof,
	// so that mounts due together do not all make one.
	started time.Time
}

// member is a grouped mount's part in its group, guarded by Monitor.mu.
type member struct {
	g *group
	// ownFull is the start of the mount's last successful full check.
	ownFull time.Time
	// owes is set when a shared full check failed or hung, until the
	// mount's own full check returns.
	owes bool
	// dev is the root's device number from the mount's last check.
	dev      uint64
	devKnown bool
	// next is when the mount is queued for its next check.
	next time.Time
}

// memberLocked returns m's member, made (and put in its group) the first
// time; nil while grouping is off.
func (mon *Monitor) memberLocked(m *mount) *member {
	if !mon.cfg.Grouping {
		return nil
	}
	mb := mon.members[m]
	if mb == nil {
		mb = &member{}
		mon.members[m] = mb
		mon.regroupLocked(m, mb)
	}
	return mb
}

// regroupLocked puts m in the group of its current key.
func (mon *Monitor) regroupLocked(m *mount, mb *member) {
	key := GroupKey(m.spec, mb.dev, mb.devKnown)
	if mb.g != nil && mb.g.key == key {
		return
	}
	mon.leaveGroupLocked(m, mb)
	if key == "" {
		return
	}
	g := mon.groups[key]
	if g == nil {
		g = &group{key: key, members: map[*mount]*member{}}
		mon.groups[key] = g
	}
	g.members[m] = mb
	mb.g = g
}

// leaveGroupLocked takes mb out of its group, if it has one.
func (mon *Monitor) leaveGroupLocked(m *mount, mb *member) {
	if g := mb.g; g != nil {
		delete(g.members, m)
		if len(g.members) == 0 {
			delete(mon.groups, g.key)
		}
		mb.g = nil
	}
}

// forgetMemberLocked drops an unregistered mount's member.
func (mon *Monitor) forgetMemberLocked(m *mount) {
	if mb := mon.members[m]; mb != nil {
		mon.leaveGroupLocked(m, mb)
		delete(mon.members, m)
	}
}

// planLocked decides whether the check of m starting at now is a full
// check.
func (mon *Monitor) planLocked(m *mount, now time.Time) bool {
	mb := mon.memberLocked(m)
	if mb == nil {
		return true
	}
	mon.regroupLocked(m, mb)
	in := planInput{healthy: m.status.Load().State == StateHealthy, owes: mb.owes,
		now: now, ownFull: mb.ownFull, interval: mon.cfg.Interval,
		slack: mon.window}
	g := mb.g
	if g != nil {
		in.grouped, in.groupFull = len(g.members) > 1, g.full
		if g.started.After(g.full) {
			in.groupFull = g.started
		}
	}
	full := fullCheck(in)
	if full && g != nil {
		g.started = now
	}
	return full
}

// groupedLocked folds a returned check of m into its group and sets what
// next, m's next status, says of the check that produced it. ok is the
// check's success; dev what it read of the root's device number.
func (mon *Monitor) groupedLocked(c *check, ok bool, dev uint64, devKnown bool, now time.Time, next *MountStatus) {
	m := c.m
	mb := mon.members[m]
	if mb == nil || m.removed {
		return
	}
	if devKnown {
		mb.dev, mb.devKnown = dev, true
	}
	mon.regroupLocked(m, mb)
	g := mb.g
	next.SharedProof = nil
	if !c.full {
		if ok && g != nil && g.proof != nil && g.proof.By != m.spec.Path {
			next.SharedProof = g.proof
		}
		return
	}
	mb.owes = false
	if g != nil && g.started.Equal(c.start) {
		g.started = time.Time{}
	}
	if ok {
		mb.ownFull = c.start
		if g != nil {
			g.full = c.start
			g.proof = &Proof{By: m.spec.Path, At: c.start, Group: g.key}
		}
		return
	}
	mon.sharedFailedLocked(m, mb, now)
}

// steerLocked brings the next full check of m's group to its member
// that made its own longest ago: that member's next check is moved
// earlier, to when the group's proof falls due, if it was due later. So
// the full check rotates through the members in turn, one per interval,
// and a member's own full check comes about every (group size) intervals,
// within RotateEvery for groups of up to 10 mounts. A check is
// only ever moved earlier: no mount's own check comes later for it.
func (mon *Monitor) steerLocked(m *mount, now time.Time) {
	mb := mon.members[m]
	if mb == nil || mb.g == nil || len(mb.g.members) < 2 || mb.g.full.IsZero() {
		return
	}
	g := mb.g
	at := g.full.Add(mon.cfg.Interval)
	if g.started.After(g.full) || !at.After(now) {
		// A full check is in flight, or the proof is due already: the
		// first member due makes it.
		return
	}
	var next *mount
	var nmb *member
	for o, omb := range g.members {
		if o.cur != nil || !o.queued || o.removed || o.status.Load().State != StateHealthy {
			continue
		}
		if nmb == nil || omb.ownFull.Before(nmb.ownFull) || (omb.ownFull.Equal(nmb.ownFull) && o.spec.Path < next.spec.Path) {
			next, nmb = o, omb
		}
	}
	if next == nil {
		return
	}
	if nmb.next.After(at) {
		mon.due.push(next, at)
		nmb.next = at
	}
}

// sharedFailedLocked handles a full check of m that failed or hung: every
// other member of its group owes its own full check, brought forward to
// now (a member with a check in flight has it when that one returns).
func (mon *Monitor) sharedFailedLocked(m *mount, mb *member, now time.Time) {
	g := mb.g
	if g == nil || len(g.members) < 2 {
		return
	}
	g.proof, g.full = nil, time.Time{}
	for o, omb := range g.members {
		if o == m || o.removed {
			continue
		}
		omb.owes = true
		if o.queued && o.cur == nil {
			mon.requeueLocked(o, now)
		}
	}
}
