package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/dockmaster/dockmaster/internal/server"
)

// TestOverviewTable: an app's row and a stack deployed outside the
// pipeline, whose row is named after the stack.
func TestOverviewTable(t *testing.T) {
	at := time.Date(2026, 11, 2, 9, 30, 0, 0, time.UTC)
	m := server.StatusMatrix{Environments: []string{"prod"}, Apps: []server.AppStatus{
		{App: "Shop", Stack: "shop", Cells: []server.CellStatus{{Environment: "prod", InPipeline: true, Version: "1.1.0",
			State: "active", Health: &server.Health{Scale: 2, Healthy: 2}, DeployedBy: "alice", DeployedAt: at, Ticket: "DEPLOY-1"}}},
		{Stack: "tools", Cells: []server.CellStatus{{Environment: "prod", Version: "3.4", State: "active",
			Health: &server.Health{Scale: 1, Healthy: 1}, DeployedAt: at}}},
	}}
	var out bytes.Buffer
	if err := writeOverview(&out, m); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	want := [][]string{
		{"APP", "ENV", "VERSION", "VS", "PREVIOUS", "STATE", "HEALTHY", "DEPLOYED", "PENDING"},
		{"Shop", "prod", "1.1.0", "-", "active", "2/2", "alice", "2026-11-02", "09:30", "DEPLOY-1", "-"},
		{"tools", "(stack)", "prod", "3.4", "-", "active", "1/1", "2026-11-02", "09:30", "-"},
	}
	if len(lines) != len(want) {
		t.Fatalf("overview:\n%s", out.String())
	}
	for i, w := range want {
		if got := strings.Fields(lines[i]); strings.Join(got, " ") != strings.Join(w, " ") {
			t.Errorf("line %d = %q, want %q", i, got, w)
		}
	}
}
