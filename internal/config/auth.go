package config

import (
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Auth configures the access layer: the first admin, sessions, login
// throttling and the key that signs links. Every field may be left out;
// WithDefaults fills the gaps.
type Auth struct {
	// AdminUser is the bootstrap administrator's name (default "admin").
	AdminUser string `yaml:"admin_user"`
	// AdminPassword, when set, is the bootstrap admin's password, re-applied
	// at every start (so a lost password is recovered by setting it here).
	// Unset: a random password is generated at first start and written once
	// to <store dir>/initial-admin-password (mode 0600).
	AdminPassword Secret `yaml:"admin_password"`
	// SigningKey signs approval links and other self-verifying URLs. Unset:
	// a random key is generated into <store dir>/signing-key (mode 0600).
	SigningKey Secret `yaml:"signing_key"`
	// SessionTTL is how long a login lasts (default 12h).
	SessionTTL Duration `yaml:"session_ttl"`
	// CookieSecure: auto (Secure when public_url is https or the request
	// came over TLS), always, never (default auto).
	CookieSecure string `yaml:"cookie_secure"`
	// SameSite of the session cookie: lax (default; links from mail keep
	// the session on GET) or strict.
	SameSite string `yaml:"same_site"`
	// LoginAttemptsPerMinute bounds failed logins per client address and
	// per user name before the back-off starts (default 5).
	LoginAttemptsPerMinute int `yaml:"login_attempts_per_minute"`
	// TrustedProxies are the addresses (IPs or CIDRs) whose
	// X-Forwarded-For is believed. Empty: none, the peer address is the
	// client (so rate limits cannot be dodged with a forged header).
	TrustedProxies []string `yaml:"trusted_proxies"`
	// OIDC is reserved for single sign-on; not used yet.
	OIDC OIDC `yaml:"oidc"`
}

// OIDC is an OpenID Connect identity provider for single sign-on.
type OIDC struct {
	Issuer       string   `yaml:"issuer"`
	ClientID     string   `yaml:"client_id"`
	ClientSecret Secret   `yaml:"client_secret"`
	Scopes       []string `yaml:"scopes"`
	// AdminGroup members become global admins.
	AdminGroup string `yaml:"admin_group"`
}

// WithDefaults returns a with every unset field at its default.
func (a Auth) WithDefaults() Auth {
	if a.AdminUser == "" {
		a.AdminUser = "admin"
	}
	if a.SessionTTL == 0 {
		a.SessionTTL = Duration(12 * time.Hour)
	}
	if a.CookieSecure == "" {
		a.CookieSecure = "auto"
	}
	if a.SameSite == "" {
		a.SameSite = "lax"
	}
	if a.LoginAttemptsPerMinute == 0 {
		a.LoginAttemptsPerMinute = 5
	}
	return a
}

var authKeys = map[string]bool{"admin_user": true, "admin_password": true, "signing_key": true, "session_ttl": true,
	"cookie_secure": true, "same_site": true, "login_attempts_per_minute": true, "trusted_proxies": true, "oidc": true}

var oidcKeys = map[string]bool{"issuer": true, "client_id": true, "client_secret": true, "scopes": true, "admin_group": true}

// UnmarshalYAML decodes strictly and checks values, so that errors carry
// the line of the offending key (the field is nested, so Config.validate
// would otherwise have to know about it).
func (a *Auth) UnmarshalYAML(n *yaml.Node) error {
	if err := knownKeys(n, "auth", authKeys); err != nil {
		return err
	}
	if o := child(n, "oidc"); o != nil {
		if err := knownKeys(o, "auth.oidc", oidcKeys); err != nil {
			return err
		}
	}
	type plain Auth // no methods: avoids recursion
	var p plain
	if err := n.Decode(&p); err != nil {
		return err
	}
	*a = Auth(p)
	at := func(key, msg string) error {
		line := n.Line
		if k := keyNode(n, key); k != nil {
			line = k.Line
		}
		return fmt.Errorf("line %d: auth.%s: %s", line, key, msg)
	}
	if !validName(a.AdminUser) && a.AdminUser != "" {
		return at("admin_user", fmt.Sprintf("user name %q: use letters, digits, ., - and _", a.AdminUser))
	}
	for key, s := range map[string]Secret{"admin_password": a.AdminPassword, "signing_key": a.SigningKey} {
		if s.IsZero() {
			continue
		}
		if err := s.check(); err != nil {
			return at(key, err.Error())
		}
	}
	if a.SessionTTL < 0 || (a.SessionTTL > 0 && time.Duration(a.SessionTTL) < time.Minute) {
		return at("session_ttl", "want at least 1m")
	}
	switch a.CookieSecure {
	case "", "auto", "always", "never":
	default:
		return at("cookie_secure", fmt.Sprintf("want auto, always or never, got %q", a.CookieSecure))
	}
	switch a.SameSite {
	case "", "lax", "strict":
	default:
		return at("same_site", fmt.Sprintf("want lax or strict, got %q", a.SameSite))
	}
	if a.LoginAttemptsPerMinute < 0 {
		return at("login_attempts_per_minute", "must not be negative")
	}
	for _, p := range a.TrustedProxies {
		if net.ParseIP(p) == nil {
			if _, _, err := net.ParseCIDR(p); err != nil {
				return at("trusted_proxies", fmt.Sprintf("%q is neither an IP nor a CIDR", p))
			}
		}
	}
	if a.OIDC.Issuer != "" {
		u, err := url.Parse(a.OIDC.Issuer)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			return at("oidc", fmt.Sprintf("issuer: want an https:// URL, got %q", a.OIDC.Issuer))
		}
	}
	if !a.OIDC.ClientSecret.IsZero() {
		if err := a.OIDC.ClientSecret.check(); err != nil {
			return at("oidc", "client_secret: "+err.Error())
		}
	}
	return nil
}

func validName(s string) bool { return nameRe.MatchString(s) }

// knownKeys rejects keys of mapping n not in known, in the form
// lineError turns into file:line + "unknown key".
func knownKeys(n *yaml.Node, typ string, known map[string]bool) error {
	if n.Kind != yaml.MappingNode {
		if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
			return nil
		}
		return fmt.Errorf("line %d: %s must be a mapping", n.Line, typ)
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		if !known[k.Value] {
			return fmt.Errorf("line %d: field %s.%s not found in type %s", k.Line, typ, k.Value, strings.ReplaceAll(typ, ".", "_"))
		}
	}
	return nil
}

func keyNode(n *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i]
		}
	}
	return nil
}

func child(n *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}
