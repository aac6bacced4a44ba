package auth

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/dockmaster/dockmaster/internal/store"
)

// CookieName is the session cookie.
const CookieName = "dockmaster_session"

// CSRFHeader and CSRFField carry the session's CSRF token on
// state-changing requests (header for fetch, field for HTML forms).
const (
	CSRFHeader = "X-CSRF-Token"
	CSRFField  = "csrf_token"
)

const (
	ctxPrincipal = "dockmaster.auth.principal"
	ctxAuth      = "dockmaster.auth.authenticator"
)

// Middleware is installed once on the engine, before any group or route
// is made (gin copies middleware into routes when they are registered).
// For every request it sets the security headers; for every matched route
// it looks the route up in the registry and
//   - public routes pass untouched (webhooks read their own Authorization),
//   - undeclared routes answer 403 (fail closed) and log an error,
//   - otherwise the caller is authenticated (API key in Authorization, as
//     HTTP basic access:secret or Bearer access:secret; else the session
//     cookie), session requests that change state must carry the CSRF
//     token, and the declared permission is checked.
//
// Anonymous: 401 JSON for /api/, a redirect to /login for page GETs.
// Missing permission: 403 {"error": "forbidden: missing permission P on environment E"}.
func (a *Authenticator) Middleware() gin.HandlerFunc {
	return func(c *gin.Context) {
		a.securityHeaders(c)
		c.Set(ctxAuth, a)
		route := c.FullPath()
		if route == "" { // no route: gin answers 404/405
			c.Next()
			return
		}
		spec, ok := a.registry.Lookup(c.Request.Method, route)
		if !ok {
			a.log.Error("route has no declared permission; refusing", "method", c.Request.Method, "route", route)
			c.AbortWithStatusJSON(http.StatusForbidden, gin.H{"error": "forbidden: route " + route + " declares no permission"})
			return
		}
		if spec.Public != "" {
			c.Next()
			return
		}
		p, err := a.authenticate(c)
		if err != nil {
			if errors.Is(err, ErrBadKey) {
				c.Header("WWW-Authenticate", `Basic realm="dockmaster"`)
				c.AbortWithStatusJSON(http.StatusUnauthorized, gin.H{"error": err.Error()})
				return
			}
			_ = c.Error(err)
			c.AbortWithStatusJSON(http.StatusInternalServerError, gin.H{"error": "internal error"})
			return
		}
		if p == nil {
			a.unauthenticated(c)
			return
		}
		c.Set(ctxPrincipal, p)
		c.Header("Cache-Control", "no-store") // personal answers stay out of shared caches
		if p.ViaSession() && !safeMethod(c.Request.Method) && !a.csrfOK(c, p) {
			a.audit(c, p, "csrf", "", route, "denied", "missing or wrong CSRF token")
			c.AbortWithStatusJSON(http.StatusForbidden, gin.H{"error": "forbidden: missing or wrong CSRF token (send header " + CSRFHeader + " or form field " + CSRFField + ")"})
			return
		}
		env := spec.Env(c)
		if !a.authz.Can(p, env, spec.Perm) {
			msg := "forbidden: missing permission " + string(spec.Perm)
			if env != "" {
				msg += " on environment " + env
			}
			if !safeMethod(c.Request.Method) {
				a.audit(c, p, "denied", env, c.Request.Method+" "+c.Request.URL.Path, "denied", msg)
			}
			c.AbortWithStatusJSON(http.StatusForbidden, gin.H{"error": msg})
			return
		}
		c.Next()
	}
}

// securityHeaders: no framing (clickjacking on approve buttons), no
// sniffing, same-origin resources only, and no Referer, because approval
// links carry signed tokens in their URL.
func (a *Authenticator) securityHeaders(c *gin.Context) {
	h := c.Writer.Header()
	h.Set("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'; object-src 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	if c.Request.TLS != nil {
		h.Set("Strict-Transport-Security", "max-age=31536000")
	}
}

func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

func (a *Authenticator) unauthenticated(c *gin.Context) {
	p := c.Request.URL.Path
	if !strings.HasPrefix(p, "/api/") && safeMethod(c.Request.Method) {
		c.Redirect(http.StatusFound, "/login?next="+url.QueryEscape(c.Request.URL.RequestURI()))
		c.Abort()
		return
	}
	c.Header("WWW-Authenticate", `Basic realm="dockmaster"`)
	c.AbortWithStatusJSON(http.StatusUnauthorized, gin.H{"error": "authentication required: log in, or send an API key as basic auth access:secret"})
}

// authenticate returns (nil, nil) for an anonymous request and ErrBadKey
// for a wrong key. A stale cookie counts as anonymous.
func (a *Authenticator) authenticate(c *gin.Context) (*Principal, error) {
	ctx := c.Request.Context()
	if h := c.GetHeader("Authorization"); h != "" {
		access, secret, ok := c.Request.BasicAuth()
		if !ok {
			scheme, cred, _ := strings.Cut(h, " ")
			if !strings.EqualFold(scheme, "Bearer") {
				return nil, fmt.Errorf("%w: Authorization: want Basic or Bearer", ErrBadKey)
			}
			access, secret, ok = strings.Cut(strings.TrimSpace(cred), ":")
			if !ok {
				return nil, fmt.Errorf("%w: Authorization: Bearer wants access:secret", ErrBadKey)
			}
		}
		return a.keyPrincipal(ctx, access, secret)
	}
	if v, err := c.Cookie(CookieName); err == nil && v != "" {
		return a.sessionPrincipal(ctx, v)
	}
	return nil, nil
}

func (a *Authenticator) csrfOK(c *gin.Context, p *Principal) bool {
	tok := c.GetHeader(CSRFHeader)
	if tok == "" {
		tok = c.PostForm(CSRFField)
	}
	return tok != "" && subtle.ConstantTimeCompare([]byte(tok), []byte(p.csrf)) == 1
}

// PrincipalFrom returns who the request acts as (nil on public routes).
func PrincipalFrom(c *gin.Context) *Principal {
	if v, ok := c.Get(ctxPrincipal); ok {
		return v.(*Principal)
	}
	return nil
}

// CSRFToken is the token pages put in their forms ("" without a session).
func CSRFToken(c *gin.Context) string {
	if p := PrincipalFrom(c); p != nil {
		return p.csrf
	}
	return ""
}

// SecureCookies reports whether cookies of this request get Secure:
// auth.cookie_secure "always"/"never", or in "auto" when public_url is
// https or the request itself came over TLS.
func (a *Authenticator) SecureCookies(c *gin.Context) bool {
	switch a.cfg.CookieSecure {
	case "always":
		return true
	case "never":
		return false
	}
	return strings.HasPrefix(strings.ToLower(a.publicURL), "https://") || c.Request.TLS != nil
}

// SetSessionCookie hands the browser its session: HttpOnly, SameSite
// (lax or strict), Secure as SecureCookies says, expiring with the session.
func (a *Authenticator) SetSessionCookie(c *gin.Context, s NewSession) {
	same := http.SameSiteLaxMode
	if a.cfg.SameSite == "strict" {
		same = http.SameSiteStrictMode
	}
	http.SetCookie(c.Writer, &http.Cookie{Name: CookieName, Value: s.Cookie, Path: "/", Expires: s.ExpiresAt,
		MaxAge: int(time.Until(s.ExpiresAt).Seconds()), HttpOnly: true, Secure: a.SecureCookies(c), SameSite: same})
}

// ClearSessionCookie removes the cookie (logout).
func (a *Authenticator) ClearSessionCookie(c *gin.Context) {
	http.SetCookie(c.Writer, &http.Cookie{Name: CookieName, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: a.SecureCookies(c), SameSite: http.SameSiteLaxMode})
}

// Audit records a change made by the request's principal: action (e.g.
// "deploy", "member.set"), the environment and target it touched, and err
// (nil: ok, else failed with err as detail). The actor and the client
// address come from the request, never from its body. A failure to write
// is logged, not returned: the change itself already happened.
func Audit(c *gin.Context, action, env, target string, err error) {
	v, ok := c.Get(ctxAuth)
	if !ok {
		return
	}
	a := v.(*Authenticator)
	result, detail := "ok", ""
	if err != nil {
		result, detail = "failed", err.Error()
	}
	a.audit(c, PrincipalFrom(c), action, env, target, result, detail)
}

func (a *Authenticator) audit(c *gin.Context, p *Principal, action, env, target, result, detail string) {
	a.auditAs(c, p.ActorName(), action, env, target, result, detail)
}

func (a *Authenticator) auditAs(c *gin.Context, actor, action, env, target, result, detail string) {
	ctx := context.WithoutCancel(c.Request.Context())
	if err := a.store.Audit(ctx, store.AuditEntry{At: a.now(), Actor: actor, Source: c.ClientIP(), Action: action,
		Environment: env, Target: target, Result: result, Detail: detail}); err != nil {
		a.log.Error("audit write failed", "action", action, "actor", actor, "err", err)
	}
}

// LoginRequest runs Login for a login form or JSON post: the client
// address comes from the request, the attempt is audited (the actor is the
// user name only when such a user exists, so a password typed into the
// name field is not recorded), and on success the session cookie is set.
func (a *Authenticator) LoginRequest(c *gin.Context, name, password string) (NewSession, error) {
	s, err := a.Login(c.Request.Context(), name, password, c.ClientIP())
	actor := "unknown-user"
	if err == nil {
		actor = s.User.Name
	} else if _, lerr := a.store.UserByName(c.Request.Context(), name); lerr == nil {
		actor = name
	}
	result, detail := "ok", ""
	var rl *RateLimitError
	switch {
	case errors.As(err, &rl):
		result, detail = "denied", err.Error()
	case err != nil:
		result, detail = "failed", err.Error()
	}
	a.auditAs(c, actor, "login", "", "", result, detail)
	if err != nil {
		return s, err
	}
	a.SetSessionCookie(c, s)
	return s, nil
}
