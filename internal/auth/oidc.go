package auth

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/gin-gonic/gin"
	"golang.org/x/oauth2"

	"github.com/dockmaster/dockmaster/internal/config"
	"github.com/dockmaster/dockmaster/internal/store"
)

// Single sign-on paths (GET). The callback is what the provider redirects
// to; register <public_url>/login/oidc/callback there.
const (
	OIDCLoginPath    = "/login/oidc"
	OIDCCallbackPath = "/login/oidc/callback"
	oidcStateCookie  = "dockmaster_oidc"
	oidcStateTTL     = 10 * time.Minute
)

// Errors of single sign-on; compare with errors.Is.
var (
	// ErrSSO is a failed single sign-on: bad state, refused code, or an
	// id_token whose signature, issuer, audience, expiry or nonce is wrong.
	ErrSSO = errors.New("single sign-on failed")
	// ErrNoAccess is a valid identity in no mapped group.
	ErrNoAccess = errors.New("your groups give no access to dockmaster")
)

// SSOStore is what single sign-on needs of the store; *store.DB has it.
type SSOStore interface {
	SSOUser(ctx context.Context, issuer, subject, name string, admin bool, roles map[string]string) (store.User, error)
}

// OIDCOptions configures NewOIDC.
type OIDCOptions struct {
	Config config.OIDC
	Store  SSOStore
	// PublicURL gives the default redirect URL.
	PublicURL string
	// HTTPClient talks to the provider (default http.DefaultClient).
	HTTPClient *http.Client
}

// OIDC logs users in through an OpenID Connect provider (authorization
// code flow with PKCE, state and nonce) and maps their groups to roles.
// The provider is discovered at the first login, and again after a
// failure, so dockmaster starts while the provider is down. Safe for
// concurrent use.
type OIDC struct {
	a      *Authenticator
	store  SSOStore
	cfg    config.OIDC
	client *http.Client
	oauth  oauth2.Config
	secret string

	mu       sync.Mutex
	verifier *oidc.IDTokenVerifier
}

// NewOIDC sets up single sign-on for a; o.Config must be enabled.
func (a *Authenticator) NewOIDC(o OIDCOptions) (*OIDC, error) {
	if !o.Config.Enabled() || o.Config.ClientID == "" {
		return nil, errors.New("auth.oidc: issuer and client_id are required")
	}
	if o.Store == nil {
		return nil, errors.New("auth.oidc: no store")
	}
	secret := ""
	if !o.Config.ClientSecret.IsZero() {
		v, err := o.Config.ClientSecret.Value()
		if err != nil {
			return nil, fmt.Errorf("auth.oidc.client_secret: %w", err)
		}
		secret = v
	}
	redirect := o.Config.RedirectURL
	if redirect == "" {
		if o.PublicURL == "" {
			return nil, errors.New("auth.oidc: set redirect_url or public_url")
		}
		redirect = strings.TrimRight(o.PublicURL, "/") + OIDCCallbackPath
	}
	scopes := o.Config.Scopes
	if len(scopes) == 0 {
		scopes = []string{oidc.ScopeOpenID, "profile", "email", "groups"}
	}
	client := o.HTTPClient
	if client == nil {
		client = http.DefaultClient
	}
	return &OIDC{a: a, store: o.Store, cfg: o.Config, client: client, secret: secret,
		oauth: oauth2.Config{ClientID: o.Config.ClientID, ClientSecret: secret, RedirectURL: redirect, Scopes: scopes}}, nil
}

// Register mounts the two public routes on the root group.
func (o *OIDC) Register(rt *Routes) {
	rt.Public(http.MethodGet, OIDCLoginPath, "single sign-on: redirects to the identity provider", o.start)
	rt.Public(http.MethodGet, OIDCCallbackPath, "single sign-on callback: checks its state cookie and the id_token itself", o.callback)
}

func (o *OIDC) ctx(ctx context.Context) context.Context { return oidc.ClientContext(ctx, o.client) }

// discover returns the verifier and sets the endpoints, discovering the
// provider on first use.
func (o *OIDC) discover(ctx context.Context) (*oidc.IDTokenVerifier, oauth2.Config, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.verifier != nil {
		return o.verifier, o.oauth, nil
	}
	p, err := oidc.NewProvider(o.ctx(ctx), o.cfg.Issuer)
	if err != nil {
		return nil, o.oauth, fmt.Errorf("auth.oidc: discover %s: %w", o.cfg.Issuer, err)
	}
	o.oauth.Endpoint = p.Endpoint()
	// Checks signature (provider's JWKS), issuer, audience (client id) and expiry.
	o.verifier = p.Verifier(&oidc.Config{ClientID: o.cfg.ClientID, Now: o.a.now})
	return o.verifier, o.oauth, nil
}

// oidcState travels in a signed, short-lived cookie between start and
// callback, so no server-side state is needed and the callback is bound
// to the browser that started it.
type oidcState struct {
	State    string `json:"s"`
	Nonce    string `json:"n"`
	Verifier string `json:"v"`
	Next     string `json:"next"`
	Expires  int64  `json:"exp"`
}

func (o *OIDC) signState(st oidcState) string {
	b, _ := json.Marshal(st)
	payload := base64.RawURLEncoding.EncodeToString(b)
	return payload + "." + base64.RawURLEncoding.EncodeToString(o.mac(payload))
}

func (o *OIDC) mac(payload string) []byte {
	m := hmac.New(sha256.New, o.a.signingKey)
	m.Write([]byte("oidc-state\x00" + payload))
	return m.Sum(nil)
}

func (o *OIDC) readState(v string) (oidcState, error) {
	var st oidcState
	payload, sig, ok := strings.Cut(v, ".")
	mac, err := base64.RawURLEncoding.DecodeString(sig)
	if !ok || err != nil || !hmac.Equal(mac, o.mac(payload)) {
		return st, fmt.Errorf("%w: state cookie is missing or forged", ErrSSO)
	}
	b, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil || json.Unmarshal(b, &st) != nil {
		return st, fmt.Errorf("%w: state cookie unreadable", ErrSSO)
	}
	if o.a.now().Unix() > st.Expires {
		return st, fmt.Errorf("%w: login took longer than %s; start again", ErrSSO, oidcStateTTL)
	}
	return st, nil
}

func (o *OIDC) start(c *gin.Context) {
	_, oc, err := o.discover(c.Request.Context())
	if err != nil {
		o.a.log.Error("single sign-on unavailable", "err", err)
		c.AbortWithStatusJSON(http.StatusBadGateway, gin.H{"error": "single sign-on provider unavailable"})
		return
	}
	st := oidcState{State: randomToken(24), Nonce: randomToken(24), Verifier: oauth2.GenerateVerifier(),
		Next: safeNextPath(c.Query("next")), Expires: o.a.now().Add(oidcStateTTL).Unix()}
	http.SetCookie(c.Writer, &http.Cookie{Name: oidcStateCookie, Value: o.signState(st), Path: OIDCLoginPath,
		MaxAge: int(oidcStateTTL.Seconds()), HttpOnly: true, Secure: o.a.SecureCookies(c), SameSite: http.SameSiteLaxMode})
	c.Redirect(http.StatusFound, oc.AuthCodeURL(st.State, oidc.Nonce(st.Nonce), oauth2.S256ChallengeOption(st.Verifier)))
}

func (o *OIDC) callback(c *gin.Context) {
	http.SetCookie(c.Writer, &http.Cookie{Name: oidcStateCookie, Value: "", Path: OIDCLoginPath, MaxAge: -1,
		HttpOnly: true, Secure: o.a.SecureCookies(c), SameSite: http.SameSiteLaxMode})
	cookie, _ := c.Cookie(oidcStateCookie)
	s, next, err := o.Exchange(c.Request.Context(), cookie, c.Query("state"), c.Query("code"), c.Query("error"), c.ClientIP())
	actor := "unknown-user"
	if err == nil || errors.Is(err, ErrNoAccess) {
		actor = s.User.Name
	}
	result, detail := "ok", ""
	if err != nil {
		result, detail = "failed", err.Error()
	}
	o.a.auditAs(c, actor, "login.sso", "", o.cfg.Issuer, result, detail)
	switch {
	case errors.Is(err, ErrNoAccess):
		c.AbortWithStatusJSON(http.StatusForbidden, gin.H{"error": err.Error()})
	case errors.Is(err, ErrSSO):
		c.AbortWithStatusJSON(http.StatusUnauthorized, gin.H{"error": err.Error()})
	case err != nil:
		_ = c.Error(err)
		c.AbortWithStatusJSON(http.StatusInternalServerError, gin.H{"error": "internal error"})
	default:
		o.a.SetSessionCookie(c, s)
		c.Redirect(http.StatusSeeOther, next)
	}
}

// Exchange completes a login: it checks the state cookie against the
// returned state, exchanges the code (with the PKCE verifier), verifies
// the id_token (signature, issuer, audience, expiry, nonce), maps the
// groups to roles and starts a session. An identity in no mapped group
// is recorded with no roles and gets ErrNoAccess (with User set).
func (o *OIDC) Exchange(ctx context.Context, cookie, state, code, providerErr, source string) (NewSession, string, error) {
	st, err := o.readState(cookie)
	if err != nil {
		return NewSession{}, "", err
	}
	if state == "" || !hmac.Equal([]byte(state), []byte(st.State)) {
		return NewSession{}, "", fmt.Errorf("%w: state does not match this browser's login", ErrSSO)
	}
	if providerErr != "" {
		return NewSession{}, "", fmt.Errorf("%w: provider answered %q", ErrSSO, providerErr)
	}
	verifier, oc, err := o.discover(ctx)
	if err != nil {
		return NewSession{}, "", err
	}
	tok, err := oc.Exchange(o.ctx(ctx), code, oauth2.VerifierOption(st.Verifier))
	if err != nil {
		return NewSession{}, "", fmt.Errorf("%w: code exchange: %v", ErrSSO, err)
	}
	raw, ok := tok.Extra("id_token").(string)
	if !ok || raw == "" {
		return NewSession{}, "", fmt.Errorf("%w: token answer has no id_token", ErrSSO)
	}
	idt, err := verifier.Verify(o.ctx(ctx), raw)
	if err != nil {
		return NewSession{}, "", fmt.Errorf("%w: id_token: %v", ErrSSO, err)
	}
	if !hmac.Equal([]byte(idt.Nonce), []byte(st.Nonce)) {
		return NewSession{}, "", fmt.Errorf("%w: id_token nonce does not match", ErrSSO)
	}
	var claims map[string]any
	if err := idt.Claims(&claims); err != nil {
		return NewSession{}, "", fmt.Errorf("%w: id_token claims: %v", ErrSSO, err)
	}
	admin, roles := o.RolesFor(groupsClaim(claims, o.groupsClaimName()))
	u, err := o.store.SSOUser(ctx, idt.Issuer, idt.Subject, o.userName(claims, idt.Subject), admin, roles)
	if err != nil {
		return NewSession{}, "", err
	}
	if !admin && len(roles) == 0 {
		return NewSession{User: u}, "", fmt.Errorf("%w (user %s)", ErrNoAccess, u.Name)
	}
	if u.Disabled {
		return NewSession{User: u}, "", fmt.Errorf("%w: user %s is disabled", ErrNoAccess, u.Name)
	}
	now := o.a.now()
	s := NewSession{Cookie: randomToken(32), CSRFToken: randomToken(32), User: u,
		ExpiresAt: now.Add(time.Duration(o.a.cfg.SessionTTL))}
	if err := o.a.store.CreateSession(ctx, store.Session{IDHash: hashSecret(s.Cookie), UserID: u.ID,
		CSRFToken: s.CSRFToken, Source: source, ExpiresAt: s.ExpiresAt}, now); err != nil {
		return NewSession{}, "", err
	}
	return s, st.Next, nil
}

// RolesFor maps groups to admin and roles per environment; where groups
// grant several roles on one environment, the strongest wins.
func (o *OIDC) RolesFor(groups []string) (admin bool, roles map[string]string) {
	roles = map[string]string{}
	rank := map[Role]int{}
	for i, r := range Roles() {
		rank[r] = len(Roles()) - i
	}
	for _, g := range groups {
		if o.cfg.AdminGroup != "" && g == o.cfg.AdminGroup {
			admin = true
		}
		for _, m := range o.cfg.Groups {
			if m.Group == g && rank[Role(m.Role)] > rank[Role(roles[m.Environment])] {
				roles[m.Environment] = m.Role
			}
		}
	}
	return admin, roles
}

func (o *OIDC) groupsClaimName() string {
	if o.cfg.GroupsClaim != "" {
		return o.cfg.GroupsClaim
	}
	return "groups"
}

// groupsClaim reads a list of strings, or one string, from claims.
func groupsClaim(claims map[string]any, name string) []string {
	switch v := claims[name].(type) {
	case string:
		return []string{v}
	case []any:
		out := make([]string, 0, len(v))
		for _, g := range v {
			if s, ok := g.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// userName picks the configured claim, else preferred_username, email,
// subject; characters a user name cannot hold become '_'.
func (o *OIDC) userName(claims map[string]any, subject string) string {
	for _, k := range []string{o.cfg.UsernameClaim, "preferred_username", "email"} {
		if s, ok := claims[k].(string); ok && k != "" && s != "" {
			return cleanName(s)
		}
	}
	return cleanName(subject)
}

func cleanName(s string) string {
	b := []byte(s)
	for i, r := range b {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || (i > 0 && (r == '.' || r == '-' || r == '_'))
		if !ok {
			b[i] = '_'
		}
	}
	if len(b) > 64 {
		b = b[:64]
	}
	return string(b)
}

// safeNextPath keeps post-login redirects on this site.
func safeNextPath(next string) string {
	u, err := url.Parse(next)
	if err != nil || !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") || u.Host != "" {
		return "/"
	}
	return next
}
