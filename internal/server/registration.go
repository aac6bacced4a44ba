package server

import (
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/dockmaster/dockmaster/internal/auth"
	"github.com/dockmaster/dockmaster/internal/seal"
	"github.com/dockmaster/dockmaster/internal/store"
)

// RegistrationAPI lets hosts join environments as Rancher's agents did:
// an owner gets a registration token and a ready-to-run command, and the
// host (or an Ansible play) registers itself with the token alone.
//
// Tokens are 256-bit random, looked up by sha256 and kept sealed at rest
// (the command can be shown again); they expire and can be revoked.
// Hosts' TLS material is sealed at rest for its host (seal.HostOwner).
type RegistrationAPI struct {
	Store  *store.DB
	Sealer *seal.Sealer
	// PublicURL goes into the command's --url; "" takes the request's.
	PublicURL string
	// TTL is how long a new token lives (default 24h).
	TTL time.Duration
	Now func() time.Time
}

// RegisterPath is where hosts register (public: the token is the credential).
const RegisterPath = "/api/v1/hosts/register"

// Register mounts the routes; rt is the /api/v1 group.
func (a *RegistrationAPI) Register(rt *auth.Routes) {
	env := auth.Param("env")
	rt.Handle(http.MethodGet, "/environments/:env/registrationtokens", auth.PermManageHosts, env, a.tokens)
	rt.Handle(http.MethodPost, "/environments/:env/registrationtokens", auth.PermManageHosts, env, a.createToken)
	rt.Handle(http.MethodDelete, "/environments/:env/registrationtokens/:id", auth.PermManageHosts, env, a.revokeToken)
	rt.Public(http.MethodPost, strings.TrimPrefix(RegisterPath, "/api/v1"), "host registration: the registration token in the body is the credential, checked by the handler", a.register)
}

func (a *RegistrationAPI) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now()
}

type tokenJSON struct {
	ID              int64     `json:"id"`
	Environment     string    `json:"environment"`
	Token           string    `json:"token"`
	Command         string    `json:"command"`
	RegistrationURL string    `json:"registration_url"`
	CreatedBy       string    `json:"created_by"`
	CreatedAt       time.Time `json:"created_at"`
	ExpiresAt       time.Time `json:"expires_at"`
}

func tokenOwner(env string) string { return "registration-token:" + env }

func (a *RegistrationAPI) toJSON(c *gin.Context, t store.RegistrationToken) (tokenJSON, error) {
	tok, err := a.Sealer.Open(t.Sealed, tokenOwner(t.Environment))
	if err != nil {
		return tokenJSON{}, fmt.Errorf("registration token %d: %w", t.ID, err)
	}
	base := a.baseURL(c)
	return tokenJSON{ID: t.ID, Environment: t.Environment, Token: string(tok), RegistrationURL: base + RegisterPath,
		Command: "dockmaster host register --url " + base + " --token " + string(tok) +
			" --endpoint tcp://HOST:2376 --tls-ca ca.pem --tls-cert cert.pem --tls-key key.pem --label zone=a",
		CreatedBy: t.CreatedBy, CreatedAt: t.CreatedAt, ExpiresAt: t.ExpiresAt}, nil
}

func (a *RegistrationAPI) baseURL(c *gin.Context) string {
	if a.PublicURL != "" {
		return strings.TrimRight(a.PublicURL, "/")
	}
	scheme := "http"
	if c.Request.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + c.Request.Host
}

// tokens lists the environment's live tokens, creating one when there is
// none, as Rancher's registrationtokens did: an Ansible play can GET it
// and always find a token. The creation is audited.
func (a *RegistrationAPI) tokens(c *gin.Context) {
	env := c.Param("env")
	if _, err := a.Store.Environment(c.Request.Context(), env); err != nil {
		storeError(c, err)
		return
	}
	ts, err := a.Store.RegistrationTokens(c.Request.Context(), env, a.now())
	if err != nil {
		internalError(c, err)
		return
	}
	if len(ts) == 0 {
		t, err := a.newToken(c, env, 0)
		if err != nil {
			return
		}
		ts = append(ts, t)
	}
	out := make([]tokenJSON, 0, len(ts))
	for _, t := range ts {
		j, err := a.toJSON(c, t)
		if err != nil {
			internalError(c, err)
			return
		}
		out = append(out, j)
	}
	c.JSON(http.StatusOK, gin.H{"tokens": out})
}

func (a *RegistrationAPI) createToken(c *gin.Context) {
	var in struct {
		TTL string `json:"ttl"`
	}
	if !readJSONBody(c, &in) {
		return
	}
	var ttl time.Duration
	if in.TTL != "" {
		d, err := time.ParseDuration(in.TTL)
		if err != nil || d < time.Minute || d > 90*24*time.Hour {
			badRequest(c, "ttl: want a duration from 1m to 2160h, got %q", in.TTL)
			return
		}
		ttl = d
	}
	t, err := a.newToken(c, c.Param("env"), ttl)
	if err != nil {
		return
	}
	j, err := a.toJSON(c, t)
	if err != nil {
		internalError(c, err)
		return
	}
	c.JSON(http.StatusCreated, j)
}

// newToken creates, audits and stores a token; on error it has answered.
func (a *RegistrationAPI) newToken(c *gin.Context, env string, ttl time.Duration) (store.RegistrationToken, error) {
	if ttl == 0 {
		ttl = a.TTL
	}
	if ttl == 0 {
		ttl = 24 * time.Hour
	}
	tok := "dmreg-" + rand.Text() + rand.Text() // 2 x 128 bits
	sum := sha256.Sum256([]byte(tok))
	t, err := a.Store.CreateRegistrationToken(c.Request.Context(), store.RegistrationToken{Environment: env, Hash: sum[:],
		Sealed: a.Sealer.Seal([]byte(tok), tokenOwner(env)), CreatedBy: auth.PrincipalFrom(c).Name,
		ExpiresAt: a.now().Add(ttl)})
	auth.Audit(c, "registrationtoken.create", env, strconv.FormatInt(t.ID, 10), err)
	if err != nil {
		storeError(c, err)
	}
	return t, err
}

func (a *RegistrationAPI) revokeToken(c *gin.Context) {
	env := c.Param("env")
	id, err := strconv.ParseInt(c.Param("id"), 10, 64)
	if err != nil {
		badRequest(c, "token id %q: want a number", c.Param("id"))
		return
	}
	err = a.Store.RevokeRegistrationToken(c.Request.Context(), env, id, a.now())
	auth.Audit(c, "registrationtoken.revoke", env, c.Param("id"), err)
	if err != nil {
		storeError(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

// RegisterRequest is the body of POST /api/v1/hosts/register.
type RegisterRequest struct {
	Token    string            `json:"token"`
	Name     string            `json:"name"`
	Endpoint string            `json:"endpoint"`
	Address  string            `json:"address"`
	Labels   map[string]string `json:"labels"`
	TLS      seal.TLSMaterial  `json:"tls"`
}

// RegisterResponse answers a registration. Changed is false when the
// host was already registered exactly so (Ansible's changed_when).
type RegisterResponse struct {
	Environment string            `json:"environment"`
	Name        string            `json:"name"`
	Endpoint    string            `json:"endpoint"`
	Address     string            `json:"address"`
	Labels      map[string]string `json:"labels"`
	TLS         bool              `json:"tls"`
	Changed     bool              `json:"changed"`
}

var hostNameRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// errBadToken is the one answer for a missing, expired, revoked or wrong
// token: which of these it was is not told.
var errBadToken = errors.New("registration token is invalid, expired or revoked")

func (a *RegistrationAPI) register(c *gin.Context) {
	var in RegisterRequest
	if !readJSONBody(c, &in) {
		return
	}
	ctx := c.Request.Context()
	actor := "anonymous"
	audit := func(env, target string, err error) {
		result, detail := "ok", ""
		if err != nil {
			result, detail = "failed", err.Error()
		}
		if aerr := a.Store.Audit(ctx, store.AuditEntry{At: a.now(), Actor: actor, Source: c.ClientIP(), Action: "host.register",
			Environment: env, Target: target, Result: result, Detail: detail}); aerr != nil {
			_ = c.Error(aerr)
		}
	}
	if in.Token == "" {
		badRequest(c, "token: required")
		return
	}
	sum := sha256.Sum256([]byte(in.Token))
	t, err := a.Store.RegistrationTokenByHash(ctx, sum[:], a.now())
	if errors.Is(err, store.ErrNotFound) {
		audit("", in.Endpoint, errBadToken)
		c.AbortWithStatusJSON(http.StatusUnauthorized, gin.H{"error": errBadToken.Error()})
		return
	}
	if err != nil {
		internalError(c, err)
		return
	}
	env := t.Environment
	actor = "registration-token:" + strconv.FormatInt(t.ID, 10)
	h, err := checkRegistration(&in)
	if err != nil {
		audit(env, in.Endpoint, err)
		badRequest(c, "%v", err)
		return
	}
	h.Environment = env
	owner := seal.HostOwner(env, h.Endpoint)
	sealed, err := a.Sealer.SealTLS(in.TLS, owner)
	if err != nil {
		internalError(c, err)
		return
	}
	changed, err := a.Store.RegisterHost(ctx, h, sealed, func(stored []byte) bool {
		old, err := a.Sealer.OpenTLS(stored, owner)
		return err == nil && old == in.TLS // unreadable old material is replaced
	})
	target := h.Name + " " + h.Endpoint
	if err != nil {
		audit(env, target, err)
		storeError(c, err)
		return
	}
	if changed { // a no-op repeat (Ansible's second run) leaves no entry
		audit(env, target, nil)
	}
	c.JSON(http.StatusOK, RegisterResponse{Environment: env, Name: h.Name, Endpoint: h.Endpoint, Address: h.Address,
		Labels: orEmptyMap(h.Labels), TLS: !in.TLS.IsZero(), Changed: changed})
}

// checkRegistration validates the request, naming the field, and fills
// the address from a tcp endpoint's IP when none is given.
func checkRegistration(in *RegisterRequest) (store.Host, error) {
	h := store.Host{Name: in.Name, Endpoint: in.Endpoint, Address: in.Address, Labels: in.Labels}
	if !hostNameRe.MatchString(h.Name) {
		return h, fmt.Errorf("name: %q: use letters, digits, ., - and _ (at most 63, starting with a letter or digit)", h.Name)
	}
	u, err := url.Parse(h.Endpoint)
	switch {
	case err != nil:
		return h, fmt.Errorf("endpoint: %q: %v", h.Endpoint, err)
	case u.Scheme == "unix" && u.Path != "" && u.Host == "":
	case u.Scheme == "tcp" && u.Hostname() != "" && u.Port() != "" && (u.Path == "" || u.Path == "/"):
		if h.Address == "" && net.ParseIP(u.Hostname()) != nil {
			h.Address = u.Hostname()
		}
	default:
		return h, fmt.Errorf("endpoint: want unix:///path or tcp://host:port, got %q", h.Endpoint)
	}
	if h.Address != "" && net.ParseIP(h.Address) == nil {
		return h, fmt.Errorf("address: %q is not an IP address", h.Address)
	}
	if len(h.Labels) > 64 {
		return h, fmt.Errorf("labels: at most 64, got %d", len(h.Labels))
	}
	for k, v := range h.Labels {
		if k == "" || len(k) > 128 || strings.ContainsAny(k, "= \t\n") || len(v) > 256 {
			return h, fmt.Errorf("labels: %q=%q: want a key of 1-128 characters without '=' or spaces, a value of at most 256", k, v)
		}
	}
	if err := in.TLS.Validate(); err != nil {
		return h, err
	}
	return h, nil
}

func orEmptyMap(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}
