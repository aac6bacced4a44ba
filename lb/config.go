package lb

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

// Config is what dockmaster serves to a load balancer instance
// (GET /api/v1/lb/:env/:stack/:service): its port rules, each with the
// healthy backends it has right now.
type Config struct {
	// Version identifies the content (a hash). A poll that passes it back
	// as ?wait= is held until the content differs.
	Version string `json:"version"`
	Rules   []Rule `json:"rules"`
}

// Rule routes SourcePort to Backends. Several http rules may share a port
// and are told apart by Hostname and Path; a tcp port has one rule.
type Rule struct {
	SourcePort uint16 `json:"source_port"`
	Protocol   string `json:"protocol"` // http (default) or tcp
	Hostname   string `json:"hostname,omitempty"`
	Path       string `json:"path,omitempty"`
	// Priority orders http rules of a port: lower first; 0 after every
	// numbered rule.
	Priority int `json:"priority,omitempty"`
	// Service is the target ("service" or "stack/service"), for people.
	Service string `json:"service"`
	// Backends are host:port of the target's healthy containers.
	Backends []string `json:"backends"`
	// StickyCookie, when set, pins a client to a backend with this cookie.
	StickyCookie string `json:"sticky_cookie,omitempty"`
}

// Proto is the rule's protocol with the default applied.
func (r Rule) Proto() string {
	if r.Protocol == "" {
		return "http"
	}
	return strings.ToLower(r.Protocol)
}

// Seal sorts backends and sets Version from the content.
func (c *Config) Seal() {
	for i := range c.Rules {
		sort.Strings(c.Rules[i].Backends)
	}
	c.Version = ""
	b, _ := json.Marshal(c.Rules)
	sum := sha256.Sum256(b)
	c.Version = hex.EncodeToString(sum[:8])
}

// Validate checks what the runtime relies on: known protocols, one rule
// per tcp port, no port both http and tcp. Errors name the rule.
func (c Config) Validate() error {
	kind := map[uint16]string{}
	for i, r := range c.Rules {
		where := fmt.Sprintf("rule %d (port %d)", i, r.SourcePort)
		if r.SourcePort == 0 {
			return fmt.Errorf("%s: source_port is 0", where)
		}
		p := r.Proto()
		if p != "http" && p != "tcp" {
			return fmt.Errorf("%s: protocol %q is neither http nor tcp", where, r.Protocol)
		}
		if k, ok := kind[r.SourcePort]; ok && (k != p || p == "tcp") {
			return fmt.Errorf("%s: port already has a %s rule", where, k)
		}
		kind[r.SourcePort] = p
	}
	return nil
}
