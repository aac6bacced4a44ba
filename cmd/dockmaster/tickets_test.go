package main

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/dockmaster/dockmaster/internal/testenv"
)

// ticketServer runs the real binary with app web (no test or build
// stage), environment prod without hosts, and a prod policy that needs one
// approval; it pushes release/1.0.0 so DEPLOY-1 opens, and points the CLI
// at the server with a prod owner key.
func ticketServer(t *testing.T) *testenv.Server {
	t.Helper()
	srv := testenv.StartServer(t, `webhooks:
  secrets:
    github: cli-secret
pipeline:
  apps:
    - name: web
      repo: {url: "file:///nonexistent/web.git", full_name: acme/web}
      rules:
        - {branch: "release/*", environment: prod}
      environments: [prod]
      stages:
        test: {executor: none}
        build: {executor: none}
environments:
  - name: prod
deploys:
  tick: 200ms
  environments:
    prod:
      windows: {immediate: true}
      approval: {required: 1}
`)
	var key struct {
		AccessKey string `json:"access_key"`
		Secret    string `json:"secret"`
	}
	if st := srv.Admin().Do("POST", "/api/v1/environments/prod/keys", map[string]string{"role": "owner", "description": "cli test"}, &key); st/100 != 2 {
		t.Fatalf("env key: %d", st)
	}
	t.Setenv("DOCKMASTER_URL", srv.URL)
	t.Setenv("DOCKMASTER_ACCESS_KEY", key.AccessKey)
	t.Setenv("DOCKMASTER_SECRET_KEY", key.Secret)

	body, _ := json.Marshal(map[string]any{
		"ref": "refs/heads/release/1.0.0", "before": strings.Repeat("0", 40), "after": strings.Repeat("a", 40),
		"repository":  map[string]any{"full_name": "acme/web", "name": "web", "clone_url": "file:///nonexistent/web.git"},
		"pusher":      map[string]any{"name": "alice", "email": "alice@example.com"},
		"sender":      map[string]any{"login": "alice"},
		"head_commit": map[string]any{"id": strings.Repeat("a", 40), "message": "1.0.0", "timestamp": "2026-11-27T10:00:00Z"},
	})
	mac := hmac.New(sha256.New, []byte("cli-secret"))
	mac.Write(body)
	req, _ := http.NewRequest("POST", srv.URL+"/webhooks/github", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-GitHub-Delivery", "cli-1")
	req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(mac.Sum(nil)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("push: %d", resp.StatusCode)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if code, out, _ := dm("ticket", "show", "DEPLOY-1"); code == 0 && strings.Contains(out, "waiting for approval") {
			return srv
		}
		if time.Now().After(deadline) {
			t.Fatal("DEPLOY-1 did not open waiting for approval")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestTicketCLIAgainstAServer drives approve, confirm, ticket rollback and
// wait against the real service: exit codes, printed progress, and the
// flags after the ticket key.
func TestTicketCLIAgainstAServer(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	ticketServer(t)

	// Nothing is held yet: confirm and rollback are refused, and say why.
	for _, args := range [][]string{{"confirm", "DEPLOY-1"}, {"ticket", "rollback", "DEPLOY-1"}} {
		code, out, errs := dm(args...)
		if code != exitFailure || !strings.Contains(errs, "not awaiting confirmation") {
			t.Errorf("%v on an open ticket: exit %d\n%s%s", args, code, out, errs)
		}
	}
	// wait prints where the ticket is and gives up at its timeout.
	code, out, errs := dm("wait", "DEPLOY-1", "--for", "done", "--timeout", "1s", "--interval", "100ms")
	if code != exitFailure || !strings.Contains(out, "DEPLOY-1: open (waiting for approval: 0/1") || !strings.Contains(errs, "still open after 1s") {
		t.Fatalf("wait on an unapproved ticket: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}
	if code, _, errs := dm("wait", "DEPLOY-1", "--for", "sideways"); code != exitUsage || !strings.Contains(errs, "want upgraded or done") {
		t.Errorf("wait --for sideways: exit %d %s", code, errs)
	}

	// The approval lets the deploy go; prod has no hosts, so it fails, and
	// wait --for upgraded says so with a non-zero exit.
	code, out, errs = dm("approve", "DEPLOY-1")
	if code != exitOK || !strings.Contains(out, "DEPLOY-1: web 1.0.0 on prod") || !strings.Contains(out, "deploy approval: approved (1/1)") {
		t.Fatalf("approve: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}
	if code, _, errs := dm("approve", "DEPLOY-1"); code != exitFailure || errs == "" {
		t.Errorf("second approve by the same key: exit %d %s", code, errs)
	}
	code, out, errs = dm("wait", "DEPLOY-1", "--for", "upgraded", "--interval", "100ms", "--timeout", "30s")
	if code != exitFailure || !strings.Contains(out, "DEPLOY-1: failed") || !strings.Contains(errs, "DEPLOY-1 ended failed") {
		t.Fatalf("wait on a failing deploy: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}
	code, out, _ = dm("tickets", "--env", "prod", "--state", "failed")
	if code != exitOK || !strings.Contains(out, "DEPLOY-1") || !strings.HasPrefix(out, "TICKET") {
		t.Errorf("tickets --state failed: exit %d\n%s", code, out)
	}
}
