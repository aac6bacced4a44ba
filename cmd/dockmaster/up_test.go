package main

import (
	"bytes"
	"testing"

	"github.com/dockmaster/dockmaster/internal/server"
)

// TestProgressLines: a line per change of a service's counts, each host
// with started and healthy of planned; a count that did not move is not
// printed again, and a new phase counts afresh.
func TestProgressLines(t *testing.T) {
	var out, errb bytes.Buffer
	p := newProgress(&out, false)
	for _, e := range []server.EventJSON{
		{Service: "web", Step: "create", Host: "h1"},
		{Service: "web", Step: "create", Host: "h2"},
		{Service: "web", Step: "healthy", Host: "h1", HostStarted: 1, HostHealthy: 1, Scale: 2},
		{Service: "web", Step: "healthy", Host: "h1", HostStarted: 1, HostHealthy: 1, Scale: 2},
		{Service: "web", Step: "healthy", Host: "h2", HostStarted: 1, HostHealthy: 1, Scale: 2},
		{Service: "web", Step: "state", Message: "upgrading"},
		{Service: "web", Step: "healthy", Host: "h2", HostStarted: 1, HostHealthy: 1, Scale: 2},
		{Service: "web", Step: "warning", Message: "no health check"},
	} {
		p.event(e, &errb)
	}
	want := "web: h1 started 1/1 healthy 1/1, h2 started 1/1 healthy 0/1 (scale 2)\n" +
		"web: h1 started 1/1 healthy 1/1, h2 started 1/1 healthy 1/1 (scale 2)\n" +
		"web: upgrading\n" +
		"web: h2 started 1/1 healthy 1/1 (scale 2)\n"
	if out.String() != want {
		t.Errorf("progress:\n%s\nwant:\n%s", out.String(), want)
	}
	if errb.String() != "warning: no health check\n" {
		t.Errorf("stderr = %q", errb.String())
	}
}
