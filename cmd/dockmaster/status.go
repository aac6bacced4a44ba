package main

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"github.com/dockmaster/dockmaster/internal/server"
)

// runOverview prints GET /api/v1/status: every app in every environment
// the key may view. (`dockmaster status -e ENV` is the per-stack view.)
func runOverview(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("overview", "overview [--env ENV] [--app APP|STACK] [-o table|json]", stderr)
	env := fs.String("env", "", "only this environment")
	fs.StringVar(env, "e", "", "short for --env")
	app := fs.String("app", "", "only this app (or stack deployed outside the pipeline)")
	cf := addClientFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("overview: unexpected argument %q", fs.Arg(0))
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	q := url.Values{}
	if *env != "" {
		q.Set("env", *env)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var m server.StatusMatrix
	if err := c.get(ctx, "/api/v1/status", q, &m); err != nil {
		return err
	}
	if *app != "" {
		var keep []server.AppStatus
		for _, a := range m.Apps {
			if strings.EqualFold(a.App, *app) || a.App == "" && strings.EqualFold(a.Stack, *app) {
				keep = append(keep, a)
			}
		}
		if keep == nil {
			return fmt.Errorf("overview: no app or stack %q among %d visible", *app, len(m.Apps))
		}
		m.Apps = keep
	}
	if cf.wantJSON() {
		return writeJSON(stdout, m)
	}
	return writeOverview(stdout, m)
}

// writeOverview prints one line per app and environment.
func writeOverview(w io.Writer, m server.StatusMatrix) error {
	tw := newTable(w)
	fmt.Fprintln(tw, "APP\tENV\tVERSION\tVS PREVIOUS\tSTATE\tHEALTHY\tDEPLOYED\tPENDING")
	for _, a := range m.Apps {
		for _, c := range a.Cells {
			version, cmp, state, health, deployed, pending := orDash(c.Version), "-", orDash(c.State), "-", "-", "-"
			if c.Compare != "" && c.Compare != "same" {
				cmp = c.Compare + " " + c.Previous
				if c.PreviousVersion != "" {
					cmp += " (" + c.PreviousVersion + ")"
				}
			} else if c.Compare == "same" {
				cmp = "same as " + c.Previous
			}
			if !c.InPipeline && a.App != "" {
				state = "not in pipeline"
			}
			if c.OldVersion != "" {
				state += " (from " + c.OldVersion + ")"
			}
			if c.Health != nil {
				health = fmt.Sprintf("%d/%d", c.Health.Healthy, c.Health.Scale)
			}
			if c.DeployedBy != "" || !c.DeployedAt.IsZero() {
				at := ""
				if !c.DeployedAt.IsZero() {
					at = c.DeployedAt.UTC().Format("2006-01-02 15:04")
				}
				deployed = strings.TrimSpace(c.DeployedBy + " " + at)
				if c.Ticket != "" {
					deployed += " " + c.Ticket
				}
			}
			var ps []string
			for _, p := range c.Pending {
				ps = append(ps, p.Key+" "+p.Version+" "+p.State)
			}
			if len(ps) > 0 {
				pending = strings.Join(ps, "; ")
			}
			if c.Error != "" {
				state = "error: " + c.Error
			}
			name := a.App
			if name == "" {
				name = a.Stack + " (stack)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", name, c.Environment, version, cmp, state, health, deployed, pending)
		}
	}
	return tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
