package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/efs-health-agent/efs-health-agent/agent"
	"github.com/efs-health-agent/efs-health-agent/internal/pathesc"
	"github.com/efs-health-agent/efs-health-agent/probes"
)

// checkOutcome is what a one-shot check of one path produced.
type checkOutcome struct {
	res      probes.Result
	timedOut bool
	stuckOp  probes.Op
}

// opTracker remembers the operation in progress, to name it on a timeout.
type opTracker struct{ cur chan probes.Op }

func (t opTracker) OpStart(op probes.Op) {
	select {
	case <-t.cur:
	default:
	}
	t.cur <- op
}
func (opTracker) OpEnd(probes.Op, time.Duration, error) {}

// runCheck implements `efs-health-agent check PATH...`: one check per path,
// run concurrently, each under the configured timeout. A check stuck in
// the kernel is reported at its deadline and left behind; the process
// exits anyway.
func runCheck(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	cfg, paths, err := parseConfig("efs-health-agent check", args, getenv, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "efs-health-agent check: %v\n", err)
		return 2
	}
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
	outs := make([]chan checkOutcome, len(paths))
	for i, p := range paths {
		outs[i] = make(chan checkOutcome, 1)
		go func(p string, out chan<- checkOutcome) {
			tr := opTracker{cur: make(chan probes.Op, 1)}
			done := make(chan probes.Result, 1)
			ctx, cancel := context.WithCancel(context.Background())
			go func() {
				done <- probes.Check(ctx, p, probes.Options{Hostname: cfg.NodeName, Observer: tr})
			}()
			select {
			case r := <-done:
				cancel()
				out <- checkOutcome{res: r}
			case <-time.After(cfg.Timeout):
				cancel()
				op := probes.OpOpen
				select {
				case op = <-tr.cur:
				default:
				}
				out <- checkOutcome{timedOut: true, stuckOp: op}
			}
		}(p, outs[i])
	}
	// Paths and error messages are printed through pathesc.Display: a path
	// may hold terminal escape sequences, bidi overrides or invalid UTF-8.
	healthy := true
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	for i, p := range paths {
		o := <-outs[i]
		fmt.Fprintf(tw, "%s\n", pathesc.Display(p))
		if o.timedOut {
			healthy = false
			fmt.Fprintf(tw, "  %s\tstuck\n", o.stuckOp)
			fmt.Fprintf(tw, "  verdict\tUNHEALTHY\ttimeout after %v in %s (reason: %s)\n", cfg.Timeout, o.stuckOp, probes.ReasonTimeout)
			fmt.Fprintf(tw, "  action\t%s\n", probes.Advice(probes.ReasonTimeout))
			continue
		}
		for _, op := range o.res.Ops {
			status := "ok"
			if op.Err != nil {
				status = pathesc.Display(op.Err.Error())
			}
			fmt.Fprintf(tw, "  %s\t%.3f ms\t%s\n", op.Op, float64(op.Duration.Microseconds())/1000, status)
		}
		if o.res.Err != nil {
			healthy = false
			reason := probes.Classify(o.res.Err)
			fmt.Fprintf(tw, "  verdict\tUNHEALTHY\t%s (reason: %s)\n", pathesc.Display(o.res.Err.Error()), reason)
			fmt.Fprintf(tw, "  action\t%s\n", probes.Advice(reason))
		} else {
			fmt.Fprintf(tw, "  verdict\tHEALTHY\t%s, %.3f ms\n", o.res.Mode, float64(o.res.Duration().Microseconds())/1000)
		}
	}
	tw.Flush()
	if !healthy {
		return 1
	}
	return 0
}
