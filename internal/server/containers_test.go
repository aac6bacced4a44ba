package server

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/dockmaster/dockmaster/internal/auth"
	"github.com/dockmaster/dockmaster/internal/containers"
	"github.com/dockmaster/dockmaster/internal/store"
	"github.com/dockmaster/dockmaster/templates"
)

// registerContainers mounts the container API and pages as serve.go does,
// over the store's registered hosts.
func registerContainers(t *testing.T, s *Server, a *auth.Authenticator, db *store.DB) *containers.Service {
	t.Helper()
	svc := containers.New(containers.Options{Hosts: db, StatsInterval: -1, ColdWait: 100 * time.Millisecond})
	t.Cleanup(svc.Close)
	if err := svc.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	api := &ContainerAPI{Containers: svc, Authz: a.Authorizer(), Pages: templates.NewPages()}
	api.Register(a.Routes(s.Engine.Group("/api/v1")))
	api.RegisterPages(a.Routes(&s.Engine.RouterGroup))
	return api.Containers
}

// TestContainerErrorsNameThePlace checks answers that need no Docker host:
// a registered host whose daemon is missing is listed as unreachable, and
// bad queries name the parameter.
func TestContainerErrorsNameThePlace(t *testing.T) {
	s := newAccessServer(t, "")
	ctx := context.Background()
	if _, err := s.db.UpsertHost(ctx, store.Host{Environment: "prod", Name: "gone", Endpoint: "unix:///nonexistent/d.sock"}); err != nil {
		t.Fatal(err)
	}
	svc := containers.New(containers.Options{Hosts: s.db, StatsInterval: -1, ColdWait: 2 * time.Second})
	t.Cleanup(svc.Close)
	if err := svc.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	s.srv = New(s.srv.log, nil)
	if err := s.srv.UseAccess(s.auth, s.db, nil); err != nil {
		t.Fatal(err)
	}
	api := &ContainerAPI{Containers: svc, Authz: s.auth.Authorizer(), Pages: templates.NewPages()}
	api.Register(s.auth.Routes(s.srv.Engine.Group("/api/v1")))
	owner := s.user("olga", false, map[string]auth.Role{"prod": auth.RoleOwner})

	var l containers.Listing
	s.mustJSON(s.do(http.MethodGet, "/api/v1/environments/prod/containers", owner), http.StatusOK, &l)
	if len(l.Hosts) != 1 || l.Hosts[0].State != "unreachable" || l.Hosts[0].LastError == "" || len(l.Containers) != 0 {
		t.Errorf("listing = %+v, want the dead host unreachable with its error", l)
	}
	for target, want := range map[string]string{
		"/api/v1/environments/prod/containers?kind=weird":          "query kind",
		"/api/v1/environments/prod/containers/abc/logs?tail=x":     "query tail",
		"/api/v1/environments/prod/containers/nope":                "no such container",
		"/api/v1/environments/prod/service-logs?stack=a":           "query stack and service",
		"/api/v1/environments/prod/containers/abc/exec?rows=99999": "query rows",
	} {
		w := s.do(http.MethodGet, target, owner)
		if w.Code/100 != 4 || !strings.Contains(w.Body.String(), want) {
			t.Errorf("%s: %d %s, want 4xx naming %q", target, w.Code, w.Body, want)
		}
	}
	w := s.do(http.MethodPost, "/api/v1/environments/prod/containers/abc/restart?force_standalone=maybe", owner)
	if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "query force_standalone") {
		t.Errorf("bad force_standalone: %d %s", w.Code, w.Body)
	}
}
