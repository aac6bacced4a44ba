package pipeline_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dockmaster/dockmaster/internal/store"
	"github.com/dockmaster/dockmaster/internal/store/storetest"
	"github.com/dockmaster/dockmaster/pipeline"
	"github.com/dockmaster/dockmaster/pipeline/jenkins"
	"github.com/dockmaster/dockmaster/test/jenkinsemu"
	"github.com/dockmaster/dockmaster/webhooks"
)

// addEvent stores a normalized event as the ingestion path does.
func addEvent(t testing.TB, db *store.DB, ev webhooks.Event) int64 {
	t.Helper()
	payload, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	res, err := db.ExecContext(ctx, `INSERT INTO deliveries(provider, delivery_id, verdict, body) VALUES ('test', hex(randomblob(16)), 'accepted', x'')`)
	if err != nil {
		t.Fatal(err)
	}
	did, _ := res.LastInsertId()
	res, err = db.ExecContext(ctx, `INSERT INTO events(delivery, kind, payload) VALUES (?, ?, ?)`, did, string(ev.Kind), string(payload))
	if err != nil {
		t.Fatal(err)
	}
	id, _ := res.LastInsertId()
	return id
}

func push(repo, branch, sha string) webhooks.Event {
	p := &webhooks.Push{Repo: webhooks.Repo{FullName: repo, CloneURL: "https://git.example/" + repo + ".git"},
		Ref: "refs/heads/" + branch, Branch: branch, After: sha, Pusher: "alice",
		HeadCommit: &webhooks.Commit{ID: sha, Message: "change\n\nbody"}}
	return webhooks.Event{Kind: webhooks.KindPush, Push: p}
}

// notifyToEvents turns the emulator's Notification-plugin POSTs into
// stored events through the real Jenkins decoder.
func notifyToEvents(t testing.TB, db *store.DB, onEvent func()) string {
	recv := webhooks.New(webhooks.Options{AllowUnsigned: true})
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		d, err := recv.Parse("jenkins", webhooks.Request{Header: r.Header, Body: body})
		if err != nil {
			w.WriteHeader(webhooks.HTTPStatus(err))
			return
		}
		mu.Lock()
		addEvent(t, db, d.Event)
		mu.Unlock()
		onEvent()
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func javaApp() pipeline.App {
	return pipeline.App{
		Name:         "JavaService1",
		Repo:         pipeline.Repo{FullName: "acme/java-service-1"},
		Rules:        []pipeline.BranchRule{{Branch: "release/*", Environment: "prod"}, {Branch: "main"}},
		Image:        "127.0.0.1:5000/java-service-1",
		Environments: []string{"dev", "prod"},
		Test:         pipeline.StageConfig{Executor: "jenkins", Job: "team/java-service-1-test"},
		Build:        pipeline.StageConfig{Executor: "none"},
		Supersede:    true,
	}
}

type harness struct {
	db     *store.DB
	emu    *jenkinsemu.Server
	engine *pipeline.Engine
	cancel context.CancelFunc
	done   chan struct{}
}

func start(t *testing.T, db *store.DB, emu *jenkinsemu.Server, apps []pipeline.App, poll time.Duration, setup ...func(*pipeline.Engine)) *harness {
	t.Helper()
	jc, err := jenkins.New(emu.URL(), "ci", "tok")
	if err != nil {
		t.Fatal(err)
	}
	e, err := pipeline.NewEngine(pipeline.Options{Store: db.Pipeline(), Apps: apps, Jenkins: jc, Tick: 20 * time.Millisecond, PollAfter: poll})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range setup {
		f(e)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &harness{db: db, emu: emu, engine: e, cancel: cancel, done: make(chan struct{})}
	go func() { e.Run(ctx); close(h.done) }()
	t.Cleanup(h.stop)
	return h
}

func (h *harness) stop() {
	h.cancel()
	<-h.done
}

func waitRun(t *testing.T, db *store.DB, id int64, want pipeline.RunState) pipeline.Run {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r, err := db.Pipeline().Run(context.Background(), id)
		if err == nil && r.State == want {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("run %d: state %q (reason %q), want %q (err %v)", id, r.State, r.Reason, want, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestPushToTicketThroughJenkins(t *testing.T) {
	db := storetest.Open(t)
	var h *harness
	notify := notifyToEvents(t, db, func() {
		if h != nil {
			h.engine.Wake()
		}
	})
	emu := jenkinsemu.New(t, jenkinsemu.Options{User: "ci", Token: "tok", RequireCrumb: true, QueueDelay: 30 * time.Millisecond, BuildDuration: 30 * time.Millisecond, NotifyURL: notify})
	emu.AddJob("team/java-service-1-test", jenkinsemu.Job{Parameters: []string{"GIT_URL", "BRANCH", "GIT_COMMIT", "VERSION", pipeline.RunParam}})
	h = start(t, db, emu, []pipeline.App{javaApp()}, time.Hour) // no polling: the webhook must carry the result
	addEvent(t, db, push("acme/java-service-1", "release/1.0.1", "0123456789abcdef0123456789abcdef01234567"))
	h.engine.Wake()

	r := waitRun(t, db, 1, pipeline.RunTicketed)
	if r.Version != "1.0.1" || r.Environment != "prod" || r.Image != "127.0.0.1:5000/java-service-1:1.0.1" {
		t.Fatalf("run %+v", r)
	}
	builds := emu.Builds("team/java-service-1-test")
	if len(builds) != 1 {
		t.Fatalf("%d Jenkins builds, want 1", len(builds))
	}
	p := builds[0].Params
	if p["BRANCH"] != "release/1.0.1" || p["GIT_COMMIT"] != r.Commit || p[pipeline.RunParam] != "1.1" || p["VERSION"] != "1.0.1" {
		t.Fatalf("params %v", p)
	}
	var test pipeline.Stage
	for _, s := range r.Stages {
		if s.Name == pipeline.StageTest {
			test = s
		}
	}
	if test.State != pipeline.StageSucceeded || !strings.Contains(test.Links["jenkins"], "/job/team/job/java-service-1-test/1/") {
		t.Fatalf("test stage %+v", test)
	}
	tk, err := db.Pipeline().Ticket(context.Background(), "DEPLOY-1")
	if err != nil {
		t.Fatal(err)
	}
	if tk.State != pipeline.TicketOpen || tk.Version != "1.0.1" || tk.Environment != "prod" || tk.RunID != 1 || tk.Pusher != "alice" || tk.Links["test"] == "" {
		t.Fatalf("ticket %+v", tk)
	}
	if got := tk.Title(); got != "DEPLOY-1: app JavaService1, branch release/1.0.1, environment prod" {
		t.Fatalf("title %q", got)
	}
}

func TestJenkinsFailuresBecomeStageFailures(t *testing.T) {
	cases := []struct {
		name   string
		setup  func(*jenkinsemu.Server)
		reason string
	}{
		{"missing job", func(*jenkinsemu.Server) {}, "404"},
		{"disabled job", func(e *jenkinsemu.Server) {
			e.AddJob("team/java-service-1-test", jenkinsemu.Job{Parameters: []string{"BRANCH"}, Disabled: true})
		}, "409"},
		{"not parameterised", func(e *jenkinsemu.Server) { e.AddJob("team/java-service-1-test", jenkinsemu.Job{}) }, "400"},
		{"failed build", func(e *jenkinsemu.Server) {
			e.AddJob("team/java-service-1-test", jenkinsemu.Job{Parameters: []string{"BRANCH"}})
			e.SetResult("team/java-service-1-test", jenkinsemu.Failure)
		}, "Jenkins result FAILURE"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			db := storetest.Open(t)
			emu := jenkinsemu.New(t, jenkinsemu.Options{User: "ci", Token: "tok"})
			c.setup(emu)
			h := start(t, db, emu, []pipeline.App{javaApp()}, time.Millisecond) // poll at once: no webhook here
			addEvent(t, db, push("acme/java-service-1", "main", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"))
			h.engine.Wake()
			r := waitRun(t, db, 1, pipeline.RunFailed)
			if !strings.Contains(r.Reason, c.reason) || !strings.Contains(r.Reason, "test stage failed") {
				t.Fatalf("reason %q, want ~%q", r.Reason, c.reason)
			}
		})
	}
}

func TestNewerPushSupersedesQueuedRun(t *testing.T) {
	db := storetest.Open(t)
	emu := jenkinsemu.New(t, jenkinsemu.Options{User: "ci", Token: "tok"})
	emu.AddJob("team/java-service-1-test", jenkinsemu.Job{Parameters: []string{"BRANCH"}})
	// Both events are stored before the engine first looks.
	addEvent(t, db, push("acme/java-service-1", "main", "1111111111111111111111111111111111111111"))
	addEvent(t, db, push("acme/java-service-1", "main", "2222222222222222222222222222222222222222"))
	addEvent(t, db, push("acme/other", "main", "3333333333333333333333333333333333333333"))
	start(t, db, emu, []pipeline.App{javaApp()}, time.Millisecond)
	waitRun(t, db, 2, pipeline.RunTicketed)
	r1 := waitRun(t, db, 1, pipeline.RunSuperseded)
	if r1.Reason != "superseded by run 2" {
		t.Fatalf("reason %q", r1.Reason)
	}
	if n := emu.TriggerCount("team/java-service-1-test"); n != 1 {
		t.Fatalf("%d triggers, want 1", n)
	}
	runs, _ := db.Pipeline().Runs(context.Background(), pipeline.RunFilter{})
	if len(runs) != 2 {
		t.Fatalf("%d runs, want 2 (the other repo matches no app)", len(runs))
	}
	if r2, _ := db.Pipeline().Run(context.Background(), 2); r2.Version != "main-2222222" {
		t.Fatalf("version %q", r2.Version)
	}
}

// A restart after the trigger must find the queued build, not trigger again.
func TestRestartDuringTestDoesNotTriggerTwice(t *testing.T) {
	db := storetest.Open(t)
	emu := jenkinsemu.New(t, jenkinsemu.Options{User: "ci", Token: "tok", ManualFinish: true})
	emu.AddJob("team/java-service-1-test", jenkinsemu.Job{Parameters: []string{"BRANCH", pipeline.RunParam}})
	h := start(t, db, emu, []pipeline.App{javaApp()}, time.Millisecond)
	addEvent(t, db, push("acme/java-service-1", "main", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"))
	h.engine.Wake()
	deadline := time.Now().Add(5 * time.Second)
	for len(emu.Builds("team/java-service-1-test")) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no build started")
		}
		time.Sleep(10 * time.Millisecond)
	}
	h.stop()
	// Forget what the first engine stored of the trigger, as if it crashed
	// between the trigger and the write.
	if _, err := db.ExecContext(context.Background(), `UPDATE stages SET external = '{}' WHERE run_id = 1`); err != nil {
		t.Fatal(err)
	}
	h2 := start(t, db, emu, []pipeline.App{javaApp()}, time.Millisecond)
	time.Sleep(100 * time.Millisecond)
	if err := emu.Complete("team/java-service-1-test", 1, jenkinsemu.Success); err != nil {
		t.Fatal(err)
	}
	h2.engine.Wake()
	waitRun(t, db, 1, pipeline.RunTicketed)
	if n := emu.TriggerCount("team/java-service-1-test"); n != 1 {
		t.Fatalf("%d triggers after restart, want 1", n)
	}
	tks, _ := db.Pipeline().Tickets(context.Background(), pipeline.TicketFilter{})
	if len(tks) != 1 {
		t.Fatalf("%d tickets, want 1", len(tks))
	}
}

func TestCancelRerunAndManualTicket(t *testing.T) {
	db := storetest.Open(t)
	emu := jenkinsemu.New(t, jenkinsemu.Options{User: "ci", Token: "tok", ManualFinish: true})
	emu.AddJob("team/java-service-1-test", jenkinsemu.Job{Parameters: []string{"BRANCH", pipeline.RunParam}})
	h := start(t, db, emu, []pipeline.App{javaApp()}, time.Millisecond)
	ctx := context.Background()
	addEvent(t, db, push("acme/java-service-1", "release/1.0.1", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"))
	h.engine.Wake()
	waitRun(t, db, 1, pipeline.RunTesting)
	if _, err := h.engine.Cancel(ctx, 1, "by test"); err != nil {
		t.Fatal(err)
	}
	r := waitRun(t, db, 1, pipeline.RunCanceled)
	if _, err := h.engine.CreateTicket(ctx, "JavaService1", "release/1.0.1", "prod", "bob"); err == nil {
		t.Fatal("ticket for a branch never built should fail")
	}
	emu.Complete("team/java-service-1-test", 1, jenkinsemu.Success)
	if r, err := h.engine.Rerun(ctx, r.ID); err != nil || r.Attempt != 2 {
		t.Fatalf("rerun: %+v %v", r, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(emu.Builds("team/java-service-1-test")) < 2 {
		if time.Now().After(deadline) {
			t.Fatal("re-run did not trigger a new build")
		}
		time.Sleep(10 * time.Millisecond)
	}
	emu.Complete("team/java-service-1-test", 2, jenkinsemu.Success)
	h.engine.Wake()
	waitRun(t, db, 1, pipeline.RunTicketed)
	tk, err := h.engine.CreateTicket(ctx, "JavaService1", "release/1.0.1", "dev", "bob")
	if err != nil {
		t.Fatal(err)
	}
	if tk.Key != "DEPLOY-2" || tk.Environment != "dev" || tk.Version != "1.0.1" || tk.CreatedBy != "bob" {
		t.Fatalf("manual ticket %+v", tk)
	}
}

// A Jenkins deploy job's final notification settles its ticket's deploy;
// earlier phases and other jobs' builds do not.
func TestDeployJobNotificationReachesTheDeployManager(t *testing.T) {
	db := storetest.Open(t)
	emu := jenkinsemu.New(t, jenkinsemu.Options{})
	type call struct {
		key    string
		ok     bool
		detail string
	}
	calls := make(chan call, 10)
	h := start(t, db, emu, []pipeline.App{javaApp()}, time.Hour, func(e *pipeline.Engine) {
		e.SetDeployHooks(pipeline.DeployHooks{DeployBuildFinished: func(_ context.Context, key string, ok bool, detail string) error {
			calls <- call{key, ok, detail}
			return nil
		}})
	})
	build := func(phase webhooks.Phase, status webhooks.Status) webhooks.Event {
		return webhooks.Event{Kind: webhooks.KindBuild, Build: &webhooks.Build{Job: "deploy-java", Number: 7, Phase: phase, Status: status,
			URL: "http://jenkins/job/deploy-java/7/", Parameters: map[string]string{pipeline.TicketParam: "DEPLOY-3", "VERSION": "1.0.1"}}}
	}
	addEvent(t, db, build(webhooks.PhaseStarted, ""))
	addEvent(t, db, build(webhooks.PhaseFinalized, webhooks.StatusFailure))
	h.engine.Wake()
	select {
	case c := <-calls:
		if c.key != "DEPLOY-3" || c.ok || !strings.Contains(c.detail, "FAILURE") || !strings.Contains(c.detail, "/job/deploy-java/7/") {
			t.Fatalf("call %+v", c)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("deploy hook not called")
	}
	select {
	case c := <-calls:
		t.Fatalf("unexpected second call %+v (the STARTED phase must not settle the deploy)", c)
	case <-time.After(200 * time.Millisecond):
	}
}
