package server

import (
	"context"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/dockmaster/dockmaster/deployer"
	"github.com/dockmaster/dockmaster/internal/auth"
	"github.com/dockmaster/dockmaster/internal/fleet"
	"github.com/dockmaster/dockmaster/internal/store"
	"github.com/dockmaster/dockmaster/pipeline"
	"github.com/dockmaster/dockmaster/templates"
)

// registerViews mounts the status API and pages as serve.go does; the
// access matrix (newAccessServer) calls it so the pages join it.
func registerViews(s *Server, a *auth.Authenticator, db *store.DB, apps []*pipeline.App) *Views {
	v := &Views{Store: db, Pipeline: db.Pipeline(), Apps: func() []*pipeline.App { return apps },
		Deployers: fleet.New(fleet.Options{Store: db}), Authz: a.Authorizer(), Pages: templates.NewPages(),
		Votes: db.Deploys(), ProbeTimeout: 2 * time.Second, Actions: storeActions{db.Pipeline()}}
	v.RegisterAPI(a.Routes(s.Engine.Group("/api/v1")))
	v.RegisterPages(a.Routes(&s.Engine.RouterGroup))
	return v
}

// storeActions stands in for pipeline.Deploys: it only moves the ticket,
// which is what the page must show afterwards.
type storeActions struct{ s pipeline.Store }

func (a storeActions) Confirm(ctx context.Context, key string, _ pipeline.Actor) (pipeline.ApprovalStatus, error) {
	if _, err := a.s.Ticket(ctx, key); err != nil {
		return pipeline.ApprovalStatus{}, err
	}
	err := a.s.TransitionTicket(ctx, key, pipeline.TicketAwaitingConfirmation, pipeline.TicketDone, "confirmed")
	if errors.Is(err, pipeline.ErrConflict) {
		err = fmt.Errorf("%w: %w", pipeline.ErrWrongState, err)
	}
	return pipeline.ApprovalStatus{Approved: err == nil}, err
}

func (a storeActions) Rollback(ctx context.Context, key string, _ pipeline.Actor) error {
	if _, err := a.s.Ticket(ctx, key); err != nil {
		return err
	}
	return a.s.TransitionTicket(ctx, key, pipeline.TicketAwaitingConfirmation, pipeline.TicketRolledBack, "rolled back")
}

const plantedSecret = "s3cr3t-db-pw-77f1"

// statusFixture: app Shop promoted staging -> prod; staging runs 1.2.0,
// prod runs 1.1.0 (deployed by alice with DEPLOY-1) and holds DEPLOY-3
// (1.2.0) awaiting confirmation. The web service carries a secret env var.
// Stack tools, no app's, runs 3.4 in prod (revision 2, deployed with
// `dockmaster up`).
func statusFixture(t *testing.T) *accessServer {
	t.Helper()
	s := newAccessServer(t, "")
	ctx := context.Background()
	// newAccessServer already mounted the views without apps; a second
	// engine with the app is simpler than reaching into the first.
	s.srv = New(s.srv.log, nil)
	if err := s.srv.UseAccess(s.auth, s.db, nil); err != nil {
		t.Fatal(err)
	}
	registerViews(s.srv, s.auth, s.db, []*pipeline.App{{Name: "Shop", Environments: []string{"staging", "prod"}}})
	for env, ver := range map[string]string{"staging": "1.2.0", "prod": "1.1.0"} {
		rec := deployer.ServiceRecord{Env: env, Stack: "shop", Service: "web", State: deployer.StateActive,
			Spec: deployer.ServiceSpec{Name: "web", Image: "registry/shop:" + ver, Command: []string{"httpd", "-f"},
				Environment: map[string]string{"DB_PASSWORD": plantedSecret}, Scale: 2},
			Deployment: "d-" + env, Version: ver, Revision: 1}
		if err := s.db.CreateService(ctx, rec); err != nil {
			t.Fatal(err)
		}
		if _, err := s.db.AddRevision(ctx, deployer.Revision{Env: env, Stack: "shop", Version: ver}); err != nil {
			t.Fatal(err)
		}
	}
	for _, ver := range []string{"3.3", "3.4"} {
		if _, err := s.db.AddRevision(ctx, deployer.Revision{Env: "prod", Stack: "tools", Version: ver, CreatedBy: "carol-" + ver}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.db.CreateService(ctx, deployer.ServiceRecord{Env: "prod", Stack: "tools", Service: "cron", State: deployer.StateActive,
		Spec: deployer.ServiceSpec{Name: "cron", Image: "registry/tools:3.4", Scale: 1}, Deployment: "d-tools", Version: "3.4", Revision: 2}); err != nil {
		t.Fatal(err)
	}
	ps := s.db.Pipeline()
	for _, tk := range []pipeline.Ticket{
		{App: "Shop", Version: "1.1.0", Environment: "prod", Pusher: "alice", State: pipeline.TicketDone},
		{App: "Shop", Version: "1.2.0", Environment: "staging", Pusher: "bob", State: pipeline.TicketDone},
		{App: "Shop", Version: "1.2.0", Environment: "prod", Pusher: "bob", State: pipeline.TicketAwaitingConfirmation},
	} {
		if _, _, err := ps.CreateTicket(ctx, tk, "DEPLOY"); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

func TestCompareVersions(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	seen := map[string]time.Time{"main-aaa111": t0, "main-bbb222": t0.Add(time.Hour)}
	for _, tc := range []struct{ cur, prev, want string }{
		{"1.2.0", "1.2.0", "same"},
		{"1.10.0", "1.9.3", "ahead"},
		{"1.2", "1.2.1", "behind"},
		{"v2.0.0-rc1", "1.9.9", "ahead"},
		{"1.2.0", "1.2.0+build7", "differs"},
		{"main-bbb222", "main-aaa111", "ahead"},
		{"main-aaa111", "main-bbb222", "behind"},
		{"main-ccc333", "main-aaa111", "differs"},
		{"", "1.0.0", ""},
		{"1.0.0", "", ""},
	} {
		if got := compareVersions(tc.cur, tc.prev, seen); got != tc.want {
			t.Errorf("compareVersions(%q, %q) = %q, want %q", tc.cur, tc.prev, got, tc.want)
		}
	}
}

func TestStatusJSONPerRole(t *testing.T) {
	s := statusFixture(t)
	owner := s.user("olga", false, map[string]auth.Role{"prod": auth.RoleOwner, "staging": auth.RoleOwner})
	var m StatusMatrix
	s.mustJSON(s.do(http.MethodGet, "/api/v1/status", owner), http.StatusOK, &m)
	if strings.Join(m.Environments, ",") != "prod,staging" || len(m.Apps) != 2 || m.Apps[0].Stack != "shop" {
		t.Fatalf("matrix = %+v", m)
	}
	// The stack no app deploys has a row too; shop, Shop's, has none of its own.
	tools := m.Apps[1]
	if tools.App != "" || tools.Stack != "tools" || len(tools.Cells) != 2 {
		t.Fatalf("row of the stack outside the pipeline = %+v", tools)
	}
	if c := tools.Cells[0]; c.Environment != "prod" || c.Version != "3.4" || c.State != "active" || c.DeployedAt.IsZero() ||
		c.DeployedBy != "carol-3.4" || c.Health == nil || c.Health.Scale != 1 {
		t.Errorf("tools in prod = %+v, want 3.4 active, deployed by and at revision 2's", c)
	}
	if c := tools.Cells[1]; c.Environment != "staging" || c.State != "not-deployed" || c.Version != "" {
		t.Errorf("tools in staging = %+v, want not-deployed", c)
	}
	cells := map[string]CellStatus{}
	for _, c := range m.Apps[0].Cells {
		cells[c.Environment] = c
	}
	prod, staging := cells["prod"], cells["staging"]
	if prod.Version != "1.1.0" || prod.VersionFrom != "deployer" || prod.Compare != "behind" || prod.Previous != "staging" ||
		prod.PreviousVersion != "1.2.0" {
		t.Errorf("prod cell = %+v, want 1.1.0 behind staging 1.2.0", prod)
	}
	if prod.DeployedBy != "alice" || prod.Ticket != "DEPLOY-1" || prod.DeployedAt.IsZero() {
		t.Errorf("prod deployed by %q with %q at %v, want alice DEPLOY-1", prod.DeployedBy, prod.Ticket, prod.DeployedAt)
	}
	if len(prod.Pending) != 1 || prod.Pending[0].Key != "DEPLOY-3" || prod.Pending[0].State != "awaiting-confirmation" {
		t.Errorf("prod pending = %+v", prod.Pending)
	}
	// No hosts: the containers are missing, so the service is down.
	if prod.Health == nil || prod.Health.Scale != 2 || prod.Health.Healthy != 0 || prod.Health.Summary != "down" {
		t.Errorf("prod health = %+v", prod.Health)
	}
	if staging.Compare != "" || staging.Version != "1.2.0" || staging.DeployedBy != "bob" {
		t.Errorf("staging cell = %+v", staging)
	}

	// restricted: apps and versions only.
	restricted := s.user("rita", false, map[string]auth.Role{"prod": auth.RoleRestricted})
	w := s.do(http.MethodGet, "/api/v1/status", restricted)
	m = StatusMatrix{} // Unmarshal would keep the owner's fields in reused elements
	s.mustJSON(w, http.StatusOK, &m)
	if len(m.Environments) != 1 || m.Environments[0] != "prod" {
		t.Fatalf("restricted sees environments %v, want [prod]", m.Environments)
	}
	c := m.Apps[0].Cells[0]
	if c.Version != "1.1.0" || c.Compare != "behind" || c.PreviousVersion != "" || c.DeployedBy != "" || c.Pending != nil || c.Health != nil || c.Ticket != "" {
		t.Errorf("restricted cell = %+v, want version and comparison only", c)
	}
	if len(m.Apps) != 2 || m.Apps[1].Stack != "tools" || m.Apps[1].Cells[0].Version != "3.4" || m.Apps[1].Cells[0].Health != nil ||
		!m.Apps[1].Cells[0].DeployedAt.IsZero() {
		t.Errorf("restricted tools row = %+v, want version only", m.Apps[1:])
	}
	// Nor staging's version: rita may not view staging.
	for _, leak := range []string{"alice", "carol", "DEPLOY-", "deployed_by", "health", "1.2.0"} {
		if strings.Contains(w.Body.String(), leak) {
			t.Errorf("restricted status JSON contains %q: %s", leak, w.Body)
		}
	}
	if w := s.do(http.MethodGet, "/api/v1/status?env=staging", restricted); w.Code != http.StatusForbidden {
		t.Errorf("restricted on prod asking for staging: %d, want 403", w.Code)
	}
	admin := s.user("root", true, nil)
	if w := s.do(http.MethodGet, "/api/v1/status?env=nope", admin); w.Code != http.StatusNotFound {
		t.Errorf("unknown env: %d %s, want 404", w.Code, w.Body)
	}
}

func TestPagesShowAndHidePerRole(t *testing.T) {
	s := statusFixture(t)
	roles := func(r auth.Role) map[string]auth.Role { return map[string]auth.Role{"prod": r, "staging": r} }
	for _, r := range auth.Roles() {
		if _, err := s.auth.CreateUser(context.Background(), "u-"+string(r), "pw-of-u-"+string(r)+"-123", false); err != nil {
			t.Fatal(err)
		}
		u, _ := s.db.UserByName(context.Background(), "u-"+string(r))
		for env, role := range roles(r) {
			if err := s.db.SetMembership(context.Background(), env, u.ID, string(role)); err != nil {
				t.Fatal(err)
			}
		}
	}
	get := func(c *creds, path string) string {
		t.Helper()
		w := s.do(http.MethodGet, path, c)
		if w.Code != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, w.Code, w.Body)
		}
		if ct := w.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
			t.Fatalf("GET %s: Content-Type %q", path, ct)
		}
		return w.Body.String()
	}
	svc := "/environments/prod/stacks/shop/services/web"
	for _, tc := range []struct {
		role             auth.Role
		secrets, buttons bool
	}{
		{auth.RoleOwner, true, true},
		{auth.RoleMember, true, true},
		{auth.RoleReadOnly, true, false},
		{auth.RoleRestricted, false, false},
	} {
		t.Run(string(tc.role), func(t *testing.T) {
			c, w := s.login("u-"+string(tc.role), "pw-of-u-"+string(tc.role)+"-123")
			if c == nil {
				t.Fatalf("login: %d %s", w.Code, w.Body)
			}
			page := get(c, svc)
			if strings.Contains(page, plantedSecret) != tc.secrets || strings.Contains(page, "DB_PASSWORD") != tc.secrets {
				t.Errorf("service page shows the secret: %v, want %v", strings.Contains(page, plantedSecret), tc.secrets)
			}
			for _, want := range []string{"registry/shop:1.1.0", "httpd -f", "0/2 healthy"} {
				if !strings.Contains(page, want) {
					t.Errorf("service page lacks %q", want)
				}
			}
			ticket := get(c, "/tickets/DEPLOY-3")
			if strings.Contains(ticket, `id="finish"`) != tc.buttons || strings.Contains(ticket, `id="rollback"`) != tc.buttons {
				t.Errorf("ticket page has action buttons: %v, want %v", strings.Contains(ticket, `id="finish"`), tc.buttons)
			}
			if tc.buttons && !strings.Contains(ticket, `name="csrf_token" value="`+c.csrf+`"`) {
				t.Errorf("action forms do not carry the session's CSRF token")
			}
			dash := get(c, "/")
			if !strings.Contains(dash, "1.1.0") || !strings.Contains(dash, "behind staging") {
				t.Errorf("dashboard lacks prod's version marked behind staging:\n%s", dash)
			}
			if !strings.Contains(dash, `data-stack="tools" data-env="prod"`) || !strings.Contains(dash, "stack outside the pipeline") || !strings.Contains(dash, "3.4") {
				t.Errorf("dashboard lacks the tools stack and its version")
			}
			if strings.Contains(dash, "alice") == (tc.role == auth.RoleRestricted) {
				t.Errorf("dashboard names the deployer: %v (restricted must not see it)", strings.Contains(dash, "alice"))
			}
			if tools := get(c, "/environments/prod/stacks/tools/services/cron"); strings.Contains(tools, "carol-3.4") != tc.secrets {
				t.Errorf("service page names who deployed revision 2: %v, want %v", strings.Contains(tools, "carol-3.4"), tc.secrets)
			}
			if env := get(c, "/environments/prod"); !strings.Contains(env, `href="/environments/prod/containers"`) {
				t.Errorf("environment page does not link to its containers page")
			}
			for _, p := range []string{"/environments/prod", "/tickets", "/deliveries", "/audit", "/tickets?state=done"} {
				if page := get(c, p); strings.Contains(page, plantedSecret) {
					t.Errorf("%s shows the secret", p)
				}
			}
		})
	}
}

func TestPagesErrorsAndAnonymous(t *testing.T) {
	s := statusFixture(t)
	admin := s.user("root", true, nil)
	for path, want := range map[string]int{
		"/tickets/DEPLOY-99":                           http.StatusNotFound,
		"/environments/nope":                           http.StatusNotFound,
		"/environments/prod/stacks/shop/services/nope": http.StatusNotFound,
		"/environments/prod":                           http.StatusOK,
	} {
		w := s.do(http.MethodGet, path, admin)
		if w.Code != want || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/html") {
			t.Errorf("GET %s: %d %s, want %d HTML", path, w.Code, w.Header().Get("Content-Type"), want)
		}
	}
	w := s.do(http.MethodGet, "/environments/prod", nil)
	if w.Code != http.StatusFound || !strings.HasPrefix(w.Header().Get("Location"), "/login?next=") {
		t.Errorf("anonymous: %d Location %q, want a redirect to /login", w.Code, w.Header().Get("Location"))
	}
	w = s.do(http.MethodGet, "/login?failed=1&next=/tickets", nil)
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `name="next" value="/tickets"`) ||
		!strings.Contains(w.Body.String(), "Wrong user name") || !strings.Contains(w.Body.String(), "/static/app.css") {
		t.Errorf("login page: %d %s", w.Code, w.Body)
	}
	// A staging-only user must not find prod's tickets in the list.
	st := s.user("sam", false, map[string]auth.Role{"staging": auth.RoleOwner})
	w = s.do(http.MethodGet, "/tickets", st)
	if w.Code != http.StatusOK || strings.Contains(w.Body.String(), "DEPLOY-3") || !strings.Contains(w.Body.String(), "DEPLOY-2") {
		t.Errorf("staging-only ticket list: %d, shows DEPLOY-3 %v, DEPLOY-2 %v", w.Code,
			strings.Contains(w.Body.String(), "DEPLOY-3"), strings.Contains(w.Body.String(), "DEPLOY-2"))
	}
	if w := s.do(http.MethodGet, "/tickets/DEPLOY-3", st); w.Code != http.StatusForbidden {
		t.Errorf("staging-only user on a prod ticket: %d, want 403", w.Code)
	}
}

func TestTicketFormsActAsTheSessionUser(t *testing.T) {
	s := statusFixture(t)
	ctx := context.Background()
	for name, role := range map[string]auth.Role{"ro": auth.RoleReadOnly, "own": auth.RoleOwner} {
		u, err := s.auth.CreateUser(ctx, name, "pw-of-"+name+"-123", false)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.db.SetMembership(ctx, "prod", u.ID, string(role)); err != nil {
			t.Fatal(err)
		}
	}
	form := func(csrf string) reqOpt {
		return withBody("application/x-www-form-urlencoded", url.Values{"csrf_token": {csrf}}.Encode())
	}
	ro, _ := s.login("ro", "pw-of-ro-123")
	if w := s.do(http.MethodPost, "/tickets/DEPLOY-3/confirm", ro, form(ro.csrf)); w.Code != http.StatusForbidden {
		t.Errorf("read-only confirm: %d, want 403", w.Code)
	}
	own, _ := s.login("own", "pw-of-own-123")
	if w := s.do(http.MethodPost, "/tickets/DEPLOY-3/confirm", own, form("wrong")); w.Code != http.StatusForbidden {
		t.Errorf("confirm with a wrong CSRF token: %d, want 403", w.Code)
	}
	w := s.do(http.MethodPost, "/tickets/DEPLOY-3/confirm", own, form(own.csrf))
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/tickets/DEPLOY-3" {
		t.Fatalf("owner confirm: %d Location %q, want 303 to the ticket", w.Code, w.Header().Get("Location"))
	}
	if tk, err := s.db.Pipeline().Ticket(ctx, "DEPLOY-3"); err != nil || tk.State != pipeline.TicketDone {
		t.Fatalf("DEPLOY-3 = %v %v, want done", tk.State, err)
	}
	// Again: the ticket moved on, so the page says why it cannot.
	w = s.do(http.MethodPost, "/tickets/DEPLOY-3/rollback", own, form(own.csrf))
	if w.Code != http.StatusConflict || !strings.Contains(w.Body.String(), "Cannot rollback DEPLOY-3") {
		t.Errorf("rollback of a done ticket: %d %s, want 409 page", w.Code, w.Body)
	}
}

// fakeCharts draws a marker instead of the sampled SVG charts.
type fakeCharts struct{}

func (fakeCharts) HostCharts(env string) map[string][]template.HTML {
	return map[string][]template.HTML{"h1": {`<svg class="chart-h1-` + template.HTML(env) + `"></svg>`}}
}

func (fakeCharts) ServiceCharts(_ context.Context, env, stack, service string) []template.HTML {
	return []template.HTML{template.HTML(`<svg class="chart-` + stack + `-` + service + `"></svg>`)}
}

// The environment page draws each host's charts and the service page the
// service's, as the containers pages do.
func TestStatusPagesDrawCharts(t *testing.T) {
	s := statusFixture(t)
	s.srv = New(s.srv.log, nil)
	if err := s.srv.UseAccess(s.auth, s.db, nil); err != nil {
		t.Fatal(err)
	}
	registerViews(s.srv, s.auth, s.db, nil).Charts = fakeCharts{}
	admin, _ := s.login("admin", adminPassword)
	for path, marker := range map[string]string{
		"/environments/prod":                          `<svg class="chart-h1-prod">`,
		"/environments/prod/stacks/shop/services/web": `<svg class="chart-shop-web">`,
	} {
		w := s.do(http.MethodGet, path, admin)
		if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), marker) {
			t.Fatalf("GET %s: %d, want the chart %s in:\n%s", path, w.Code, marker, w.Body)
		}
	}
}
