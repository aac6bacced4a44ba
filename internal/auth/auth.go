package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/dockmaster/dockmaster/internal/config"
	"github.com/dockmaster/dockmaster/internal/store"
)

// Store is what the access layer needs from the database; *store.DB has it.
type Store interface {
	Environment(ctx context.Context, name string) (store.Environment, error)
	CreateUser(ctx context.Context, u store.User) (store.User, error)
	UserByName(ctx context.Context, name string) (store.User, error)
	UserByID(ctx context.Context, id int64) (store.User, error)
	Users(ctx context.Context) ([]store.User, error)
	SetPassword(ctx context.Context, userID int64, hash string) error
	SetMembership(ctx context.Context, env string, userID int64, role string) error
	DeleteMembership(ctx context.Context, env string, userID int64) error
	Memberships(ctx context.Context, env string) ([]store.Membership, error)
	UserRoles(ctx context.Context, userID int64) (map[string]string, error)
	CreateAPIKey(ctx context.Context, k store.APIKey) (store.APIKey, error)
	APIKey(ctx context.Context, accessKey string) (store.APIKey, error)
	APIKeys(ctx context.Context, userID int64, env string) ([]store.APIKey, error)
	DeleteAPIKey(ctx context.Context, accessKey string) error
	CreateSession(ctx context.Context, s store.Session, now time.Time) error
	Session(ctx context.Context, idHash []byte, now time.Time) (store.Session, error)
	DeleteSession(ctx context.Context, idHash []byte) error
	Audit(ctx context.Context, e store.AuditEntry) error
	AuditLog(ctx context.Context, q store.AuditQuery) ([]store.AuditEntry, error)
}

// Errors of the access layer; compare with errors.Is.
var (
	ErrBadCredentials = errors.New("wrong user name or password")
	ErrBadKey         = errors.New("invalid API key")
	ErrRateLimited    = errors.New("too many failed logins")
	ErrBadPassword    = errors.New("unacceptable password")
	ErrBadName        = errors.New("unacceptable user name")
)

// RateLimitError says when to try again; it wraps ErrRateLimited.
type RateLimitError struct{ RetryAfter time.Duration }

func (e *RateLimitError) Error() string {
	return fmt.Sprintf("%v: try again in %s", ErrRateLimited, e.RetryAfter.Round(time.Second))
}
func (e *RateLimitError) Unwrap() error { return ErrRateLimited }

// Options configures New.
type Options struct {
	Store  Store
	Config config.Auth
	// PublicURL decides Secure cookies in "auto" mode (https -> Secure).
	PublicURL string
	// StateDir holds initial-admin-password and signing-key when they are
	// generated (the store's directory).
	StateDir string
	Log      *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
	// BcryptCost (default bcrypt.DefaultCost); tests lower it.
	BcryptCost int
}

// Authenticator checks credentials, runs sessions and enforces the route
// registry. It is safe for concurrent use.
type Authenticator struct {
	store      Store
	cfg        config.Auth
	publicURL  string
	stateDir   string
	log        *slog.Logger
	now        func() time.Time
	cost       int
	signingKey []byte
	dummyHash  []byte // compared against when the user does not exist, so timing does not tell
	authz      *Authorizer
	registry   *Registry
	byIP       *limiter
	byUser     *limiter
}

// New builds the authenticator and loads (or creates) the signing key.
func New(opts Options) (*Authenticator, error) {
	if opts.Store == nil {
		return nil, errors.New("auth: no store")
	}
	a := &Authenticator{store: opts.Store, cfg: opts.Config.WithDefaults(), publicURL: opts.PublicURL,
		stateDir: opts.StateDir, log: opts.Log, now: opts.Now, cost: opts.BcryptCost,
		authz: &Authorizer{}, registry: NewRegistry()}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	if a.now == nil {
		a.now = time.Now
	}
	if a.cost == 0 {
		a.cost = bcrypt.DefaultCost
	}
	a.byIP = newLimiter(a.cfg.LoginAttemptsPerMinute, 10000)
	a.byUser = newLimiter(a.cfg.LoginAttemptsPerMinute, 10000)
	var err error
	if a.dummyHash, err = bcrypt.GenerateFromPassword([]byte(randomToken(16)), a.cost); err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	if a.signingKey, err = a.loadSigningKey(); err != nil {
		return nil, err
	}
	return a, nil
}

// Authorizer returns the permission checker.
func (a *Authenticator) Authorizer() *Authorizer { return a.authz }

// Registry returns the route-permission registry the middleware enforces.
func (a *Authenticator) Registry() *Registry { return a.registry }

// SigningKey is the HMAC key for self-verifying links (approval links).
// Callers must not modify it.
func (a *Authenticator) SigningKey() []byte { return a.signingKey }

func (a *Authenticator) loadSigningKey() ([]byte, error) {
	if !a.cfg.SigningKey.IsZero() {
		v, err := a.cfg.SigningKey.Value()
		if err != nil {
			return nil, fmt.Errorf("auth.signing_key: %w", err)
		}
		if len(v) < 32 {
			return nil, errors.New("auth.signing_key: want at least 32 characters")
		}
		return []byte(v), nil
	}
	path := filepath.Join(a.stateDir, "signing-key")
	b, err := os.ReadFile(path)
	if err == nil && len(b) >= 32 {
		return b, nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("auth: signing key: %w", err)
	}
	key := []byte(randomToken(32))
	if err := writeSecretFile(path, key); err != nil {
		return nil, fmt.Errorf("auth: signing key: %w", err)
	}
	return key, nil
}

// writeSecretFile creates path with mode 0600 (replacing what was there)
// without a window in which it is readable by others.
func writeSecretFile(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return err
	}
	tmp := path + ".tmp"
	os.Remove(tmp)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// Bootstrap makes sure the first admin exists. With auth.admin_password
// set, the admin gets that password at every start. Otherwise, when no
// user exists yet, a random password is written to
// <state dir>/initial-admin-password (0600) and only that path is logged.
func (a *Authenticator) Bootstrap(ctx context.Context) error {
	name := a.cfg.AdminUser
	if !a.cfg.AdminPassword.IsZero() {
		pw, err := a.cfg.AdminPassword.Value()
		if err != nil {
			return fmt.Errorf("auth.admin_password: %w", err)
		}
		u, err := a.store.UserByName(ctx, name)
		if errors.Is(err, store.ErrNotFound) {
			_, err = a.CreateUser(ctx, name, pw, true)
			if err == nil {
				a.log.Info("created admin user from config", "user", name)
			}
			return err
		}
		if err != nil {
			return err
		}
		if bcrypt.CompareHashAndPassword([]byte(u.PasswordHash), []byte(pw)) == nil {
			return nil
		}
		if err := a.SetPassword(ctx, u.ID, pw); err != nil {
			return err
		}
		a.log.Info("admin password reset from config", "user", name)
		return nil
	}
	users, err := a.store.Users(ctx)
	if err != nil || len(users) > 0 {
		return err
	}
	pw := randomToken(18)
	path := filepath.Join(a.stateDir, "initial-admin-password")
	if err := writeSecretFile(path, []byte(pw+"\n")); err != nil {
		return fmt.Errorf("auth: initial admin password: %w", err)
	}
	if _, err := a.CreateUser(ctx, name, pw, true); err != nil {
		return err
	}
	a.log.Warn("created the first admin; its password is in the file (delete it after the first login)",
		"user", name, "file", path)
	return nil
}

// HashPassword checks and bcrypt-hashes a password.
func (a *Authenticator) HashPassword(pw string) (string, error) {
	if len(pw) < 8 {
		return "", fmt.Errorf("%w: want at least 8 characters", ErrBadPassword)
	}
	if len(pw) > 72 { // bcrypt's limit
		return "", fmt.Errorf("%w: want at most 72 bytes", ErrBadPassword)
	}
	h, err := bcrypt.GenerateFromPassword([]byte(pw), a.cost)
	if err != nil {
		return "", fmt.Errorf("auth: hash password: %w", err)
	}
	return string(h), nil
}

// CreateUser adds a local user with a password.
func (a *Authenticator) CreateUser(ctx context.Context, name, password string, admin bool) (store.User, error) {
	if !validName(name) {
		return store.User{}, fmt.Errorf("%w %q: use letters, digits, ., - and _ (at most 64)", ErrBadName, name)
	}
	h, err := a.HashPassword(password)
	if err != nil {
		return store.User{}, err
	}
	return a.store.CreateUser(ctx, store.User{Name: name, PasswordHash: h, Admin: admin})
}

// SetPassword changes a password and ends the user's sessions.
func (a *Authenticator) SetPassword(ctx context.Context, userID int64, password string) error {
	h, err := a.HashPassword(password)
	if err != nil {
		return err
	}
	return a.store.SetPassword(ctx, userID, h)
}

func validName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i, r := range s {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || (i > 0 && (r == '.' || r == '-' || r == '_'))
		if !ok {
			return false
		}
	}
	return true
}

// NewSession is a started login: the cookie value (shown to the browser
// only) and the CSRF token forms must echo.
type NewSession struct {
	Cookie    string
	CSRFToken string
	User      store.User
	ExpiresAt time.Time
}

// Login checks a password, throttled per source address and per user
// name, and starts a session.
func (a *Authenticator) Login(ctx context.Context, name, password, source string) (NewSession, error) {
	now := a.now()
	if wait := max(a.byIP.wait(source, now), a.byUser.wait(name, now)); wait > 0 {
		return NewSession{}, &RateLimitError{RetryAfter: wait}
	}
	u, err := a.store.UserByName(ctx, name)
	switch {
	case errors.Is(err, store.ErrNotFound):
		_ = bcrypt.CompareHashAndPassword(a.dummyHash, []byte(password))
	case err != nil:
		return NewSession{}, err
	}
	if err != nil || u.Disabled || u.PasswordHash == "" ||
		bcrypt.CompareHashAndPassword([]byte(u.PasswordHash), []byte(password)) != nil {
		a.byIP.fail(source, now)
		a.byUser.fail(name, now)
		return NewSession{}, ErrBadCredentials
	}
	a.byUser.reset(name)
	s := NewSession{Cookie: randomToken(32), CSRFToken: randomToken(32), User: u,
		ExpiresAt: now.Add(time.Duration(a.cfg.SessionTTL))}
	if err := a.store.CreateSession(ctx, store.Session{IDHash: hashSecret(s.Cookie), UserID: u.ID,
		CSRFToken: s.CSRFToken, Source: source, ExpiresAt: s.ExpiresAt}, now); err != nil {
		return NewSession{}, err
	}
	return s, nil
}

// Logout ends p's session (nothing for key principals).
func (a *Authenticator) Logout(ctx context.Context, p *Principal) error {
	if !p.ViaSession() {
		return nil
	}
	return a.store.DeleteSession(ctx, p.sessionHash)
}

// NewKey is a created API key. Secret is shown once and never stored.
type NewKey struct {
	AccessKey string
	Secret    string
	Key       store.APIKey
}

// CreateKey makes an account key for userID (env "") or an environment
// key carrying role on env (userID 0). createdBy is recorded for audit.
func (a *Authenticator) CreateKey(ctx context.Context, userID int64, env string, role Role, description, createdBy string) (NewKey, error) {
	if (userID == 0) == (env == "") {
		return NewKey{}, errors.New("auth: a key belongs to a user or to an environment, not both")
	}
	if env != "" {
		if _, err := ParseRole(string(role)); err != nil {
			return NewKey{}, err
		}
	} else {
		role = ""
	}
	if len(description) > 200 {
		return NewKey{}, errors.New("description: at most 200 characters")
	}
	access := "DK" + strings.ToUpper(randomHex(9)) // 20 characters, as Rancher's
	secret := randomToken(32)
	k, err := a.store.CreateAPIKey(ctx, store.APIKey{AccessKey: access, SecretHash: hashSecret(secret), UserID: userID,
		Environment: env, Role: string(role), Description: description, CreatedBy: createdBy})
	if err != nil {
		return NewKey{}, err
	}
	return NewKey{AccessKey: access, Secret: secret, Key: k}, nil
}

// keyPrincipal checks an access key and secret.
func (a *Authenticator) keyPrincipal(ctx context.Context, access, secret string) (*Principal, error) {
	k, err := a.store.APIKey(ctx, access)
	if errors.Is(err, store.ErrNotFound) {
		return nil, ErrBadKey
	}
	if err != nil {
		return nil, err
	}
	if subtle.ConstantTimeCompare(hashSecret(secret), k.SecretHash) != 1 {
		return nil, ErrBadKey
	}
	if k.Environment != "" {
		return &Principal{Name: "key:" + k.AccessKey, Roles: map[string]Role{k.Environment: Role(k.Role)},
			KeyEnv: k.Environment, AccessKey: k.AccessKey}, nil
	}
	p, err := a.userPrincipal(ctx, k.UserID)
	if err != nil {
		return nil, err
	}
	p.AccessKey = k.AccessKey
	return p, nil
}

// sessionPrincipal resolves a session cookie; (nil, nil) when it is not a
// live session.
func (a *Authenticator) sessionPrincipal(ctx context.Context, cookie string) (*Principal, error) {
	h := hashSecret(cookie)
	s, err := a.store.Session(ctx, h, a.now())
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	p, err := a.userPrincipal(ctx, s.UserID)
	if errors.Is(err, ErrBadCredentials) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	p.sessionHash, p.csrf = h, s.CSRFToken
	return p, nil
}

func (a *Authenticator) userPrincipal(ctx context.Context, id int64) (*Principal, error) {
	u, err := a.store.UserByID(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, ErrBadCredentials
	}
	if err != nil {
		return nil, err
	}
	if u.Disabled {
		return nil, ErrBadCredentials
	}
	roles, err := a.store.UserRoles(ctx, id)
	if err != nil {
		return nil, err
	}
	p := &Principal{UserID: u.ID, Name: u.Name, Admin: u.Admin, Roles: make(map[string]Role, len(roles))}
	for env, r := range roles {
		p.Roles[env] = Role(r)
	}
	return p, nil
}

func hashSecret(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

// randomToken is n random bytes, base64url without padding.
func randomToken(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%x", b)
}
