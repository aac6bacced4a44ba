package test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"

	"github.com/dockmaster/dockmaster/internal/testenv"
	"github.com/dockmaster/dockmaster/test/jenkinsemu"
)

const (
	githubSecret  = "gh-e2e-secret"
	jenkinsSecret = "jenkins-e2e-secret"
	testJob       = "team/java-service-1-test"
)

// gitRepo makes a repository with a Dockerfile on branch release/1.0.1 and
// returns its file:// URL and the head commit.
func gitRepo(t *testing.T, buildSleep int) (string, string) {
	t.Helper()
	repo := testenv.NewGitRepo(t)
	dockerfile := "FROM " + testenv.BaseImage + "\nARG VERSION\n"
	if buildSleep > 0 {
		// The nonce defeats the layer cache, so the build really takes that long.
		dockerfile += fmt.Sprintf("RUN echo %d && sleep %d\n", time.Now().UnixNano(), buildSleep)
	}
	dockerfile += "RUN echo \"$VERSION\" > /version\nCMD [\"cat\", \"/version\"]\n"
	repo.Write("Dockerfile", dockerfile)
	repo.Commit("Release 1.0.1")
	repo.Git("checkout", "-q", "-b", "release/1.0.1")
	return repo.URL(), repo.Git("rev-parse", "HEAD")
}

// signedPush sends a GitHub push webhook for branch at sha.
func signedPush(t *testing.T, url, cloneURL, branch, sha string) {
	t.Helper()
	payload := map[string]any{
		"ref": "refs/heads/" + branch, "before": strings.Repeat("0", 40), "after": sha,
		"created": true, "deleted": false, "forced": false,
		"repository": map[string]any{"full_name": "acme/java-service-1", "name": "java-service-1",
			"clone_url": cloneURL, "html_url": "https://github.example/acme/java-service-1"},
		"pusher":      map[string]any{"name": "alice", "email": "alice@example.com"},
		"sender":      map[string]any{"login": "alice"},
		"head_commit": map[string]any{"id": sha, "message": "Release 1.0.1", "timestamp": "2026-11-27T10:00:00Z", "author": map[string]any{"name": "Alice", "email": "alice@example.com", "username": "alice"}},
		"commits":     []any{},
	}
	body, _ := json.Marshal(payload)
	mac := hmac.New(sha256.New, []byte(githubSecret))
	mac.Write(body)
	req, _ := http.NewRequest("POST", url+"/webhooks/github", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-GitHub-Delivery", fmt.Sprintf("e2e-%d", time.Now().UnixNano()))
	req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(mac.Sum(nil)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("push webhook: status %d", resp.StatusCode)
	}
}

type e2eRun struct {
	ID     int64  `json:"id"`
	State  string `json:"state"`
	Reason string `json:"reason"`
	Image  string `json:"image"`
	Digest string `json:"digest"`
	Stages []struct {
		Name  string            `json:"name"`
		State string            `json:"state"`
		Links map[string]string `json:"links"`
	} `json:"stages"`
}

func listRuns(c *testenv.Client) []e2eRun {
	var out struct {
		Runs []e2eRun `json:"runs"`
	}
	c.Do("GET", "/api/v1/runs", nil, &out)
	return out.Runs
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestPushToTicketEndToEnd: a signed GitHub push starts the test stage in
// the Jenkins emulator, the built-in builder builds from the real git
// repository and pushes to the local registry, and DEPLOY-1 opens. Each
// crash case kills the service at one stage and restarts it: still one
// Jenkins build, one image build and one ticket.
func TestPushToTicketEndToEnd(t *testing.T) {
	cli := testenv.Docker(t)
	testenv.BusyboxImage(t, cli)
	reg := testenv.StartRegistry(t)

	cases := []struct {
		name       string
		crashAt    string // crash point of the first process
		killDuring string // or: the run state during which the test kills it
		buildSleep int
	}{
		{name: "no crash"},
		{name: "crash after the Jenkins trigger", crashAt: "jenkins-triggered"},
		{name: "kill during the docker build", killDuring: "building", buildSleep: 4},
		{name: "crash after the image push", crashAt: "image-pushed"},
		{name: "crash at ticket creation", crashAt: "ticket-created"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cloneURL, sha := gitRepo(t, c.buildSleep)
			imageRepo := fmt.Sprintf("e2e%d/java-service-1", i)
			var srv *testenv.Server
			emu := jenkinsemu.New(t, jenkinsemu.Options{User: "ci", Token: "tok", RequireCrumb: true,
				QueueDelay: 50 * time.Millisecond, BuildDuration: 300 * time.Millisecond})
			emu.AddJob(testJob, jenkinsemu.Job{Parameters: []string{"GIT_URL", "BRANCH", "GIT_COMMIT", "VERSION", "DOCKMASTER_RUN"}})
			config := fmt.Sprintf(`webhooks:
  secrets:
    github: %s
    jenkins: %s
pipeline:
  jenkins_poll_after: 2s
  jenkins: {url: %s, user: ci, token: tok}
  apps:
    - name: JavaService1
      repo: {url: "%s", full_name: acme/java-service-1}
      rules:
        - {branch: "release/*", environment: prod}
      image: %s/%s
      environments: [prod]
      stages:
        test: {executor: jenkins, job: %s}
        build: {executor: docker}
environments:
  - name: prod
`, githubSecret, jenkinsSecret, emu.URL(), cloneURL, reg.Addr, imageRepo, testJob)
			var env []string
			if c.crashAt != "" {
				env = []string{"DOCKMASTER_CRASH_AT=" + c.crashAt}
			}
			srv = testenv.StartServer(t, config, env...)
			// The emulator notifies dockmaster as the Notification plugin would.
			emu.SetNotify(srv.URL+"/webhooks/jenkins?token="+jenkinsSecret, nil)
			admin := srv.Admin()
			signedPush(t, srv.URL, cloneURL, "release/1.0.1", sha)

			switch {
			case c.crashAt != "":
				if err := srv.Wait(60 * time.Second); err == nil || !strings.Contains(err.Error(), "killed") {
					t.Fatalf("expected the crash point %s to kill the service, got %v", c.crashAt, err)
				}
				srv.Env = nil
				srv.Start()
				admin = srv.Admin()
			case c.killDuring != "":
				waitFor(t, "the build stage to run", 60*time.Second, func() bool {
					runs := listRuns(admin)
					return len(runs) == 1 && runs[0].State == c.killDuring
				})
				time.Sleep(time.Second) // inside the RUN sleep
				srv.Kill()
				srv.Start()
				admin = srv.Admin()
			}

			var run e2eRun
			waitFor(t, "the run to reach ticketed", 120*time.Second, func() bool {
				runs := listRuns(admin)
				if len(runs) == 1 {
					run = runs[0]
				}
				if run.State == "failed" {
					t.Fatalf("run failed: %s", run.Reason)
				}
				return run.State == "ticketed"
			})
			if n := len(listRuns(admin)); n != 1 {
				t.Fatalf("%d runs, want 1", n)
			}
			if n := emu.TriggerCount(testJob); n != 1 {
				t.Fatalf("%d Jenkins triggers, want 1", n)
			}
			builds := emu.Builds(testJob)
			if len(builds) != 1 || builds[0].Params["BRANCH"] != "release/1.0.1" || builds[0].Params["GIT_COMMIT"] != sha || builds[0].Params["VERSION"] != "1.0.1" {
				t.Fatalf("Jenkins builds %+v", builds)
			}
			wantImage := reg.Addr + "/" + imageRepo + ":1.0.1"
			if run.Image != wantImage || !strings.HasPrefix(run.Digest, "sha256:") {
				t.Fatalf("run image %q digest %q, want %s@sha256:…", run.Image, run.Digest, wantImage)
			}
			// Exactly one image built for this run, and it is the one in the registry.
			imgs, err := cli.ImageList(context.Background(), image.ListOptions{Filters: filters.NewArgs(filters.Arg("reference", wantImage))})
			if err != nil || len(imgs) != 1 {
				t.Fatalf("%d local images %s (%v), want 1", len(imgs), wantImage, err)
			}
			if got := registryDigest(t, reg.URL, imageRepo, "1.0.1"); got != run.Digest {
				t.Fatalf("registry digest %s, run digest %s", got, run.Digest)
			}
			var tickets []struct {
				Key, App, Version, Environment, State, Branch, Pusher, Digest string
			}
			if st := admin.Do("GET", "/api/v1/tickets", nil, &tickets); st != http.StatusOK {
				t.Fatalf("tickets: status %d", st)
			}
			if len(tickets) != 1 {
				t.Fatalf("%d tickets, want 1: %+v", len(tickets), tickets)
			}
			// The ticket opens for prod; what the deploy policy does with it
			// next (schedule it) is the deploy tests' business.
			tk := tickets[0]
			if tk.Key != "DEPLOY-1" || tk.Environment != "prod" || tk.Version != "1.0.1" || tk.Branch != "release/1.0.1" || tk.Digest != run.Digest || tk.Pusher != "alice" {
				t.Fatalf("ticket %+v", tk)
			}
		})
	}
}

// registryDigest asks the registry for the manifest digest of repo:tag.
func registryDigest(t *testing.T, base, repo, tag string) string {
	t.Helper()
	req, _ := http.NewRequest("HEAD", base+"/v2/"+repo+"/manifests/"+tag, nil)
	req.Header.Set("Accept", "application/vnd.docker.distribution.manifest.v2+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("registry manifest %s:%s: status %d", repo, tag, resp.StatusCode)
	}
	return resp.Header.Get("Docker-Content-Digest")
}
