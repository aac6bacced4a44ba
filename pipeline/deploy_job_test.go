package pipeline_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/dockmaster/dockmaster/pipeline"
	"github.com/dockmaster/dockmaster/pipeline/notify"
)

// jobTarget is a Jenkins deploy job: Deploy only triggers it; the stack
// it upgrades is observed (held is the version held, from what it replaced).
type jobTarget struct {
	mu         sync.Mutex
	held, from string
	observeErr error
	calls      []string
}

func (j *jobTarget) set(held, from string, err error) {
	j.mu.Lock()
	j.held, j.from, j.observeErr = held, from, err
	j.mu.Unlock()
}

func (j *jobTarget) call(c string) {
	j.mu.Lock()
	j.calls = append(j.calls, c)
	j.mu.Unlock()
}

func (j *jobTarget) Calls() string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return strings.Join(j.calls, ",")
}

func (j *jobTarget) Deploy(_ context.Context, t pipeline.Ticket) (pipeline.DeployOutcome, error) {
	j.call("trigger " + t.Version)
	return pipeline.DeployOutcome{Pending: true}, nil
}

func (j *jobTarget) Observe(_ context.Context, t pipeline.Ticket) (pipeline.DeployOutcome, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.observeErr != nil {
		return pipeline.DeployOutcome{}, j.observeErr
	}
	return pipeline.DeployOutcome{Held: j.held == t.Version, FromVersion: j.from}, nil
}

func (j *jobTarget) Finish(context.Context, pipeline.Ticket) error { j.call("finish"); return nil }

func (j *jobTarget) Rollback(context.Context, pipeline.Ticket) error { j.call("rollback"); return nil }

func (j *jobTarget) Health(context.Context, pipeline.Ticket) (pipeline.Health, error) {
	return pipeline.Health{Healthy: true}, nil
}

// hookSink keeps the notifications posted to it.
type hookSink struct {
	mu   sync.Mutex
	msgs []notify.Message
}

func (s *hookSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var m notify.Message
	if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	s.msgs = append(s.msgs, m)
	s.mu.Unlock()
}

func (s *hookSink) kinds() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var k []string
	for _, m := range s.msgs {
		k = append(k, m.Kind+" "+m.Ticket)
	}
	return strings.Join(k, ",")
}

// jobDeploys is a Deploys whose prod deploys through target; deploying
// returns a ticket whose job was triggered and is running.
func jobDeploys(t *testing.T, f *fixture, target *jobTarget, sink *hookSink) (*pipeline.Deploys, func(version string) pipeline.Ticket) {
	t.Helper()
	srv := httptest.NewServer(sink)
	t.Cleanup(srv.Close)
	f.pol.Channels = notify.Channels{WebhookURL: srv.URL}
	f.pol.Promote = false
	d, err := pipeline.NewDeploys(pipeline.DeploysOptions{Store: f.db.Deploys(), ID: "a", Clock: f.clock, Signer: f.signer,
		Policy:  func(app, env string) (*pipeline.EnvPolicy, error) { return f.pol, nil },
		Target:  func(env string) (pipeline.Target, error) { return target, nil },
		LinkURL: func(tok string) string { return "https://dm.example.test/links/" + tok }})
	if err != nil {
		t.Fatal(err)
	}
	tick(t, d) // the first tick resumes interrupted deploys; none here
	deploying := func(version string) pipeline.Ticket {
		t.Helper()
		tk := f.ticket(t, version, "prod")
		if err := d.DeployNow(context.Background(), tk.Key, pipeline.Actor{Name: "olivia"}, "test"); err != nil {
			t.Fatal(err)
		}
		d.Wait()
		got := f.state(t, tk.Key)
		if got.State != pipeline.TicketDeploying || got.Reason != "deploy job running" {
			t.Fatalf("%s after the trigger: %s (%s)", tk.Key, got.State, got.Reason)
		}
		return got
	}
	return d, deploying
}

// TestDeployJobHeldLikeBuiltin: a deploy job that leaves its version held
// puts the ticket in awaiting-confirmation with a hold, links and the held
// notification, and finishing acts through the target; a job that holds
// nothing settles the ticket done, as before.
func TestDeployJobHeldLikeBuiltin(t *testing.T) {
	ctx := context.Background()

	t.Run("held when the job ends", func(t *testing.T) {
		f, target, sink := newFixture(t), &jobTarget{}, &hookSink{}
		d, deploying := jobDeploys(t, f, target, sink)
		tk := deploying("2.0")
		target.set("2.0", "1.0", nil)
		if err := d.DeployFinished(ctx, tk.Key, true, "Jenkins result SUCCESS"); err != nil {
			t.Fatal(err)
		}
		got := f.state(t, tk.Key)
		if got.State != pipeline.TicketAwaitingConfirmation {
			t.Fatalf("after the job: %s (%s)", got.State, got.Reason)
		}
		h, err := f.db.Deploys().HoldFor(ctx, tk.Key)
		if err != nil || h.FromVersion != "1.0" || h.ToVersion != "2.0" || h.State != pipeline.HoldOpen {
			t.Fatalf("hold %+v, %v", h, err)
		}
		finish, rollback := d.LinkURLs(h)
		if !strings.HasPrefix(finish, "https://dm.example.test/links/") || finish == rollback {
			t.Fatalf("links %q %q", finish, rollback)
		}
		if k := sink.kinds(); k != notify.KindHeld+" "+tk.Key {
			t.Fatalf("notifications %q, want the held one", k)
		}
		if sink.msgs[0].FinishURL != finish || sink.msgs[0].RollbackURL != rollback {
			t.Errorf("held notification links %q %q, want %q %q", sink.msgs[0].FinishURL, sink.msgs[0].RollbackURL, finish, rollback)
		}
		// A repeated notification of the same build changes nothing.
		if err := d.DeployFinished(ctx, tk.Key, true, "Jenkins result SUCCESS"); err != nil {
			t.Fatal(err)
		}
		if _, err := d.Confirm(ctx, tk.Key, pipeline.Actor{Name: "olivia"}); err != nil {
			t.Fatal(err)
		}
		if got := f.state(t, tk.Key); got.State != pipeline.TicketDone || target.Calls() != "trigger 2.0,finish" {
			t.Fatalf("after confirm: %s, calls %s", got.State, target.Calls())
		}
		// The link's page after the finish still shows how the kept version runs.
		fin, _ := d.Links(h)
		if p, err := d.OpenLink(ctx, fin); !errors.Is(err, pipeline.ErrLinkUsed) || !p.Health.Healthy || p.Hold.State != pipeline.HoldFinished {
			t.Errorf("finished link page: health %+v hold %s, %v", p.Health, p.Hold.State, err)
		}
	})

	t.Run("held while the job waits", func(t *testing.T) {
		f, target, sink := newFixture(t), &jobTarget{}, &hookSink{}
		d, deploying := jobDeploys(t, f, target, sink)
		tk := deploying("2.0")
		tick(t, d) // upgrading: nothing held yet
		if got := f.state(t, tk.Key); got.State != pipeline.TicketDeploying {
			t.Fatalf("before the hold: %s", got.State)
		}
		target.set("2.0", "1.0", nil)
		tick(t, d)
		if got := f.state(t, tk.Key); got.State != pipeline.TicketAwaitingConfirmation {
			t.Fatalf("the tick did not see the hold: %s (%s)", got.State, got.Reason)
		}
		// The job then ends (its wait saw the hold): the ticket stays held.
		if err := d.DeployFinished(ctx, tk.Key, true, "Jenkins result SUCCESS"); err != nil {
			t.Fatal(err)
		}
		if got := f.state(t, tk.Key); got.State != pipeline.TicketAwaitingConfirmation || sink.kinds() != notify.KindHeld+" "+tk.Key {
			t.Fatalf("after the job: %s, notifications %q", got.State, sink.kinds())
		}
		if err := d.Rollback(ctx, tk.Key, pipeline.Actor{Name: "olivia"}); err != nil {
			t.Fatal(err)
		}
		if got := f.state(t, tk.Key); got.State != pipeline.TicketRolledBack || target.Calls() != "trigger 2.0,rollback" {
			t.Fatalf("after rollback: %s, calls %s", got.State, target.Calls())
		}
	})

	t.Run("not held: done", func(t *testing.T) {
		f, target, sink := newFixture(t), &jobTarget{}, &hookSink{}
		d, deploying := jobDeploys(t, f, target, sink)
		tk := deploying("2.0")
		target.set("1.5", "1.0", nil) // another ticket's hold is not this one's
		tick(t, d)
		if err := d.DeployFinished(ctx, tk.Key, true, "Jenkins result SUCCESS"); err != nil {
			t.Fatal(err)
		}
		if got := f.state(t, tk.Key); got.State != pipeline.TicketDone || got.Reason != "deploy job succeeded" {
			t.Fatalf("after the job: %s (%s)", got.State, got.Reason)
		}
		if _, err := f.db.Deploys().HoldFor(ctx, tk.Key); err == nil {
			t.Errorf("a hold was made for a deploy that holds nothing")
		}
	})

	t.Run("stack unreadable: failed, event not retried", func(t *testing.T) {
		f, target, sink := newFixture(t), &jobTarget{}, &hookSink{}
		d, deploying := jobDeploys(t, f, target, sink)
		tk := deploying("2.0")
		target.set("", "", errors.New("web/web holds version 1.5"))
		tick(t, d) // the tick leaves errors to the job's end
		if err := d.DeployFinished(ctx, tk.Key, true, "Jenkins result SUCCESS"); err != nil {
			t.Fatal(err)
		}
		if got := f.state(t, tk.Key); got.State != pipeline.TicketFailed || !strings.Contains(got.Reason, "holds version 1.5") {
			t.Fatalf("after the job: %s (%s)", got.State, got.Reason)
		}
	})

	t.Run("job failed", func(t *testing.T) {
		f, target, sink := newFixture(t), &jobTarget{}, &hookSink{}
		d, deploying := jobDeploys(t, f, target, sink)
		tk := deploying("2.0")
		if err := d.DeployFinished(ctx, tk.Key, false, "Jenkins result FAILURE"); err != nil {
			t.Fatal(err)
		}
		if got := f.state(t, tk.Key); got.State != pipeline.TicketFailed {
			t.Fatalf("after a failed job: %s (%s)", got.State, got.Reason)
		}
	})
}
