package test

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/dockmaster/dockmaster/internal/testenv"
	"github.com/dockmaster/dockmaster/test/jenkinsemu"
)

// The Jenkins deploy path: prod deploys app web with this job.
const (
	deployJob     = "team/web-deploy"
	ownerName     = "olivia"
	ownerPassword = "olivia-pw-0123456789"
	// The deploy job's compose file: deployCompose, stopping at once.
	jobCompose = `version: '2'
services:
  web:
    image: dockmaster-test/web:${VERSION}
    # httpd as PID 1 ignores SIGTERM: every stop would wait the 10s grace.
    command: ["sh", "-c", "trap 'exit 0' TERM; httpd -f -p 8080 -h /www & wait"]
`
)

// jenkinsDeploy is a dockmaster whose prod (one harness host) deploys app
// web through a Jenkins deploy job in the emulator. The test is the
// Jenkins agent: when the job runs, it runs scripts/jenkins/deploy.sh with
// the build's parameters against the real service and dockerd, then lets
// the emulator finish the build (its notification reaches dockmaster).
type jenkinsDeploy struct {
	srv      *testenv.Server
	emu      *jenkinsemu.Server
	host     *testenv.Host
	admin    *testenv.Client
	job      *dmServer // the job's credentials: a prod member key
	cloneURL string
	shas     map[string]string
	ws       string // the job's workspace, with docker/*.yml
}

// startJenkinsDeploy prepares images of versions on a fresh host, the
// app's repository with a release/<v> branch per version, the emulator,
// the service, and an owner of prod (ownerName).
func startJenkinsDeploy(t *testing.T, versions ...string) *jenkinsDeploy {
	t.Helper()
	testenv.Docker(t)
	h := testenv.StartHost(t, "jd")
	for _, v := range versions {
		testenv.HTTPServerImage(t, h.Client, v)
	}
	removeOwned(t, h) // after the server stops, before the host does
	cloneURL, shas := deployRepo(t, versions...)
	emu := jenkinsemu.New(t, jenkinsemu.Options{User: "ci", Token: "tok", QueueDelay: 20 * time.Millisecond, ManualFinish: true})
	emu.AddJob(deployJob, jenkinsemu.Job{Parameters: []string{"VERSION", "DOCKMASTER_TICKET"}})
	srv := testenv.StartServer(t, fmt.Sprintf(`public_url: %s
webhooks:
  secrets:
    github: %s
    jenkins: %s
pipeline:
  jenkins: {url: %s, user: ci, token: tok}
  apps:
    - name: web
      repo: {url: "%s", full_name: acme/java-service-1}
      rules:
        - {branch: "release/*", environment: prod}
      environments: [prod]
      stages:
        test: {executor: none}
        build: {executor: none}
environments:
  - name: prod
    hosts:
      - {name: jd, endpoint: "%s", address: %s}
deploys:
  tick: 300ms
  environments:
    prod:
      jenkins_job: %s
`, deployPublicURL, githubSecret, jenkinsSecret, emu.URL(), cloneURL, h.Endpoint, h.IP, deployJob))
	emu.SetNotify(srv.URL+"/webhooks/jenkins?token="+jenkinsSecret, nil)
	admin := srv.Admin()
	var key struct {
		AccessKey string `json:"access_key"`
		Secret    string `json:"secret"`
	}
	for _, call := range []struct {
		method, path string
		body, out    any
	}{
		{"POST", "/api/v1/users", map[string]any{"name": ownerName, "password": ownerPassword}, nil},
		{"PUT", "/api/v1/environments/prod/members/" + ownerName, map[string]string{"role": "owner"}, nil},
		{"POST", "/api/v1/environments/prod/keys", map[string]string{"role": "member", "description": "web deploy job"}, &key},
	} {
		if st := admin.Do(call.method, call.path, call.body, call.out); st/100 != 2 {
			t.Fatalf("%s %s: %d", call.method, call.path, st)
		}
	}
	ws := t.TempDir()
	for name, text := range map[string]string{"docker-compose.yml": jobCompose, "rancher-compose.yml": deployRancher} {
		if err := os.MkdirAll(filepath.Join(ws, "docker"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(ws, "docker", name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return &jenkinsDeploy{srv: srv, emu: emu, host: h, admin: admin, cloneURL: cloneURL, shas: shas, ws: ws,
		job: &dmServer{URL: srv.URL, Access: key.AccessKey, Secret: key.Secret}}
}

// jdTicket is a ticket as GET /api/v1/tickets/:key answers.
type jdTicket struct {
	e2eTicket
	HoldLinks *struct {
		FinishURL   string `json:"finish_url"`
		RollbackURL string `json:"rollback_url"`
	} `json:"hold_links"`
}

func (j *jenkinsDeploy) ticket(t *testing.T, key string) jdTicket {
	t.Helper()
	var tk jdTicket
	if st := j.admin.Do("GET", "/api/v1/tickets/"+key, nil, &tk); st != http.StatusOK {
		t.Fatalf("ticket %s: %d", key, st)
	}
	return tk
}

// waitTicket waits until the ticket is in state.
func (j *jenkinsDeploy) waitTicket(t *testing.T, key, state string, d time.Duration) jdTicket {
	t.Helper()
	var tk jdTicket
	waitFor(t, key+" to be "+state, d, func() bool {
		tk = j.ticket(t, key)
		return tk.State == state
	})
	return tk
}

// deploy pushes release/<version> and plays the deploy job dockmaster
// triggers for its ticket: deploy.sh with the build's parameters, then
// the build ends SUCCESS. It returns the ticket and what the script printed.
func (j *jenkinsDeploy) deploy(t *testing.T, version string) (key, out string) {
	t.Helper()
	signedPush(t, j.srv.URL, j.cloneURL, "release/"+version, j.shas[version])
	var b jenkinsemu.Build
	waitFor(t, "the deploy job to run for "+version, 60*time.Second, func() bool {
		for _, x := range j.emu.Builds(deployJob) {
			if x.Params["VERSION"] == version && x.Building {
				b = x
			}
		}
		return b.Number != 0
	})
	key = b.Params["DOCKMASTER_TICKET"]
	if !strings.HasPrefix(key, "DEPLOY-") {
		t.Fatalf("deploy build #%d parameters %v: no ticket", b.Number, b.Params)
	}
	if tk := j.ticket(t, key); tk.State != "deploying" || tk.Version != version {
		t.Fatalf("%s while its job runs: %s %s (%s)", key, tk.Version, tk.State, tk.Reason)
	}
	env := []string{"APP=web", "DOCKMASTER_ENV=prod", "DOCKMASTER_BIN=" + testenv.Binary(t), "DOCKMASTER_WAIT=2m"}
	for k, v := range b.Params { // Jenkins exports the build's parameters
		env = append(env, k+"="+v)
	}
	script := filepath.Join(repoRoot(t), "scripts", "jenkins", "deploy.sh")
	out, errOut, code := j.job.runCLI(t, j.ws, env, "/bin/sh", script)
	result := jenkinsemu.Success
	if code != 0 {
		result = jenkinsemu.Failure
	}
	if err := j.emu.Complete(deployJob, b.Number, result); err != nil {
		t.Fatal(err)
	}
	if code != 0 {
		t.Fatalf("deploy.sh for %s: exit %d\nstdout:\n%s\nstderr:\n%s", key, code, out, errOut)
	}
	// The build's end reaches dockmaster before the test goes on.
	waitFor(t, "the deploy build's notifications", 30*time.Second, func() bool {
		for _, n := range j.emu.Notifications() {
			if n.Job == deployJob && n.Number == b.Number && n.Phase == "FINALIZED" {
				if n.Status/100 != 2 {
					t.Fatalf("FINALIZED notification of #%d: %d %v", b.Number, n.Status, n.Err)
				}
				return true
			}
		}
		return false
	})
	return key, out
}

var printedLinks = regexp.MustCompile(`Finish the upgrade: (\S+)\nRoll back: (\S+)`)

// held deploys first (nothing held: done), then version (held): it
// returns the held ticket and the finish and rollback links deploy.sh
// printed.
func (j *jenkinsDeploy) held(t *testing.T, first, version string) (key, finish, rollback string) {
	t.Helper()
	k1, out := j.deploy(t, first)
	if tk := j.waitTicket(t, k1, "done", 30*time.Second); tk.Hold != nil {
		t.Fatalf("%s (first version) has a hold: %+v", k1, tk.Hold)
	}
	if !strings.Contains(out, "nothing held to confirm") {
		t.Errorf("deploy.sh of the first version:\n%s", out)
	}
	key, out = j.deploy(t, version)
	m := printedLinks.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("deploy.sh printed no approval links:\n%s", out)
	}
	return key, m[1], m[2]
}

// local maps a link under public_url to the test's server.
func (j *jenkinsDeploy) local(t *testing.T, link string) string {
	t.Helper()
	if !strings.HasPrefix(link, deployPublicURL+"/links/") {
		t.Fatalf("link %q is not under public_url %s/links/", link, deployPublicURL)
	}
	return j.srv.URL + strings.TrimPrefix(link, deployPublicURL)
}
