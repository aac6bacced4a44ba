package server

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/dockmaster/dockmaster/deployer"
	"github.com/dockmaster/dockmaster/internal/discovery"
	"github.com/dockmaster/dockmaster/lb"
)

type oneStack []deployer.ServiceEndpoints

func (s oneStack) Stacks(context.Context) ([]string, error) { return []string{"shop"}, nil }
func (s oneStack) Endpoints(context.Context, string) ([]deployer.ServiceEndpoints, []string, error) {
	return s, nil, nil
}

func TestLBConfigRouteNeedsTheBalancersToken(t *testing.T) {
	view := oneStack{
		{Stack: "shop", Service: "lb", LB: &deployer.LBConfig{PortRules: []deployer.LBPortRule{{SourcePort: 80, TargetPort: 8080, Service: "web"}}}},
		{Stack: "shop", Service: "web", Endpoints: []deployer.Endpoint{{Host: "h1", Container: "shop-web-1", IP: "10.1.0.3", Healthy: true}}},
	}
	d := discovery.New(discovery.Options{
		Environments: func(context.Context) ([]string, error) { return []string{"prod"}, nil },
		Deployer:     func(context.Context, string) (discovery.Endpointer, error) { return view, nil },
	})
	d.Refresh(context.Background())
	key := []byte("signing-key")
	a := &DiscoveryAPI{Discovery: d, LBKey: key, MaxWait: 50 * time.Millisecond}
	gin.SetMode(gin.TestMode)
	e := gin.New()
	e.GET("/api/v1/environments/:env/stacks/:stack/lb/:service", a.lbConfig)
	e.GET("/api/v1/environments/:env/traefik", a.traefik)

	do := func(path, token string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodGet, path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		w := httptest.NewRecorder()
		e.ServeHTTP(w, req)
		return w
	}
	path := "/api/v1" + LBConfigPath("prod", "shop", "lb")
	if w := do(path+"?host=h1", ""); w.Code != http.StatusUnauthorized {
		t.Errorf("no token: %d", w.Code)
	}
	// Another balancer's token does not read this one.
	if w := do(path+"?host=h1", LBToken(key, "prod", "shop", "other")); w.Code != http.StatusUnauthorized {
		t.Errorf("token of another balancer: %d", w.Code)
	}
	tok := LBToken(key, "prod", "shop", "lb")
	w := do(path+"?host=h1", tok)
	var c lb.Config
	if err := json.Unmarshal(w.Body.Bytes(), &c); w.Code != 200 || err != nil || len(c.Rules) != 1 || len(c.Rules[0].Backends) != 1 || c.Rules[0].Backends[0] != "10.1.0.3:8080" {
		t.Fatalf("config: %d %s", w.Code, w.Body)
	}
	// Long poll on the current version: held, then the same config.
	start := time.Now()
	w = do(path+"?host=h1&wait="+c.Version+"&timeout=10s", tok)
	if w.Code != 200 || time.Since(start) < 40*time.Millisecond {
		t.Errorf("long poll: %d after %v (MaxWait 50ms)", w.Code, time.Since(start))
	}
	if w := do(path+"?timeout=soon", tok); w.Code != http.StatusBadRequest {
		t.Errorf("bad timeout: %d", w.Code)
	}
	webPath := "/api/v1" + LBConfigPath("prod", "shop", "web")
	if w := do(webPath, LBToken(key, "prod", "shop", "web")); w.Code != http.StatusNotFound {
		t.Errorf("not a balancer: %d %s", w.Code, w.Body)
	}
	if w := do("/api/v1/environments/prod/traefik", ""); w.Code != 200 || !json.Valid(w.Body.Bytes()) {
		t.Errorf("traefik: %d %s", w.Code, w.Body)
	}
}

func TestStackStatusJSONShowsLBRules(t *testing.T) {
	st := deployer.StackStatus{Stack: "shop", Services: []deployer.ServiceStatus{{Name: "lb", LB: &deployer.LBStatus{Rules: []deployer.LBRuleStatus{
		{LBPortRule: deployer.LBPortRule{SourcePort: 80, TargetPort: 8080, Service: "web", Protocol: "http"}, Backends: []string{"shop-web-1@h1"}},
		{LBPortRule: deployer.LBPortRule{SourcePort: 81, TargetPort: 8080, Service: "api"}},
	}}}, {Name: "web"}}}
	b, err := json.Marshal(toStatusJSON(st, map[string]string{}))
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Services []struct {
			Name string
			LB   []LBRuleJSON `json:"lb"`
		}
	}
	_ = json.Unmarshal(b, &got)
	lb0 := got.Services[0].LB
	if len(lb0) != 2 || lb0[0].SourcePort != 80 || len(lb0[0].Backends) != 1 || lb0[1].Backends == nil || got.Services[1].LB != nil {
		t.Fatalf("status JSON: %s", b)
	}
}
