package pipeline_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dockmaster/dockmaster/internal/store"
	"github.com/dockmaster/dockmaster/internal/store/storetest"
	"github.com/dockmaster/dockmaster/pipeline"
)

// fakeTarget records calls; a held upgrade is a version with a previous one.
type fakeTarget struct {
	mu      sync.Mutex
	current string
	held    string
	calls   []string
	healthy bool
	delay   time.Duration // a deploy takes this long
}

func (f *fakeTarget) Deploy(_ context.Context, t pipeline.Ticket) (pipeline.DeployOutcome, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	time.Sleep(f.delay)
	f.calls = append(f.calls, "deploy "+t.Version)
	if f.current == "" {
		f.current = t.Version
		return pipeline.DeployOutcome{}, nil
	}
	f.held = t.Version
	return pipeline.DeployOutcome{Held: true, FromVersion: f.current}, nil
}

func (f *fakeTarget) Finish(context.Context, pipeline.Ticket) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "finish")
	f.current, f.held = f.held, ""
	return nil
}

func (f *fakeTarget) Rollback(context.Context, pipeline.Ticket) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "rollback")
	f.held = ""
	return nil
}

func (f *fakeTarget) Health(context.Context, pipeline.Ticket) (pipeline.Health, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return pipeline.Health{Healthy: f.healthy, Detail: "fake"}, nil
}

func (f *fakeTarget) Calls() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return strings.Join(f.calls, ",")
}

type fixture struct {
	db     *store.DB
	now    time.Time
	mu     sync.Mutex
	target *fakeTarget
	pol    *pipeline.EnvPolicy
	signer *pipeline.Signer
}

func (f *fixture) clock() time.Time { f.mu.Lock(); defer f.mu.Unlock(); return f.now }
func (f *fixture) set(t time.Time)  { f.mu.Lock(); f.now = t; f.mu.Unlock() }

func newFixture(t *testing.T) *fixture {
	db := storetest.Open(t)
	w, err := pipeline.WindowPolicy{Allow: []pipeline.WindowSpec{{Cron: "0 2 * * 1-5", Duration: 2 * time.Hour, Zone: "Europe/Berlin"}}}.Compile()
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{db: db, now: time.Date(2025, 1, 6, 12, 0, 0, 0, time.UTC), target: &fakeTarget{current: "1.0", healthy: true},
		pol: &pipeline.EnvPolicy{Windows: w, Promote: true}}
	f.signer, _ = pipeline.NewSigner([]byte("test key 0123456789"), f.clock)
	return f
}

// deploys is one "process": a new one over the same DB is a restart.
func (f *fixture) deploys(t *testing.T, id string) *pipeline.Deploys {
	apps := map[string]*pipeline.App{"web": {Name: "web", Environments: []string{"stage", "prod"}}}
	d, err := pipeline.NewDeploys(pipeline.DeploysOptions{Store: f.db.Deploys(), ID: id, Clock: f.clock, Signer: f.signer,
		Policy: func(app, env string) (*pipeline.EnvPolicy, error) { return f.pol, nil },
		Target: func(env string) (pipeline.Target, error) { return f.target, nil },
		Apps:   func(n string) (*pipeline.App, bool) { a, ok := apps[n]; return a, ok }})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func (f *fixture) ticket(t *testing.T, version, env string) pipeline.Ticket {
	tk, _, err := f.db.Pipeline().CreateTicket(context.Background(), pipeline.Ticket{App: "web", Version: version, Environment: env, Pusher: "pete"}, "DEPLOY")
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

func (f *fixture) state(t *testing.T, key string) pipeline.Ticket {
	tk, err := f.db.Pipeline().Ticket(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

func tick(t *testing.T, d *pipeline.Deploys) {
	t.Helper()
	if err := d.Tick(context.Background()); err != nil {
		t.Fatal(err)
	}
	d.Wait()
}

func TestTicketWaitsForWindowThenRunsAndHolds(t *testing.T) {
	f := newFixture(t)
	d := f.deploys(t, "a")
	ctx := context.Background()
	tk := f.ticket(t, "2.0", "prod")
	d.OnTicket(tk)
	got := f.state(t, tk.Key)
	if got.State != pipeline.TicketScheduled || got.Reason != "next window: Tue 02:00 CET" {
		t.Fatalf("after scheduling: %s %q", got.State, got.Reason)
	}
	f.set(time.Date(2025, 1, 7, 0, 59, 0, 0, time.UTC)) // 01:59 Berlin
	tick(t, d)
	if c := f.target.Calls(); c != "" {
		t.Fatalf("deployed before the window: %s", c)
	}
	f.set(time.Date(2025, 1, 7, 1, 0, 30, 0, time.UTC))
	tick(t, d)
	if got := f.state(t, tk.Key); got.State != pipeline.TicketAwaitingConfirmation {
		t.Fatalf("in window: %s %q", got.State, got.Reason)
	}
	tick(t, d) // a second tick in the same window must not deploy again
	if c := f.target.Calls(); c != "deploy 2.0" {
		t.Errorf("calls = %s", c)
	}
	// Finish needs two distinct approvers: the first leaves it held.
	f.pol.Finish = pipeline.ApprovalPolicy{Required: 2}
	st, err := d.Confirm(ctx, tk.Key, pipeline.Actor{Name: "alice", Source: "10.0.0.1"})
	if err != nil || st.Approved || f.state(t, tk.Key).State != pipeline.TicketAwaitingConfirmation {
		t.Fatalf("first confirm: %+v %v %s", st, err, f.state(t, tk.Key).State)
	}
	if _, err := d.Confirm(ctx, tk.Key, pipeline.Actor{Name: "alice"}); !errors.Is(err, pipeline.ErrAlreadyVoted) {
		t.Errorf("same approver twice: %v", err)
	}
	if _, err := d.Confirm(ctx, tk.Key, pipeline.Actor{Name: "bob"}); err != nil {
		t.Fatal(err)
	}
	if got := f.state(t, tk.Key); got.State != pipeline.TicketDone || f.target.Calls() != "deploy 2.0,finish" {
		t.Fatalf("after second confirm: %s, calls %s", got.State, f.target.Calls())
	}
	log, _ := f.db.AuditLog(ctx, store.AuditQuery{Action: "deploy.approve"})
	if len(log) != 3 || log[2].Source != "10.0.0.1" || log[1].Result != "denied" || log[0].Actor != "bob" {
		t.Errorf("approvals audited: %+v", log)
	}
}

func TestRestartDuringWait(t *testing.T) {
	f := newFixture(t)
	tk := f.ticket(t, "2.0", "prod")
	f.deploys(t, "a").OnTicket(tk)
	// Process a dies; b starts inside the window: the ticket runs.
	f.set(time.Date(2025, 1, 7, 2, 30, 0, 0, time.UTC))
	tick(t, f.deploys(t, "b"))
	if got := f.state(t, tk.Key); got.State != pipeline.TicketAwaitingConfirmation {
		t.Fatalf("restart in window: %s %q", got.State, got.Reason)
	}

	tk2 := f.ticket(t, "3.0", "stage")
	f.set(time.Date(2025, 1, 7, 12, 0, 0, 0, time.UTC))
	f.deploys(t, "c").OnTicket(tk2) // due Wed 02:00
	// Down over the whole window; back on Wednesday 05:00: the window passed.
	f.set(time.Date(2025, 1, 8, 4, 0, 0, 0, time.UTC))
	tick(t, f.deploys(t, "d"))
	got := f.state(t, tk2.Key)
	if got.State != pipeline.TicketScheduled || !strings.Contains(got.Reason, "passed") || !strings.Contains(got.Reason, "next window: Thu 02:00 CET") {
		t.Fatalf("missed window: %s %q", got.State, got.Reason)
	}
	if log, _ := f.db.AuditLog(context.Background(), store.AuditQuery{Action: "deploy.window-missed"}); len(log) != 1 {
		t.Errorf("missed window not recorded: %+v", log)
	}
	if strings.Count(f.target.Calls(), "deploy") != 1 {
		t.Errorf("calls = %s", f.target.Calls())
	}
}

func TestTwoReplicasDeployOnce(t *testing.T) {
	f := newFixture(t)
	tk := f.ticket(t, "2.0", "prod")
	a, b := f.deploys(t, "a"), f.deploys(t, "b")
	a.OnTicket(tk)
	f.set(time.Date(2025, 1, 7, 1, 5, 0, 0, time.UTC))
	var wg sync.WaitGroup
	for _, d := range []*pipeline.Deploys{a, b} {
		wg.Add(1)
		go func() { defer wg.Done(); _ = d.Tick(context.Background()); d.Wait() }()
	}
	wg.Wait()
	if c := f.target.Calls(); c != "deploy 2.0" {
		t.Errorf("calls = %q, want one deploy", c)
	}
}

func TestRollbackBlocksVersion(t *testing.T) {
	f := newFixture(t)
	f.pol.Windows, _ = pipeline.WindowPolicy{Immediate: true}.Compile()
	d := f.deploys(t, "a")
	ctx := context.Background()
	tk := f.ticket(t, "2.0", "prod")
	d.OnTicket(tk)
	tick(t, d)
	if err := d.Rollback(ctx, tk.Key, pipeline.Actor{Name: "alice"}); err != nil {
		t.Fatal(err)
	}
	if got := f.state(t, tk.Key); got.State != pipeline.TicketRolledBack {
		t.Fatalf("state %s", got.State)
	}
	again := f.ticket(t, "2.0", "prod")
	d.OnTicket(again)
	tick(t, d)
	if got := f.state(t, again.Key); got.State != pipeline.TicketOpen || !strings.Contains(got.Reason, "blocked") {
		t.Fatalf("blocked version: %s %q", got.State, got.Reason)
	}
	if err := d.DeployNow(ctx, again.Key, pipeline.Actor{Name: "owner"}, "hotfix"); !errors.Is(err, pipeline.ErrBlocked) {
		t.Errorf("deploy now of a blocked version: %v", err)
	}
	if err := d.Unblock(ctx, "web", "prod", "2.0", pipeline.Actor{Name: "owner"}); err != nil {
		t.Fatal(err)
	}
	tick(t, d)
	if got := f.state(t, again.Key); got.State != pipeline.TicketAwaitingConfirmation {
		t.Fatalf("after unblock: %s %q", got.State, got.Reason)
	}
}

func TestApprovalBeforeDeployAndDeployNow(t *testing.T) {
	f := newFixture(t)
	f.pol.Approval = pipeline.ApprovalPolicy{Required: 1, ForbidSelf: true}
	d := f.deploys(t, "a")
	ctx := context.Background()
	tk := f.ticket(t, "2.0", "prod")
	d.OnTicket(tk)
	if got := f.state(t, tk.Key); got.State != pipeline.TicketOpen || !strings.Contains(got.Reason, "waiting for approval") {
		t.Fatalf("unapproved: %s %q", got.State, got.Reason)
	}
	if _, err := d.Approve(ctx, tk.Key, pipeline.Actor{Name: "pete"}); !errors.Is(err, pipeline.ErrSelfApprove) {
		t.Errorf("self approval: %v", err)
	}
	if err := d.DeployNow(ctx, tk.Key, pipeline.Actor{Name: "owner"}, "urgent"); !errors.Is(err, pipeline.ErrWrongState) {
		t.Errorf("deploy now without approval: %v", err)
	}
	if _, err := d.Approve(ctx, tk.Key, pipeline.Actor{Name: "alice"}); err != nil {
		t.Fatal(err)
	}
	if got := f.state(t, tk.Key); got.State != pipeline.TicketScheduled {
		t.Fatalf("approved ahead of the window: %s %q", got.State, got.Reason)
	}
	if err := d.DeployNow(ctx, tk.Key, pipeline.Actor{Name: "owner"}, ""); !errors.Is(err, pipeline.ErrReasonMissing) {
		t.Errorf("no reason: %v", err)
	}
	if err := d.DeployNow(ctx, tk.Key, pipeline.Actor{Name: "owner"}, "customer outage"); err != nil {
		t.Fatal(err)
	}
	d.Wait()
	if got := f.state(t, tk.Key); got.State != pipeline.TicketAwaitingConfirmation {
		t.Fatalf("after override: %s", got.State)
	}
	if log, _ := f.db.AuditLog(ctx, store.AuditQuery{Action: "deploy.override"}); len(log) != 1 || log[0].Detail != "customer outage" {
		t.Errorf("override audit: %+v", log)
	}
}

// TestDeployNowOutlivesTheRequest: the API calls DeployNow with the
// request's context, which ends as soon as the answer is written; the
// deploy it starts must still run to the end.
func TestDeployNowOutlivesTheRequest(t *testing.T) {
	f := newFixture(t)
	f.target.delay = 100 * time.Millisecond
	d := f.deploys(t, "a")
	tk := f.ticket(t, "2.0", "prod")
	d.OnTicket(tk)
	req, cancel := context.WithCancel(context.Background())
	if err := d.DeployNow(req, tk.Key, pipeline.Actor{Name: "owner"}, "customer outage"); err != nil {
		t.Fatal(err)
	}
	cancel() // the request is answered
	d.Wait()
	if got := f.state(t, tk.Key); got.State != pipeline.TicketAwaitingConfirmation {
		t.Fatalf("after a deploy now whose request ended: %s (%s)", got.State, got.Reason)
	}
}

func TestLinks(t *testing.T) {
	f := newFixture(t)
	f.pol.Windows, _ = pipeline.WindowPolicy{Immediate: true}.Compile()
	f.pol.Finish = pipeline.ApprovalPolicy{Required: 2}
	d := f.deploys(t, "a")
	ctx := context.Background()
	tk := f.ticket(t, "2.0", "prod")
	d.OnTicket(tk)
	tick(t, d)
	h, err := f.db.Deploys().HoldFor(ctx, tk.Key)
	if err != nil {
		t.Fatal(err)
	}
	fin, rb := d.Links(h)
	// Opening (GET) never acts, however often.
	for i := 0; i < 3; i++ {
		p, err := d.OpenLink(ctx, fin)
		if err != nil || p.Ticket.Key != tk.Key || p.Hold.FromVersion != "1.0" || !p.Health.Healthy {
			t.Fatalf("open: %+v %v", p, err)
		}
	}
	if f.target.Calls() != "deploy 2.0" || f.state(t, tk.Key).State != pipeline.TicketAwaitingConfirmation {
		t.Fatalf("GET acted: %s", f.target.Calls())
	}
	if _, err := d.ActOnLink(ctx, fin[:len(fin)-3]+"AAA", pipeline.ActionFinish, pipeline.Actor{Name: "alice"}); !errors.Is(err, pipeline.ErrLinkInvalid) {
		t.Errorf("tampered: %v", err)
	}
	if _, err := d.ActOnLink(ctx, fin, pipeline.ActionFinish, pipeline.Actor{}); !errors.Is(err, pipeline.ErrNotEligible) {
		t.Errorf("anonymous without link-only: %v", err)
	}
	st, err := d.ActOnLink(ctx, fin, pipeline.ActionFinish, pipeline.Actor{Name: "alice"})
	if err != nil || st.Approved || f.state(t, tk.Key).State != pipeline.TicketAwaitingConfirmation {
		t.Fatalf("first of two: %+v %v", st, err)
	}
	if _, err := d.ActOnLink(ctx, fin, pipeline.ActionFinish, pipeline.Actor{Name: "alice"}); !errors.Is(err, pipeline.ErrLinkUsed) {
		t.Errorf("reused: %v", err)
	}
	if _, err := d.ActOnLink(ctx, fin, pipeline.ActionFinish, pipeline.Actor{Name: "bob"}); err != nil {
		t.Fatal(err)
	}
	if f.state(t, tk.Key).State != pipeline.TicketDone {
		t.Fatal("not done after two approvals")
	}
	if _, err := d.ActOnLink(ctx, rb, pipeline.ActionRollback, pipeline.Actor{Name: "carol"}); !errors.Is(err, pipeline.ErrLinkUsed) {
		t.Errorf("rollback after finish: %v", err)
	}
	f.set(f.now.Add(25 * time.Hour))
	if _, err := d.OpenLink(ctx, fin); !errors.Is(err, pipeline.ErrLinkExpired) {
		t.Errorf("expired: %v", err)
	}
	// Promotion: prod is last, so nothing new; stage would open prod.
	if ts, _ := f.db.Pipeline().Tickets(ctx, pipeline.TicketFilter{Environment: "prod"}); len(ts) != 1 {
		t.Errorf("tickets = %d", len(ts))
	}
}
