package store

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/dockmaster/dockmaster/pipeline"
)

func TestDeployStoreConditionalWrites(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *DB) {
		s := db.Deploys()
		ctx := context.Background()
		due := time.Date(2025, 1, 7, 1, 0, 0, 0, time.UTC)
		if err := s.PutSchedule(ctx, pipeline.Schedule{Ticket: "DEPLOY-1", Environment: "prod", DueAt: due, WindowEnd: due.Add(time.Hour), Next: "Tue 02:00 CET"}); err != nil {
			t.Fatal(err)
		}
		if got, _ := s.DueSchedules(ctx, due.Add(-time.Second)); len(got) != 0 {
			t.Errorf("due early: %v", got)
		}
		got, err := s.DueSchedules(ctx, due)
		if err != nil || len(got) != 1 || !got[0].DueAt.Equal(due) || got[0].Next != "Tue 02:00 CET" {
			t.Fatalf("due = %+v %v", got, err)
		}
		// Two replicas claim the same due run: exactly one wins.
		err1 := s.ClaimSchedule(ctx, "DEPLOY-1", due, "a")
		err2 := s.ClaimSchedule(ctx, "DEPLOY-1", due, "a")
		if err1 != nil || !errors.Is(err2, pipeline.ErrConflict) {
			t.Errorf("claims: %v, %v", err1, err2)
		}
		if got, _ := s.DueSchedules(ctx, due); len(got) != 0 {
			t.Errorf("claimed still due: %v", got)
		}
		if err := s.ClaimSchedule(ctx, "DEPLOY-1", due, "b"); !errors.Is(err, pipeline.ErrConflict) {
			t.Errorf("claim by another replica: %v", err)
		}
		// A stale claim is taken over only from the replica that holds it.
		if err := s.TakeOverSchedule(ctx, "DEPLOY-1", "a", "b"); err != nil {
			t.Errorf("takeover: %v", err)
		}
		if err := s.TakeOverSchedule(ctx, "DEPLOY-1", "a", "c"); !errors.Is(err, pipeline.ErrConflict) {
			t.Errorf("second takeover: %v", err)
		}

		v := pipeline.Vote{Ticket: "DEPLOY-1", Stage: pipeline.ApprovalFinish, Voter: "alice", Approve: true, At: due}
		if err := s.AddVote(ctx, v); err != nil {
			t.Fatal(err)
		}
		if err := s.AddVote(ctx, v); !errors.Is(err, pipeline.ErrAlreadyVoted) {
			t.Errorf("second vote: %v", err)
		}
		if vs, _ := s.Votes(ctx, "DEPLOY-1", pipeline.ApprovalFinish); len(vs) != 1 || vs[0].Voter != "alice" || !vs[0].At.Equal(due) {
			t.Errorf("votes = %+v", vs)
		}

		h, err := s.CreateHold(ctx, pipeline.Hold{Ticket: "DEPLOY-1", App: "web", Environment: "prod", ToVersion: "2", State: pipeline.HoldOpen,
			FinishNonce: "f", RollbackNonce: "r", ExpiresAt: due.Add(24 * time.Hour), CreatedAt: due})
		if err != nil || h.ID == 0 {
			t.Fatal(h, err)
		}
		if again, _ := s.CreateHold(ctx, pipeline.Hold{Ticket: "DEPLOY-1", State: pipeline.HoldOpen, ToVersion: "x", FinishNonce: "x", RollbackNonce: "x"}); again.ID != h.ID || again.FinishNonce != "f" {
			t.Errorf("second hold = %+v", again)
		}
		if err := s.MarkReminded(ctx, h.ID, due); err != nil {
			t.Error(err)
		}
		if err := s.MarkReminded(ctx, h.ID, due); !errors.Is(err, pipeline.ErrConflict) {
			t.Errorf("second reminder: %v", err)
		}
		if err := s.DecideHold(ctx, h.ID, pipeline.HoldFinished, "alice"); err != nil {
			t.Fatal(err)
		}
		if err := s.DecideHold(ctx, h.ID, pipeline.HoldRolledBack, "bob"); !errors.Is(err, pipeline.ErrConflict) {
			t.Errorf("second decision: %v", err)
		}
		if open, _ := s.OpenHolds(ctx); len(open) != 0 {
			t.Errorf("open holds = %v", open)
		}
		if err := s.UseLink(ctx, "n1", "alice"); err != nil {
			t.Fatal(err)
		}
		if err := s.UseLink(ctx, "n1", "alice"); !errors.Is(err, pipeline.ErrLinkUsed) {
			t.Errorf("reuse: %v", err)
		}

		if err := s.AddBlock(ctx, pipeline.Block{App: "web", Environment: "prod", Version: "2", By: "bob", At: due}); err != nil {
			t.Fatal(err)
		}
		if b, ok, err := s.GetBlock(ctx, "web", "prod", "2"); !ok || err != nil || b.By != "bob" {
			t.Errorf("block = %+v %v %v", b, ok, err)
		}
		if err := s.RemoveBlock(ctx, "web", "prod", "2"); err != nil {
			t.Fatal(err)
		}
		if err := s.RemoveBlock(ctx, "web", "prod", "2"); !errors.Is(err, ErrNotFound) {
			t.Errorf("second unblock: %v", err)
		}
		if err := s.Record(ctx, pipeline.Record{Action: "deploy.finish", Actor: "alice", Source: "10.0.0.1", Environment: "prod", Target: "DEPLOY-1"}); err != nil {
			t.Fatal(err)
		}
		if log, _ := db.AuditLog(ctx, AuditQuery{Action: "deploy.finish"}); len(log) != 1 || log[0].Source != "10.0.0.1" {
			t.Errorf("audit = %+v", log)
		}
	})
}
