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
	// HostsTLSKey seals hosts' Docker TLS material and registration
	// tokens at rest (AES-256-GCM; at least 32 characters). Unset: derived
	// from the signing key, so changing that key makes stored host
	// material unreadable (hosts must register again).
	HostsTLSKey Secret `yaml:"hosts_tls_key"`
	// OIDC is single sign-on through an OpenID Connect provider; off
	// unless issuer is set.
	OIDC OIDC `yaml:"oidc"`
}

// OIDC is an OpenID Connect identity provider for single sign-on. Users
// it logs in get roles from their groups, re-read at every login.
type OIDC struct {
	Issuer       string `yaml:"issuer"`
	ClientID     string `yaml:"client_id"`
	ClientSecret Secret `yaml:"client_secret"`
	// RedirectURL is this dockmaster's callback as registered at the
	// provider (default <public_url>/login/oidc/callback).
	RedirectURL string   `yaml:"redirect_url"`
	Scopes      []string `yaml:"scopes"`
	// GroupsClaim is the id_token claim listing the user's groups
	// (default "groups").
	GroupsClaim string `yaml:"groups_claim"`
	// UsernameClaim names the user (default "preferred_username", then
	// "email", then the subject).
	UsernameClaim string `yaml:"username_claim"`
	// AdminGroup members become global admins.
	AdminGroup string `yaml:"admin_group"`
	// Groups maps a group to roles on environments. A user in no mapped
	// group (and not in admin_group) gets no access.
	Groups []OIDCGroup `yaml:"groups"`
}

// OIDCGroup grants members of Group the Role on Environment.
type OIDCGroup struct {
	Group       string `yaml:"group"`
	Environment string `yaml:"environment"`
	Role        string `yaml:"role"`
}

// Enabled reports whether single sign-on is configured.
func (o OIDC) Enabled() bool { return o.Issuer != "" }

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
	"cookie_secure": true, "same_site": true, "login_attempts_per_minute": true, "trusted_proxies": true, "oidc": true, "hosts_tls_key": true}

var oidcKeys = map[string]bool{"issuer": true, "client_id": true, "client_secret": true, "scopes": true, "admin_group": true,
	"redirect_url": true, "groups_claim": true, "username_claim": true, "groups": true}

var oidcGroupKeys = map[string]bool{"group": true, "environment": true, "role": true}

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
		if g := child(o, "groups"); g != nil && g.Kind == yaml.SequenceNode {
			for _, item := range g.Content {
				if err := knownKeys(item, "auth.oidc.groups", oidcGroupKeys); err != nil {
					return err
				}
			}
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
	for key, s := range map[string]Secret{"admin_password": a.AdminPassword, "signing_key": a.SigningKey, "hosts_tls_key": a.HostsTLSKey} {
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
	return a.checkOIDC(n)
}

// checkOIDC checks the single sign-on block; errors carry the line of
// the offending key.
func (a *Auth) checkOIDC(n *yaml.Node) error {
	o := a.OIDC
	on := child(n, "oidc")
	at := func(node *yaml.Node, key, msg string) error {
		line := n.Line
		if node != nil {
			line = node.Line
			if k := keyNode(node, key); k != nil {
				line = k.Line
			}
		}
		return fmt.Errorf("line %d: auth.oidc.%s: %s", line, key, msg)
	}
	if !o.Enabled() {
		if on != nil && len(on.Content) > 0 {
			return at(on, "issuer", "required when auth.oidc is set")
		}
		return nil
	}
	if o.ClientID == "" {
		return at(on, "client_id", "required")
	}
	if o.RedirectURL != "" {
		u, err := url.Parse(o.RedirectURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return at(on, "redirect_url", fmt.Sprintf("want an http(s):// URL, got %q", o.RedirectURL))
		}
	}
	var items []*yaml.Node
	if on != nil {
		if g := child(on, "groups"); g != nil {
			items = g.Content
		}
	}
	for i, g := range o.Groups {
		var item *yaml.Node
		if i < len(items) {
			item = items[i]
		}
		key := fmt.Sprintf("groups[%d]", i)
		switch {
		case g.Group == "":
			return at(item, "group", key+": group is required")
		case !validName(g.Environment):
			return at(item, "environment", fmt.Sprintf("%s: environment %q: use letters, digits, ., - and _", key, g.Environment))
		}
		switch g.Role {
		case "owner", "member", "read-only", "restricted":
		default:
			return at(item, "role", fmt.Sprintf("%s: role %q: want owner, member, read-only or restricted", key, g.Role))
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
