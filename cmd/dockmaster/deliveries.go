package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/dockmaster/dockmaster/internal/store"
)

const deliveriesSynopsis = "deliveries [list | show ID | replay ID] [--provider P] [--verdict V] [--repository R] [--limit N] [--before ID] [--url URL] [-o table|json]"

// runDeliveries lists, shows and replays received webhooks.
func runDeliveries(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("deliveries", deliveriesSynopsis, stderr)
	cf := addClientFlags(fs)
	provider := fs.String("provider", "", "list: only this provider (github, gitlab, gitea, ...)")
	verdict := fs.String("verdict", "", "list: only accepted, ignored or ping")
	repo := fs.String("repository", "", "list: only this repository full name (or Jenkins job, image repository)")
	limit := fs.Int("limit", 50, "list: at most this many (up to 1000)")
	before := fs.Int64("before", 0, "list: only deliveries older than this id (the cursor printed after a full page)")
	rest, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	sub := "list"
	if len(rest) > 0 {
		sub, rest = rest[0], rest[1:]
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	ctx := context.Background()
	switch sub {
	case "list", "ls":
		if len(rest) > 0 {
			return usagef("deliveries list takes no arguments, got %q", rest)
		}
		q := url.Values{}
		for k, v := range map[string]string{"provider": *provider, "verdict": *verdict, "repository": *repo} {
			if v != "" {
				q.Set(k, v)
			}
		}
		q.Set("limit", strconv.Itoa(*limit))
		if *before > 0 {
			q.Set("before", strconv.FormatInt(*before, 10))
		}
		var out struct {
			Deliveries []store.DeliverySummary `json:"deliveries"`
			NextBefore int64                   `json:"next_before"`
		}
		var raw json.RawMessage
		if err := c.get(ctx, "/api/v1/deliveries", q, &raw); err != nil {
			return err
		}
		if cf.wantJSON() {
			return writeJSON(stdout, raw)
		}
		if err := json.Unmarshal(raw, &out); err != nil {
			return fmt.Errorf("deliveries: answer: %w", err)
		}
		return printDeliveries(stdout, out.Deliveries, out.NextBefore)
	case "show", "replay":
		if len(rest) != 1 {
			return usagef("usage: dockmaster deliveries %s ID", sub)
		}
		id, err := strconv.ParseInt(rest[0], 10, 64)
		if err != nil || id <= 0 {
			return usagef("deliveries %s: ID must be a positive integer, got %q", sub, rest[0])
		}
		var raw json.RawMessage
		if sub == "replay" {
			if err := c.post(ctx, fmt.Sprintf("/api/v1/deliveries/%d/replay", id), nil, &raw); err != nil {
				return err
			}
			if cf.wantJSON() {
				return writeJSON(stdout, raw)
			}
			var r struct {
				Event int64 `json:"event"`
			}
			if err := json.Unmarshal(raw, &r); err != nil {
				return fmt.Errorf("deliveries replay: answer: %w", err)
			}
			fmt.Fprintf(stdout, "delivery %d replayed as event %d\n", id, r.Event)
			return nil
		}
		if err := c.get(ctx, fmt.Sprintf("/api/v1/deliveries/%d", id), nil, &raw); err != nil {
			return err
		}
		if cf.wantJSON() {
			return writeJSON(stdout, raw)
		}
		return printDelivery(stdout, raw)
	}
	return usagef("deliveries: unknown subcommand %q (want list, show or replay)", sub)
}

func printDeliveries(w io.Writer, ds []store.DeliverySummary, next int64) error {
	tw := newTable(w)
	fmt.Fprintln(tw, "ID\tRECEIVED\tPROVIDER\tEVENT\tREPOSITORY\tVERDICT\tDUPS\tREPLAYS\tREASON")
	for _, d := range ds {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\n", d.ID, d.ReceivedAt.Local().Format(time.DateTime),
			d.Provider, dash(d.EventName), dash(d.Repository), d.Verdict, d.Duplicates, d.Replays, dash(d.Reason))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if next > 0 {
		fmt.Fprintf(w, "more: --before %d\n", next)
	}
	return nil
}

func printDelivery(w io.Writer, raw json.RawMessage) error {
	var d struct {
		store.DeliverySummary
		Headers http.Header     `json:"headers"`
		Event   json.RawMessage `json:"event"`
		Events  []store.EventRef
		Body    json.RawMessage `json:"body"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		return fmt.Errorf("deliveries show: answer: %w", err)
	}
	tw := newTable(w)
	row := func(k, v string) { fmt.Fprintf(tw, "%s:\t%s\n", k, v) }
	row("Delivery", fmt.Sprintf("%d (%s %s)", d.ID, d.Provider, d.DeliveryID))
	row("Received", d.ReceivedAt.Local().Format(time.RFC3339))
	row("Event", dash(d.EventName))
	row("Repository", dash(d.Repository))
	row("Verdict", string(d.Verdict))
	if d.Reason != "" {
		row("Reason", d.Reason)
	}
	row("Duplicates", strconv.Itoa(d.Duplicates))
	var evs []string
	for _, e := range d.Events {
		evs = append(evs, fmt.Sprintf("%d (%s)", e.ID, e.Source))
	}
	row("Events", dash(strings.Join(evs, ", ")))
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "\nHeaders (secrets redacted):")
	keys := make([]string, 0, len(d.Headers))
	for k := range d.Headers {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "  %s: %s\n", k, strings.Join(d.Headers[k], ", "))
	}
	if len(d.Event) > 0 && string(d.Event) != "null" {
		fmt.Fprintln(w, "\nNormalized event:")
		if err := writeIndented(w, d.Event); err != nil {
			return err
		}
	}
	fmt.Fprintln(w, "\nBody:")
	var s string
	if json.Unmarshal(d.Body, &s) == nil { // not JSON: sent as a string
		_, err := fmt.Fprintln(w, s)
		return err
	}
	return writeIndented(w, d.Body)
}

func writeIndented(w io.Writer, raw json.RawMessage) error {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return err
	}
	return writeJSON(w, v)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
