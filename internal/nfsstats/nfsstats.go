package nfsstats

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"

	"github.com/prometheus/procfs"
)

// Operations are the NFS operations whose statistics are kept; the rest of
// the ~60 per-operation lines would multiply the series for little
// diagnostic value.
var Operations = []string{"READ", "WRITE", "COMMIT", "OPEN", "CLOSE", "GETATTR", "SETATTR", "LOOKUP", "ACCESS", "CREATE", "REMOVE", "READDIR"}

// Op is the statistics of one NFS operation on one mount since it was
// mounted.
type Op struct {
	// Name is the operation, one of Operations.
	Name string
	// Requests is the number of RPC requests sent; Transmissions counts
	// retransmissions too.
	Requests, Transmissions uint64
	// MajorTimeouts is the number of major timeouts.
	MajorTimeouts uint64
	// RTT is the cumulative round-trip time, Execute the cumulative time
	// from queueing to reply.
	RTT, Execute time.Duration
}

// Retransmissions is the number of transmissions beyond the first.
func (o Op) Retransmissions() uint64 {
	if o.Transmissions < o.Requests {
		return 0
	}
	return o.Transmissions - o.Requests
}

// Mount is the statistics of one NFS mount.
type Mount struct {
	// Ops holds the operations of Operations the kernel reports, in the
	// kernel's order.
	Ops []Op
	// Backlog is the cumulative transport backlog queue length, sampled
	// per request, summed over the mount's transports.
	Backlog uint64
}

// Snapshot maps NFS mount points to their statistics. It is never changed
// once made: readers share it.
type Snapshot map[string]*Mount

// ReadFunc reads the kernel's mount statistics, e.g. Self.
type ReadFunc func() ([]*procfs.Mount, error)

// Self reads /proc/self/mountstats.
func Self() ([]*procfs.Mount, error) {
	fs, err := procfs.NewFS("/proc")
	if err != nil {
		return nil, err
	}
	p, err := fs.Self()
	if err != nil {
		return nil, err
	}
	return p.MountStats()
}

// FromMounts keeps the NFS mounts of mounts, and of each the operations
// listed in Operations.
func FromMounts(mounts []*procfs.Mount) Snapshot {
	s := make(Snapshot, len(mounts))
	for _, mt := range mounts {
		st, ok := mt.Stats.(*procfs.MountStatsNFS)
		if !ok {
			continue
		}
		m := &Mount{}
		for _, tr := range st.Transport {
			m.Backlog += tr.CumulativeBacklog
		}
		for _, op := range st.Operations {
			if !slices.Contains(Operations, op.Operation) {
				continue
			}
			m.Ops = append(m.Ops, Op{
				Name: op.Operation, Requests: op.Requests, Transmissions: op.Transmissions, MajorTimeouts: op.MajorTimeouts,
				RTT:     time.Duration(op.CumulativeTotalResponseMilliseconds) * time.Millisecond,
				Execute: time.Duration(op.CumulativeTotalRequestMilliseconds) * time.Millisecond,
			})
		}
		s[mt.Mount] = m
	}
	return s
}

// Cache holds the latest Snapshot. Its size is that of the kernel's mount
// statistics: the NFS mounts of this mount namespace, times the
// operations in Operations.
type Cache struct {
	read ReadFunc
	log  *slog.Logger
	cur  atomic.Pointer[Snapshot]
}

// NewCache returns a cache filled by read; log (default slog.Default())
// receives read errors at debug level. It is empty until the first
// Refresh.
func NewCache(read ReadFunc, log *slog.Logger) *Cache {
	if log == nil {
		log = slog.Default()
	}
	return &Cache{read: read, log: log}
}

// Refresh reads the statistics into the cache.
func (c *Cache) Refresh() error {
	mounts, err := c.read()
	if err != nil {
		return fmt.Errorf("read NFS mount statistics: %w", err)
	}
	s := FromMounts(mounts)
	c.cur.Store(&s)
	return nil
}

// Run refreshes the cache every interval until ctx ends.
func (c *Cache) Run(ctx context.Context, interval time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		if err := c.Refresh(); err != nil {
			c.log.Debug("NFS statistics", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// Snapshot returns the latest statistics (nil before the first read). It
// reads memory only.
func (c *Cache) Snapshot() Snapshot {
	if s := c.cur.Load(); s != nil {
		return *s
	}
	return nil
}
