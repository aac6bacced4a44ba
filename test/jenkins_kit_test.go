package test

import (
	"bytes"
	"encoding/json"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/dockmaster/dockmaster/internal/testenv"
	jenkinsscripts "github.com/dockmaster/dockmaster/scripts/jenkins"
	"github.com/dockmaster/dockmaster/templates/jenkins"
)

// TestJenkinsInitMatchesTemplates checks that `dockmaster jenkins init`
// writes the templates rendered with the same values, and the scripts as
// embedded, executable.
func TestJenkinsInitMatchesTemplates(t *testing.T) {
	bin := buildDockmaster(t)
	out := t.TempDir()
	s := &dmServer{}
	stdout, stderr, code := s.runCLI(t, out, nil, bin, "jenkins", "init", "--app", "java-service-1", "--out", out,
		"--url", "https://dm.example.test", "--env", "staging", "--image", "reg.example.test/java-service-1")
	if code != 0 {
		t.Fatalf("jenkins init: exit %d\n%s\n%s", code, stdout, stderr)
	}
	v := jenkins.Values{App: "java-service-1", URL: "https://dm.example.test", Env: "staging", Image: "reg.example.test/java-service-1",
		TestCommand: "./gradlew test", ScriptDir: "dockmaster-ci", KeyCredential: "dockmaster-key", HookCredential: "dockmaster-hook-token"}
	for _, name := range jenkins.Names {
		want, err := jenkins.Render(name, v)
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(out, name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from the template rendered with the same values:\n%s", name, got)
		}
		if bytes.Contains(got, []byte("{{")) || !bytes.Contains(got, []byte("java-service-1")) {
			t.Errorf("%s not rendered:\n%s", name, got)
		}
		// Secrets only through withCredentials.
		if regexp.MustCompile(`(?i)(secret|token|password)\s*=\s*'`).Match(got) {
			t.Errorf("%s assigns a secret literally:\n%s", name, got)
		}
	}
	scripts, _ := fs.Glob(jenkinsscripts.FS, "*.sh")
	if len(scripts) != 3 {
		t.Fatalf("embedded scripts = %v", scripts)
	}
	for _, name := range scripts {
		want, _ := jenkinsscripts.FS.ReadFile(name)
		path := filepath.Join(out, "dockmaster-ci", name)
		got, err := os.ReadFile(path)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: %v, or differs from scripts/jenkins/%s", path, err, name)
		}
		if st, err := os.Stat(path); err != nil || st.Mode()&0o111 == 0 {
			t.Errorf("%s not executable", path)
		}
	}
	// A second init refuses to overwrite.
	if _, stderr, code := s.runCLI(t, out, nil, bin, "jenkins", "init", "--app", "java-service-1", "--out", out); code != 1 || !strings.Contains(stderr, "--force") {
		t.Errorf("second init: exit %d %s", code, stderr)
	}
	if _, stderr, code := s.runCLI(t, out, nil, bin, "jenkins", "init", "--app", "x'y", "--out", t.TempDir()); code != 2 || !strings.Contains(stderr, "quotes") {
		t.Errorf("quote in app: exit %d %s", code, stderr)
	}
}

// TestJenkinsDeployScript runs the deploy job's script (as the Jenkinsfile
// calls it, without Jenkins) against a real dockmaster and dockerd: the
// service ends upgraded and the script prints a link that answers.
func TestJenkinsDeployScript(t *testing.T) {
	testenv.Docker(t)
	h1 := testenv.StartHost(t, "h1")
	testenv.HTTPServerImage(t, h1.Client, "1.0.0")
	testenv.HTTPServerImage(t, h1.Client, "1.0.1")
	removeOwned(t, h1)
	bin := buildDockmaster(t)
	s := startDockmaster(t, bin, h1)

	ws := t.TempDir()
	if err := os.MkdirAll(filepath.Join(ws, "docker"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, text := range map[string]string{"docker-compose.yml": seedCompose, "rancher-compose.yml": seedRancher} {
		if err := os.WriteFile(filepath.Join(ws, "docker", name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, stderr, code := s.runCLI(t, ws, nil, bin, "up", "-f", "docker/docker-compose.yml", "-e", "prod", "-s", "java-service-1", "--set", "VERSION=1.0.0"); code != 0 {
		t.Fatalf("first up: exit %d %s", code, stderr)
	}
	script := filepath.Join(repoRoot(t), "scripts", "jenkins", "deploy.sh")
	env := []string{"APP=java-service-1", "VERSION=1.0.1", "DOCKMASTER_ENV=prod", "DOCKMASTER_BIN=" + bin}
	out, errOut, code := s.runCLI(t, ws, env, "/bin/sh", script)
	if code != 0 {
		t.Fatalf("deploy.sh: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	st := s.status(t, "java-service-1")
	if st.State != "upgraded" || st.Services[0].Version != "1.0.1" || st.Services[0].OldVersion != "1.0.0" {
		t.Fatalf("after deploy.sh: %+v\n%s", st, out)
	}
	m := regexp.MustCompile(`Confirm or roll back: (\S+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("deploy.sh printed no link:\n%s", out)
	}
	req, _ := http.NewRequest(http.MethodGet, m[1], nil)
	req.SetBasicAuth(s.Access, s.Secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("link %s: %d", m[1], resp.StatusCode)
	}

	// Missing files stop the job with the seed's messages.
	empty := t.TempDir()
	out, _, code = s.runCLI(t, empty, append(env, "DOCKERFILES_DIR="+empty), "/bin/sh", script)
	if code != 1 || strings.TrimSpace(out) != "No docker-compose.yml found. Can't continue!" {
		t.Errorf("no compose file: exit %d %q", code, out)
	}
	if err := os.MkdirAll(filepath.Join(empty, "docker"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(empty, "docker", "docker-compose.yml"), []byte(seedCompose), 0o644); err != nil {
		t.Fatal(err)
	}
	out, _, code = s.runCLI(t, empty, env, "/bin/sh", script)
	if code != 1 || strings.TrimSpace(out) != "No rancher-compose.yml found. Can't continue!" {
		t.Errorf("no rancher-compose file: exit %d %q", code, out)
	}
}

// TestJenkinsDeployJobHeld: a ticket deployed by a Jenkins deploy job is
// held like a built-in deploy. The job's deploy.sh upgrades the stack,
// waits until dockmaster holds the ticket and prints the approval links;
// the links show the page without acting, and the page's form, posted by
// an owner, finishes the upgrade. A first version holds nothing: done.
func TestJenkinsDeployJobHeld(t *testing.T) {
	j := startJenkinsDeploy(t, "1.0.0", "1.0.1")
	key, finish, rollback := j.held(t, "1.0.0", "1.0.1")

	tk := j.waitTicket(t, key, "awaiting-confirmation", 10*time.Second)
	if tk.Hold == nil || tk.Hold.FromVersion != "1.0.0" || tk.Hold.ToVersion != "1.0.1" || tk.Hold.State != "open" {
		t.Fatalf("%s hold %+v", key, tk.Hold)
	}
	if tk.HoldLinks == nil || tk.HoldLinks.FinishURL != finish || tk.HoldLinks.RollbackURL != rollback || finish == rollback {
		t.Fatalf("printed links %q %q, ticket's %+v", finish, rollback, tk.HoldLinks)
	}
	st := stackOf(t, j.admin)
	if st.State != "upgraded" || st.Services[0].Version != "1.0.1" || st.Services[0].OldVersion != "1.0.0" {
		t.Fatalf("stack after the job: %+v", st)
	}
	// Only approvers get the links (they act where link-only is allowed).
	if st := j.admin.Do("POST", "/api/v1/users", map[string]any{"name": "rita", "password": "rita-pw-0123456789"}, nil); st != http.StatusCreated {
		t.Fatalf("create rita: %d", st)
	}
	if st := j.admin.Do("PUT", "/api/v1/environments/prod/members/rita", map[string]string{"role": "read-only"}, nil); st != http.StatusOK {
		t.Fatalf("member rita: %d", st)
	}
	var seen jdTicket
	if st := j.srv.Login("rita", "rita-pw-0123456789").Do("GET", "/api/v1/tickets/"+key, nil, &seen); st != http.StatusOK || seen.HoldLinks != nil || seen.Hold == nil {
		t.Errorf("read-only GET %s: %d, links %+v", key, st, seen.HoldLinks)
	}

	// The printed link answers with the approval page; GET never acts.
	for _, link := range []string{finish, rollback} {
		code, page := anon(t, "GET", j.local(t, link), nil)
		if code != http.StatusOK || !strings.Contains(page, "1.0.0 → 1.0.1") || !strings.Contains(page, `<td id="app">web</td>`) {
			t.Fatalf("GET %s: %d\n%s", link, code, page)
		}
	}
	if tk := j.ticket(t, key); tk.State != "awaiting-confirmation" {
		t.Fatalf("after the GETs %s is %s", key, tk.State)
	}
	if got := containersOf(t, j.host); len(got["1.0.0"]) != 2 || len(got["1.0.1"]) != 2 {
		t.Fatalf("after the GETs: containers by version %v, want 2 old and 2 new", versionCounts(got))
	}

	// An owner posts the page's form: the upgrade finishes through the
	// built-in deployer.
	owner := signIn(t, j.srv.URL, ownerName, ownerPassword)
	path := strings.Replace(strings.TrimPrefix(j.local(t, finish), j.srv.URL), "/links/", "/approvals/", 1)
	resp, page := owner.do("GET", path, "", "")
	m := csrfField.FindStringSubmatch(page)
	if resp.StatusCode != http.StatusOK || m == nil {
		t.Fatalf("signed-in page: %d\n%s", resp.StatusCode, page)
	}
	form := url.Values{"action": {"finish"}, "csrf_token": {m[1]}}
	resp, page = owner.do("POST", path, "application/x-www-form-urlencoded", form.Encode())
	if resp.StatusCode != http.StatusOK || !strings.Contains(page, "Upgrade finished.") {
		t.Fatalf("POST finish: %d\n%s", resp.StatusCode, page)
	}
	tk = j.waitTicket(t, key, "done", 30*time.Second)
	if tk.Hold == nil || tk.Hold.State != "finished" || tk.Hold.DecidedBy != ownerName {
		t.Fatalf("hold after finish: %+v", tk.Hold)
	}
	if got := containersOf(t, j.host); len(got) != 1 || len(got["1.0.1"]) != 2 {
		t.Fatalf("after finish: containers by version %v, want only 2 of 1.0.1", versionCounts(got))
	}
	if st := stackOf(t, j.admin); st.State != "active" || st.Services[0].Version != "1.0.1" {
		t.Fatalf("stack after finish: %+v", st)
	}
}

// TestJenkinsReportScript runs report.sh against a recording server: the
// body is the generic hook's JSON (webhooks/GENERIC.md) with the build's
// parameters, and the token travels only in the header.
func TestJenkinsReportScript(t *testing.T) {
	type hook struct {
		Job        string            `json:"job"`
		Number     int               `json:"number"`
		Phase      string            `json:"phase"`
		Status     string            `json:"status"`
		URL        string            `json:"url"`
		SCM        map[string]string `json:"scm"`
		Parameters map[string]string `json:"parameters"`
	}
	got := make(chan hook, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var h hook
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()
		if r.URL.Path != "/webhooks/generic" || r.Header.Get("X-Dockmaster-Token") != "tok-123" || dec.Decode(&h) != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		got <- h
		w.WriteHeader(http.StatusAccepted)
	}))
	defer srv.Close()
	s := &dmServer{}
	env := []string{"DOCKMASTER_URL=" + srv.URL + "/", "DOCKMASTER_HOOK_TOKEN=tok-123", "JOB_NAME=team/java-service-1-build",
		"BUILD_NUMBER=57", "BUILD_URL=https://ci.test/job/57/", "GIT_COMMIT=abc123", "GIT_BRANCH=origin/main", "GIT_URL=https://git.test/x.git"}
	script := filepath.Join(repoRoot(t), "scripts", "jenkins", "report.sh")
	out, errOut, code := s.runCLI(t, t.TempDir(), env, "/bin/sh", script, "SUCCESS",
		"IMAGE=reg.test/java-service-1:1.0.1", "IMAGE_DIGEST=sha256:0123", `NOTE=say "hi"\now`)
	if code != 0 {
		t.Fatalf("report.sh: exit %d %s %s", code, out, errOut)
	}
	h := <-got
	if h.Job != "team/java-service-1-build" || h.Number != 57 || h.Status != "SUCCESS" || h.Phase != "FINALIZED" ||
		h.SCM["commit"] != "abc123" || h.Parameters["IMAGE_DIGEST"] != "sha256:0123" ||
		h.Parameters["IMAGE"] != "reg.test/java-service-1:1.0.1" || h.Parameters["NOTE"] != `say "hi"\now` {
		t.Fatalf("hook = %+v", h)
	}
	if strings.Contains(out+errOut, "tok-123") {
		t.Fatal("report.sh printed the token")
	}
}
