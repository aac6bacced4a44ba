package test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"

	"github.com/dockmaster/dockmaster/internal/testenv"
)

// The deploy e2e app: compose files in the repository's docker/ folder.
const (
	deployCompose = `version: '2'
services:
  web:
    image: dockmaster-test/web:${VERSION}
`
	deployRancher = `version: '2'
services:
  web:
    scale: 2
    health_check:
      port: 8080
      request_line: GET /healthz HTTP/1.0
      interval: 300
      healthy_threshold: 1
      unhealthy_threshold: 3
      response_timeout: 1000
      initializing_timeout: 20000
    upgrade_strategy:
      start_first: true
      batch_size: 1
`
	// Links are announced under this address; the test maps it to the server.
	deployPublicURL = "https://dockmaster.example.test"
)

// deployRepo makes a repository whose branches release/<v> each add a
// commit (the compose files plus a VERSION file) that main never sees. It
// returns the file:// URL and each branch's head commit.
func deployRepo(t *testing.T, versions ...string) (string, map[string]string) {
	t.Helper()
	repo := testenv.NewGitRepo(t)
	dir, git, write := repo.Dir, repo.Git, repo.Write
	write("README", "web\n")
	git("add", ".")
	git("commit", "-q", "-m", "start")
	shas := map[string]string{}
	for _, v := range versions {
		git("checkout", "-q", "-b", "release/"+v, "main")
		write("docker/docker-compose.yml", deployCompose)
		write("docker/rancher-compose.yml", deployRancher)
		write("VERSION", v+"\n")
		git("add", ".")
		git("commit", "-q", "-m", "Release "+v)
		shas[v] = git("rev-parse", "HEAD")
	}
	git("checkout", "-q", "main")
	return "file://" + dir, shas
}

// slackSink is a Slack-compatible incoming webhook that keeps what it gets.
type slackSink struct {
	mu   sync.Mutex
	msgs []slackMsg
}

type slackMsg struct {
	Text   string `json:"text"`
	Blocks []struct {
		Type     string `json:"type"`
		Elements []struct {
			Text struct {
				Text string `json:"text"`
			} `json:"text"`
			URL string `json:"url"`
		} `json:"elements"`
	} `json:"blocks"`
}

func (s *slackSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var m slackMsg
	if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	s.msgs = append(s.msgs, m)
	s.mu.Unlock()
	_, _ = io.WriteString(w, "ok")
}

// find returns the first message whose text contains sub.
func (s *slackSink) find(sub string) (slackMsg, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range s.msgs {
		if strings.Contains(m.Text, sub) {
			return m, true
		}
	}
	return slackMsg{}, false
}

// buttons maps a message's button labels to their URLs.
func (m slackMsg) buttons() map[string]string {
	out := map[string]string{}
	for _, b := range m.Blocks {
		for _, e := range b.Elements {
			out[e.Text.Text] = e.URL
		}
	}
	return out
}

// browserSession is a signed-in user as a browser has it: a cookie jar.
type browserSession struct {
	t    *testing.T
	base string
	hc   *http.Client
	csrf string // from the login answer, for JSON calls
}

func signIn(t *testing.T, base, user, password string) *browserSession {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	b := &browserSession{t: t, base: base, hc: &http.Client{Jar: jar, Timeout: time.Minute}}
	resp, body := b.do("POST", "/login", "application/json", fmt.Sprintf(`{"user":%q,"password":%q}`, user, password))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("login %s: %d %s", user, resp.StatusCode, body)
	}
	var out struct {
		CSRF string `json:"csrf_token"`
	}
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		t.Fatal(err)
	}
	b.csrf = out.CSRF
	return b
}

func (b *browserSession) do(method, path, ctype, body string) (*http.Response, string) {
	b.t.Helper()
	req, err := http.NewRequest(method, b.base+path, strings.NewReader(body))
	if err != nil {
		b.t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if ctype == "application/json" && b.csrf != "" {
		req.Header.Set("X-CSRF-Token", b.csrf)
	}
	resp, err := b.hc.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp, string(data)
}

// anon fetches without a session, as a link previewer would.
func anon(t *testing.T, method, u string, form url.Values) (int, string) {
	t.Helper()
	var resp *http.Response
	var err error
	if method == http.MethodPost {
		resp, err = http.PostForm(u, form)
	} else {
		resp, err = http.Get(u)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

type e2eTicket struct {
	Key, App, Version, Environment, State, Reason, Branch, Commit string
	Schedule                                                      *struct {
		DueAt time.Time `json:"due_at"`
		Next  string    `json:"next"`
	} `json:"schedule"`
	Hold *struct {
		FromVersion string `json:"from_version"`
		ToVersion   string `json:"to_version"`
		State       string `json:"state"`
		DecidedBy   string `json:"decided_by"`
	} `json:"hold"`
}

// containersOf lists the web stack's containers on every host, by version.
func containersOf(t *testing.T, hosts ...*testenv.Host) map[string][]container.Summary {
	t.Helper()
	out := map[string][]container.Summary{}
	f := filters.NewArgs(filters.Arg("label", "io.dockmaster.env=prod"), filters.Arg("label", "io.dockmaster.stack=web"))
	for _, h := range hosts {
		cs, err := h.Client.ContainerList(context.Background(), container.ListOptions{All: true, Filters: f})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cs {
			v := c.Labels["io.dockmaster.version"]
			out[v] = append(out[v], c)
		}
	}
	return out
}

// answer GETs /healthz of a container by its IP (port 8080 is not published).
func answer(t *testing.T, c container.Summary) string {
	t.Helper()
	for _, n := range c.NetworkSettings.Networks {
		if n.IPAddress == "" {
			continue
		}
		hc := &http.Client{Timeout: 5 * time.Second}
		resp, err := hc.Get("http://" + n.IPAddress + ":8080/healthz")
		if err != nil {
			t.Fatalf("GET %s: %v", c.Names, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return strings.TrimSpace(string(b))
	}
	t.Fatalf("container %v has no IP", c.Names)
	return ""
}

var csrfField = regexp.MustCompile(`name="csrf_token" value="([^"]+)"`)

// TestDeployWindowsAndApprovalsEndToEnd runs issue 7 on two real dockerd
// hosts: a pushed version waits for its window and deploys; the next is
// deployed now by an owner, held in upgraded with the old containers
// stopped, announced on Slack with signed links whose page shows and never
// acts, and finished by the page's form; a third is rolled back with the
// CLI, the old version serves again and the rolled-back one is blocked.
func TestDeployWindowsAndApprovalsEndToEnd(t *testing.T) {
	testenv.Docker(t)
	h1, h2 := testenv.StartHost(t, "h1"), testenv.StartHost(t, "h2")
	versions := []string{"1.0.0", "1.0.1", "1.0.2"}
	for _, h := range []*testenv.Host{h1, h2} {
		for _, v := range versions {
			testenv.HTTPServerImage(t, h.Client, v)
		}
	}
	removeOwned(t, h1, h2) // after the server stops, before the hosts do
	cloneURL, shas := deployRepo(t, versions...)
	slack := &slackSink{}
	sink := httptest.NewServer(slack)
	defer sink.Close()

	config := fmt.Sprintf(`public_url: %s
webhooks:
  secrets:
    github: %s
pipeline:
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
      - {name: h1, endpoint: "%s", address: %s}
      - {name: h2, endpoint: "%s", address: %s}
deploys:
  tick: 500ms
  environments:
    prod:
      windows:
        allow:
          - {cron: "* * * * *", duration: 8s}
      notify:
        slack_url: %s/slack
`, deployPublicURL, githubSecret, cloneURL, h1.Endpoint, h1.IP, h2.Endpoint, h2.IP, sink.URL)
	srv := testenv.StartServer(t, config)
	t.Cleanup(func() { // what the deploys did, without the request lines
		if t.Failed() {
			for _, l := range strings.Split(srv.Log(), "\n") {
				if strings.Contains(l, "deploy") && !strings.Contains(l, `"msg":"request"`) {
					t.Log(l)
				}
			}
		}
	})
	admin := srv.Admin()
	for _, call := range []struct {
		method, path string
		body         any
	}{
		{"POST", "/api/v1/users", map[string]any{"name": "olivia", "password": "olivia-pw-0123456789"}},
		{"PUT", "/api/v1/environments/prod/members/olivia", map[string]string{"role": "owner"}},
	} {
		if st := admin.Do(call.method, call.path, call.body, nil); st/100 != 2 {
			t.Fatalf("%s %s: %d", call.method, call.path, st)
		}
	}
	var key struct {
		AccessKey string `json:"access_key"`
		Secret    string `json:"secret"`
	}
	if st := admin.Do("POST", "/api/v1/environments/prod/keys", map[string]string{"role": "owner", "description": "deploy e2e"}, &key); st != http.StatusCreated && st != http.StatusOK {
		t.Fatalf("env key: %d", st)
	}
	owner := signIn(t, srv.URL, "olivia", "olivia-pw-0123456789")

	// Helpers take the (sub)test they run in: FailNow must not cross tests.
	ticket := func(t *testing.T, k string) e2eTicket {
		t.Helper()
		var tk e2eTicket
		if st := admin.Do("GET", "/api/v1/tickets/"+k, nil, &tk); st != http.StatusOK {
			t.Fatalf("ticket %s: %d", k, st)
		}
		return tk
	}
	waitTicket := func(t *testing.T, k, state string, d time.Duration) e2eTicket {
		t.Helper()
		var tk e2eTicket
		defer func() {
			if t.Failed() {
				t.Logf("%s was last %s (%s)", k, tk.State, tk.Reason)
			}
		}()
		waitFor(t, k+" to be "+state, d, func() bool {
			tk = ticket(t, k)
			if tk.State != state && slices.Contains([]string{"failed", "canceled", "expired", "rolled-back", "done"}, tk.State) {
				t.Fatalf("%s ended %s (%s), want %s", k, tk.State, tk.Reason, state)
			}
			return tk.State == state
		})
		return tk
	}
	ticketFor := func(t *testing.T, version string) string {
		t.Helper()
		var key string
		waitFor(t, "a ticket for "+version, 60*time.Second, func() bool {
			var ts []e2eTicket
			admin.Do("GET", "/api/v1/tickets?app=web", nil, &ts)
			for _, tk := range ts {
				if tk.Version == version {
					key = tk.Key
				}
			}
			return key != ""
		})
		return key
	}
	cli := func(t *testing.T, args ...string) (string, int) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, testenv.Binary(t), args...)
		cmd.Env = append(cleanEnv(), "DOCKMASTER_URL="+srv.URL, "DOCKMASTER_ACCESS_KEY="+key.AccessKey, "DOCKMASTER_SECRET_KEY="+key.Secret)
		out, err := cmd.CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return string(out), code
	}
	local := func(t *testing.T, link string) string { // the public link, on the test's server
		t.Helper()
		if !strings.HasPrefix(link, deployPublicURL+"/links/") {
			t.Fatalf("link %q is not under public_url %s/links/", link, deployPublicURL)
		}
		return srv.URL + strings.TrimPrefix(link, deployPublicURL)
	}

	// shut waits until the window (open 8s each minute) is shut and stays
	// shut for a while, so a new ticket is scheduled, not deployed at once.
	shut := func() {
		for s := time.Now().Second(); s < 10 || s > 45; s = time.Now().Second() {
			time.Sleep(500 * time.Millisecond)
		}
	}

	// 1.0.0 waits for the window, then deploys: a first deploy holds
	// nothing, so its ticket is done.
	shut()
	signedPush(t, srv.URL, cloneURL, "release/1.0.0", shas["1.0.0"])
	k1 := ticketFor(t, "1.0.0")
	tk := waitTicket(t, k1, "scheduled", 30*time.Second)
	if tk.Schedule == nil || tk.Schedule.DueAt.Second() != 0 || !tk.Schedule.DueAt.After(time.Now()) || !strings.Contains(tk.Reason, "next window") {
		t.Fatalf("%s scheduled %+v (%s), want the next minute's window", k1, tk.Schedule, tk.Reason)
	}
	due := tk.Schedule.DueAt
	tk = waitTicket(t, k1, "done", 90*time.Second)
	if now := time.Now(); now.Before(due) {
		t.Fatalf("%s deployed at %s, before its window at %s", k1, now, due)
	}
	if tk.Commit != shas["1.0.0"] || tk.Branch != "release/1.0.0" {
		t.Fatalf("%s: branch %s commit %s", k1, tk.Branch, tk.Commit)
	}
	if got := containersOf(t, h1, h2); len(got["1.0.0"]) != 2 || len(got) != 1 {
		t.Fatalf("after %s: containers by version %v, want 2 of 1.0.0", k1, versionCounts(got))
	}
	var revs struct {
		Revisions []struct {
			Version   string `json:"version"`
			CreatedBy string `json:"created_by"`
		} `json:"revisions"`
	}
	if code := admin.Do("GET", "/api/v1/environments/prod/stacks/web/revisions", nil, &revs); code != http.StatusOK ||
		len(revs.Revisions) == 0 || revs.Revisions[len(revs.Revisions)-1].CreatedBy != k1 {
		t.Fatalf("revisions: %d %+v, want the last deployed by %s", code, revs, k1)
	}

	t.Run("held, link page, finish", func(t *testing.T) {
		shut()
		signedPush(t, srv.URL, cloneURL, "release/1.0.1", shas["1.0.1"])
		k := ticketFor(t, "1.0.1")
		waitTicket(t, k, "scheduled", 30*time.Second)
		// The window is not open: an owner overrides it, with a reason.
		if resp, body := owner.do("POST", "/api/v1/tickets/"+k+"/deploy-now", "application/json", `{}`); resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("deploy-now without a reason: %d %s", resp.StatusCode, body)
		}
		if resp, body := owner.do("POST", "/api/v1/tickets/"+k+"/deploy-now", "application/json", `{"reason":"customer fix"}`); resp.StatusCode != http.StatusOK {
			t.Fatalf("deploy-now: %d %s", resp.StatusCode, body)
		}
		tk := waitTicket(t, k, "awaiting-confirmation", 90*time.Second)
		if tk.Hold == nil || tk.Hold.FromVersion != "1.0.0" || tk.Hold.ToVersion != "1.0.1" {
			t.Fatalf("%s hold %+v", k, tk.Hold)
		}
		st := stackOf(t, admin)
		if st.State != "upgraded" || st.Services[0].State != "upgraded" || st.Services[0].Version != "1.0.1" || st.Services[0].OldVersion != "1.0.0" {
			t.Fatalf("held stack: %+v", st)
		}
		held := containersOf(t, h1, h2)
		if len(held["1.0.0"]) != 2 || len(held["1.0.1"]) != 2 {
			t.Fatalf("held: containers by version %v, want 2 old and 2 new", versionCounts(held))
		}
		for _, c := range held["1.0.0"] {
			if c.State != "exited" {
				t.Fatalf("old container %v is %s, want stopped", c.Names, c.State)
			}
		}

		// The Slack message names the upgrade and carries both links.
		var msg slackMsg
		waitFor(t, "the held message on Slack", 10*time.Second, func() bool {
			var ok bool
			msg, ok = slack.find(k + ": web on prod upgraded 1.0.0 -> 1.0.1")
			return ok
		})
		btn := msg.buttons()
		finish, rollback := btn["Finish upgrade"], btn["Roll back"]
		if !strings.Contains(msg.Text, "Finish upgrade: "+finish) || !strings.Contains(msg.Text, "Roll back: "+rollback) || finish == rollback {
			t.Fatalf("message text and buttons disagree: %q vs %v", msg.Text, btn)
		}
		// Each link verifies and shows the upgrade; GET never acts.
		for _, link := range []string{finish, rollback} {
			code, page := anon(t, "GET", local(t, link), nil)
			if code != http.StatusOK {
				t.Fatalf("GET %s: %d\n%s", link, code, page)
			}
			for _, want := range []string{`<td id="app">web</td>`, `<td id="env">prod</td>`, "1.0.0 → 1.0.1", `id="signin"`} {
				if !strings.Contains(page, want) {
					t.Errorf("link page lacks %q:\n%s", want, page)
				}
			}
			if strings.Contains(page, `name="action"`) {
				t.Errorf("anonymous page offers the buttons on an environment without link-only approval")
			}
		}
		// A changed signature is refused; an anonymous POST does not act.
		if code, _ := anon(t, "GET", local(t, finish)+"x", nil); code != http.StatusBadRequest {
			t.Errorf("tampered link: %d, want 400", code)
		}
		if code, _ := anon(t, "POST", local(t, finish), url.Values{"action": {"finish"}}); code != http.StatusForbidden {
			t.Errorf("anonymous POST: %d, want 403", code)
		}
		if tk := ticket(t, k); tk.State != "awaiting-confirmation" {
			t.Fatalf("after the GETs and the refused POST, %s is %s", k, tk.State)
		}
		if got := containersOf(t, h1, h2); len(got["1.0.0"]) != 2 {
			t.Fatalf("the GETs changed the containers: %v", versionCounts(got))
		}

		// The signed-in owner opens the page and posts its form.
		path := strings.Replace(strings.TrimPrefix(local(t, finish), srv.URL), "/links/", "/approvals/", 1)
		resp, page := owner.do("GET", path, "", "")
		m := csrfField.FindStringSubmatch(page)
		if resp.StatusCode != http.StatusOK || m == nil || !strings.Contains(page, `value="finish"`) {
			t.Fatalf("signed-in page: %d, csrf %v\n%s", resp.StatusCode, m, page)
		}
		form := url.Values{"action": {"finish"}, "csrf_token": {m[1]}}
		resp, page = owner.do("POST", path, "application/x-www-form-urlencoded", form.Encode())
		if resp.StatusCode != http.StatusOK || !strings.Contains(page, "Upgrade finished.") {
			t.Fatalf("POST finish: %d\n%s", resp.StatusCode, page)
		}
		tk = waitTicket(t, k, "done", 30*time.Second)
		if tk.Hold == nil || tk.Hold.State != "finished" || tk.Hold.DecidedBy != "olivia" {
			t.Fatalf("hold after finish: %+v", tk.Hold)
		}
		got := containersOf(t, h1, h2)
		if len(got) != 1 || len(got["1.0.1"]) != 2 {
			t.Fatalf("after finish: containers by version %v, want only 2 of 1.0.1", versionCounts(got))
		}
		for _, c := range got["1.0.1"] {
			if a := answer(t, c); a != "1.0.1" {
				t.Fatalf("%v answers %q", c.Names, a)
			}
		}
		// The used link works no more.
		if code, _ := anon(t, "GET", local(t, finish), nil); code != http.StatusGone {
			t.Errorf("GET of a decided link: %d, want 410", code)
		}
		if _, ok := slack.find(k + ": web 1.0.1 finished on prod"); !ok {
			t.Errorf("no finished message on Slack")
		}
	})
	if t.Failed() {
		return
	}

	t.Run("rollback with the CLI, version blocked", func(t *testing.T) {
		shut()
		signedPush(t, srv.URL, cloneURL, "release/1.0.2", shas["1.0.2"])
		k := ticketFor(t, "1.0.2")
		waitTicket(t, k, "scheduled", 30*time.Second)
		if out, code := cli(t, "ticket", "deploy-now", k, "--reason", "e2e"); code != 0 || !strings.Contains(out, k) {
			t.Fatalf("ticket deploy-now: exit %d\n%s", code, out)
		}
		out, code := cli(t, "wait", k, "--for", "upgraded", "--interval", "300ms", "--timeout", "2m")
		if code != 0 || !strings.Contains(out, k+": awaiting-confirmation") {
			t.Fatalf("wait --for upgraded: exit %d\n%s", code, out)
		}
		if out, code := cli(t, "ticket", "rollback", k); code != 0 || !strings.Contains(out, "rolled-back") {
			t.Fatalf("ticket rollback: exit %d\n%s", code, out)
		}
		out, code = cli(t, "wait", k, "--for", "done", "--interval", "300ms", "--timeout", "1m")
		if code == 0 || !strings.Contains(out, "ended rolled-back") {
			t.Fatalf("wait --for done after a rollback: exit %d, want non-zero\n%s", code, out)
		}
		// The old version serves again; the rolled-back one is gone.
		got := containersOf(t, h1, h2)
		if len(got) != 1 || len(got["1.0.1"]) != 2 {
			t.Fatalf("after rollback: containers by version %v, want only 2 of 1.0.1", versionCounts(got))
		}
		for _, c := range got["1.0.1"] {
			if c.State != "running" {
				t.Fatalf("%v is %s after the rollback", c.Names, c.State)
			}
			if a := answer(t, c); a != "1.0.1" {
				t.Fatalf("%v answers %q, want the old version", c.Names, a)
			}
		}
		if st := stackOf(t, admin); st.State != "active" || st.Services[0].Version != "1.0.1" {
			t.Fatalf("stack after rollback: %+v", st)
		}
		if _, ok := slack.find(k + ": web 1.0.2 rolled back on prod"); !ok {
			t.Errorf("no rolled-back message on Slack")
		}

		// 1.0.2 is blocked: a new ticket for it stays open and cannot be forced.
		var nt e2eTicket
		if st := admin.Do("POST", "/api/v1/tickets", map[string]string{"app": "web", "branch": "release/1.0.2", "env": "prod"}, &nt); st != http.StatusCreated {
			t.Fatalf("ticket create: %d", st)
		}
		if nt.State != "open" || !strings.Contains(nt.Reason, "blocked") {
			t.Fatalf("new ticket for the rolled-back version: %s (%s), want open and blocked", nt.State, nt.Reason)
		}
		if resp, body := owner.do("POST", "/api/v1/tickets/"+nt.Key+"/deploy-now", "application/json", `{"reason":"try"}`); resp.StatusCode != http.StatusConflict {
			t.Fatalf("deploy-now of a blocked version: %d %s, want 409", resp.StatusCode, body)
		}
		time.Sleep(1500 * time.Millisecond) // a few ticks
		if tk := ticket(t, nt.Key); tk.State != "open" {
			t.Fatalf("blocked ticket moved to %s", tk.State)
		}
		if got := containersOf(t, h1, h2); len(got["1.0.2"]) != 0 {
			t.Fatalf("blocked version deployed: %v", versionCounts(got))
		}
		// Unblocked, the next tick schedules it into the window.
		if st := admin.Do("DELETE", "/api/v1/environments/prod/blocks/web/1.0.2", nil, nil); st != http.StatusNoContent {
			t.Fatalf("unblock: %d", st)
		}
		waitFor(t, nt.Key+" to leave open once unblocked", 10*time.Second, func() bool {
			s := ticket(t, nt.Key).State
			return s == "scheduled" || s == "deploying"
		})
	})
}

func versionCounts(m map[string][]container.Summary) map[string]int {
	out := map[string]int{}
	for v, cs := range m {
		out[v] = len(cs)
	}
	return out
}

// stackOf reads the web stack's status through the API.
func stackOf(t *testing.T, c *testenv.Client) stackStatus {
	t.Helper()
	var st stackStatus
	if code := c.Do("GET", "/api/v1/environments/prod/stacks/web", nil, &st); code != http.StatusOK || len(st.Services) == 0 {
		t.Fatalf("stack web: %d %+v", code, st)
	}
	return st
}
