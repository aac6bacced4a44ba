package pipeline_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dockmaster/dockmaster/internal/store/storetest"
	"github.com/dockmaster/dockmaster/internal/testenv"
	"github.com/dockmaster/dockmaster/pipeline"
	"github.com/dockmaster/dockmaster/test/jenkinsemu"
	"github.com/dockmaster/dockmaster/webhooks"
)

// commitRepo makes a git repository holding files on branch main and
// returns its file:// URL and head commit.
func commitRepo(t *testing.T, files map[string]string) (string, string) {
	t.Helper()
	repo := testenv.NewGitRepo(t)
	for name, body := range files {
		repo.Write(name, body)
	}
	return repo.URL(), repo.Commit("test")
}

// The command executor runs the test command in a container with the
// checkout at /src; its exit code decides the stage.
func TestCommandExecutorRunsTestsInAContainer(t *testing.T) {
	cli := testenv.Docker(t)
	img := testenv.BusyboxImage(t, cli)
	for _, c := range []struct {
		name   string
		script string
		want   pipeline.RunState
		reason string
	}{
		{"passing", "echo running tests; test -f /src/test.sh", pipeline.RunTicketed, ""},
		{"failing", "echo one test failed >&2; exit 3", pipeline.RunFailed, "test command exited 3: one test failed"},
	} {
		t.Run(c.name, func(t *testing.T) {
			url, sha := commitRepo(t, map[string]string{"test.sh": "#!/bin/sh\n" + c.script + "\n"})
			db := storetest.Open(t)
			work := t.TempDir()
			git := pipeline.NewGitCache(filepath.Join(work, "git"))
			app := pipeline.App{Name: "svc", Repo: pipeline.Repo{URL: url, FullName: "acme/svc"}, Rules: []pipeline.BranchRule{{Branch: "main"}},
				Environments: []string{"dev"}, Test: pipeline.StageConfig{Executor: "command", Command: []string{"sh", "test.sh"}, RunIn: img},
				Build: pipeline.StageConfig{Executor: "none"}}
			e, err := pipeline.NewEngine(pipeline.Options{Store: db.Pipeline(), Apps: []pipeline.App{app}, Tick: 20 * time.Millisecond,
				Tester: &pipeline.DockerTester{Docker: cli, Git: git, WorkDir: filepath.Join(work, "checkouts")}})
			if err != nil {
				t.Fatal(err)
			}
			ev := push("acme/svc", "main", sha)
			ev.Push.Repo.CloneURL = url
			addEvent(t, db, ev)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { e.Run(ctx); close(done) }()
			defer func() { cancel(); <-done }()
			r := waitRun(t, db, 1, c.want)
			if !strings.Contains(r.Reason, c.reason) {
				t.Fatalf("reason %q, want ~%q", r.Reason, c.reason)
			}
			for _, s := range r.Stages {
				if s.Name == pipeline.StageTest && !strings.Contains(s.Log, strings.Fields(c.script)[1]) {
					t.Fatalf("test log %q does not hold the command's output", s.Log)
				}
			}
		})
	}
}

// A Jenkins build job's image digest comes from the registry's push
// notification when the job does not report it.
func TestJenkinsBuildTakesTheDigestFromTheRegistryEvent(t *testing.T) {
	db := storetest.Open(t)
	emu := jenkinsemu.New(t, jenkinsemu.Options{ManualFinish: true})
	emu.AddJob("build-java", jenkinsemu.Job{Parameters: []string{"VERSION", pipeline.RunParam}})
	app := javaApp()
	app.Test = pipeline.StageConfig{Executor: "none"}
	app.Build = pipeline.StageConfig{Executor: "jenkins", Job: "build-java"}
	h := start(t, db, emu, []pipeline.App{app}, time.Millisecond)
	addEvent(t, db, push("acme/java-service-1", "release/1.0.1", "cccccccccccccccccccccccccccccccccccccccc"))
	h.engine.Wake()
	deadline := time.Now().Add(5 * time.Second)
	for len(emu.Builds("build-java")) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("build job never triggered")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := emu.Builds("build-java")[0].Params["VERSION"]; got != "1.0.1" {
		t.Fatalf("VERSION parameter %q", got)
	}
	addEvent(t, db, webhooks.Event{Kind: webhooks.KindImage, Images: []webhooks.ImagePushed{
		{Repository: "java-service-1", Tag: "1.0.1", Digest: "sha256:feedbeef"},
		{Repository: "java-service-1", Tag: "9.9.9", Digest: "sha256:other"},
	}})
	h.engine.Wake()
	deadline = time.Now().Add(5 * time.Second)
	for {
		r, _ := db.Pipeline().Run(context.Background(), 1)
		if r.Digest == "sha256:feedbeef" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("digest %q never recorded", r.Digest)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := emu.Complete("build-java", 1, jenkinsemu.Success); err != nil {
		t.Fatal(err)
	}
	h.engine.Wake()
	r := waitRun(t, db, 1, pipeline.RunTicketed)
	tk, err := db.Pipeline().Ticket(context.Background(), "DEPLOY-1")
	if err != nil {
		t.Fatal(err)
	}
	if r.Image != "127.0.0.1:5000/java-service-1:1.0.1" || tk.Digest != "sha256:feedbeef" || tk.ImageRef() != "127.0.0.1:5000/java-service-1@sha256:feedbeef" {
		t.Fatalf("run image %q, ticket %+v (ref %s)", r.Image, tk, tk.ImageRef())
	}
}
