package server

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/dockmaster/dockmaster/deployer"
	"github.com/dockmaster/dockmaster/internal/auth"
	"github.com/dockmaster/dockmaster/internal/discovery"
)

// DiscoveryAPI serves what services need to find each other: the config
// `dockmaster lb` containers long-poll, and Traefik's HTTP provider.
type DiscoveryAPI struct {
	Discovery *discovery.Discovery
	// LBKey signs the token each load balancer service's containers get
	// (LBToken); the config route checks it instead of a login.
	LBKey []byte
	// MaxWait bounds a long poll (default 25s; the LB asks with ?timeout).
	MaxWait time.Duration
}

// LBToken is the bearer token of load balancer service env/stack/service:
// HMAC-SHA256 of its name under key. It only reads that balancer's config.
func LBToken(key []byte, env, stack, service string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("dockmaster-lb\x00" + env + "\x00" + stack + "\x00" + service))
	return hex.EncodeToString(m.Sum(nil))
}

// LBConfigPath is the config route of a balancer, under /api/v1.
func LBConfigPath(env, stack, service string) string {
	return "/environments/" + env + "/stacks/" + stack + "/lb/" + service
}

// Register mounts the routes under api (the /api/v1 group).
func (a *DiscoveryAPI) Register(api *auth.Routes) {
	api.Public(http.MethodGet, "/environments/:env/stacks/:stack/lb/:service",
		"load balancer config: the caller shows the HMAC token dockmaster gave that balancer's containers", a.lbConfig)
	api.Handle(http.MethodGet, "/environments/:env/traefik", auth.PermView, auth.Param("env"), a.traefik)
}

// lbConfig answers GET .../lb/:service?host=H[&wait=VERSION&timeout=25s]:
// the balancer's rules and healthy backends; with wait, held until the
// config differs from VERSION or the timeout passes.
func (a *DiscoveryAPI) lbConfig(c *gin.Context) {
	env, stack, svc := c.Param("env"), c.Param("stack"), c.Param("service")
	tok, ok := strings.CutPrefix(c.GetHeader("Authorization"), "Bearer ")
	want := LBToken(a.LBKey, env, stack, svc)
	if !ok || len(a.LBKey) == 0 || !hmac.Equal([]byte(tok), []byte(want)) {
		c.AbortWithStatusJSON(http.StatusUnauthorized, gin.H{"error": "Authorization: want Bearer <token of this load balancer>"})
		return
	}
	maxWait := a.MaxWait
	if maxWait <= 0 {
		maxWait = 25 * time.Second
	}
	wait := maxWait
	if s := c.Query("timeout"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 {
			c.AbortWithStatusJSON(http.StatusBadRequest, gin.H{"error": "query timeout: want a duration like 25s"})
			return
		}
		wait = min(d, maxWait)
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), wait)
	defer cancel()
	cfg, err := a.Discovery.WaitLBConfig(ctx, env, stack, svc, c.Query("host"), c.Query("wait"))
	switch {
	case errors.Is(err, discovery.ErrUnknownService), errors.Is(err, discovery.ErrNotLB):
		c.AbortWithStatusJSON(http.StatusNotFound, gin.H{"error": err.Error()})
	case err != nil:
		internalError(c, err)
	default:
		c.JSON(http.StatusOK, cfg)
	}
}

// traefik answers Traefik's HTTP provider (providers.http.endpoint) with
// the environment's load balancer routes and healthy servers.
func (a *DiscoveryAPI) traefik(c *gin.Context) {
	c.JSON(http.StatusOK, a.Discovery.Traefik(c.Param("env")))
}

// LBRuleJSON is a load balancer's port rule with the target's healthy
// backends ("container@host"), in the stack status and the service page.
type LBRuleJSON struct {
	SourcePort uint16   `json:"source_port"`
	TargetPort uint16   `json:"target_port"`
	Service    string   `json:"service"`
	Protocol   string   `json:"protocol,omitempty"`
	Hostname   string   `json:"hostname,omitempty"`
	Path       string   `json:"path,omitempty"`
	Priority   int      `json:"priority,omitempty"`
	Backends   []string `json:"backends"`
}

func lbRulesJSON(s *deployer.LBStatus) []LBRuleJSON {
	if s == nil {
		return nil
	}
	out := []LBRuleJSON{}
	for _, r := range s.Rules {
		out = append(out, LBRuleJSON{SourcePort: r.SourcePort, TargetPort: r.TargetPort, Service: r.Service, Protocol: r.Protocol,
			Hostname: r.Hostname, Path: r.Path, Priority: r.Priority, Backends: append([]string{}, r.Backends...)})
	}
	return out
}
