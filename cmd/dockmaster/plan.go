package main

import (
	"context"
	"fmt"
	"io"
	"os/signal"
	"syscall"

	"github.com/dockmaster/dockmaster/internal/server"
)

// errDoesNotFit makes `dockmaster plan` exit 1 after printing a plan in
// which some service fits nowhere.
var errDoesNotFit = fmt.Errorf("some containers fit on no host (reasons above)")

// runPlan shows where a stack's containers would go, changing nothing.
func runPlan(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("plan", "plan -f docker-compose.yml [-r rancher-compose.yml] -e ENV [-s STACK] [--set K=V]", stderr)
	cf := addClientFlags(fs)
	sf := addStackFileFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("plan: unexpected arguments %q (flags go before them?)", fs.Args())
	}
	var p upParams
	if err := p.readFiles(*sf.file, *sf.rfile); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	c, e, err := cf.clientIn(ctx, *sf.env, "")
	if err != nil {
		return err
	}
	req := server.PlanRequest{StackFiles: p.Req.StackFiles}
	req.Variables = sf.vars
	var out server.PlanJSON
	if err := c.post(ctx, stackPath(e, sf.stack())+"/plan", req, &out); err != nil {
		return err
	}
	if cf.wantJSON() {
		if err := writeJSON(stdout, out); err != nil {
			return err
		}
	} else {
		printPlan(stdout, out)
	}
	if !out.Fits {
		return errDoesNotFit
	}
	return nil
}

// printPlan writes one row per planned action, then each service that
// does not fit with its reasons host by host.
func printPlan(w io.Writer, p server.PlanJSON) {
	for _, warn := range p.Warnings {
		fmt.Fprintln(w, "warning:", warn)
	}
	t := newTable(w)
	fmt.Fprintln(t, "SERVICE\tCHANGE\tACTION\tCONTAINER\tHOST\tREASON")
	for _, s := range p.Services {
		if len(s.Actions) == 0 && s.Error == "" {
			fmt.Fprintf(t, "%s\t%s\t-\t-\t-\tnothing to do\n", s.Service, s.Change)
		}
		for _, a := range s.Actions {
			fmt.Fprintf(t, "%s\t%s\t%s\t%s\t%s\t%s\n", s.Service, s.Change, a.Action, a.Container, a.Host, a.Reason)
		}
	}
	t.Flush()
	for _, s := range p.Services {
		if s.Error == "" {
			continue
		}
		fmt.Fprintf(w, "\n%s does not fit:\n", s.Service)
		if len(s.Reasons) == 0 {
			fmt.Fprintf(w, "  %s\n", s.Error)
		}
		for _, r := range s.Reasons {
			fmt.Fprintf(w, "  %s: %s\n", r.Host, r.Reason)
		}
	}
}
