//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Mount-table attacks of the hostile phase: the agent is started once
// with a FIFO as its mount table (it must exit 2 with one line), and while
// the load runs its table is replaced by a FIFO for a while, again and
// again, and between the FIFOs every other read of it is torn: the moment
// the agent opens the table, it is cut short (at a line boundary, so the
// static mounts listed at its end are missing, or in the middle of one
// of their lines), and it is made whole again when the agent closes it.
// No static mount may be reported not_mounted, discovery must recover
// after every FIFO, and SIGTERM, sent with a FIFO in place, must still end
// the agent in time.
const (
	tableStatic    = 20               // static mounts the table lists (so their checks run the mounttable step)
	tableFIFOEvery = 10 * time.Second // a FIFO swapped in this often
	tableFIFOHold  = 5 * time.Second  // and left this long: over two discovery intervals
)

// tableAttack is the state and the outcome of the mount-table attacks.
type tableAttack struct {
	table       string
	staticLines []byte
	base        int64 // size of the table without the static lines

	startOK   bool
	startNote string // what the agent did with a FIFO at start
	fifoSwaps int    // FIFOs swapped in and taken out again
	torn, cut int    // reads torn at a line boundary / in a line
	err       error  // the attack itself failed

	// From the agent's log: false verdicts, unregistrations, runs of
	// failed reads begun (a FIFO the agent read), recoveries.
	falseNotMounted, gone, runs, recovered int
}

// newTableAttack lists the first tableStatic mounts in the table (as
// tmpfs, which they are on), then starts bin with a FIFO as its table.
func newTableAttack(bin, table string, mounts []string) (*tableAttack, error) {
	a := &tableAttack{table: table}
	var b strings.Builder
	for i, m := range mounts[:min(tableStatic, len(mounts))] {
		fmt.Fprintf(&b, "%d 1 0:%d / %s rw,relatime shared:%d - tmpfs tmpfs rw,size=65536k\n", 900_000+i, 900+i, m, 900_000+i)
	}
	a.staticLines = []byte(b.String())
	fi, err := os.Stat(table)
	if err != nil {
		return nil, err
	}
	a.base = fi.Size()
	f, err := os.OpenFile(table, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return nil, err
	}
	if _, err := f.Write(a.staticLines); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	a.startOK, a.startNote = fifoAtStart(bin, table+".start-fifo", mounts[0])
	return a, nil
}

// fifoAtStart runs bin with a FIFO as its mount table: it must exit 2
// within 10 s with one line naming HEALTH_MOUNTINFO.
func fifoAtStart(bin, fifo, mount string) (bool, string) {
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		return false, err.Error()
	}
	defer os.Remove(fifo)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return false, err.Error()
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--bind-address", "127.0.0.1", "--port", strconv.Itoa(port), "--mount", mount)
	cmd.Env = append(os.Environ(), "HEALTH_MOUNTINFO="+fifo)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	d := time.Since(start).Round(time.Millisecond)
	lines := strings.Count(strings.TrimSpace(string(out)), "\n") + 1
	var ee *exec.ExitError
	if ctx.Err() != nil {
		return false, "no exit within 10 s"
	}
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || lines != 1 || !strings.Contains(string(out), "HEALTH_MOUNTINFO") {
		return false, fmt.Sprintf("exit %v after %v, output %q", err, d, out)
	}
	return true, fmt.Sprintf("exit 2 after %v, one line", d)
}

// run attacks the table until ctx is done, then leaves a FIFO in its
// place for the agent's SIGTERM.
func (a *tableAttack) run(ctx context.Context) {
	f, in, err := a.watch()
	if err != nil {
		a.err = err
		return
	}
	defer f.Close()
	defer unix.Close(in)
	r := &tableRun{a: a, f: f, real: a.table + ".real", nextFIFO: time.Now().Add(tableFIFOEvery / 2)}
	buf := make([]byte, 4096)
	for ctx.Err() == nil {
		if err := r.schedule(time.Now()); err != nil {
			a.err = err
			return
		}
		fds := []unix.PollFd{{Fd: int32(in), Events: unix.POLLIN}}
		if n, _ := unix.Poll(fds, 100); n <= 0 {
			continue
		}
		n, err := unix.Read(in, buf)
		for off := 0; err == nil && off+unix.SizeofInotifyEvent <= n; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			off += unix.SizeofInotifyEvent + int(ev.Len)
			r.event(ev.Mask)
		}
	}
	r.finish()
}

// watch opens the table for writing (the one open of ours: writes go
// through it) and an inotify instance watching its opens and closes. The
// watch follows the file's inode, through the renames of the FIFO swaps.
func (a *tableAttack) watch() (*os.File, int, error) {
	f, err := os.OpenFile(a.table, os.O_WRONLY, 0)
	if err != nil {
		return nil, 0, err
	}
	in, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("inotify: %w", err)
	}
	if _, err := unix.InotifyAddWatch(in, a.table, unix.IN_OPEN|unix.IN_CLOSE_NOWRITE); err != nil {
		unix.Close(in)
		f.Close()
		return nil, 0, fmt.Errorf("inotify: %w", err)
	}
	return f, in, nil
}

// tableRun is where one attack stands: whether the table is cut short, and
// when the FIFO goes in and out.
type tableRun struct {
	a                   *tableAttack
	f                   *os.File
	real                string    // the table's name while a FIFO is in its place
	tornAt              time.Time // when the table was cut short, zero while whole
	skip                bool      // let the next read through whole (it confirms)
	nextFIFO, fifoUntil time.Time
}

// restore writes the static lines back.
func (r *tableRun) restore() {
	if _, err := r.f.WriteAt(r.a.staticLines, r.a.base); err != nil && r.a.err == nil {
		r.a.err = err
	}
	r.tornAt = time.Time{}
	r.skip = true
}

// schedule takes the FIFO out when its time is up, puts one in when due
// (the table whole), and restores a table whose close went unseen.
func (r *tableRun) schedule(now time.Time) error {
	switch {
	case !r.fifoUntil.IsZero() && !now.Before(r.fifoUntil):
		if err := os.Rename(r.real, r.a.table); err != nil && r.a.err == nil {
			r.a.err = err
		}
		r.fifoUntil, r.nextFIFO = time.Time{}, now.Add(tableFIFOEvery-tableFIFOHold)
		r.a.fifoSwaps++
	case r.fifoUntil.IsZero() && r.tornAt.IsZero() && !now.Before(r.nextFIFO):
		if err := r.a.swapFIFO(r.real); err != nil {
			return err
		}
		r.fifoUntil = now.Add(tableFIFOHold)
	case !r.tornAt.IsZero() && now.Sub(r.tornAt) > 2*time.Second:
		r.restore() // a close went unseen
	}
	return nil
}

// event cuts the table short when a reader opens it (every other time
// through half of its first static line) and restores it when the reader
// closes it.
func (r *tableRun) event(mask uint32) {
	a := r.a
	switch {
	case mask&unix.IN_OPEN != 0 && r.tornAt.IsZero():
		if r.skip {
			r.skip = false
			return
		}
		cut := a.base // the static lines are gone
		if (a.torn+a.cut)%2 == 1 {
			cut += int64(len(a.staticLines) / tableStatic / 2) // half of the first one is left
			a.cut++
		} else {
			a.torn++
		}
		if err := r.f.Truncate(cut); err != nil && a.err == nil {
			a.err = err
		}
		r.tornAt = time.Now()
	case mask&unix.IN_CLOSE_NOWRITE != 0 && !r.tornAt.IsZero():
		r.restore()
	}
}

// finish leaves the table whole and a FIFO in its place, as the attack
// ends.
func (r *tableRun) finish() {
	if !r.tornAt.IsZero() {
		r.restore()
	}
	if !r.fifoUntil.IsZero() {
		return // a FIFO is in place already
	}
	if err := r.a.swapFIFO(r.real); err != nil && r.a.err == nil {
		r.a.err = err
	}
}

// swapFIFO moves the table to real and puts a FIFO in its place.
func (a *tableAttack) swapFIFO(real string) error {
	if err := os.Rename(a.table, real); err != nil {
		return err
	}
	return unix.Mkfifo(a.table, 0o600)
}

// judge counts in the agent's log the false verdicts and unregistrations
// the attacks caused (there should be none) and the recoveries.
func (a *tableAttack) judge(log string) {
	a.falseNotMounted = strings.Count(log, "not_mounted")
	a.gone = strings.Count(log, "mount gone")
	a.recovered = strings.Count(log, "mount table readable again")
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, "mount table unreadable") && strings.HasSuffix(strings.TrimSpace(line), "failed_reads=1") {
			a.runs++
		}
	}
}

// ok reports whether the agent held: exit 2 at start, no false verdict,
// a recovery after every run of failed reads (a FIFO the agent read; one
// read before a table read that began earlier has ended may go unseen),
// but the last, which the FIFO left in place for SIGTERM may hold open.
func (a *tableAttack) ok() bool {
	return a == nil || (a.err == nil && a.startOK && a.falseNotMounted == 0 && a.gone == 0 && a.runs > 0 && a.recovered >= a.runs-1)
}

// rows are the attacks' rows of the phase's table in BENCHMARKS.md.
func (a *tableAttack) rows(b *strings.Builder) {
	if a == nil {
		return
	}
	fmt.Fprintf(b, "| FIFO as the mount table at start | %s |\n", a.startNote)
	fmt.Fprintf(b, "| FIFO swapped in for %v, taken out / runs of failed reads logged / recoveries logged | %d / %d / %d |\n",
		tableFIFOHold, a.fifoSwaps, a.runs, a.recovered)
	fmt.Fprintf(b, "| torn table reads (static mounts cut off / a line cut in half) | %d / %d |\n", a.torn, a.cut)
	fmt.Fprintf(b, "| `not_mounted` verdicts / mounts unregistered (all false) | %d / %d |\n", a.falseNotMounted, a.gone)
	if a.err != nil {
		fmt.Fprintf(b, "| mount-table attack error | %v |\n", a.err)
	}
}
