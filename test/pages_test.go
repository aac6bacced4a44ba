package test

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/dockmaster/dockmaster/internal/store"
	"github.com/dockmaster/dockmaster/internal/testenv"
	"github.com/dockmaster/dockmaster/pipeline"
	chrome "github.com/dockmaster/dockmaster/test/browser"
)

// Planted secrets: an environment variable of the deployed service (for
// holders of view-secrets only) and user passwords (for nobody).
const (
	pagesEnvSecret = "planted-env-secret-5d1e0b"
	pagesPwSuffix  = "-pw-planted-93a7c4"
)

const pagesCompose = `version: '2'
services:
  web:
    image: dockmaster-test/web:${VERSION}
    environment:
      API_TOKEN: ` + pagesEnvSecret + `
`

// pagesSetup: prod on one harness host running stack "web" (app Web)
// upgraded 1.0.0 -> 2.0.0 and held, ticket DEPLOY-1 awaiting confirmation,
// and users per role on prod.
func pagesSetup(t *testing.T) (*testenv.Server, *chrome.Browser) {
	t.Helper()
	b := chrome.Start(t) // skips first: -short, no chromium
	h := testenv.StartHost(t, "pages")
	removeOwned(t, h)
	for _, v := range []string{"1.0.0", "2.0.0"} {
		testenv.HTTPServerImage(t, h.Client, v)
	}
	srv := testenv.StartServer(t, fmt.Sprintf(`environments:
  - name: staging
  - name: prod
    hosts:
      - {name: pages, endpoint: %q, address: %s, labels: {zone: a}}
pipeline:
  ticket_prefix: DEPLOY
  apps:
    - name: Web
      repo: {full_name: acme/web}
      environments: [staging, prod]
`, h.Endpoint, h.IP))
	admin := srv.Admin()
	for _, role := range []string{"owner", "read-only", "restricted"} {
		name := "u-" + role
		if st := admin.Do(http.MethodPost, "/api/v1/users", map[string]any{"name": name, "password": name + pagesPwSuffix}, nil); st != http.StatusCreated {
			t.Fatalf("create user %s: %d", name, st)
		}
		if st := admin.Do(http.MethodPut, "/api/v1/environments/prod/members/"+name, map[string]string{"role": role}, nil); st != http.StatusOK {
			t.Fatalf("member %s: %d", name, st)
		}
	}
	for _, step := range []struct {
		version string
		upgrade bool
	}{{"1.0.0", false}, {"2.0.0", true}} {
		body := map[string]any{"compose": pagesCompose, "variables": map[string]string{"VERSION": step.version}, "upgrade": step.upgrade}
		if st := admin.Do(http.MethodPost, "/api/v1/environments/prod/stacks/web/up", body, nil); st != http.StatusOK {
			t.Fatalf("up %s: %d", step.version, st)
		}
	}
	// The pipeline makes tickets from pushes; this test needs only one
	// awaiting confirmation, written where the server reads it.
	ctx := context.Background()
	db, err := store.Open(ctx, filepath.Join(srv.Dir, "dockmaster.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, _, err := db.Pipeline().CreateTicket(ctx, pipeline.Ticket{App: "Web", Version: "2.0.0", Environment: "prod",
		Pusher: "pat", State: pipeline.TicketAwaitingConfirmation}, "DEPLOY"); err != nil {
		t.Fatal(err)
	}
	return srv, b
}

func TestPagesInBrowser(t *testing.T) {
	srv, b := pagesSetup(t)
	svc := srv.URL + "/environments/prod/stacks/web/services/web"
	sessions := map[string]*chrome.Session{}
	for _, role := range []string{"owner", "read-only", "restricted"} {
		s := b.NewSession(t, role)
		s.Login(srv.URL, "u-"+role, "u-"+role+pagesPwSuffix)
		sessions[role] = s
	}

	t.Run("dashboard and environment", func(t *testing.T) {
		s := sessions["owner"]
		s.Open(srv.URL + "/")
		html := s.HTML()
		for _, want := range []string{"2.0.0", "upgraded", "(from 1.0.0)", "DEPLOY-1", "awaiting-confirmation", "u-owner"} {
			if !strings.Contains(html, want) {
				t.Errorf("dashboard lacks %q", want)
			}
		}
		if err := s.Screenshot(filepath.Join(chrome.ArtifactsDir(), "dashboard.png")); err != nil {
			t.Error(err)
		}
		s.Open(srv.URL + "/environments/prod")
		html = s.HTML()
		for _, want := range []string{"pages", "zone=a", "active", "web</a>"} {
			if !strings.Contains(html, want) {
				t.Errorf("environment page lacks %q", want)
			}
		}
		if err := s.Screenshot(filepath.Join(chrome.ArtifactsDir(), "environment.png")); err != nil {
			t.Error(err)
		}
	})

	t.Run("what each role sees", func(t *testing.T) {
		for _, tc := range []struct {
			role             string
			envVars, buttons bool
		}{
			{"owner", true, true},
			{"read-only", true, false}, // read-only holds view-secrets, not approve
			{"restricted", false, false},
		} {
			s := sessions[tc.role]
			s.Open(svc)
			html := s.HTML()
			if got := strings.Contains(html, pagesEnvSecret); got != tc.envVars {
				t.Errorf("%s: service page shows the env var secret: %v, want %v", tc.role, got, tc.envVars)
			}
			if !strings.Contains(html, "dockmaster-test/web:2.0.0") {
				t.Errorf("%s: service page lacks the image", tc.role)
			}
			s.Open(srv.URL + "/tickets/DEPLOY-1")
			html = s.HTML()
			if got := strings.Contains(html, `id="finish"`) && strings.Contains(html, `id="rollback"`); got != tc.buttons {
				t.Errorf("%s: ticket page shows finish/rollback: %v, want %v", tc.role, got, tc.buttons)
			}
		}
	})

	t.Run("no secret leaks", func(t *testing.T) {
		pages := []string{"/", "/environments/prod", "/environments/prod/stacks/web/services/web", "/tickets",
			"/tickets/DEPLOY-1", "/deliveries", "/audit", "/api/v1/status"}
		for _, role := range []string{"read-only", "restricted"} {
			s := sessions[role]
			for _, p := range pages {
				s.Open(srv.URL + p)
				html := s.HTML()
				for _, u := range []string{"owner", "read-only", "restricted"} {
					if strings.Contains(html, "u-"+u+pagesPwSuffix) || strings.Contains(html, testenv.AdminPassword) {
						t.Errorf("%s: %s shows a password", role, p)
					}
				}
				// read-only holds view-secrets: the service page is where it may see the variable.
				if strings.Contains(html, pagesEnvSecret) && (role == "restricted" || p != "/environments/prod/stacks/web/services/web") {
					t.Errorf("%s: %s shows the env var secret", role, p)
				}
			}
		}
		log := srv.Log()
		for _, secret := range []string{pagesEnvSecret, pagesPwSuffix, testenv.AdminPassword} {
			if strings.Contains(log, secret) {
				t.Errorf("the server log contains %q", secret)
			}
		}
	})
}

// TestApprovalLinkInBrowser clicks through the approval link of a held
// upgrade in Chromium: the held ticket comes from a Jenkins deploy job
// (startJenkinsDeploy); its printed finish link, opened by a signed-in
// owner, leads to the page with the buttons, and "Finish upgrade" ends
// the upgrade: the page says so, the ticket is done and the old
// containers are gone.
func TestApprovalLinkInBrowser(t *testing.T) {
	b := chrome.Start(t) // skips first: -short, no chromium
	j := startJenkinsDeploy(t, "1.0.0", "2.0.0")
	key, finish, _ := j.held(t, "1.0.0", "2.0.0")
	s := b.NewSession(t, "owner")
	s.Login(j.srv.URL, ownerName, ownerPassword)

	// The link as mailed or posted: the public page asks to sign in
	// (prod allows no link-only approval); its button leads to the
	// signed-in page with the actions.
	s.Open(j.local(t, finish))
	s.Do("follow the sign-in button", chromedp.Click(chromedp.ID("signin")), chromedp.WaitVisible(chromedp.ID("finish")))
	if loc := s.Location(); !strings.Contains(loc, "/approvals/") {
		t.Fatalf("the sign-in button led to %s", loc)
	}
	html := s.HTML()
	for _, want := range []string{key + ": web on prod", "1.0.0 → 2.0.0", `id="health">healthy`, "Finish upgrade", "Roll back"} {
		if !strings.Contains(html, want) {
			t.Errorf("approval page lacks %q", want)
		}
	}
	if err := s.Screenshot(filepath.Join(chrome.ArtifactsDir(), "approval.png")); err != nil {
		t.Error(err)
	}

	s.Do("click Finish upgrade", chromedp.Click(chromedp.ID("finish")), chromedp.WaitVisible(chromedp.ID("done")))
	if html := s.HTML(); !strings.Contains(html, `id="done">Upgrade finished.<`) || !strings.Contains(html, `id="health">healthy`) {
		s.SaveArtifacts("after-finish")
		t.Fatalf("after clicking Finish upgrade the page does not say it finished, healthy")
	}
	if err := s.Screenshot(filepath.Join(chrome.ArtifactsDir(), "approval-finished.png")); err != nil {
		t.Error(err)
	}
	tk := j.waitTicket(t, key, "done", 30*time.Second)
	if tk.Hold == nil || tk.Hold.State != "finished" || tk.Hold.DecidedBy != ownerName {
		t.Fatalf("hold after the click: %+v", tk.Hold)
	}
	if got := containersOf(t, j.host); len(got) != 1 || len(got["2.0.0"]) != 2 {
		t.Fatalf("after the click: containers by version %v, want only 2 of 2.0.0", versionCounts(got))
	}
	// The ticket page agrees.
	s.Open(j.srv.URL + "/tickets/" + key)
	if html := s.HTML(); !strings.Contains(html, `id="ticket-state">done<`) {
		t.Errorf("ticket page does not show %s done", key)
	}
}
