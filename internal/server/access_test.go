package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"golang.org/x/crypto/bcrypt"

	"github.com/dockmaster/dockmaster/internal/auth"
	"github.com/dockmaster/dockmaster/internal/config"
	"github.com/dockmaster/dockmaster/internal/discovery"
	"github.com/dockmaster/dockmaster/internal/fleet"
	"github.com/dockmaster/dockmaster/internal/inventory"
	"github.com/dockmaster/dockmaster/internal/seal"
	"github.com/dockmaster/dockmaster/internal/store"
)

const adminPassword = "planted-admin-pw-8c1f2e"

// syncBuffer collects log output written from handler goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type accessServer struct {
	t    *testing.T
	srv  *Server
	auth *auth.Authenticator
	db   *store.DB
	logs *syncBuffer
	dir  string
}

// newAccessServer wires the server as serve.go does, on a real SQLite
// store with environments prod and staging.
func newAccessServer(t *testing.T, publicURL string) *accessServer {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	db, err := store.Open(ctx, filepath.Join(dir, "dockmaster.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	for _, e := range []string{"prod", "staging"} {
		if err := db.UpsertEnvironment(ctx, store.Environment{Name: e}); err != nil {
			t.Fatal(err)
		}
	}
	logs := &syncBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv := New(log, map[string]ReadyChecker{"store": db})
	a, err := auth.New(auth.Options{Store: db, Config: config.Auth{AdminPassword: config.NewSecret(adminPassword)},
		PublicURL: publicURL, StateDir: dir, Log: log, BcryptCost: bcrypt.MinCost})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Bootstrap(ctx); err != nil {
		t.Fatal(err)
	}
	if err := srv.UseAccess(a, db, nil); err != nil {
		t.Fatal(err)
	}
	api := srv.Engine.Group("/api/v1")
	(&EnvironmentAPI{Store: db, Inventory: inventory.New(db, log, time.Hour, nil), Auth: a}).Register(a.Routes(api))
	sealer, err := seal.FromSecret(a.SigningKey(), "test")
	if err != nil {
		t.Fatal(err)
	}
	(&RegistrationAPI{Store: db, Sealer: sealer}).Register(a.Routes(api))
	(&StackAPI{Fleet: fleet.New(fleet.Options{Store: db}), Store: db}).Register(a.Routes(api))
	(&PlanAPI{Deployers: fleet.New(fleet.Options{Store: db})}).Register(a.Routes(api))
	(&HostAPI{Store: db, Deployers: fleet.New(fleet.Options{Store: db})}).Register(a.Routes(api))
	registerContainers(t, srv, a, db)                                                                          // containers API and pages (no hosts)
	registerViews(srv, a, db, nil)                                                                             // status API and HTML pages
	(&DiscoveryAPI{Discovery: discovery.New(discovery.Options{}), LBKey: []byte("k")}).Register(a.Routes(api)) // discovery
	// tickets API and approval link pages
	registerTickets(t, srv, a, db)
	return &accessServer{t: t, srv: srv, auth: a, db: db, logs: logs, dir: dir}
}

type creds struct {
	access, secret string
	cookie         *http.Cookie
	csrf           string
}

type reqOpt func(*http.Request)

func withBody(contentType, body string) reqOpt {
	return func(r *http.Request) {
		r.Header.Set("Content-Type", contentType)
		r.Body = io.NopCloser(strings.NewReader(body))
		r.ContentLength = int64(len(body))
	}
}

func (s *accessServer) do(method, target string, c *creds, opts ...reqOpt) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, target, nil)
	if c != nil {
		if c.access != "" {
			req.SetBasicAuth(c.access, c.secret)
		}
		if c.cookie != nil {
			req.AddCookie(c.cookie)
		}
	}
	for _, o := range opts {
		o(req)
	}
	w := httptest.NewRecorder()
	s.srv.Engine.ServeHTTP(w, req)
	return w
}

func (s *accessServer) mustJSON(w *httptest.ResponseRecorder, want int, out any) {
	s.t.Helper()
	if w.Code != want {
		s.t.Fatalf("status %d, want %d: %s", w.Code, want, w.Body)
	}
	if out != nil {
		if err := json.Unmarshal(w.Body.Bytes(), out); err != nil {
			s.t.Fatalf("answer %q: %v", w.Body, err)
		}
	}
}

// user creates a user with roles and returns an account key for it.
func (s *accessServer) user(name string, admin bool, roles map[string]auth.Role) *creds {
	s.t.Helper()
	ctx := context.Background()
	u, err := s.auth.CreateUser(ctx, name, "pw-of-"+name+"-123", admin)
	if err != nil {
		s.t.Fatal(err)
	}
	for env, r := range roles {
		if err := s.db.SetMembership(ctx, env, u.ID, string(r)); err != nil {
			s.t.Fatal(err)
		}
	}
	k, err := s.auth.CreateKey(ctx, u.ID, "", "", "test", "test")
	if err != nil {
		s.t.Fatal(err)
	}
	return &creds{access: k.AccessKey, secret: k.Secret}
}

func (s *accessServer) login(name, password string) (*creds, *httptest.ResponseRecorder) {
	body, _ := json.Marshal(map[string]string{"user": name, "password": password})
	w := s.do(http.MethodPost, "/login", nil, withBody("application/json", string(body)))
	if w.Code != http.StatusOK {
		return nil, w
	}
	var out struct {
		CSRF string `json:"csrf_token"`
	}
	s.mustJSON(w, http.StatusOK, &out)
	for _, c := range w.Result().Cookies() {
		if c.Name == auth.CookieName {
			return &creds{cookie: c, csrf: out.CSRF}, w
		}
	}
	s.t.Fatalf("login set no %s cookie", auth.CookieName)
	return nil, w
}

// wantPerms is the role table as the brief states it, written out again
// here so that a change to the code's table fails this test.
var wantPerms = map[auth.Role][]auth.Permission{
	auth.RoleRestricted: {auth.PermView},
	auth.RoleReadOnly:   {auth.PermView, auth.PermViewSecrets},
	auth.RoleMember: {auth.PermView, auth.PermViewSecrets, auth.PermDeploy, auth.PermApprove,
		auth.PermContainerAct, auth.PermExec},
	auth.RoleOwner: {auth.PermView, auth.PermViewSecrets, auth.PermDeploy, auth.PermApprove,
		auth.PermContainerAct, auth.PermExec, auth.PermManageHosts, auth.PermManageMembers},
}

func roleHas(r auth.Role, p auth.Permission) bool {
	for _, q := range wantPerms[r] {
		if q == p {
			return true
		}
	}
	return false
}

// TestEveryRouteIsDeclared fails for any route mounted without a
// permission (or a reason to be public).
func TestEveryRouteIsDeclared(t *testing.T) {
	s := newAccessServer(t, "")
	if u := s.auth.Registry().Undeclared(s.srv.Engine.Routes()); len(u) > 0 {
		t.Fatalf("routes without a declared permission: %v", u)
	}
	// The check and the middleware both catch a route added behind their back.
	s.srv.Engine.GET("/api/v1/sneaky", func(c *gin.Context) { c.String(http.StatusOK, "leak") })
	if u := s.auth.Registry().Undeclared(s.srv.Engine.Routes()); len(u) != 1 || u[0] != "GET /api/v1/sneaky" {
		t.Fatalf("Undeclared = %v, want the sneaky route", u)
	}
	admin, _ := s.login("admin", adminPassword)
	if w := s.do(http.MethodGet, "/api/v1/sneaky", admin); w.Code != http.StatusForbidden || strings.Contains(w.Body.String(), "leak") {
		t.Fatalf("undeclared route answered %d %s, want 403", w.Code, w.Body)
	}
}

// TestRouteRoleMatrix sends every declared route, as every kind of
// principal, and checks 401/403/allowed against the role table. Routes
// added later join automatically.
func TestRouteRoleMatrix(t *testing.T) {
	s := newAccessServer(t, "")
	type who struct {
		name  string
		c     *creds
		admin bool
		roles map[string]auth.Role // literal: what this principal is
		key   bool                 // an environment key: no user behind it
	}
	var people []who
	for _, r := range auth.Roles() {
		roles := map[string]auth.Role{"prod": r}
		people = append(people, who{name: string(r) + "-prod", roles: roles, c: s.user("u-"+string(r), false, roles)})
	}
	people = append(people,
		who{name: "owner-of-staging-only", roles: map[string]auth.Role{"staging": auth.RoleOwner},
			c: s.user("u-staging", false, map[string]auth.Role{"staging": auth.RoleOwner})},
		who{name: "no-roles", roles: nil, c: s.user("u-none", false, nil)},
		who{name: "admin", admin: true, c: s.user("u-admin", true, nil)},
	)
	envKey, err := s.auth.CreateKey(context.Background(), 0, "prod", auth.RoleMember, "jenkins", "test")
	if err != nil {
		t.Fatal(err)
	}
	people = append(people, who{name: "prod-member-env-key", key: true, roles: map[string]auth.Role{"prod": auth.RoleMember},
		c: &creds{access: envKey.AccessKey, secret: envKey.Secret}})

	routes := s.srv.Engine.Routes()
	sort.Slice(routes, func(i, j int) bool { return routes[i].Path+routes[i].Method < routes[j].Path+routes[j].Method })
	checked := 0
	for _, rt := range routes {
		spec, ok := s.auth.Registry().Lookup(rt.Method, rt.Path)
		if !ok {
			t.Errorf("%s %s: not declared", rt.Method, rt.Path)
			continue
		}
		if spec.Public != "" {
			continue
		}
		checked++
		target, env := concrete(rt.Path)
		t.Run(rt.Method+" "+rt.Path, func(t *testing.T) {
			// Pages (GETs outside /api/) send anonymous visitors to /login.
			page := rt.Method == http.MethodGet && !strings.HasPrefix(rt.Path, "/api/")
			if w := s.do(rt.Method, target, nil, withBody("application/json", "{}")); page &&
				(w.Code != http.StatusFound || !strings.HasPrefix(w.Header().Get("Location"), "/login?")) {
				t.Errorf("anonymous page: %d Location %q, want 302 to /login", w.Code, w.Header().Get("Location"))
			} else if !page && w.Code != http.StatusUnauthorized {
				t.Errorf("anonymous: %d, want 401", w.Code)
			}
			for _, p := range people {
				allowed := p.admin || spec.Perm == auth.PermAuthenticated || spec.Perm == auth.PermAccount && !p.key
				if !allowed && spec.Perm != auth.PermAdmin && spec.Perm != auth.PermAccount {
					if env != "" {
						allowed = roleHas(p.roles[env], spec.Perm)
					} else {
						for _, r := range p.roles {
							allowed = allowed || roleHas(r, spec.Perm)
						}
					}
				}
				w := s.do(rt.Method, target, p.c, withBody("application/json", "{}"))
				switch {
				case w.Code == http.StatusUnauthorized:
					t.Errorf("%s: 401 %s", p.name, w.Body)
				case allowed && w.Code == http.StatusForbidden:
					t.Errorf("%s: 403 %s, want allowed (%s)", p.name, w.Body, spec.Perm)
				case !allowed && w.Code != http.StatusForbidden:
					t.Errorf("%s: %d %s, want 403 (needs %s)", p.name, w.Code, w.Body, spec.Perm)
				case !allowed && !strings.Contains(w.Body.String(), "missing permission "+string(spec.Perm)):
					t.Errorf("%s: 403 body %s does not name %s", p.name, w.Body, spec.Perm)
				}
			}
		})
	}
	if checked < 15 {
		t.Fatalf("matrix checked only %d routes; is the wiring missing?", checked)
	}
}

// concrete fills a route pattern: :env is prod, other parameters a name
// that does not exist (so allowed writes change nothing).
func concrete(pattern string) (target, env string) {
	parts := strings.Split(pattern, "/")
	for i, p := range parts {
		switch {
		case p == ":env":
			parts[i], env = "prod", "prod"
		case strings.HasPrefix(p, ":") || strings.HasPrefix(p, "*"):
			parts[i] = "zz-missing"
		}
	}
	return strings.Join(parts, "/"), env
}

func TestForbiddenNamesPermissionAndIsAudited(t *testing.T) {
	s := newAccessServer(t, "")
	member := s.user("mia", false, map[string]auth.Role{"prod": auth.RoleMember})
	w := s.do(http.MethodPut, "/api/v1/environments/prod/members/mia", member, withBody("application/json", `{"role":"owner"}`))
	if w.Code != http.StatusForbidden {
		t.Fatalf("status %d %s", w.Code, w.Body)
	}
	if got, want := strings.TrimSpace(w.Body.String()), `{"error":"forbidden: missing permission manage-members on environment prod"}`; got != want {
		t.Fatalf("body %s, want %s", got, want)
	}
	es, err := s.db.AuditLog(context.Background(), store.AuditQuery{Actor: "mia", Action: "denied"})
	if err != nil || len(es) != 1 || es[0].Environment != "prod" || es[0].Result != "denied" {
		t.Fatalf("denied attempt not audited: %+v %v", es, err)
	}
}

func TestAnonymous(t *testing.T) {
	s := newAccessServer(t, "")
	rt := s.auth.Routes(&s.srv.Engine.RouterGroup)
	rt.Handle(http.MethodGet, "/apps", auth.PermView, auth.NoEnv, func(c *gin.Context) { c.String(http.StatusOK, "apps") })
	w := s.do(http.MethodGet, "/api/v1/environments", nil)
	if w.Code != http.StatusUnauthorized || !strings.Contains(w.Body.String(), "authentication required") {
		t.Fatalf("API: %d %s, want 401", w.Code, w.Body)
	}
	w = s.do(http.MethodGet, "/apps?x=1", nil)
	if w.Code != http.StatusFound || w.Header().Get("Location") != "/login?next="+url.QueryEscape("/apps?x=1") {
		t.Fatalf("page: %d Location %q, want redirect to /login", w.Code, w.Header().Get("Location"))
	}
	bad := &creds{access: "DKNOPE", secret: "nope"}
	if w := s.do(http.MethodGet, "/api/v1/me", bad); w.Code != http.StatusUnauthorized {
		t.Fatalf("wrong key: %d", w.Code)
	}
	if w := s.do(http.MethodGet, "/login", nil); w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `name="password"`) {
		t.Fatalf("login page: %d", w.Code)
	}
}

func TestBearerKeyAndEnvKeyScope(t *testing.T) {
	s := newAccessServer(t, "")
	k, err := s.auth.CreateKey(context.Background(), 0, "prod", auth.RoleReadOnly, "", "test")
	if err != nil {
		t.Fatal(err)
	}
	bearer := func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+k.AccessKey+":"+k.Secret) }
	if w := s.do(http.MethodGet, "/api/v1/environments/prod", nil, bearer); w.Code != http.StatusOK {
		t.Fatalf("prod: %d %s", w.Code, w.Body)
	}
	if w := s.do(http.MethodGet, "/api/v1/environments/staging", nil, bearer); w.Code != http.StatusForbidden {
		t.Fatalf("staging with a prod key: %d, want 403", w.Code)
	}
	wrong := func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+k.AccessKey+":"+flipFirst(k.Secret)) }
	if w := s.do(http.MethodGet, "/api/v1/environments/prod", nil, wrong); w.Code != http.StatusUnauthorized {
		t.Fatalf("wrong secret: %d, want 401", w.Code)
	}
}

func TestSessionCookieCSRFAndLogout(t *testing.T) {
	s := newAccessServer(t, "")
	if _, w := s.login("admin", "wrong-password"); w.Code != http.StatusUnauthorized {
		t.Fatalf("wrong password: %d %s", w.Code, w.Body)
	}
	c, w := s.login("admin", adminPassword)
	if c == nil {
		t.Fatalf("login: %d %s", w.Code, w.Body)
	}
	if !c.cookie.HttpOnly || c.cookie.SameSite != http.SameSiteLaxMode || c.cookie.Secure || c.cookie.MaxAge <= 0 {
		t.Fatalf("cookie %+v: want HttpOnly, SameSite=Lax, not Secure over plain http, expiring", c.cookie)
	}
	if w := s.do(http.MethodGet, "/api/v1/me", c); w.Code != http.StatusOK {
		t.Fatalf("me: %d", w.Code)
	}
	// State change from a session without the token: refused.
	body := withBody("application/json", `{"description":"x"}`)
	if w := s.do(http.MethodPost, "/api/v1/keys", c, body); w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), "CSRF") {
		t.Fatalf("no CSRF token: %d %s, want 403", w.Code, w.Body)
	}
	wrongTok := func(r *http.Request) { r.Header.Set(auth.CSRFHeader, flipFirst(c.csrf)) }
	if w := s.do(http.MethodPost, "/api/v1/keys", c, withBody("application/json", `{}`), wrongTok); w.Code != http.StatusForbidden {
		t.Fatalf("wrong CSRF token: %d", w.Code)
	}
	tok := func(r *http.Request) { r.Header.Set(auth.CSRFHeader, c.csrf) }
	if w := s.do(http.MethodPost, "/api/v1/keys", c, withBody("application/json", `{}`), tok); w.Code != http.StatusCreated {
		t.Fatalf("with CSRF token: %d %s", w.Code, w.Body)
	}
	// An HTML form carries the token as a field.
	w = s.do(http.MethodPost, "/logout", c, withBody("application/x-www-form-urlencoded", auth.CSRFField+"="+url.QueryEscape(c.csrf)))
	if w.Code != http.StatusSeeOther {
		t.Fatalf("logout: %d %s", w.Code, w.Body)
	}
	if w := s.do(http.MethodGet, "/api/v1/me", c); w.Code != http.StatusUnauthorized {
		t.Fatalf("after logout: %d, want 401", w.Code)
	}
}

func TestSecureCookieBehindHTTPS(t *testing.T) {
	s := newAccessServer(t, "https://dockmaster.example.com")
	c, w := s.login("admin", adminPassword)
	if c == nil || !c.cookie.Secure {
		t.Fatalf("public_url https: cookie not Secure (%d)", w.Code)
	}
}

func TestLoginRateLimit(t *testing.T) {
	s := newAccessServer(t, "")
	for i := range 5 {
		if _, w := s.login("admin", "wrong-"+fmt.Sprint(i)); w.Code != http.StatusUnauthorized {
			t.Fatalf("attempt %d: %d", i, w.Code)
		}
	}
	_, w := s.login("admin", adminPassword) // right password, but locked
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") == "" {
		t.Fatalf("after 5 failures: %d Retry-After %q, want 429", w.Code, w.Header().Get("Retry-After"))
	}
	es, _ := s.db.AuditLog(context.Background(), store.AuditQuery{Action: "login", Actor: "admin"})
	if len(es) != 6 || es[0].Result != "denied" || es[1].Result != "failed" {
		t.Fatalf("login audit: %+v", es)
	}
}

func TestSecurityHeaders(t *testing.T) {
	s := newAccessServer(t, "")
	admin := s.user("ada", true, nil)
	for _, target := range []string{"/api/v1/environments", "/login", "/no-such-page"} {
		for _, c := range []*creds{nil, admin} {
			w := s.do(http.MethodGet, target, c)
			h := w.Header()
			if !strings.Contains(h.Get("Content-Security-Policy"), "default-src 'self'") ||
				!strings.Contains(h.Get("Content-Security-Policy"), "frame-ancestors 'none'") ||
				h.Get("X-Frame-Options") != "DENY" || h.Get("X-Content-Type-Options") != "nosniff" ||
				h.Get("Referrer-Policy") != "no-referrer" {
				t.Errorf("GET %s (%d): headers %v", target, w.Code, h)
			}
		}
	}
}

func TestMembersKeysAndAudit(t *testing.T) {
	s := newAccessServer(t, "")
	owner := s.user("olga", false, map[string]auth.Role{"prod": auth.RoleOwner})
	reader := s.user("rita", false, map[string]auth.Role{"prod": auth.RoleReadOnly})
	stager := s.user("sam", false, map[string]auth.Role{"staging": auth.RoleMember})
	s.user("bob", false, nil)

	s.mustJSON(s.do(http.MethodPut, "/api/v1/environments/prod/members/bob", owner, withBody("application/json", `{"role":"restricted"}`)), http.StatusOK, nil)
	w := s.do(http.MethodPut, "/api/v1/environments/prod/members/bob", owner, withBody("application/json", `{"role":"boss"}`))
	if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "role") {
		t.Fatalf("bad role: %d %s", w.Code, w.Body)
	}
	var ms struct{ Members []map[string]string }
	s.mustJSON(s.do(http.MethodGet, "/api/v1/environments/prod/members", reader), http.StatusOK, &ms)
	if len(ms.Members) != 3 {
		t.Fatalf("members %v", ms.Members)
	}
	var key struct {
		AccessKey string `json:"access_key"`
		Secret    string `json:"secret"`
		Role      string `json:"role"`
	}
	s.mustJSON(s.do(http.MethodPost, "/api/v1/environments/prod/keys", owner, withBody("application/json", `{"role":"read-only","description":"jenkins"}`)), http.StatusCreated, &key)
	if key.Secret == "" || key.Role != "read-only" {
		t.Fatalf("key %+v", key)
	}
	var listed struct{ Keys []map[string]any }
	s.mustJSON(s.do(http.MethodGet, "/api/v1/environments/prod/keys", owner), http.StatusOK, &listed)
	if len(listed.Keys) != 1 || listed.Keys[0]["secret"] != nil {
		t.Fatalf("listed keys %v: want one, without secret", listed.Keys)
	}

	var audit struct{ Entries []store.AuditEntry }
	s.mustJSON(s.do(http.MethodGet, "/api/v1/audit?env=prod", reader), http.StatusOK, &audit)
	var actions []string
	for _, e := range audit.Entries {
		actions = append(actions, e.Actor+":"+e.Action+":"+e.Target)
		if e.Source != "192.0.2.1" {
			t.Errorf("entry %+v: source not the client address", e)
		}
	}
	if got := strings.Join(actions, ","); got != "olga:key.create:"+key.AccessKey+",olga:member.set:bob=restricted" {
		t.Fatalf("audit for prod: %s", got)
	}
	if w := s.do(http.MethodGet, "/api/v1/audit?env=prod", stager); w.Code != http.StatusForbidden {
		t.Fatalf("staging member reading prod audit: %d", w.Code)
	}
	s.mustJSON(s.do(http.MethodGet, "/api/v1/audit", stager), http.StatusOK, &audit)
	if len(audit.Entries) != 0 {
		t.Fatalf("staging member sees %v", audit.Entries)
	}
	if w := s.do(http.MethodGet, "/api/v1/audit?limit=0", reader); w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "limit") {
		t.Fatalf("limit=0: %d %s", w.Code, w.Body)
	}
	// Revoked keys stop working.
	s.mustJSON(s.do(http.MethodDelete, "/api/v1/environments/prod/keys/"+key.AccessKey, owner), http.StatusNoContent, nil)
	if w := s.do(http.MethodGet, "/api/v1/environments/prod", &creds{access: key.AccessKey, secret: key.Secret}); w.Code != http.StatusUnauthorized {
		t.Fatalf("revoked key: %d", w.Code)
	}
}

// TestSecretsNeverStoredOrLogged plants a password and a key secret, uses
// them (and mistypes the password into the user field), then greps the
// logs, the database files and a dump of every table.
func TestSecretsNeverStoredOrLogged(t *testing.T) {
	s := newAccessServer(t, "")
	admin, _ := s.login("admin", adminPassword)
	csrf := func(r *http.Request) { r.Header.Set(auth.CSRFHeader, admin.csrf) }
	const userPW = "planted-user-pw-51d0aa"
	s.mustJSON(s.do(http.MethodPost, "/api/v1/users", admin, csrf, withBody("application/json", `{"name":"carol","password":"`+userPW+`"}`)), http.StatusCreated, nil)
	var key struct {
		AccessKey string `json:"access_key"`
		Secret    string `json:"secret"`
	}
	s.mustJSON(s.do(http.MethodPost, "/api/v1/environments/prod/keys", admin, csrf, withBody("application/json", `{}`)), http.StatusCreated, &key)
	if w := s.do(http.MethodGet, "/api/v1/environments/prod", &creds{access: key.AccessKey, secret: key.Secret}); w.Code != http.StatusOK {
		t.Fatalf("key use: %d", w.Code)
	}
	s.login("carol", userPW)
	s.login(userPW, "oops-typed-in-the-wrong-field")
	s.login("carol", userPW+"x")

	secrets := map[string]string{"admin password": adminPassword, "user password": userPW, "key secret": key.Secret,
		"session cookie": admin.cookie.Value}
	haystacks := map[string]string{"logs": s.logs.String(), "db dump": dumpDB(t, s.db)}
	for _, f := range []string{"dockmaster.db", "dockmaster.db-wal"} {
		b, err := os.ReadFile(filepath.Join(s.dir, f))
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		haystacks[f] = string(b)
	}
	if !strings.Contains(haystacks["db dump"], key.AccessKey) || !strings.Contains(haystacks["logs"], "/api/v1/users") {
		t.Fatal("haystacks look empty; the test would prove nothing")
	}
	for hn, h := range haystacks {
		for sn, sv := range secrets {
			if strings.Contains(h, sv) {
				t.Errorf("%s contains the %s", hn, sn)
			}
		}
	}
}

func dumpDB(t *testing.T, db *store.DB) string {
	t.Helper()
	rows, err := db.Query(`SELECT name FROM sqlite_master WHERE type = 'table'`)
	if err != nil {
		t.Fatal(err)
	}
	var tables []string
	for rows.Next() {
		var n string
		rows.Scan(&n)
		tables = append(tables, n)
	}
	rows.Close()
	var out strings.Builder
	for _, tb := range tables {
		r, err := db.Query(`SELECT * FROM "` + tb + `"`)
		if err != nil {
			t.Fatal(err)
		}
		cols, _ := r.Columns()
		for r.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			r.Scan(ptrs...)
			for _, v := range vals {
				if b, ok := v.([]byte); ok {
					v = string(b)
				}
				fmt.Fprintf(&out, "%v|", v)
			}
			out.WriteString("\n")
		}
		r.Close()
	}
	return out.String()
}

// flipFirst changes a token's first character, so it always differs.
func flipFirst(s string) string {
	if s[0] == 'x' {
		return "y" + s[1:]
	}
	return "x" + s[1:]
}
