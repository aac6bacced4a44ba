package server

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/dockmaster/dockmaster/internal/auth"
	"github.com/dockmaster/dockmaster/internal/config"
	"github.com/dockmaster/dockmaster/internal/store"
	"github.com/dockmaster/dockmaster/pipeline"
	"github.com/dockmaster/dockmaster/templates"
)

type heldTarget struct{ finished, rolledBack int }

func (h *heldTarget) Deploy(context.Context, pipeline.Ticket) (pipeline.DeployOutcome, error) {
	return pipeline.DeployOutcome{Held: true, FromVersion: "1.0"}, nil
}
func (h *heldTarget) Finish(context.Context, pipeline.Ticket) error   { h.finished++; return nil }
func (h *heldTarget) Rollback(context.Context, pipeline.Ticket) error { h.rolledBack++; return nil }
func (h *heldTarget) Health(context.Context, pipeline.Ticket) (pipeline.Health, error) {
	return pipeline.Health{Healthy: true, Containers: []string{"h1/web-web-1: healthy"}}, nil
}

func TestApprovalLinkPages(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db, err := store.Open(ctx, filepath.Join(dir, "dm.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	log := slog.New(slog.DiscardHandler)
	srv := New(log, map[string]ReadyChecker{"store": db})
	a, err := auth.New(auth.Options{Store: db, Config: config.Auth{AdminPassword: config.NewSecret("admin-pw-123456")}, StateDir: dir, Log: log, BcryptCost: bcrypt.MinCost})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.UseAccess(a, db, nil); err != nil {
		t.Fatal(err)
	}
	if err := db.UpsertEnvironment(ctx, store.Environment{Name: "prod"}); err != nil {
		t.Fatal(err)
	}
	key := func(name string, role auth.Role) string {
		u, err := a.CreateUser(ctx, name, "password-"+name+"-long", false)
		if err != nil {
			t.Fatal(err)
		}
		if err := db.SetMembership(ctx, "prod", u.ID, string(role)); err != nil {
			t.Fatal(err)
		}
		k, err := a.CreateKey(ctx, u.ID, "", "", "test", "test")
		if err != nil {
			t.Fatal(err)
		}
		return k.AccessKey + ":" + k.Secret
	}
	alice, bob, viewer := key("alice", auth.RoleMember), key("bob", auth.RoleMember), key("viewer", auth.RoleReadOnly)

	imm, _ := pipeline.WindowPolicy{Immediate: true}.Compile()
	pol := &pipeline.EnvPolicy{Windows: imm, Finish: pipeline.ApprovalPolicy{Required: 2}}
	signer, _ := pipeline.NewSigner(a.SigningKey(), nil)
	target := &heldTarget{}
	d, err := pipeline.NewDeploys(pipeline.DeploysOptions{Store: db.Deploys(), Signer: signer,
		Policy: func(string, string) (*pipeline.EnvPolicy, error) { return pol, nil },
		Target: func(string) (pipeline.Target, error) { return target, nil }})
	if err != nil {
		t.Fatal(err)
	}
	(&ApprovalPages{Deploys: d, Signer: signer, Pages: templates.NewPages()}).Register(a.Routes(&srv.Engine.RouterGroup))
	(&TicketAPI{Store: db.Deploys(), Deploys: d, Authz: a.Authorizer()}).Register(a.Routes(srv.Engine.Group("/api/v1")))
	if u := a.Registry().Undeclared(srv.Engine.Routes()); len(u) > 0 {
		t.Fatalf("undeclared routes: %v", u)
	}

	tk, _, _ := db.Pipeline().CreateTicket(ctx, pipeline.Ticket{App: "web", Version: "2.0", Environment: "prod", Pusher: "pete"}, "DEPLOY")
	d.OnTicket(tk)
	if err := d.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	d.Wait()
	h, _ := db.Deploys().HoldFor(ctx, tk.Key)
	fin, _ := d.Links(h)

	do := func(method, path, cred string, form url.Values) *httptest.ResponseRecorder {
		var body *strings.Reader
		if form != nil {
			body = strings.NewReader(form.Encode())
		} else {
			body = strings.NewReader("")
		}
		r := httptest.NewRequest(method, path, body)
		if form != nil {
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		if cred != "" {
			ac, sec, _ := strings.Cut(cred, ":")
			r.SetBasicAuth(ac, sec)
		}
		w := httptest.NewRecorder()
		srv.Engine.ServeHTTP(w, r)
		return w
	}
	state := func() pipeline.TicketState { x, _ := db.Pipeline().Ticket(ctx, tk.Key); return x.State }
	finish := url.Values{"action": {"finish"}}

	// GET never acts: anonymous, signed in, repeatedly.
	for _, c := range []struct{ path, cred string }{{"/links/" + fin, ""}, {"/approvals/" + fin, alice}, {"/links/" + fin, ""}} {
		w := do(http.MethodGet, c.path, c.cred, nil)
		if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "1.0 → 2.0") {
			t.Fatalf("GET %s: %d %s", c.path, w.Code, w.Body.String())
		}
	}
	if w := do(http.MethodGet, "/links/"+fin, "", nil); !strings.Contains(w.Body.String(), `id="signin"`) || strings.Contains(w.Body.String(), `id="finish"`) {
		t.Errorf("anonymous page offers buttons without link-only: %s", w.Body.String())
	}
	if state() != pipeline.TicketAwaitingConfirmation || target.finished != 0 {
		t.Fatal("a GET acted")
	}
	// Anonymous POST where link-only is off: refused.
	if w := do(http.MethodPost, "/links/"+fin, "", finish); w.Code != http.StatusForbidden {
		t.Errorf("anonymous POST: %d", w.Code)
	}
	// Tampered link: a clear page, nothing changes.
	bad := fin[:5] + "x" + fin[6:]
	if w := do(http.MethodPost, "/approvals/"+bad, alice, finish); w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "not valid") {
		t.Errorf("tampered: %d %s", w.Code, w.Body.String())
	}
	// Wrong role: 403 from the route's permission on the link's environment.
	if w := do(http.MethodPost, "/approvals/"+fin, viewer, finish); w.Code != http.StatusForbidden {
		t.Errorf("read-only POST: %d", w.Code)
	}
	// Two approvals required: the first leaves the upgrade held.
	if w := do(http.MethodPost, "/approvals/"+fin, alice, finish); w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "stays held") {
		t.Fatalf("first approval: %d %s", w.Code, w.Body.String())
	}
	if state() != pipeline.TicketAwaitingConfirmation || target.finished != 0 {
		t.Fatal("first of two approvals finished the upgrade")
	}
	if w := do(http.MethodPost, "/approvals/"+fin, alice, finish); w.Code != http.StatusGone {
		t.Errorf("reused by the same user: %d", w.Code)
	}
	if w := do(http.MethodPost, "/approvals/"+fin, bob, finish); w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "Upgrade finished") {
		t.Fatalf("second approval: %d %s", w.Code, w.Body.String())
	}
	if state() != pipeline.TicketDone || target.finished != 1 {
		t.Fatalf("after two approvals: %s, finished %d", state(), target.finished)
	}
	if w := do(http.MethodGet, "/api/v1/tickets/"+tk.Key, viewer, nil); w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `"state":"done"`) {
		t.Errorf("ticket API: %d %s", w.Code, w.Body.String())
	}
	if w := do(http.MethodPost, "/api/v1/tickets/"+tk.Key+"/rollback", viewer, nil); w.Code != http.StatusForbidden {
		t.Errorf("read-only rollback via API: %d", w.Code)
	}
}

// registerTickets mounts the ticket API and the approval pages as serve
// does, on a deploy manager whose target always holds (route matrix).
func registerTickets(t *testing.T, srv *Server, a *auth.Authenticator, db *store.DB) {
	t.Helper()
	imm, _ := pipeline.WindowPolicy{Immediate: true}.Compile()
	signer, err := pipeline.NewSigner([]byte("matrix link key 0123456789"), nil)
	if err != nil {
		t.Fatal(err)
	}
	d, err := pipeline.NewDeploys(pipeline.DeploysOptions{Store: db.Deploys(), Signer: signer,
		Policy: func(app, env string) (*pipeline.EnvPolicy, error) { return &pipeline.EnvPolicy{Windows: imm}, nil },
		Target: func(env string) (pipeline.Target, error) { return &heldTarget{}, nil }})
	if err != nil {
		t.Fatal(err)
	}
	(&TicketAPI{Store: db.Deploys(), Deploys: d, Engine: noTickets{}, Authz: a.Authorizer()}).Register(a.Routes(srv.Engine.Group("/api/v1")))
	(&ApprovalPages{Deploys: d, Signer: signer, Pages: templates.NewPages()}).Register(a.Routes(&srv.Engine.RouterGroup))
}

// noTickets has no successful builds to open tickets from.
type noTickets struct{}

func (noTickets) CreateTicket(context.Context, string, string, string, string) (pipeline.Ticket, error) {
	return pipeline.Ticket{}, errors.New("no successful build")
}
