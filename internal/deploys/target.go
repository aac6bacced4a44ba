// Package deploys connects pipeline.Deploys to the world: the built-in
// deployer (compose files from the app's repository at the ticket's commit,
// loaded with deployer/compose, run by the environment's
// *deployer.Deployer) or a Jenkins deploy job, and the config's policies.
package deploys

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/dockmaster/dockmaster/deployer"
	"github.com/dockmaster/dockmaster/deployer/compose"
	"github.com/dockmaster/dockmaster/pipeline"
)

// Commits reads a file of a commit's tree. branch is the ticket's branch
// or tag name: the commit is fetched from there, since a release branch's
// commit is often not reachable from the remote's HEAD.
type Commits interface {
	File(ctx context.Context, a *pipeline.App, branch, commit, name string) ([]byte, error)
}

// GitFiles reads files at a commit through a GitCache.
type GitFiles struct{ Cache *pipeline.GitCache }

// refsFor lists the refs a commit of branch may be fetched from, most
// likely first: the branch, the tag of that name (tickets carry either in
// Branch), then HEAD.
func refsFor(branch string) []string {
	if branch == "" {
		return []string{"HEAD"}
	}
	return []string{"refs/heads/" + branch, "refs/tags/" + branch, "HEAD"}
}

// File returns name at commit of a's repository; os.ErrNotExist (wrapped)
// when the commit has no such file.
func (g GitFiles) File(ctx context.Context, a *pipeline.App, branch, commit, name string) ([]byte, error) {
	var c *object.Commit
	var errs []error
	for _, ref := range refsFor(branch) {
		var err error
		if c, err = g.Cache.Commit(ctx, a.Repo.URL, a.Repo.Username, a.Repo.Password, ref, commit); err == nil {
			break
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	if c == nil {
		return nil, fmt.Errorf("app %s: commit %.7s of %s: %w", a.Name, commit, branch, errors.Join(errs...))
	}
	f, err := c.File(name)
	if err != nil {
		return nil, fmt.Errorf("%s at %.7s: %w (%w)", name, commit, err, os.ErrNotExist)
	}
	s, err := f.Contents()
	return []byte(s), err
}

// Builtin deploys with the built-in deployer of one environment.
type Builtin struct {
	Deployer deployer.Target // standalone hosts or a Swarm cluster
	Apps     func(name string) (*pipeline.App, bool)
	Files    Commits // nil: only FallbackDir is used
	// Stacks maps app -> stack name; default the app name lower-cased.
	Stacks map[string]string
}

// StackName is the stack an app deploys as.
func (b *Builtin) StackName(app string) string {
	if s := b.Stacks[app]; s != "" {
		return s
	}
	return strings.ToLower(app)
}

// files finds docker-compose.yml and rancher-compose.yml: in the
// repository at the ticket's commit, else in the app's FallbackDir.
func (b *Builtin) files(ctx context.Context, a *pipeline.App, t pipeline.Ticket) (composeName string, dc, rc []byte, err error) {
	dir := a.ComposeDir
	if dir == "" {
		dir = "docker"
	}
	if b.Files != nil && t.Commit != "" && (a.Repo.URL != "") {
		dc, err = b.Files.File(ctx, a, t.Branch, t.Commit, path.Join(dir, "docker-compose.yml"))
		if err == nil {
			rc, rerr := b.Files.File(ctx, a, t.Branch, t.Commit, path.Join(dir, "rancher-compose.yml"))
			if rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
				return "", nil, nil, rerr
			}
			return path.Join(dir, "docker-compose.yml") + "@" + t.Commit, dc, rc, nil
		}
		if !errors.Is(err, os.ErrNotExist) || a.FallbackDir == "" {
			return "", nil, nil, err
		}
	}
	if a.FallbackDir == "" {
		return "", nil, nil, fmt.Errorf("app %s: no compose files: no commit on the ticket and no fallback_dir", a.Name)
	}
	name := filepath.Join(a.FallbackDir, "docker-compose.yml")
	if dc, err = os.ReadFile(name); err != nil {
		return "", nil, nil, fmt.Errorf("app %s: %w", a.Name, err)
	}
	rc, err = os.ReadFile(filepath.Join(a.FallbackDir, "rancher-compose.yml"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", nil, nil, err
	}
	return name, dc, rc, nil
}

// Deploy loads the stack with VERSION = the ticket's version and upgrades it.
func (b *Builtin) Deploy(ctx context.Context, t pipeline.Ticket) (pipeline.DeployOutcome, error) {
	a, ok := b.Apps(t.App)
	if !ok {
		return pipeline.DeployOutcome{}, fmt.Errorf("app %s is not configured", t.App)
	}
	name, dc, rc, err := b.files(ctx, a, t)
	if err != nil {
		return pipeline.DeployOutcome{}, err
	}
	vars := map[string]string{"VERSION": t.Version}
	if t.Image != "" {
		vars["IMAGE"] = t.ImageRef()
	}
	spec, err := compose.Load(ctx, compose.Options{StackName: b.StackName(t.App), ComposeFile: name, ComposeBytes: dc,
		RancherBytes: rc, RancherFile: "rancher-compose.yml", Variables: vars})
	if err != nil {
		return pipeline.DeployOutcome{}, err
	}
	err = b.Deployer.Upgrade(ctx, *spec, deployer.DeployOptions{Version: t.Version, Compose: string(dc), Rancher: string(rc), Variables: vars, By: t.Key})
	if err != nil && !errors.Is(err, deployer.ErrUpgradeHeld) {
		return pipeline.DeployOutcome{}, err
	}
	// Look at what is held: after a crash the upgrade may already be held
	// (ErrUpgradeHeld), which is success only if it holds this version.
	out, herr := b.held(ctx, spec.Name, t.Version)
	if herr != nil {
		return out, herr
	}
	if err != nil && !out.Held {
		return out, err
	}
	return out, nil
}

// held reports whether stack holds version in upgraded (with the version
// it replaced); another version held is an error wrapping
// deployer.ErrUpgradeHeld.
func (b *Builtin) held(ctx context.Context, stack, version string) (pipeline.DeployOutcome, error) {
	st, err := b.Deployer.Status(ctx, stack)
	if err != nil {
		return pipeline.DeployOutcome{}, err
	}
	out := pipeline.DeployOutcome{}
	for _, s := range st.Services {
		if s.State == deployer.StateUpgraded {
			if s.Version != version {
				return pipeline.DeployOutcome{}, fmt.Errorf("%s/%s holds version %s: %w", stack, s.Name, s.Version, deployer.ErrUpgradeHeld)
			}
			out.Held, out.FromVersion = true, s.OldVersion
		}
	}
	return out, nil
}

// observe reports whether the ticket's version is held on its stack.
// Builtin is no pipeline.Observer: its Deploy reports the hold itself.
func (b *Builtin) observe(ctx context.Context, t pipeline.Ticket) (pipeline.DeployOutcome, error) {
	return b.held(ctx, b.StackName(t.App), t.Version)
}

// Finish confirms the held upgrade.
func (b *Builtin) Finish(ctx context.Context, t pipeline.Ticket) error {
	return b.Deployer.Finish(ctx, b.StackName(t.App), nil)
}

// Rollback restores the old containers.
func (b *Builtin) Rollback(ctx context.Context, t pipeline.Ticket) error {
	return b.Deployer.Rollback(ctx, b.StackName(t.App), nil)
}

// Health probes the new containers once.
func (b *Builtin) Health(ctx context.Context, t pipeline.Ticket) (pipeline.Health, error) {
	st, err := b.Deployer.Status(ctx, b.StackName(t.App))
	if err != nil {
		return pipeline.Health{}, err
	}
	h := pipeline.Health{Healthy: len(st.Services) > 0}
	var bad []string
	for _, s := range st.Services {
		for _, c := range s.Containers {
			if c.Version != s.Version {
				continue // the old, stopped ones
			}
			h.Containers = append(h.Containers, fmt.Sprintf("%s/%s: %s", c.Host, c.Name, c.Health))
		}
		if s.Healthy < s.Scale {
			h.Healthy = false
			bad = append(bad, fmt.Sprintf("%s %d/%d healthy", s.Name, s.Healthy, s.Scale))
		}
	}
	h.Detail = strings.Join(bad, "; ")
	return h, nil
}

// JenkinsJob deploys by triggering a Jenkins job with VERSION; its outcome
// arrives later through Deploys.DeployFinished. The job runs
// `dockmaster up --upgrade` on the same environment and stack, so when
// Stack is set the held upgrade is observed, finished and rolled back
// through the built-in deployer, as a built-in deploy is.
type JenkinsJob struct {
	Jenkins pipeline.Jenkins
	Job     string
	// Stack is the environment's built-in deployer; nil when dockmaster
	// does not manage the environment's hosts: then nothing is held and
	// Finish, Rollback and Health are the job's business.
	Stack *Builtin
}

var _ pipeline.Observer = (*JenkinsJob)(nil)

// Deploy triggers the job unless a build for this ticket exists already.
func (j *JenkinsJob) Deploy(ctx context.Context, t pipeline.Ticket) (pipeline.DeployOutcome, error) {
	links := map[string]string{}
	if f, err := j.Jenkins.FindBuild(ctx, j.Job, pipeline.TicketParam, t.Key); err == nil && f != nil {
		return pipeline.DeployOutcome{Pending: true, Links: links}, nil
	}
	_, err := j.Jenkins.Trigger(ctx, j.Job, map[string]string{"VERSION": t.Version, "ENVIRONMENT": t.Environment,
		"APP": t.App, "GIT_COMMIT": t.Commit, pipeline.TicketParam: t.Key})
	if err != nil {
		return pipeline.DeployOutcome{}, fmt.Errorf("jenkins job %s: %w", j.Job, err)
	}
	return pipeline.DeployOutcome{Pending: true, Links: links}, nil
}

// Observe reports whether the job left the ticket's version held.
func (j *JenkinsJob) Observe(ctx context.Context, t pipeline.Ticket) (pipeline.DeployOutcome, error) {
	if j.Stack == nil {
		return pipeline.DeployOutcome{}, nil
	}
	return j.Stack.observe(ctx, t)
}

// Finish confirms the upgrade the job left held.
func (j *JenkinsJob) Finish(ctx context.Context, t pipeline.Ticket) error {
	if j.Stack == nil {
		return nil // the job finished its own deploy
	}
	return j.Stack.Finish(ctx, t)
}

// Rollback restores the old containers the job's upgrade kept.
func (j *JenkinsJob) Rollback(ctx context.Context, t pipeline.Ticket) error {
	if j.Stack == nil {
		return errors.New("rollback of a Jenkins deploy job: run the job with the previous VERSION")
	}
	return j.Stack.Rollback(ctx, t)
}

// Health probes the new containers of the job's held upgrade.
func (j *JenkinsJob) Health(ctx context.Context, t pipeline.Ticket) (pipeline.Health, error) {
	if j.Stack == nil {
		return pipeline.Health{Healthy: true, Detail: "deployed by Jenkins job " + j.Job}, nil
	}
	return j.Stack.Health(ctx, t)
}

// Targets picks each environment's target: its Jenkins deploy job when the
// policy names one, else the built-in deployer from Deployers.
type Targets struct {
	Deployers func(ctx context.Context, env string) (deployer.Target, error)
	Apps      func(name string) (*pipeline.App, bool)
	Files     Commits
	Stacks    map[string]string
	Jobs      func(env string) string
	Jenkins   pipeline.Jenkins // nil: Jenkins jobs are refused
}

// Target implements DeploysOptions.Target.
func (ts *Targets) Target(env string) (pipeline.Target, error) {
	if ts.Jobs != nil {
		if job := ts.Jobs(env); job != "" {
			if ts.Jenkins == nil {
				return nil, fmt.Errorf("environment %s deploys with jenkins job %s but no jenkins is configured", env, job)
			}
			j := &JenkinsJob{Jenkins: ts.Jenkins, Job: job}
			// An environment without a deployer (unknown to the fleet) is
			// deployed by the job alone, as before jobs were observed.
			if d, err := ts.Deployers(context.Background(), env); err == nil && d != nil {
				j.Stack = &Builtin{Deployer: d, Apps: ts.Apps, Files: ts.Files, Stacks: ts.Stacks}
			}
			return j, nil
		}
	}
	d, err := ts.Deployers(context.Background(), env)
	if err != nil {
		return nil, err
	}
	return &Builtin{Deployer: d, Apps: ts.Apps, Files: ts.Files, Stacks: ts.Stacks}, nil
}
