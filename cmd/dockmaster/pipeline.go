package main

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/docker/docker/client"

	"github.com/dockmaster/dockmaster/internal/config"
	"github.com/dockmaster/dockmaster/internal/store"
	"github.com/dockmaster/dockmaster/pipeline"
	"github.com/dockmaster/dockmaster/pipeline/jenkins"
)

// newPipeline builds the engine from the config. Secrets are resolved
// here, once; a missing one is a config error.
func newPipeline(cfg *config.Config, db *store.DB, log *slog.Logger) (*pipeline.Engine, error) {
	pc := cfg.Pipeline
	apps := make([]pipeline.App, 0, len(pc.Apps))
	for _, a := range pc.Apps {
		app, err := appFromConfig(a)
		if err != nil {
			return nil, usageError{err}
		}
		apps = append(apps, app)
	}
	o := pipeline.Options{Store: db.Pipeline(), Apps: apps, TicketPrefix: pc.TicketPrefix, Log: log,
		PollAfter: time.Duration(pc.JenkinsPollAfter)}
	if pc.Jenkins.URL != "" {
		token, err := pc.Jenkins.Token.Value()
		if err != nil {
			return nil, usageError{fmt.Errorf("pipeline.jenkins.token: %w", err)}
		}
		jc, err := jenkins.New(pc.Jenkins.URL, pc.Jenkins.User, token)
		if err != nil {
			return nil, usageError{fmt.Errorf("pipeline.jenkins.url: %w", err)}
		}
		o.Jenkins = jc
	}
	endpoint := pc.Builder
	if endpoint == "" {
		endpoint = "unix:///var/run/docker.sock"
	}
	docker, err := client.NewClientWithOpts(client.WithHost(endpoint), client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, usageError{fmt.Errorf("pipeline.builder: %w", err)}
	}
	regPass, err := pc.Registry.Password.Value()
	if err != nil {
		return nil, usageError{fmt.Errorf("pipeline.registry.password: %w", err)}
	}
	dataDir := filepath.Dir(cfg.Store)
	git := pipeline.NewGitCache(filepath.Join(dataDir, "git"))
	o.Builder = &pipeline.DockerBuilder{Docker: docker, Git: git, Auth: pipeline.RegistryAuth{Username: pc.Registry.Username, Password: regPass}}
	o.Tester = &pipeline.DockerTester{Docker: docker, Git: git, WorkDir: filepath.Join(dataDir, "checkouts")}
	if point := envOr("", "DOCKMASTER_CRASH_AT"); point != "" {
		// Test hook: die as a crash would, at a named point (see pipeline.Options.CrashPoint).
		o.CrashPoint = func(p string) {
			if p == point {
				log.Warn("crashing on purpose", "point", p)
				_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			}
		}
	}
	e, err := pipeline.NewEngine(o)
	if err != nil {
		return nil, usageError{fmt.Errorf("pipeline: %w", err)}
	}
	return e, nil
}

func appFromConfig(a config.App) (pipeline.App, error) {
	pass, err := a.Repo.Password.Value()
	if err != nil {
		return pipeline.App{}, fmt.Errorf("app %s: repo.password: %w", a.Name, err)
	}
	supersede := a.Supersede == nil || *a.Supersede
	app := pipeline.App{
		Name:         a.Name,
		Repo:         pipeline.Repo{URL: a.Repo.URL, FullName: a.Repo.FullName, Username: a.Repo.Username, Password: pass},
		ComposeDir:   a.Compose.Dir,
		FallbackDir:  a.Compose.FallbackDir,
		Image:        a.Image,
		Environments: a.Environments,
		Test:         stageFromConfig(a.Stages.Test),
		Build:        stageFromConfig(a.Stages.Build),
		Supersede:    supersede,
	}
	if app.ComposeDir == "" {
		app.ComposeDir = "docker"
	}
	if app.Repo.FullName == "" {
		app.Repo.FullName = fullNameFromURL(a.Repo.URL)
	}
	for _, r := range a.Rules {
		app.Rules = append(app.Rules, pipeline.BranchRule{Branch: r.Branch, Tag: r.Tag, Version: r.Version, Environment: r.Environment})
	}
	if len(app.Rules) == 0 {
		// Every branch and tag, versions derived the usual way.
		app.Rules = []pipeline.BranchRule{{Branch: "*"}, {Branch: "*/*"}, {Tag: "*"}}
	}
	return app, app.Validate()
}

func stageFromConfig(s config.AppStage) pipeline.StageConfig {
	return pipeline.StageConfig{Executor: s.Executor, Job: s.Job, Params: s.Params, Command: s.Command, RunIn: s.Image,
		Dockerfile: s.Dockerfile, Context: s.Context}
}

// fullNameFromURL: https://github.com/acme/app.git -> acme/app.
func fullNameFromURL(u string) string {
	u = strings.TrimSuffix(strings.TrimSuffix(u, "/"), ".git")
	parts := strings.Split(u, "/")
	if len(parts) < 2 {
		return ""
	}
	return parts[len(parts)-2] + "/" + parts[len(parts)-1]
}
