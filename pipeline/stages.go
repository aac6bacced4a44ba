package pipeline

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/dockmaster/dockmaster/pipeline/jenkins"
	"github.com/dockmaster/dockmaster/webhooks"
)

// stepStage runs or looks after one stage of r. advanced is true when the
// run moved on to next (or failed).
func (e *Engine) stepStage(ctx context.Context, r Run, a *App, name string, cfg StageConfig, next RunState) (bool, error) {
	executor := cfg.Executor
	if executor == "" {
		executor = "none"
	}
	st, _, err := e.o.Store.StartStage(ctx, Stage{RunID: r.ID, Name: name, Attempt: r.Attempt, Executor: executor})
	if err != nil {
		return false, err
	}
	if st.State == StageRunning {
		switch executor {
		case "none":
			st, err = e.finishStage(ctx, st, StageSkipped, "")
		case "jenkins":
			st, err = e.stepJenkins(ctx, r, a, st, cfg)
		case "command":
			st, err = e.stepCommand(ctx, r, a, st, cfg)
		case "docker":
			st, err = e.stepDocker(ctx, r, a, st, cfg)
		default:
			st, err = e.finishStage(ctx, st, StageFailed, "unknown executor "+executor)
		}
		if err != nil {
			return false, err
		}
	}
	return e.afterStage(ctx, r, a, st, next)
}

// afterStage moves the run on once its stage is settled.
func (e *Engine) afterStage(ctx context.Context, r Run, a *App, st Stage, next RunState) (bool, error) {
	switch st.State {
	case StageSucceeded, StageSkipped:
		if st.Name == StageBuild && a.Image != "" {
			// r predates the stage: the executor may have recorded an image since.
			cur, err := e.o.Store.Run(ctx, r.ID)
			if err != nil {
				return false, err
			}
			if cur.Image == "" {
				// No executor reported an image: the conventional tag is the version.
				if err := e.o.Store.SetRunImage(ctx, r.ID, a.Image+":"+r.Version, cur.Digest); err != nil {
					return false, err
				}
			}
		}
		return true, e.o.Store.TransitionRun(ctx, r.ID, r.State, next, "")
	case StageFailed, StageCanceled:
		return true, e.fail(ctx, r, fmt.Sprintf("%s stage %s: %s", st.Name, st.State, st.Reason))
	}
	return false, nil // still running: a webhook or the next tick moves it
}

func (e *Engine) finishStage(ctx context.Context, st Stage, state StageState, reason string) (Stage, error) {
	done := st
	done.State, done.Reason = state, reason
	t := e.o.Clock()
	done.FinishedAt = &t
	if err := e.o.Store.UpdateStage(ctx, done, StageRunning); err != nil {
		return st, err
	}
	return done, nil
}

func (e *Engine) saveStage(ctx context.Context, st Stage) error {
	return e.o.Store.UpdateStage(ctx, st, st.State)
}

// jenkinsParams are the parameters every triggered job gets.
func jenkinsParams(r Run, cfg StageConfig) map[string]string {
	p := map[string]string{"GIT_URL": r.Repo, "BRANCH": r.Branch, "GIT_COMMIT": r.Commit, "VERSION": r.Version, RunParam: runKey(r)}
	if r.Tag != "" {
		p["TAG"] = r.Tag
	}
	for k, v := range cfg.Params {
		p[k] = v
	}
	return p
}

// stepJenkins triggers the job once, follows the queue item to a build and
// polls the build when no webhook arrived in time.
func (e *Engine) stepJenkins(ctx context.Context, r Run, a *App, st Stage, cfg StageConfig) (Stage, error) {
	if st.External == nil {
		st.External = map[string]string{}
	}
	if st.Links == nil {
		st.Links = map[string]string{}
	}
	key := runKey(r)
	if st.External["queue"] == "" && st.External["build"] == "" {
		// Look before acting: a crash may have come after the trigger.
		found, err := e.o.Jenkins.FindBuild(ctx, cfg.Job, RunParam, key)
		if err != nil {
			return e.jenkinsFailure(ctx, st, err)
		}
		switch {
		case found != nil && found.Build != nil:
			st.External["build"] = strconv.Itoa(found.Build.Number)
			st.Links["jenkins"] = found.Build.URL
		case found != nil && found.Queue != nil:
			st.External["queue"] = found.Queue.URL
		default:
			q, err := e.o.Jenkins.Trigger(ctx, cfg.Job, jenkinsParams(r, cfg))
			if err != nil {
				return e.jenkinsFailure(ctx, st, err)
			}
			st.External["queue"] = q.URL
			e.o.Log.Info("jenkins job triggered", "run", r.ID, "job", cfg.Job, "queue", q.URL)
			e.crashPoint("jenkins-triggered")
		}
		if err := e.saveStage(ctx, st); err != nil {
			return st, err
		}
	}
	if st.External["build"] == "" {
		ref, err := jenkins.ParseQueueRef(st.External["queue"])
		if err != nil {
			return e.finishStage(ctx, st, StageFailed, err.Error())
		}
		item, err := e.o.Jenkins.QueueItem(ctx, ref)
		switch {
		case errors.Is(err, jenkins.ErrQueueItemGone):
			// Items vanish a while after starting: find the build by our key.
			st.External["queue"] = ""
			return st, e.saveStage(ctx, st)
		case err != nil:
			return e.jenkinsFailure(ctx, st, err)
		case item.Cancelled:
			return e.finishStage(ctx, st, StageCanceled, "Jenkins queue item was cancelled")
		case !item.Started():
			return st, nil
		}
		st.External["build"] = strconv.Itoa(item.BuildNumber)
		st.Links["jenkins"] = item.BuildURL
		if err := e.saveStage(ctx, st); err != nil {
			return st, err
		}
	}
	// The result normally arrives by webhook; poll when it is late.
	if st.StartedAt != nil && e.o.Clock().Sub(*st.StartedAt) < e.o.PollAfter {
		return st, nil
	}
	n, _ := strconv.Atoi(st.External["build"])
	b, err := e.o.Jenkins.Build(ctx, cfg.Job, n)
	if err != nil {
		return e.jenkinsFailure(ctx, st, err)
	}
	if !b.Done() {
		return st, nil
	}
	if b.URL != "" {
		st.Links["jenkins"] = b.URL
	}
	return e.jenkinsResult(ctx, st, b.Result, b.URL, b.Parameters)
}

// jenkinsFailure fails the stage for errors Jenkins answered clearly
// (missing, disabled, not parameterised, auth) and retries the rest.
func (e *Engine) jenkinsFailure(ctx context.Context, st Stage, err error) (Stage, error) {
	var je *jenkins.Error
	if errors.As(err, &je) && je.Status >= 400 && je.Status < 500 {
		return e.finishStage(ctx, st, StageFailed, err.Error())
	}
	return st, err
}

// jenkinsResult settles a stage from a finished Jenkins build.
func (e *Engine) jenkinsResult(ctx context.Context, st Stage, result, url string, params map[string]string) (Stage, error) {
	if result == string(webhooks.StatusSuccess) {
		if st.Name == StageBuild {
			if err := e.imageFromParams(ctx, st.RunID, params); err != nil {
				return st, err
			}
		}
		return e.finishStage(ctx, st, StageSucceeded, "")
	}
	reason := "Jenkins result " + result
	if url != "" {
		reason += ": " + url + "console"
	}
	return e.finishStage(ctx, st, StageFailed, reason)
}

// Image parameters a Jenkins build job reports back (see templates/jenkins).
const (
	ParamImage       = "IMAGE"
	ParamImageDigest = "IMAGE_DIGEST"
)

func (e *Engine) imageFromParams(ctx context.Context, runID int64, params map[string]string) error {
	if params[ParamImageDigest] == "" {
		return nil
	}
	r, err := e.o.Store.Run(ctx, runID)
	if err != nil {
		return err
	}
	image := params[ParamImage]
	if image == "" {
		image = r.Image
	}
	if image == "" {
		if a, ok := e.apps[r.App]; ok {
			image = a.Image + ":" + r.Version
		}
	}
	return e.o.Store.SetRunImage(ctx, runID, image, params[ParamImageDigest])
}

// applyJenkinsEvent records a build notification on the stage it belongs to.
func (e *Engine) applyJenkinsEvent(ctx context.Context, b *webhooks.Build) error {
	id, attempt, ok := parseRunKey(b.Parameters[RunParam])
	if !ok {
		return nil // not one of ours
	}
	r, err := e.o.Store.Run(ctx, id)
	if err != nil || r.Attempt != attempt {
		return nil // unknown or an older attempt's late news
	}
	a, ok := e.apps[r.App]
	if !ok {
		return nil
	}
	for _, st := range r.Stages {
		if st.Attempt != r.Attempt || st.State != StageRunning || st.Executor != "jenkins" {
			continue
		}
		cfg := a.Test
		if st.Name == StageBuild {
			cfg = a.Build
		}
		if cfg.Job != b.Job {
			continue
		}
		if st.External == nil {
			st.External = map[string]string{}
		}
		if st.Links == nil {
			st.Links = map[string]string{}
		}
		st.External["build"] = strconv.FormatInt(b.Number, 10)
		if b.URL != "" {
			st.Links["jenkins"] = b.URL
		}
		if !b.Phase.Final() && b.Phase != webhooks.PhaseCompleted {
			e.poke(r.ID)
			return ignoreConflict(e.saveStage(ctx, st))
		}
		_, err := e.jenkinsResult(ctx, st, string(b.Status), b.URL, b.Parameters)
		e.poke(r.ID)
		return ignoreConflict(err)
	}
	return nil
}

// applyDeployBuild hands a finished Jenkins deploy job to the deploy
// manager; earlier phases carry no result.
func (e *Engine) applyDeployBuild(ctx context.Context, ticket string, b *webhooks.Build) error {
	if e.deployBuild == nil || !(b.Phase.Final() || b.Phase == webhooks.PhaseCompleted) {
		return nil
	}
	detail := "Jenkins result " + string(b.Status)
	if b.URL != "" {
		detail += ": " + b.URL
	}
	return ignoreConflict(e.deployBuild(ctx, ticket, b.Status == webhooks.StatusSuccess, detail))
}

// ignoreConflict: a late duplicate notification finds the stage settled.
func ignoreConflict(err error) error {
	if errors.Is(err, ErrConflict) {
		return nil
	}
	return err
}

// applyImage records a registry push on the building run of that image.
func (e *Engine) applyImage(ctx context.Context, img webhooks.ImagePushed) error {
	for _, a := range e.Apps() {
		if a.Image == "" || !sameRepository(a.Image, img.Repository) {
			continue
		}
		runs, err := e.o.Store.Runs(ctx, RunFilter{App: a.Name, States: []RunState{RunBuilding, RunTicketing}, Limit: 100})
		if err != nil {
			return err
		}
		for _, r := range runs {
			if r.Version == img.Tag && r.Digest == "" {
				if err := e.o.Store.SetRunImage(ctx, r.ID, a.Image+":"+r.Version, img.Digest); err != nil {
					return err
				}
				e.poke(r.ID)
			}
		}
	}
	return nil
}

// sameRepository compares "registry:5000/team/app" with the registry's
// own "team/app".
func sameRepository(image, repo string) bool {
	image = trimTag(image)
	return image == repo || len(image) > len(repo) && image[len(image)-len(repo)-1:] == "/"+repo
}

func (e *Engine) stepCommand(ctx context.Context, r Run, a *App, st Stage, cfg StageConfig) (Stage, error) {
	if e.o.Tester == nil {
		return e.finishStage(ctx, st, StageFailed, "no test runner configured")
	}
	code, log, err := e.o.Tester.Test(ctx, TestRequest{Key: runKey(r), RepoURL: r.Repo, Username: a.Repo.Username,
		Password: a.Repo.Password, Commit: r.Commit, Ref: r.Ref, Image: cfg.RunIn, Command: cfg.Command})
	if err != nil {
		if ctx.Err() != nil {
			return st, err
		}
		st.Log = log
		return e.finishStage(ctx, st, StageFailed, err.Error())
	}
	st.Log = log
	if code != 0 {
		return e.finishStage(ctx, st, StageFailed, fmt.Sprintf("test command exited %d: %s", code, lastLine(log)))
	}
	return e.finishStage(ctx, st, StageSucceeded, "")
}

func (e *Engine) stepDocker(ctx context.Context, r Run, a *App, st Stage, cfg StageConfig) (Stage, error) {
	res, err := e.o.Builder.Build(ctx, BuildRequest{Key: runKey(r), RepoURL: r.Repo, Username: a.Repo.Username,
		Password: a.Repo.Password, Commit: r.Commit, Ref: r.Ref, Dockerfile: cfg.Dockerfile, Context: cfg.Context,
		Image: a.Image + ":" + r.Version, Version: r.Version})
	st.Log = res.Log
	if err != nil {
		if ctx.Err() != nil {
			return st, err
		}
		return e.finishStage(ctx, st, StageFailed, err.Error())
	}
	e.crashPoint("image-pushed")
	if err := e.o.Store.SetRunImage(ctx, r.ID, res.Image, res.Digest); err != nil {
		return st, err
	}
	return e.finishStage(ctx, st, StageSucceeded, "")
}

func lastLine(s string) string {
	for len(s) > 0 && (s[len(s)-1] == '\n' || s[len(s)-1] == '\r') {
		s = s[:len(s)-1]
	}
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '\n' {
			return s[i+1:]
		}
	}
	return s
}

// stepTicket opens the deployment ticket; CreateTicket is idempotent per
// run and environment, so a crash here cannot make two.
func (e *Engine) stepTicket(ctx context.Context, r Run, a *App) (bool, error) {
	st, _, err := e.o.Store.StartStage(ctx, Stage{RunID: r.ID, Name: StageTicket, Attempt: r.Attempt, Executor: "builtin"})
	if err != nil {
		return false, err
	}
	links := map[string]string{}
	for _, s := range r.Stages {
		if s.Attempt == r.Attempt && s.Links["jenkins"] != "" {
			links[s.Name] = s.Links["jenkins"]
		}
	}
	t, created, err := e.o.Store.CreateTicket(ctx, Ticket{App: r.App, Branch: branchOrTag(r), Commit: r.Commit, Version: r.Version,
		Image: r.Image, Digest: r.Digest, Environment: r.Environment, Pusher: r.Pusher, RunID: r.ID, Links: links}, e.o.TicketPrefix)
	if err != nil {
		return false, err
	}
	e.crashPoint("ticket-created")
	if st.State == StageRunning {
		st.Links = map[string]string{"ticket": t.Key}
		if _, err := e.finishStage(ctx, st, StageSucceeded, ""); err != nil && !errors.Is(err, ErrConflict) {
			return false, err
		}
	}
	if err := e.o.Store.TransitionRun(ctx, r.ID, RunTicketing, RunTicketed, ""); err != nil {
		return false, err
	}
	if created {
		e.o.Log.Info("ticket opened", "ticket", t.Key, "title", t.Title())
		if e.o.OnTicket != nil {
			e.o.OnTicket(t)
		}
	}
	return true, nil
}

func branchOrTag(r Run) string {
	if r.Branch != "" {
		return r.Branch
	}
	return r.Tag
}

// Cancel stops a run that is not finished.
func (e *Engine) Cancel(ctx context.Context, id int64, reason string) (Run, error) {
	r, err := e.o.Store.Run(ctx, id)
	if err != nil {
		return r, err
	}
	if !CanTransition(r.State, RunCanceled) {
		return r, fmt.Errorf("run %d is %s and cannot be canceled: %w", id, r.State, ErrConflict)
	}
	if err := e.o.Store.TransitionRun(ctx, id, r.State, RunCanceled, reason); err != nil {
		return r, err
	}
	for _, st := range r.Stages {
		if st.Attempt == r.Attempt && st.State == StageRunning {
			_, _ = e.finishStage(ctx, st, StageCanceled, reason)
		}
	}
	return e.o.Store.Run(ctx, id)
}

// Rerun starts a finished run over as a new attempt.
func (e *Engine) Rerun(ctx context.Context, id int64) (Run, error) {
	r, err := e.o.Store.Run(ctx, id)
	if err != nil {
		return r, err
	}
	r, err = e.o.Store.Rerun(ctx, id, r.State)
	if err == nil {
		e.Wake()
	}
	return r, err
}

// CreateTicket opens a ticket by hand for a version built earlier: the
// newest ticketed run of app on branch gives version, commit and image.
func (e *Engine) CreateTicket(ctx context.Context, app, branch, env, by string) (Ticket, error) {
	a, ok := e.apps[app]
	if !ok {
		return Ticket{}, fmt.Errorf("app %q is not configured", app)
	}
	if env == "" {
		env = a.Environments[0]
	}
	if !contains(a.Environments, env) {
		return Ticket{}, fmt.Errorf("environment %q is not one of app %s's %v", env, app, a.Environments)
	}
	runs, err := e.o.Store.Runs(ctx, RunFilter{App: app, Branch: branch, States: []RunState{RunTicketed}, Limit: 1})
	if err != nil {
		return Ticket{}, err
	}
	if len(runs) == 0 {
		return Ticket{}, fmt.Errorf("no successful build of app %s on branch %s yet", app, branch)
	}
	r := runs[0]
	t, _, err := e.o.Store.CreateTicket(ctx, Ticket{App: app, Branch: branchOrTag(r), Commit: r.Commit, Version: r.Version,
		Image: r.Image, Digest: r.Digest, Environment: env, Pusher: r.Pusher, CreatedBy: by}, e.o.TicketPrefix)
	if err == nil && e.o.OnTicket != nil {
		e.o.OnTicket(t)
	}
	return t, err
}
