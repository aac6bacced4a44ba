package auth

import (
	"net/http"
	"path"
	"sort"
	"strings"
	"sync"

	"github.com/gin-gonic/gin"
)

// EnvFunc says which environment a request acts on ("" for none or all).
type EnvFunc func(*gin.Context) string

// Param reads the environment from a path parameter, e.g. Param("env").
func Param(name string) EnvFunc { return func(c *gin.Context) string { return c.Param(name) } }

// Query reads the environment from a query parameter.
func Query(name string) EnvFunc { return func(c *gin.Context) string { return c.Query(name) } }

// NoEnv is for routes not about one environment.
func NoEnv(*gin.Context) string { return "" }

// RouteSpec is a declared route: the permission it needs, or why it is
// public.
type RouteSpec struct {
	Method string
	Path   string // the gin pattern, e.g. /api/v1/environments/:env
	Perm   Permission
	Env    EnvFunc
	// Public, when not empty, says why the route needs no login (it
	// verifies a signature itself, or it is a probe).
	Public string
}

// Registry records every route's permission. The middleware enforces it
// and refuses routes missing from it (fail closed); Undeclared lets a test
// find them first.
type Registry struct {
	mu sync.RWMutex
	m  map[string]RouteSpec
}

// NewRegistry returns a registry holding the built-in public routes.
func NewRegistry() *Registry {
	r := &Registry{m: map[string]RouteSpec{}}
	for _, p := range []struct{ method, path, why string }{
		{http.MethodGet, "/healthz", "liveness probe"},
		{http.MethodGet, "/readyz", "readiness probe"},
		{http.MethodGet, "/metrics", "Prometheus scrape"},
		{http.MethodGet, "/login", "login page"},
		{http.MethodPost, "/login", "login"},
	} {
		r.Public(p.method, p.path, p.why)
	}
	return r
}

func routeKey(method, path string) string { return method + " " + path }

// Declare records that method+path needs perm on the environment env
// returns. Declaring twice replaces.
func (r *Registry) Declare(method, path string, perm Permission, env EnvFunc) {
	if env == nil {
		env = NoEnv
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.m[routeKey(method, path)] = RouteSpec{Method: method, Path: path, Perm: perm, Env: env}
}

// Public records a route that needs no login, and why. Routes under
// /webhooks/ are public without declaring: each verifies its own
// signature. Signed approval-link GET pages declare themselves here.
func (r *Registry) Public(method, path, why string) {
	if why == "" {
		panic("auth: Public route " + path + " needs a reason") // a programming error, caught by tests
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.m[routeKey(method, path)] = RouteSpec{Method: method, Path: path, Public: why}
}

// Lookup finds the spec of a route pattern.
func (r *Registry) Lookup(method, path string) (RouteSpec, bool) {
	if strings.HasPrefix(path, "/webhooks/") {
		return RouteSpec{Method: method, Path: path, Public: "webhook: verifies its own signature"}, true
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	s, ok := r.m[routeKey(method, path)]
	return s, ok
}

// Specs lists declared routes by path and method.
func (r *Registry) Specs() []RouteSpec {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]RouteSpec, 0, len(r.m))
	for _, s := range r.m {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Path != out[j].Path {
			return out[i].Path < out[j].Path
		}
		return out[i].Method < out[j].Method
	})
	return out
}

// Undeclared lists the routes of an engine (gin.Engine.Routes()) that
// are neither declared nor public, as "METHOD /path". Tests call it so an
// undeclared route fails CI rather than answering 403 in production.
func (r *Registry) Undeclared(routes gin.RoutesInfo) []string {
	var out []string
	for _, rt := range routes {
		if _, ok := r.Lookup(rt.Method, rt.Path); !ok {
			out = append(out, routeKey(rt.Method, rt.Path))
		}
	}
	sort.Strings(out)
	return out
}

// Routes registers handlers and declares their permission in one call,
// so the two cannot drift apart.
type Routes struct {
	g   *gin.RouterGroup
	reg *Registry
}

// Routes wraps a gin group (use &engine.RouterGroup for the root).
func (a *Authenticator) Routes(g *gin.RouterGroup) *Routes { return &Routes{g: g, reg: a.registry} }

// Group is a sub-group at relativePath.
func (rt *Routes) Group(relativePath string) *Routes {
	return &Routes{g: rt.g.Group(relativePath), reg: rt.reg}
}

func (rt *Routes) full(p string) string {
	f := path.Join(rt.g.BasePath(), p)
	if strings.HasSuffix(p, "/") && !strings.HasSuffix(f, "/") {
		f += "/"
	}
	return f
}

// Handle registers handlers for method+relativePath needing perm on the
// environment env returns.
func (rt *Routes) Handle(method, relativePath string, perm Permission, env EnvFunc, handlers ...gin.HandlerFunc) {
	rt.reg.Declare(method, rt.full(relativePath), perm, env)
	rt.g.Handle(method, relativePath, handlers...)
}

// Public registers a route that needs no login; why is shown in reviews
// and in the route table test.
func (rt *Routes) Public(method, relativePath, why string, handlers ...gin.HandlerFunc) {
	rt.reg.Public(method, rt.full(relativePath), why)
	rt.g.Handle(method, relativePath, handlers...)
}
