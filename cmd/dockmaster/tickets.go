package main

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"os/signal"
	"syscall"
	"time"

	"github.com/dockmaster/dockmaster/internal/server"
	"github.com/dockmaster/dockmaster/pipeline"
)

// runTickets lists tickets: dockmaster tickets [--app A] [--env E] [--state S].
func runTickets(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("tickets", "tickets [--app A] [--env E] [--state S] [-o json]", stderr)
	cf := addClientFlags(fs)
	app, env, state := fs.String("app", "", "only this app"), fs.String("env", "", "only this environment"), fs.String("state", "", "only this state")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	q := url.Values{}
	for k, v := range map[string]string{"app": *app, "env": *env, "state": *state} {
		if v != "" {
			q.Set(k, v)
		}
	}
	var ts []server.TicketJSON
	if err := c.get(context.Background(), "/api/v1/tickets", q, &ts); err != nil {
		return err
	}
	if cf.wantJSON() {
		return writeJSON(stdout, ts)
	}
	w := newTable(stdout)
	fmt.Fprintln(w, "TICKET\tAPP\tVERSION\tENV\tSTATE\tNOTE")
	for _, t := range ts {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", t.Key, t.App, t.Version, t.Environment, t.State, t.Reason)
	}
	return w.Flush()
}

const ticketSynopsis = "ticket create --app A --branch B --env E | ticket show|approve|confirm|reject|rollback|schedule KEY | ticket deploy-now KEY --reason R"

// runTicket is "ticket create|show|approve|confirm|reject|rollback|schedule|deploy-now".
func runTicket(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("ticket", ticketSynopsis, stderr)
	cf := addClientFlags(fs)
	app, branch, env := fs.String("app", "", "app"), fs.String("branch", "", "branch of an earlier successful build"), fs.String("env", "", "environment")
	reason := fs.String("reason", "", "why the window is overridden (deploy-now)")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return usagef("usage: dockmaster %s", ticketSynopsis)
	}
	sub, pos := pos[0], pos[1:]
	c, err := cf.client()
	if err != nil {
		return err
	}
	ctx := context.Background()
	var out server.TicketJSON
	switch sub {
	case "create":
		if *app == "" || *branch == "" || *env == "" {
			return usagef("ticket create: --app, --branch and --env are required")
		}
		err = c.post(ctx, "/api/v1/tickets", map[string]string{"app": *app, "branch": *branch, "env": *env}, &out)
	case "show", "reject", "rollback", "deploy-now", "confirm", "approve", "schedule":
		if len(pos) != 1 {
			return usagef("ticket %s KEY", sub)
		}
		key := url.PathEscape(pos[0])
		if sub == "show" {
			err = c.get(ctx, "/api/v1/tickets/"+key, nil, &out)
		} else {
			var body any
			if sub == "deploy-now" {
				if *reason == "" {
					return usagef("ticket deploy-now: --reason is required (it is audited)")
				}
				body = map[string]string{"reason": *reason}
			}
			err = c.post(ctx, "/api/v1/tickets/"+key+"/"+sub, body, &out)
		}
	default:
		return usagef("ticket %s: unknown (create, show, approve, reject, confirm, rollback, deploy-now, schedule)", sub)
	}
	if err != nil {
		return err
	}
	return printTicket(stdout, cf, out)
}

func printTicket(w io.Writer, cf *clientFlags, t server.TicketJSON) error {
	if cf.wantJSON() {
		return writeJSON(w, t)
	}
	fmt.Fprintf(w, "%s: %s %s on %s: %s", t.Key, t.App, t.Version, t.Environment, t.State)
	if t.Reason != "" {
		fmt.Fprintf(w, " (%s)", t.Reason)
	}
	fmt.Fprintln(w)
	if t.Approval != nil {
		fmt.Fprintf(w, "  deploy approval: %s\n", t.Approval)
	}
	if t.Finish != nil {
		fmt.Fprintf(w, "  finish approval: %s\n", t.Finish)
	}
	return nil
}

// ticketAction makes approve and confirm: dockmaster approve DEPLOY-111.
func ticketAction(action string) func(args []string, stdout, stderr io.Writer) error {
	return func(args []string, stdout, stderr io.Writer) error {
		return runTicket(append([]string{action}, args...), stdout, stderr)
	}
}

// runWait follows a ticket until it reaches --for (upgraded or done),
// printing each change; it fails when the ticket ends anywhere else.
func runWait(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("wait", "wait KEY --for upgraded|done [--timeout D]", stderr)
	cf := addClientFlags(fs)
	target := fs.String("for", "done", "upgraded (held, awaiting confirmation) or done")
	timeout := fs.Duration("timeout", time.Hour, "give up after this long")
	every := fs.Duration("interval", 2*time.Second, "poll interval")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("wait KEY --for upgraded|done")
	}
	want := map[string]pipeline.TicketState{"upgraded": pipeline.TicketAwaitingConfirmation, "done": pipeline.TicketDone}[*target]
	if want == "" {
		return usagef("--for %q: want upgraded or done", *target)
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	last := ""
	for {
		var t server.TicketJSON
		if err := c.get(ctx, "/api/v1/tickets/"+url.PathEscape(pos[0]), nil, &t); err != nil {
			return err
		}
		line := string(t.State) + " " + t.Reason
		if line != last {
			fmt.Fprintf(stdout, "%s %s: %s", time.Now().Format("15:04:05"), t.Key, t.State)
			if t.Reason != "" {
				fmt.Fprintf(stdout, " (%s)", t.Reason)
			}
			fmt.Fprintln(stdout)
			last = line
		}
		switch {
		case t.State == want:
			return nil
		case t.State == pipeline.TicketDone && want == pipeline.TicketAwaitingConfirmation:
			return nil // passed through upgraded already
		case t.State == pipeline.TicketRolledBack, t.State == pipeline.TicketFailed, t.State == pipeline.TicketCanceled, t.State == pipeline.TicketExpired:
			return fmt.Errorf("%s ended %s: %s", t.Key, t.State, t.Reason)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: still %s after %s: %w", t.Key, t.State, *timeout, ctx.Err())
		case <-time.After(*every):
		}
	}
}
