package main

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/dockmaster/dockmaster/internal/server"
)

const hostActionSynopsis = "host drain|activate|rebalance HOST -e ENV [--dry-run]"

// hostAction reports whether args (of `dockmaster host`) name drain,
// activate or rebalance: runHost (registration) hands those to
// runHostAction.
func hostAction(args []string) bool {
	for _, a := range args {
		if !strings.HasPrefix(a, "-") {
			return a == "drain" || a == "activate" || a == "rebalance"
		}
	}
	return false
}

// runHostAction drains, activates or rebalances one host of an
// environment.
func runHostAction(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("host", hostActionSynopsis, stderr)
	cf := addClientFlags(fs)
	env := envFlag(fs)
	dry := fs.Bool("dry-run", false, "drain, rebalance: show the scheduler's plan, change nothing")
	timeout := fs.Duration("timeout", 30*time.Minute, "how long to wait for the moves (each waits for health)")
	rest, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(rest) != 2 {
		return usagef("usage: dockmaster %s", hostActionSynopsis)
	}
	action, host := rest[0], rest[1]
	switch action {
	case "drain", "rebalance":
	case "activate":
		if *dry {
			return usagef("host activate: --dry-run is for drain and rebalance")
		}
	default:
		return usagef("host: unknown action %q (drain, activate or rebalance)", action)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	c, e, err := cf.clientIn(ctx, *env, "")
	if err != nil {
		return err
	}
	c.http.Timeout = *timeout
	path := "/api/v1/environments/" + url.PathEscape(e) + "/hosts/" + url.PathEscape(host) + "/" + action
	if *dry {
		path += "?dry_run=true"
	}
	var out server.HostActionJSON
	// A failed or partial drain answers an error naming each service that
	// could not move, with every host's reason; main prints it.
	if err := c.post(ctx, path, nil, &out); err != nil {
		return err
	}
	if cf.wantJSON() {
		return writeJSON(stdout, out)
	}
	printHostAction(stdout, action, out)
	return nil
}

func printHostAction(w io.Writer, action string, out server.HostActionJSON) {
	switch {
	case out.DryRun:
		fmt.Fprintf(w, "%s %s (dry run):\n%s", action, out.Host, indent(out.Plan))
	case action == "activate":
		fmt.Fprintf(w, "host %s is active; containers return to it only with `dockmaster host rebalance %s`\n", out.Host, out.Host)
		return
	default:
		fmt.Fprintf(w, "%s %s: %d container(s) moved\n", action, out.Host, len(out.Moved))
		if len(out.Moved) > 0 {
			t := newTable(w)
			fmt.Fprintln(t, "SERVICE\tOLD\tFROM\tNEW\tTO")
			for _, m := range out.Moved {
				fmt.Fprintf(t, "%s/%s\t%s\t%s\t%s\t%s\n", m.Stack, m.Service, m.Old, m.From, m.New, m.To)
			}
			t.Flush()
		}
	}
	for _, l := range out.Left {
		fmt.Fprintln(w, "left:", l)
	}
	for _, r := range out.Reasons {
		fmt.Fprintf(w, "  %s: %s\n", r.Host, r.Reason)
	}
}

func indent(s string) string {
	if s == "" {
		return ""
	}
	return "  " + strings.ReplaceAll(strings.TrimSuffix(s, "\n"), "\n", "\n  ") + "\n"
}
