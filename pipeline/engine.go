package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dockmaster/dockmaster/pipeline/jenkins"
	"github.com/dockmaster/dockmaster/webhooks"
)

// Jenkins is the part of the Jenkins remote API the engine uses
// (*jenkins.Client implements it).
type Jenkins interface {
	Trigger(ctx context.Context, job string, params map[string]string) (jenkins.QueueRef, error)
	QueueItem(ctx context.Context, q jenkins.QueueRef) (jenkins.QueueItem, error)
	Build(ctx context.Context, job string, number int) (jenkins.BuildInfo, error)
	FindBuild(ctx context.Context, job, param, value string) (*jenkins.Found, error)
}

// Builder builds and pushes an app's image. Build must be idempotent for
// one key: a second call after a crash reuses what the first finished.
type Builder interface {
	Build(ctx context.Context, req BuildRequest) (BuildResult, error)
}

// BuildRequest is one image build of a run.
type BuildRequest struct {
	Key        string // run id and attempt, labelled on the image
	RepoURL    string
	Username   string
	Password   string
	Commit     string
	Ref        string
	Dockerfile string
	Context    string
	Image      string // registry/name:version
	Version    string
}

// BuildResult is the pushed image.
type BuildResult struct {
	Image  string
	Digest string
	Log    string
}

// Tester runs a test command with the checkout; it must be idempotent for
// one key, like Builder.
type Tester interface {
	Test(ctx context.Context, req TestRequest) (exitCode int, log string, err error)
}

// TestRequest is one test command of a run.
type TestRequest struct {
	Key      string
	RepoURL  string
	Username string
	Password string
	Commit   string
	Ref      string
	Image    string
	Command  []string
}

// Options configure the engine.
type Options struct {
	Store        Store
	Apps         []App
	Jenkins      Jenkins // nil when no Jenkins is configured
	Builder      Builder
	Tester       Tester
	TicketPrefix string // default DEPLOY
	Log          *slog.Logger
	Clock        Clock
	// Tick is how often waiting runs are looked at without a wake-up.
	Tick time.Duration
	// PollAfter is how long a Jenkins stage waits for its webhook before
	// polling the build's JSON.
	PollAfter time.Duration
	// Workers bounds runs stepped at once.
	Workers int
	// OnTicket is called after a ticket is created (windows, notifications).
	OnTicket func(Ticket)
	// OnTransition observes the engine's own time per transition (metrics).
	OnTransition func(stage string, d time.Duration)
	// CrashPoint is called at the points where a crash is hardest to
	// recover from (after an external side effect, before it is recorded):
	// "jenkins-triggered", "image-pushed", "ticket-created". Crash tests
	// make it kill the process; nil in production.
	CrashPoint func(point string)
}

// Engine drives runs through their stages. Create with NewEngine, start
// with Run; Wake after new events or API changes.
type Engine struct {
	o    Options
	apps map[string]*App
	wake chan struct{}

	deployBuild func(ctx context.Context, ticket string, ok bool, detail string) error

	mu     sync.Mutex
	active map[int64]bool      // runs being stepped now
	idle   map[int64]idleState // runs that made no progress: look again later
}

// idleState backs off looking at a run that is waiting on something
// outside (a Jenkins build); news about the run clears it.
type idleState struct {
	next  time.Time
	delay time.Duration
}

// RunParam is the Jenkins parameter that carries the run key, so the
// engine can find its own build after a restart.
const RunParam = "DOCKMASTER_RUN"

// TicketParam is the Jenkins parameter naming the ticket a deploy job
// deploys; its build notifications settle that ticket's deploy.
const TicketParam = "DOCKMASTER_TICKET"

// DeployHooks connect the engine to the deploy manager, which is built
// after it (it reads the engine's apps).
type DeployHooks struct {
	// OnTicket is called after a ticket is created.
	OnTicket func(Ticket)
	// DeployBuildFinished is called when a Jenkins deploy job of a ticket
	// finishes, with its result.
	DeployBuildFinished func(ctx context.Context, ticket string, ok bool, detail string) error
}

// SetDeployHooks installs h; call it before Run.
func (e *Engine) SetDeployHooks(h DeployHooks) {
	if h.OnTicket != nil {
		e.o.OnTicket = h.OnTicket
	}
	e.deployBuild = h.DeployBuildFinished
}

// NewEngine validates the apps and returns an engine.
func NewEngine(o Options) (*Engine, error) {
	if o.TicketPrefix == "" {
		o.TicketPrefix = "DEPLOY"
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.Tick == 0 {
		o.Tick = time.Second
	}
	if o.PollAfter == 0 {
		o.PollAfter = 2 * time.Minute
	}
	if o.Workers == 0 {
		o.Workers = 8
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	e := &Engine{o: o, apps: map[string]*App{}, wake: make(chan struct{}, 1), active: map[int64]bool{}, idle: map[int64]idleState{}}
	for i := range o.Apps {
		a := &o.Apps[i]
		if err := a.Validate(); err != nil {
			return nil, err
		}
		if _, dup := e.apps[a.Name]; dup {
			return nil, fmt.Errorf("app %s declared twice", a.Name)
		}
		needsJenkins := a.Test.Executor == "jenkins" || a.Build.Executor == "jenkins"
		if needsJenkins && o.Jenkins == nil {
			return nil, fmt.Errorf("app %s uses the jenkins executor but no jenkins is configured", a.Name)
		}
		if a.Build.Executor == "docker" && o.Builder == nil {
			return nil, fmt.Errorf("app %s uses the docker build executor but no builder is configured", a.Name)
		}
		e.apps[a.Name] = a
	}
	return e, nil
}

// App returns a configured app.
func (e *Engine) App(name string) (*App, bool) {
	a, ok := e.apps[name]
	return a, ok
}

// Apps lists the configured apps by name.
func (e *Engine) Apps() []*App {
	out := make([]*App, 0, len(e.apps))
	for _, a := range e.apps {
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Wake makes the engine look at events and runs now.
func (e *Engine) Wake() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// Run loops until ctx is done, then waits for in-flight steps.
func (e *Engine) Run(ctx context.Context) {
	sem := make(chan struct{}, e.o.Workers)
	var wg sync.WaitGroup
	defer wg.Wait()
	t := time.NewTicker(e.o.Tick)
	defer t.Stop()
	for {
		if err := e.ingest(ctx); err != nil && ctx.Err() == nil {
			e.o.Log.Error("pipeline: ingest events", "err", err)
		}
		runs, err := e.o.Store.Runs(ctx, RunFilter{States: []RunState{RunPending, RunTesting, RunBuilding, RunTicketing}, Limit: 10000})
		if err != nil && ctx.Err() == nil {
			e.o.Log.Error("pipeline: list active runs", "err", err)
		}
		// Oldest first, so earlier pushes reach their tickets first.
		sort.Slice(runs, func(i, j int) bool { return runs[i].ID < runs[j].ID })
		now := time.Now()
		for _, r := range runs {
			if !e.claim(r.ID, now) {
				continue
			}
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				e.release(r.ID)
				return
			}
			wg.Add(1)
			go func(id int64) {
				defer func() { <-sem; e.release(id); wg.Done() }()
				moved, err := e.step(ctx, id)
				if err != nil && ctx.Err() == nil {
					e.o.Log.Warn("pipeline: step", "run", id, "err", err)
				}
				e.backoff(id, moved)
			}(r.ID)
		}
		select {
		case <-ctx.Done():
			return
		case <-e.wake:
		case <-t.C:
		}
	}
}

func (e *Engine) claim(id int64, now time.Time) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.active[id] || now.Before(e.idle[id].next) {
		return false
	}
	e.active[id] = true
	return true
}

// backoff doubles the pause before looking at a run that did not move,
// up to 16 ticks; a run that moved is looked at again at once.
func (e *Engine) backoff(id int64, moved bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if moved {
		delete(e.idle, id)
		return
	}
	st := e.idle[id]
	st.delay = min(max(st.delay*2, e.o.Tick), 16*e.o.Tick)
	st.next = time.Now().Add(st.delay)
	e.idle[id] = st
}

// poke makes the engine look at run id at its next pass (news arrived).
func (e *Engine) poke(id int64) {
	e.mu.Lock()
	delete(e.idle, id)
	e.mu.Unlock()
	e.Wake()
}

func (e *Engine) release(id int64) {
	e.mu.Lock()
	delete(e.active, id)
	e.mu.Unlock()
	e.Wake() // a finished step may have unblocked the next one
}

// ingest turns stored webhook events into runs and stage results. Each
// event's handling is idempotent, so the cursor may lag after a crash.
func (e *Engine) ingest(ctx context.Context) error {
	cursor, err := e.o.Store.Cursor(ctx)
	if err != nil {
		return err
	}
	for {
		evs, err := e.o.Store.EventsAfter(ctx, cursor, 500)
		if err != nil || len(evs) == 0 {
			return err
		}
		for _, se := range evs {
			var ev webhooks.Event
			if err := json.Unmarshal(se.Payload, &ev); err != nil {
				e.o.Log.Error("pipeline: undecodable event skipped", "event", se.ID, "err", err)
			} else if err := e.handleEvent(ctx, se.ID, ev); err != nil {
				return fmt.Errorf("event %d: %w", se.ID, err)
			}
			cursor = se.ID
		}
		if err := e.o.Store.SetCursor(ctx, cursor); err != nil {
			return err
		}
	}
}

func (e *Engine) handleEvent(ctx context.Context, id int64, ev webhooks.Event) error {
	switch ev.Kind {
	case webhooks.KindPush, webhooks.KindTag:
		for _, p := range ev.Pushes() {
			if p.Deleted {
				continue
			}
			if err := e.startRuns(ctx, id, p); err != nil {
				return err
			}
		}
	case webhooks.KindBuild:
		if ev.Build == nil {
			return nil
		}
		if key := ev.Build.Parameters[TicketParam]; key != "" {
			return e.applyDeployBuild(ctx, key, ev.Build)
		}
		return e.applyJenkinsEvent(ctx, ev.Build)
	case webhooks.KindImage:
		for _, img := range ev.Images {
			if err := e.applyImage(ctx, img); err != nil {
				return err
			}
		}
	}
	return nil
}

func (e *Engine) startRuns(ctx context.Context, eventID int64, p webhooks.Push) error {
	commit := p.After
	msg := ""
	if p.HeadCommit != nil {
		if p.HeadCommit.ID != "" {
			commit = p.HeadCommit.ID
		}
		msg = p.HeadCommit.Message
	}
	for _, a := range e.Apps() {
		if !a.MatchesRepo(p.Repo.FullName, p.Repo.CloneURL) {
			continue
		}
		version, env, ok := a.Match(p.Branch, p.Tag, commit)
		if !ok {
			e.o.Log.Info("pipeline: push matches no branch rule", "app", a.Name, "ref", p.Ref)
			continue
		}
		repo := a.Repo.URL
		if repo == "" {
			repo = p.Repo.CloneURL
		}
		start := time.Now()
		r, created, err := e.o.Store.CreateRun(ctx, Run{App: a.Name, Repo: repo, Ref: p.Ref, Branch: p.Branch, Tag: p.Tag,
			Commit: commit, Message: firstLine(msg), Pusher: p.Pusher, Version: version, Environment: env, EventID: eventID})
		if err != nil {
			return err
		}
		if created {
			e.observe("created", start)
			e.o.Log.Info("run created", "run", r.ID, "app", a.Name, "ref", p.Ref, "version", version)
			if a.Supersede {
				ids, err := e.o.Store.SupersedeOlder(ctx, r)
				if err != nil {
					return err
				}
				if len(ids) > 0 {
					e.o.Log.Info("runs superseded", "by", r.ID, "runs", ids)
				}
			}
		}
	}
	return nil
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

func (e *Engine) crashPoint(point string) {
	if e.o.CrashPoint != nil {
		e.o.CrashPoint(point)
	}
}

func (e *Engine) observe(stage string, start time.Time) {
	if e.o.OnTransition != nil {
		e.o.OnTransition(stage, time.Since(start))
	}
}

// runKey identifies one attempt of a run to external systems.
func runKey(r Run) string { return strconv.FormatInt(r.ID, 10) + "." + strconv.Itoa(r.Attempt) }

func parseRunKey(s string) (id int64, attempt int, ok bool) {
	a, b, found := strings.Cut(s, ".")
	if !found {
		return 0, 0, false
	}
	id, err1 := strconv.ParseInt(a, 10, 64)
	att, err2 := strconv.Atoi(b)
	return id, att, err1 == nil && err2 == nil
}

// Step advances one run as far as it can go now. Safe to call again at
// any time: each stage looks at what is stored before it acts.
func (e *Engine) Step(ctx context.Context, id int64) error {
	_, err := e.step(ctx, id)
	return err
}

// step reports whether the run moved at all.
func (e *Engine) step(ctx context.Context, id int64) (moved bool, err error) {
	for {
		r, err := e.o.Store.Run(ctx, id)
		if err != nil {
			return moved, err
		}
		a, ok := e.apps[r.App]
		if !ok {
			if r.State.Terminal() {
				return moved, nil
			}
			return true, e.fail(ctx, r, fmt.Sprintf("app %s is no longer configured", r.App))
		}
		start := time.Now()
		var advanced bool
		switch r.State {
		case RunPending:
			err = e.o.Store.TransitionRun(ctx, r.ID, RunPending, RunTesting, "")
			advanced = err == nil
		case RunTesting:
			advanced, err = e.stepStage(ctx, r, a, StageTest, a.Test, RunBuilding)
		case RunBuilding:
			advanced, err = e.stepStage(ctx, r, a, StageBuild, a.Build, RunTicketing)
		case RunTicketing:
			advanced, err = e.stepTicket(ctx, r, a)
		default:
			return moved, nil
		}
		if errors.Is(err, ErrConflict) {
			continue // someone else moved it; look again
		}
		if err != nil || !advanced {
			return moved, err
		}
		moved = true
		e.observe(string(r.State), start)
	}
}

func (e *Engine) fail(ctx context.Context, r Run, reason string) error {
	err := e.o.Store.TransitionRun(ctx, r.ID, r.State, RunFailed, reason)
	if err == nil {
		e.o.Log.Warn("run failed", "run", r.ID, "app", r.App, "reason", reason)
	}
	return err
}
