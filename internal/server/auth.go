package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/dockmaster/dockmaster/internal/auth"
	"github.com/dockmaster/dockmaster/internal/store"
	"github.com/dockmaster/dockmaster/templates"
)

// UseAccess puts the access layer in front of every route registered from
// now on, so call it right after New and before any other Group or route:
// gin copies middleware into a route when the route is registered. It sets
// the trusted proxies (none by default, so the client address used for
// rate limits and the audit log cannot be forged with X-Forwarded-For),
// mounts login/logout and the user/key/member/audit API, and declares the
// permissions of the EnvironmentAPI and DeliveryAPI routes.
//
// /healthz, /readyz and /metrics are registered by New before this runs,
// so they do not carry the security headers; they serve no HTML.
func (s *Server) UseAccess(a *auth.Authenticator, db *store.DB, trustedProxies []string) error {
	if err := s.Engine.SetTrustedProxies(trustedProxies); err != nil {
		return fmt.Errorf("auth.trusted_proxies: %w", err)
	}
	s.Engine.Use(a.Middleware())
	(&AccessAPI{Auth: a, Store: db, Pages: templates.NewPages()}).Register(a.Routes(&s.Engine.RouterGroup))
	declareCoreRoutes(a.Registry(), "/api/v1")
	return nil
}

// declareCoreRoutes declares the routes that EnvironmentAPI and
// DeliveryAPI mount under prefix with plain gin calls. Lists are readable
// by anyone holding a role somewhere; replaying a webhook delivery can
// start pipelines, so it needs deploy somewhere.
func declareCoreRoutes(r *auth.Registry, prefix string) {
	r.Declare(http.MethodGet, prefix+"/environments", auth.PermView, auth.NoEnv)
	r.Declare(http.MethodGet, prefix+"/environments/:env", auth.PermView, auth.Param("env"))
	r.Declare(http.MethodGet, prefix+"/environments/:env/hosts", auth.PermView, auth.Param("env"))
	r.Declare(http.MethodGet, prefix+"/deliveries", auth.PermView, auth.NoEnv)
	r.Declare(http.MethodGet, prefix+"/deliveries/:id", auth.PermView, auth.NoEnv)
	r.Declare(http.MethodPost, prefix+"/deliveries/:id/replay", auth.PermDeploy, auth.NoEnv)
}

// AccessAPI serves login, logout, users, API keys, memberships and the
// audit log.
type AccessAPI struct {
	Auth  *auth.Authenticator
	Store *store.DB
	Pages *templates.Pages // the login page
}

// Register mounts the routes; rt is the root group.
func (a *AccessAPI) Register(rt *auth.Routes) {
	rt.Public(http.MethodGet, "/login", "login page", a.loginPage)
	rt.Public(http.MethodPost, "/login", "login", a.login)
	rt.Handle(http.MethodPost, "/logout", auth.PermAuthenticated, auth.NoEnv, a.logout)

	api := rt.Group("/api/v1")
	api.Handle(http.MethodGet, "/me", auth.PermAuthenticated, auth.NoEnv, a.me)
	api.Handle(http.MethodGet, "/users", auth.PermAdmin, auth.NoEnv, a.users)
	api.Handle(http.MethodPost, "/users", auth.PermAdmin, auth.NoEnv, a.createUser)
	api.Handle(http.MethodGet, "/keys", auth.PermAccount, auth.NoEnv, a.accountKeys)
	api.Handle(http.MethodPost, "/keys", auth.PermAccount, auth.NoEnv, a.createAccountKey)
	api.Handle(http.MethodDelete, "/keys/:access", auth.PermAccount, auth.NoEnv, a.deleteAccountKey)
	env := auth.Param("env")
	api.Handle(http.MethodGet, "/environments/:env/keys", auth.PermManageMembers, env, a.envKeys)
	api.Handle(http.MethodPost, "/environments/:env/keys", auth.PermManageMembers, env, a.createEnvKey)
	api.Handle(http.MethodDelete, "/environments/:env/keys/:access", auth.PermManageMembers, env, a.deleteEnvKey)
	api.Handle(http.MethodGet, "/environments/:env/members", auth.PermView, env, a.members)
	api.Handle(http.MethodPut, "/environments/:env/members/:user", auth.PermManageMembers, env, a.setMember)
	api.Handle(http.MethodDelete, "/environments/:env/members/:user", auth.PermManageMembers, env, a.deleteMember)
	api.Handle(http.MethodGet, "/audit", auth.PermView, auth.Query("env"), a.auditLog)
}

// badRequest answers 400 with a message naming the field.
func badRequest(c *gin.Context, format string, args ...any) {
	c.AbortWithStatusJSON(http.StatusBadRequest, gin.H{"error": fmt.Sprintf(format, args...)})
}

// readJSONBody decodes a bounded JSON body strictly (unknown fields are
// errors, named).
func readJSONBody(c *gin.Context, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(c.Writer, c.Request.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		badRequest(c, "request body: %v", err)
		return false
	}
	return true
}

func isJSON(c *gin.Context) bool {
	return strings.HasPrefix(c.ContentType(), "application/json")
}

func (a *AccessAPI) loginPage(c *gin.Context) {
	var buf bytes.Buffer
	if err := a.Pages.Render(&buf, "login", struct {
		Next   string
		Failed bool
	}{safeNext(c.Query("next")), c.Query("failed") != ""}); err != nil {
		internalError(c, err)
		return
	}
	c.Data(http.StatusOK, "text/html; charset=utf-8", buf.Bytes())
}

// safeNext keeps post-login redirects on this site (no open redirect).
func safeNext(next string) string {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") {
		return "/"
	}
	return next
}

// login accepts JSON {"user","password"} (answers JSON with the CSRF
// token) or a form (redirects to next).
func (a *AccessAPI) login(c *gin.Context) {
	var in struct {
		User     string `json:"user"`
		Password string `json:"password"`
	}
	form := !isJSON(c)
	if form {
		in.User, in.Password = c.PostForm("user"), c.PostForm("password")
	} else if !readJSONBody(c, &in) {
		return
	}
	s, err := a.Auth.LoginRequest(c, in.User, in.Password)
	var rl *auth.RateLimitError
	if errors.As(err, &rl) {
		c.Header("Retry-After", strconv.Itoa(int(math.Ceil(rl.RetryAfter.Seconds()))))
	}
	if form {
		next := safeNext(c.PostForm("next"))
		if err != nil {
			c.Redirect(http.StatusSeeOther, "/login?failed=1&next="+url.QueryEscape(next))
			return
		}
		c.Redirect(http.StatusSeeOther, next)
		return
	}
	switch {
	case errors.As(err, &rl):
		c.AbortWithStatusJSON(http.StatusTooManyRequests, gin.H{"error": err.Error()})
	case errors.Is(err, auth.ErrBadCredentials):
		c.AbortWithStatusJSON(http.StatusUnauthorized, gin.H{"error": err.Error()})
	case err != nil:
		internalError(c, err)
	default:
		c.JSON(http.StatusOK, gin.H{"user": s.User.Name, "admin": s.User.Admin, "csrf_token": s.CSRFToken,
			"expires_at": s.ExpiresAt.UTC().Format(time.RFC3339)})
	}
}

func (a *AccessAPI) logout(c *gin.Context) {
	err := a.Auth.Logout(c.Request.Context(), auth.PrincipalFrom(c))
	auth.Audit(c, "logout", "", "", err)
	if err != nil {
		internalError(c, err)
		return
	}
	a.Auth.ClearSessionCookie(c)
	if isJSON(c) || c.GetHeader(auth.CSRFHeader) != "" {
		c.Status(http.StatusNoContent)
		return
	}
	c.Redirect(http.StatusSeeOther, "/login")
}

func (a *AccessAPI) me(c *gin.Context) {
	p := auth.PrincipalFrom(c)
	out := gin.H{"name": p.Name, "admin": p.Admin, "roles": p.Roles}
	if p.ViaSession() {
		out["csrf_token"] = auth.CSRFToken(c)
	}
	if p.AccessKey != "" {
		out["access_key"] = p.AccessKey
	}
	if p.KeyEnv != "" {
		out["environment"] = p.KeyEnv
	}
	c.JSON(http.StatusOK, out)
}

type userJSON struct {
	Name      string    `json:"name"`
	Admin     bool      `json:"admin"`
	Disabled  bool      `json:"disabled"`
	CreatedAt time.Time `json:"created_at"`
}

func (a *AccessAPI) users(c *gin.Context) {
	us, err := a.Store.Users(c.Request.Context())
	if err != nil {
		internalError(c, err)
		return
	}
	out := make([]userJSON, 0, len(us))
	for _, u := range us {
		out = append(out, userJSON{u.Name, u.Admin, u.Disabled, u.CreatedAt})
	}
	c.JSON(http.StatusOK, gin.H{"users": out})
}

func (a *AccessAPI) createUser(c *gin.Context) {
	var in struct {
		Name     string `json:"name"`
		Password string `json:"password"`
		Admin    bool   `json:"admin"`
	}
	if !readJSONBody(c, &in) {
		return
	}
	u, err := a.Auth.CreateUser(c.Request.Context(), in.Name, in.Password, in.Admin)
	auth.Audit(c, "user.create", "", in.Name, err)
	switch {
	case errors.Is(err, auth.ErrBadPassword):
		badRequest(c, "password: %v", err)
	case errors.Is(err, auth.ErrBadName):
		badRequest(c, "name: %v", err)
	case err != nil:
		storeError(c, err)
	default:
		c.JSON(http.StatusCreated, userJSON{u.Name, u.Admin, u.Disabled, time.Now().UTC()})
	}
}

type keyJSON struct {
	AccessKey   string    `json:"access_key"`
	Secret      string    `json:"secret,omitempty"` // only in the answer that creates it
	Environment string    `json:"environment,omitempty"`
	Role        string    `json:"role,omitempty"`
	Description string    `json:"description,omitempty"`
	CreatedBy   string    `json:"created_by,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
}

func toKeyJSON(k store.APIKey) keyJSON {
	return keyJSON{AccessKey: k.AccessKey, Environment: k.Environment, Role: k.Role, Description: k.Description,
		CreatedBy: k.CreatedBy, CreatedAt: k.CreatedAt}
}

func (a *AccessAPI) accountKeys(c *gin.Context) {
	a.listKeys(c, auth.PrincipalFrom(c).UserID, "")
}

func (a *AccessAPI) envKeys(c *gin.Context) { a.listKeys(c, 0, c.Param("env")) }

func (a *AccessAPI) listKeys(c *gin.Context, userID int64, env string) {
	ks, err := a.Store.APIKeys(c.Request.Context(), userID, env)
	if err != nil {
		internalError(c, err)
		return
	}
	out := make([]keyJSON, 0, len(ks))
	for _, k := range ks {
		out = append(out, toKeyJSON(k))
	}
	c.JSON(http.StatusOK, gin.H{"keys": out})
}

type keyRequest struct {
	Role        string `json:"role"`
	Description string `json:"description"`
}

func (a *AccessAPI) createAccountKey(c *gin.Context) {
	var in keyRequest
	if !readJSONBody(c, &in) {
		return
	}
	if in.Role != "" {
		badRequest(c, "role: account keys act as their user and take no role")
		return
	}
	a.createKey(c, auth.PrincipalFrom(c).UserID, "", "", in.Description)
}

func (a *AccessAPI) createEnvKey(c *gin.Context) {
	var in keyRequest
	if !readJSONBody(c, &in) {
		return
	}
	if in.Role == "" {
		in.Role = string(auth.RoleMember)
	}
	role, err := auth.ParseRole(in.Role)
	if err != nil {
		badRequest(c, "role: %v", err)
		return
	}
	a.createKey(c, 0, c.Param("env"), role, in.Description)
}

func (a *AccessAPI) createKey(c *gin.Context, userID int64, env string, role auth.Role, desc string) {
	k, err := a.Auth.CreateKey(c.Request.Context(), userID, env, role, desc, auth.PrincipalFrom(c).Name)
	auth.Audit(c, "key.create", env, k.AccessKey, err)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrConflict) {
			storeError(c, err)
			return
		}
		badRequest(c, "%v", err)
		return
	}
	out := toKeyJSON(k.Key)
	out.Secret = k.Secret
	out.CreatedAt = time.Now().UTC()
	c.JSON(http.StatusCreated, out)
}

func (a *AccessAPI) deleteAccountKey(c *gin.Context) {
	p := auth.PrincipalFrom(c)
	k, err := a.Store.APIKey(c.Request.Context(), c.Param("access"))
	// Someone else's key answers 404 like a missing one: no probing.
	if err == nil && k.UserID != p.UserID && !(p.Admin && p.KeyEnv == "") || err == nil && k.UserID == 0 {
		err = fmt.Errorf("account key %q: %w", c.Param("access"), store.ErrNotFound)
	}
	a.deleteKey(c, k.Environment, err)
}

func (a *AccessAPI) deleteEnvKey(c *gin.Context) {
	k, err := a.Store.APIKey(c.Request.Context(), c.Param("access"))
	if err == nil && k.Environment != c.Param("env") {
		err = fmt.Errorf("key %q of environment %q: %w", c.Param("access"), c.Param("env"), store.ErrNotFound)
	}
	a.deleteKey(c, c.Param("env"), err)
}

func (a *AccessAPI) deleteKey(c *gin.Context, env string, err error) {
	if err == nil {
		err = a.Store.DeleteAPIKey(c.Request.Context(), c.Param("access"))
	}
	auth.Audit(c, "key.delete", env, c.Param("access"), err)
	if err != nil {
		storeError(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

func (a *AccessAPI) members(c *gin.Context) {
	env := c.Param("env")
	if _, err := a.Store.Environment(c.Request.Context(), env); err != nil {
		storeError(c, err)
		return
	}
	ms, err := a.Store.Memberships(c.Request.Context(), env)
	if err != nil {
		internalError(c, err)
		return
	}
	out := make([]gin.H, 0, len(ms))
	for _, m := range ms {
		out = append(out, gin.H{"user": m.User, "role": m.Role})
	}
	c.JSON(http.StatusOK, gin.H{"members": out})
}

func (a *AccessAPI) setMember(c *gin.Context) {
	var in struct {
		Role string `json:"role"`
	}
	if !readJSONBody(c, &in) {
		return
	}
	role, err := auth.ParseRole(in.Role)
	if err != nil {
		badRequest(c, "role: %v", err)
		return
	}
	env, name := c.Param("env"), c.Param("user")
	u, err := a.Store.UserByName(c.Request.Context(), name)
	if err == nil {
		_, err = a.Store.Environment(c.Request.Context(), env)
	}
	if err == nil {
		err = a.Store.SetMembership(c.Request.Context(), env, u.ID, string(role))
	}
	auth.Audit(c, "member.set", env, name+"="+string(role), err)
	if err != nil {
		storeError(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"user": name, "environment": env, "role": role})
}

func (a *AccessAPI) deleteMember(c *gin.Context) {
	env, name := c.Param("env"), c.Param("user")
	u, err := a.Store.UserByName(c.Request.Context(), name)
	if err == nil {
		err = a.Store.DeleteMembership(c.Request.Context(), env, u.ID)
	}
	auth.Audit(c, "member.delete", env, name, err)
	if err != nil {
		storeError(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}
