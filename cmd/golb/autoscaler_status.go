package main

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/golb/golb/core"
)

// autoscalerTable writes golb status's autoscaler table, one line per
// autoscaled group: its mode, the windowed figures, the requests held,
// and the last decision with its reason. It reports whether it wrote one.
//
//	AUTOSCALER  MODE   STABLE  PANIC  TARGET      READY  HELD  LAST DECISION
//	hello       panic  9.51    30.12  4 inflight  8      0     12:00:03 1 -> 8 up: panic inflight 30.12 over 6s / target 4 = 8 (…)
func autoscalerTable(w io.Writer, groups []core.GroupView) bool {
	wrote := false
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, g := range groups {
		a := g.Autoscaler
		if a == nil {
			continue
		}
		if !wrote {
			fmt.Fprintln(tw, "AUTOSCALER\tMODE\tSTABLE\tPANIC\tTARGET\tREADY\tHELD\tLAST DECISION")
			wrote = true
		}
		stable, burst := a.StableInflight, a.PanicInflight
		if a.Metric == "rps" {
			stable, burst = a.StableRPS, a.PanicRPS
		}
		last := "none yet"
		if d := a.LastDecision; d != nil {
			last = fmt.Sprintf("%s %d -> %d %s: %s", d.Time.Local().Format(time.TimeOnly), d.From, d.To, d.Direction, d.Reason)
		}
		fmt.Fprintf(tw, "%s\t%s\t%.2f\t%.2f\t%g %s\t%d\t%d\t%s\n", g.Name, a.Mode, stable, burst, a.Target, a.Metric, a.Ready, a.Held, last)
	}
	tw.Flush()
	return wrote
}
