package test

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/dockmaster/dockmaster/internal/auth"
	"github.com/dockmaster/dockmaster/internal/config"
	"github.com/dockmaster/dockmaster/internal/inventory"
	"github.com/dockmaster/dockmaster/internal/server"
	"github.com/dockmaster/dockmaster/internal/store"
	"github.com/dockmaster/dockmaster/internal/store/storetest"
)

// oidcProvider is a minimal OpenID Connect provider: discovery, JWKS, an
// authorize endpoint that approves the configured user at once (checking
// client and redirect URI), and a token endpoint that checks the client
// secret and the PKCE verifier and issues an RS256 id_token with a
// groups claim. Knobs let a test break one property of the id_token.
type oidcProvider struct {
	srv      *httptest.Server
	key      *rsa.PrivateKey
	clientID string
	secret   string
	redirect string

	mu     sync.Mutex
	user   oidcUser
	codes  map[string]oidcGrant
	tamper func(claims map[string]any) // edits claims before signing
	signer *rsa.PrivateKey             // signs instead of key when set
	post   func(idToken string) string // edits the signed token
}

type oidcUser struct {
	Sub, Name string
	Groups    []string
}

type oidcGrant struct {
	nonce, challenge string
	user             oidcUser
}

func newOIDCProvider(t *testing.T, clientID, secret string) *oidcProvider {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p := &oidcProvider{key: key, clientID: clientID, secret: secret, codes: map[string]oidcGrant{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		u := p.srv.URL
		writeJSONResp(w, map[string]any{"issuer": u, "authorization_endpoint": u + "/authorize", "token_endpoint": u + "/token",
			"jwks_uri": u + "/jwks", "response_types_supported": []string{"code"}, "subject_types_supported": []string{"public"},
			"id_token_signing_alg_values_supported": []string{"RS256"}})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, r *http.Request) {
		b64 := base64.RawURLEncoding.EncodeToString
		writeJSONResp(w, map[string]any{"keys": []map[string]string{{"kty": "RSA", "kid": "k1", "use": "sig", "alg": "RS256",
			"n": b64(key.N.Bytes()), "e": b64(big.NewInt(int64(key.E)).Bytes())}}})
	})
	mux.HandleFunc("GET /authorize", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if q.Get("client_id") != p.clientID || q.Get("redirect_uri") != p.redirect || q.Get("response_type") != "code" ||
			q.Get("code_challenge_method") != "S256" || !strings.Contains(q.Get("scope"), "openid") {
			http.Error(w, "bad authorize request: "+r.URL.RawQuery, http.StatusBadRequest)
			return
		}
		code := rand.Text()
		p.mu.Lock()
		p.codes[code] = oidcGrant{nonce: q.Get("nonce"), challenge: q.Get("code_challenge"), user: p.user}
		p.mu.Unlock()
		http.Redirect(w, r, p.redirect+"?code="+url.QueryEscape(code)+"&state="+url.QueryEscape(q.Get("state")), http.StatusFound)
	})
	mux.HandleFunc("POST /token", func(w http.ResponseWriter, r *http.Request) {
		id, sec, ok := r.BasicAuth()
		if !ok {
			id, sec = r.PostFormValue("client_id"), r.PostFormValue("client_secret")
		}
		p.mu.Lock()
		g, found := p.codes[r.PostFormValue("code")]
		delete(p.codes, r.PostFormValue("code")) // single use
		tamper, signer, post := p.tamper, p.signer, p.post
		p.mu.Unlock()
		sum := sha256.Sum256([]byte(r.PostFormValue("code_verifier")))
		switch {
		case id != p.clientID || sec != p.secret:
			http.Error(w, `{"error":"invalid_client"}`, http.StatusUnauthorized)
			return
		case !found || base64.RawURLEncoding.EncodeToString(sum[:]) != g.challenge:
			http.Error(w, `{"error":"invalid_grant"}`, http.StatusBadRequest)
			return
		}
		now := time.Now()
		claims := map[string]any{"iss": p.srv.URL, "sub": g.user.Sub, "aud": p.clientID, "iat": now.Unix(),
			"exp": now.Add(5 * time.Minute).Unix(), "nonce": g.nonce, "preferred_username": g.user.Name, "groups": g.user.Groups}
		if tamper != nil {
			tamper(claims)
		}
		if signer == nil {
			signer = key
		}
		idt := signJWT(t, signer, claims)
		if post != nil {
			idt = post(idt)
		}
		writeJSONResp(w, map[string]any{"access_token": rand.Text(), "token_type": "Bearer", "expires_in": 300, "id_token": idt})
	})
	p.srv = httptest.NewTLSServer(mux)
	t.Cleanup(p.srv.Close)
	return p
}

func (p *oidcProvider) set(f func(p *oidcProvider)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f(p)
}

func signJWT(t *testing.T, key *rsa.PrivateKey, claims map[string]any) string {
	b64 := base64.RawURLEncoding.EncodeToString
	h, _ := json.Marshal(map[string]string{"alg": "RS256", "typ": "JWT", "kid": "k1"})
	c, _ := json.Marshal(claims)
	signing := b64(h) + "." + b64(c)
	sum := sha256.Sum256([]byte(signing))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
	if err != nil {
		t.Error(err)
	}
	return signing + "." + b64(sig)
}

func writeJSONResp(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

// ssoServer is dockmaster wired as serve.go does it (access layer,
// environments API, single sign-on), on a real store, served over HTTP.
type ssoServer struct {
	url string
	db  *store.DB
}

func newSSOServer(t *testing.T, p *oidcProvider) *ssoServer {
	t.Helper()
	ctx := context.Background()
	db := storetest.Open(t)
	for _, e := range []string{"prod", "staging"} {
		if err := db.UpsertEnvironment(ctx, store.Environment{Name: e}); err != nil {
			t.Fatal(err)
		}
	}
	log := slog.New(slog.DiscardHandler)
	srv := server.New(log, nil)
	cfg := config.Auth{AdminPassword: config.NewSecret("admin-pw-for-sso-1"), OIDC: config.OIDC{
		Issuer: p.srv.URL, ClientID: p.clientID, ClientSecret: config.NewSecret(p.secret), AdminGroup: "ops",
		Groups: []config.OIDCGroup{{Group: "devs", Environment: "staging", Role: "member"},
			{Group: "devs", Environment: "prod", Role: "read-only"}, {Group: "leads", Environment: "prod", Role: "owner"}}}}
	a, err := auth.New(auth.Options{Store: db, Config: cfg, StateDir: t.TempDir(), Log: log, BcryptCost: bcrypt.MinCost})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.UseAccess(a, db, nil); err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Engine)
	t.Cleanup(hs.Close)
	p.redirect = hs.URL + auth.OIDCCallbackPath
	sso, err := a.NewOIDC(auth.OIDCOptions{Config: cfg.OIDC, Store: db, PublicURL: hs.URL, HTTPClient: p.srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	sso.Register(a.Routes(&srv.Engine.RouterGroup))
	(&server.EnvironmentAPI{Store: db, Inventory: inventory.New(db, log, time.Hour, nil), Auth: a}).Register(a.Routes(srv.Engine.Group("/api/v1")))
	if u := a.Registry().Undeclared(srv.Engine.Routes()); len(u) > 0 {
		t.Fatalf("undeclared routes %v", u)
	}
	return &ssoServer{url: hs.URL, db: db}
}

// browser follows the login by hand: dockmaster -> provider -> callback.
type browser struct {
	t      *testing.T
	client *http.Client
}

func newBrowser(t *testing.T, p *oidcProvider) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: t, client: &http.Client{Jar: jar, Transport: p.srv.Client().Transport,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (b *browser) get(u string) (*http.Response, string) {
	b.t.Helper()
	resp, err := b.client.Get(u)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

// login runs the flow and returns the callback's answer.
func (b *browser) login(s *ssoServer) (*http.Response, string) {
	b.t.Helper()
	resp, body := b.get(s.url + auth.OIDCLoginPath + "?next=/api/v1/me")
	if resp.StatusCode != http.StatusFound {
		b.t.Fatalf("start: %d %s", resp.StatusCode, body)
	}
	resp, body = b.get(resp.Header.Get("Location")) // the provider approves
	if resp.StatusCode != http.StatusFound {
		b.t.Fatalf("authorize: %d %s", resp.StatusCode, body)
	}
	return b.get(resp.Header.Get("Location"))
}

func (b *browser) environments(s *ssoServer) (int, string) {
	resp, body := b.get(s.url + "/api/v1/environments")
	var out struct{ Environments []struct{ Name string } }
	json.Unmarshal([]byte(body), &out)
	var names []string
	for _, e := range out.Environments {
		names = append(names, e.Name)
	}
	return resp.StatusCode, strings.Join(names, ",")
}

func TestOIDCLogin(t *testing.T) {
	p := newOIDCProvider(t, "dockmaster", "client-secret-1")
	s := newSSOServer(t, p)

	t.Run("groups map to roles", func(t *testing.T) {
		p.set(func(p *oidcProvider) {
			p.user = oidcUser{Sub: "u-1", Name: "dana", Groups: []string{"devs", "leads", "unmapped"}}
		})
		b := newBrowser(t, p)
		resp, body := b.login(s)
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/api/v1/me" {
			t.Fatalf("callback: %d %s", resp.StatusCode, body)
		}
		_, me := b.get(s.url + "/api/v1/me")
		var who struct {
			Name  string
			Admin bool
			Roles map[string]string
		}
		json.Unmarshal([]byte(me), &who)
		if who.Name != "dana" || who.Admin || len(who.Roles) != 2 || who.Roles["prod"] != "owner" || who.Roles["staging"] != "member" {
			t.Fatalf("me: %s", me)
		}
		if code, envs := b.environments(s); code != http.StatusOK || envs != "prod,staging" {
			t.Fatalf("environments: %d %s", code, envs)
		}
		// Groups change at the provider: the next login follows, and the
		// old session loses what was taken away.
		p.set(func(p *oidcProvider) { p.user.Groups = []string{"devs"} })
		b2 := newBrowser(t, p)
		if resp, body := b2.login(s); resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("second login: %d %s", resp.StatusCode, body)
		}
		_, me = b.get(s.url + "/api/v1/me")
		json.Unmarshal([]byte(me), &who)
		if who.Roles["prod"] != "read-only" {
			t.Fatalf("after losing leads: %s", me)
		}
	})

	t.Run("admin group", func(t *testing.T) {
		p.set(func(p *oidcProvider) {
			p.user = oidcUser{Sub: "u-2", Name: "olaf@example.com", Groups: []string{"ops"}}
		})
		b := newBrowser(t, p)
		if resp, body := b.login(s); resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("callback: %d %s", resp.StatusCode, body)
		}
		_, me := b.get(s.url + "/api/v1/me")
		if !strings.Contains(me, `"admin":true`) || !strings.Contains(me, `"name":"olaf_example.com"`) {
			t.Fatalf("me: %s", me)
		}
	})

	t.Run("no mapped group, no access", func(t *testing.T) {
		p.set(func(p *oidcProvider) { p.user = oidcUser{Sub: "u-3", Name: "eve", Groups: []string{"visitors"}} })
		b := newBrowser(t, p)
		resp, body := b.login(s)
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "no access") {
			t.Fatalf("callback: %d %s", resp.StatusCode, body)
		}
		if code, _ := b.environments(s); code != http.StatusUnauthorized {
			t.Fatalf("environments without a session: %d", code)
		}
	})

	// Each case breaks one property of the id_token (or the flow) and
	// must be refused without a session.
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	for name, c := range map[string]struct {
		tamper func(map[string]any)
		signer *rsa.PrivateKey
		want   string
	}{
		"signature": {signer: other, want: "signature"},
		"issuer":    {tamper: func(m map[string]any) { m["iss"] = "https://evil.example" }, want: "issued by a different provider"},
		"audience":  {tamper: func(m map[string]any) { m["aud"] = "someone-else" }, want: "audience"},
		"nonce":     {tamper: func(m map[string]any) { m["nonce"] = "replayed" }, want: "nonce"},
		"expired":   {tamper: func(m map[string]any) { m["exp"] = time.Now().Add(-time.Hour).Unix() }, want: "expired"},
	} {
		t.Run("refuses bad "+name, func(t *testing.T) {
			p.set(func(p *oidcProvider) {
				p.user = oidcUser{Sub: "u-4", Name: "mallory", Groups: []string{"devs"}}
				p.tamper, p.signer = c.tamper, c.signer
			})
			t.Cleanup(func() { p.set(func(p *oidcProvider) { p.tamper, p.signer = nil, nil }) })
			b := newBrowser(t, p)
			resp, body := b.login(s)
			if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(strings.ToLower(body), c.want) {
				t.Fatalf("callback: %d %s, want 401 naming %q", resp.StatusCode, body, c.want)
			}
			if code, _ := b.environments(s); code != http.StatusUnauthorized {
				t.Fatalf("environments: %d, want 401", code)
			}
		})
	}

	t.Run("refuses a payload edited after signing", func(t *testing.T) {
		p.set(func(p *oidcProvider) {
			p.user = oidcUser{Sub: "u-5", Name: "mallory", Groups: []string{"devs"}}
			p.post = func(idt string) string { // claim the admin group, keep the signature
				parts := strings.Split(idt, ".")
				payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
				forged := strings.Replace(string(payload), `"groups":["devs"]`, `"groups":["ops"]`, 1)
				if forged == string(payload) {
					t.Error("forgery did not change the payload; the test proves nothing")
				}
				return parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(forged)) + "." + parts[2]
			}
		})
		t.Cleanup(func() { p.set(func(p *oidcProvider) { p.post = nil }) })
		b := newBrowser(t, p)
		resp, body := b.login(s)
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "signature") {
			t.Fatalf("callback: %d %s", resp.StatusCode, body)
		}
	})

	t.Run("refuses a callback without the browser's state", func(t *testing.T) {
		p.set(func(p *oidcProvider) { p.user = oidcUser{Sub: "u-1", Name: "dana", Groups: []string{"devs"}} })
		victim, attacker := newBrowser(t, p), newBrowser(t, p)
		resp, _ := attacker.get(s.url + auth.OIDCLoginPath)
		resp, _ = attacker.get(resp.Header.Get("Location"))
		// The attacker's callback URL, opened in the victim's browser (login CSRF).
		resp, body := victim.get(resp.Header.Get("Location"))
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "state") {
			t.Fatalf("callback: %d %s", resp.StatusCode, body)
		}
	})

	es, err := s.db.AuditLog(context.Background(), store.AuditQuery{Action: "login.sso"})
	if err != nil {
		t.Fatal(err)
	}
	results := map[string]int{}
	for _, e := range es {
		results[e.Result]++
	}
	if results["ok"] < 3 || results["failed"] < 6 {
		t.Fatalf("sso logins audited: %v", results)
	}
}
