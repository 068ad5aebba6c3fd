package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/efs-health-agent/efs-health-agent/agent"
	"github.com/efs-health-agent/efs-health-agent/internal/discovery"
	"github.com/efs-health-agent/efs-health-agent/internal/pathesc"
	"github.com/efs-health-agent/efs-health-agent/probes"
)

// runCheck implements `efs-health-agent check PATH...`: one check per path,
// run concurrently through agent.CheckOnce, the agent's own pipeline
// (mount-table and tunnel preflight, probe file of this instance) under
// the configured timeout. Each PATH must be a mount point; paths given
// with --mount (HEALTH_MOUNTS) are checked as the agent checks them, a
// plain directory as one (see checkAll). A check stuck in the kernel is
// reported at its deadline and left behind; the process exits anyway.
func runCheck(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	cfg, paths, err := parseConfig("efs-health-agent check", args, getenv, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "efs-health-agent check: %v\n", err)
		return 2
	}
	nConfigured := len(cfg.Mounts)
	paths = append(cfg.Mounts, paths...)
	if len(paths) == 0 {
		fmt.Fprintln(stderr, "efs-health-agent check: no PATH given")
		return 2
	}
	for _, p := range paths {
		if err := agent.ValidatePath(p); err != nil {
			fmt.Fprintf(stderr, "efs-health-agent check: invalid PATH %q: %v\n", p, err)
			return 2
		}
	}
	ac := cfg.agentConfig()
	ac.Logger = slog.New(slog.DiscardHandler)
	specs, err := checkSpecs(cfg, &ac, paths)
	if err != nil {
		fmt.Fprintf(stderr, "efs-health-agent check: %s\n", pathesc.Display(err.Error()))
		return 2
	}
	onces, err := checkAll(ac, specs, nConfigured)
	if err != nil {
		fmt.Fprintf(stderr, "efs-health-agent check: %v\n", err)
		return 2
	}
	healthy := true
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	for i, p := range paths {
		plain := i < nConfigured && specs[i].FSType == ""
		healthy = printOnce(tw, p, onces[i], cfg.Timeout, plain) && healthy
	}
	tw.Flush()
	if !healthy {
		return 1
	}
	return 0
}

// checkSpecs describes each path for its check. The mount table tells a
// mount from the directory an unmount leaves behind and gives the TLS
// tunnel, as in the agent; it becomes ac's MountTable. A mount table that
// cannot be read is a bad HEALTH_MOUNTINFO, as for the agent: without it,
// no PATH could be told from the directory an unmount leaves behind.
func checkSpecs(cfg *config, ac *agent.Config, paths []string) ([]agent.Mount, error) {
	var table map[string]discovery.Entry
	w, err := discovery.New(discovery.Config{MountInfo: cfg.MountInfo, Paths: paths, Interval: cfg.DiscoveryInterval,
		StateDir: cfg.EFSStateDir, Logger: ac.Logger})
	if err == nil {
		table, err = w.Refresh()
	}
	if err != nil {
		return nil, fmt.Errorf("invalid %s=%q: %w", cfg.origin["mountinfo"], cfg.MountInfo, err)
	}
	ac.MountTable = w
	specs := make([]agent.Mount, len(paths))
	for i, p := range paths {
		specs[i] = agent.Mount{Path: p}
		if e, ok := table[p]; ok {
			specs[i] = e.Mount()
		}
	}
	return specs, nil
}

// checkAll checks every mount at once, each through agent.CheckOnce,
// and returns the first error (a configuration CheckOnce refuses is
// refused for every mount alike). The first nConfigured specs come from
// --mount (HEALTH_MOUNTS) and are checked as the agent checks its
// configured mounts: one that is no mount point as the plain directory it
// is. The others, PATH arguments, must be mount points: one the table has
// no mount at is not_mounted, untouched (agent.Config.RequireMountPoint).
func checkAll(ac agent.Config, specs []agent.Mount, nConfigured int) ([]agent.Once, error) {
	onces := make([]agent.Once, len(specs))
	errs := make([]error, len(specs))
	var wg sync.WaitGroup
	for i := range specs {
		cfg := ac
		cfg.RequireMountPoint = i >= nConfigured
		wg.Go(func() { onces[i], errs[i] = agent.CheckOnce(context.Background(), cfg, specs[i]) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return onces, nil
}

// printOnce prints the check of path p and reports whether it was
// healthy; plain says p was given with --mount and is no mount point, so
// it was checked as a plain directory. Paths and error messages are
// printed through pathesc.Display: a path may hold terminal escape
// sequences, bidi overrides or invalid UTF-8.
func printOnce(tw io.Writer, p string, o agent.Once, timeout time.Duration, plain bool) bool {
	fmt.Fprintf(tw, "%s\n", pathesc.Display(p))
	if plain {
		fmt.Fprintf(tw, "  %s\tplain\tnot a mount point: checked as a plain directory, as the agent checks a configured one (given as a PATH argument it would be not_mounted)\n", probes.OpMountTable)
	}
	if o.Outcome.TimedOut {
		op, reason := o.Outcome.FailedOp, o.Outcome.Reason
		fmt.Fprintf(tw, "  %s\tstuck\n", op)
		msg := fmt.Sprintf("timeout after %v in %s", timeout, op)
		if reason == probes.ReasonTunnelDown {
			msg = pathesc.Display(o.Outcome.Err.Error()) // says the tunnel was down too
		}
		fmt.Fprintf(tw, "  verdict\tUNHEALTHY\t%s (reason: %s)\n", msg, reason)
		fmt.Fprintf(tw, "  action\t%s\n", probes.Advice(reason))
		fmt.Fprintf(tw, "  cleanup\t%s\n", lateCleanup(o.Late))
		return false
	}
	res := o.Result
	if res.TunnelErr != nil {
		// The tunnel step is advisory: it explains a failure, it is
		// not one.
		fmt.Fprintf(tw, "  %s\tunreachable\t%s (not a failure by itself)\n", probes.OpTunnel, pathesc.Display(res.TunnelErr.Error()))
	}
	if res.WriteDenied != nil {
		fmt.Fprintf(tw, "  %s\tdenied\t%s: checked read-only instead (--require-write-check makes this a failure)\n",
			probes.OpWrite, pathesc.Display(res.WriteDenied.Error()))
	}
	if res.DirRefused != nil {
		fmt.Fprintf(tw, "  %s\trefused\t%s: checked read-only instead (--require-write-check makes this a failure)\n",
			probes.OpWrite, pathesc.Display(res.DirRefused.Error()))
	}
	for _, op := range res.Ops {
		status := "ok"
		if op.Err != nil {
			status = pathesc.Display(op.Err.Error())
		}
		fmt.Fprintf(tw, "  %s\t%.3f ms\t%s\n", op.Op, float64(op.Duration.Microseconds())/1000, status)
	}
	if res.Err != nil {
		reason := o.Outcome.Reason
		fmt.Fprintf(tw, "  verdict\tUNHEALTHY\t%s (reason: %s)\n", pathesc.Display(res.Err.Error()), reason)
		fmt.Fprintf(tw, "  action\t%s\n", probes.Advice(reason))
		return false
	}
	fmt.Fprintf(tw, "  verdict\tHEALTHY\t%s, %.3f ms\n", res.Mode, float64(res.Duration().Microseconds())/1000)
	return true
}

// lateCleanup says what became of the probe file of a check that hit its
// deadline: the check removes it by name if its stuck call returns before
// the process exits.
func lateCleanup(late <-chan probes.Result) string {
	select {
	case res := <-late:
		if len(res.Leftovers) > 0 {
			return fmt.Sprintf("the stuck call returned; probe file %s could not be removed", pathesc.Display(res.Leftovers[0]))
		}
		return "the stuck call returned before exit; the check removed its probe file"
	default:
		return "the stuck call has not returned; if it does before this command exits, the check removes its probe file, otherwise an agent on this node removes it later as a leftover"
	}
}
