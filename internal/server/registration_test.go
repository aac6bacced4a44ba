package server

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/dockmaster/dockmaster/internal/auth"
	"github.com/dockmaster/dockmaster/internal/seal"
	"github.com/dockmaster/dockmaster/internal/seal/sealtest"
	"github.com/dockmaster/dockmaster/internal/store"
)

type tokenList struct {
	Tokens []tokenJSON `json:"tokens"`
}

func registerBody(t *testing.T, r RegisterRequest) reqOpt {
	t.Helper()
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	return withBody("application/json", string(b))
}

func TestRegistrationTokenAndRegister(t *testing.T) {
	s := newAccessServer(t, "")
	owner := s.user("olga", false, map[string]auth.Role{"prod": auth.RoleOwner})
	member := s.user("mia", false, map[string]auth.Role{"prod": auth.RoleMember})
	if w := s.do(http.MethodGet, "/api/v1/environments/prod/registrationtokens", member); w.Code != http.StatusForbidden {
		t.Fatalf("member asking for a token: %d, want 403", w.Code)
	}
	var list tokenList
	s.mustJSON(s.do(http.MethodGet, "/api/v1/environments/prod/registrationtokens", owner), http.StatusOK, &list)
	if len(list.Tokens) != 1 {
		t.Fatalf("tokens %+v", list)
	}
	tok := list.Tokens[0]
	if !strings.HasPrefix(tok.Command, "dockmaster host register --url http://example.com --token "+tok.Token+" --endpoint tcp://") ||
		tok.RegistrationURL != "http://example.com/api/v1/hosts/register" || tok.CreatedBy != "olga" {
		t.Fatalf("token %+v", tok)
	}
	// Asking again shows the same token, not a new one.
	var again tokenList
	s.mustJSON(s.do(http.MethodGet, "/api/v1/environments/prod/registrationtokens", owner), http.StatusOK, &again)
	if len(again.Tokens) != 1 || again.Tokens[0].Token != tok.Token {
		t.Fatalf("second GET: %+v", again)
	}

	pki := sealtest.New(t)
	req := RegisterRequest{Token: tok.Token, Name: "h1", Endpoint: "tcp://10.1.2.3:2376",
		Labels: map[string]string{"zone": "a"}, TLS: pki.Client}
	var got RegisterResponse
	s.mustJSON(s.do(http.MethodPost, "/api/v1/hosts/register", nil, registerBody(t, req)), http.StatusOK, &got)
	if !got.Changed || got.Environment != "prod" || got.Address != "10.1.2.3" || !got.TLS {
		t.Fatalf("first registration %+v", got)
	}
	s.mustJSON(s.do(http.MethodPost, "/api/v1/hosts/register", nil, registerBody(t, req)), http.StatusOK, &got)
	if got.Changed {
		t.Fatal("registering the same host twice changed it")
	}
	req.TLS = sealtest.New(t).Client
	s.mustJSON(s.do(http.MethodPost, "/api/v1/hosts/register", nil, registerBody(t, req)), http.StatusOK, &got)
	if !got.Changed {
		t.Fatal("new certificates reported no change")
	}

	// At rest the material is sealed, and opens only for its host.
	sealed, err := s.db.HostTLS(context.Background(), "prod", req.Endpoint)
	if err != nil || len(sealed) == 0 || strings.Contains(string(sealed), "PRIVATE KEY") {
		t.Fatalf("stored TLS %q %v", sealed, err)
	}
	if strings.Contains(dumpDB(t, s.db), tok.Token) {
		t.Fatal("the registration token is stored in clear")
	}
	sealer, _ := seal.FromSecret(s.auth.SigningKey(), "test")
	if m, err := sealer.OpenTLS(sealed, seal.HostOwner("prod", req.Endpoint)); err != nil || m != req.TLS {
		t.Fatalf("open stored TLS: %v", err)
	}

	// Bad input names the field.
	for field, bad := range map[string]RegisterRequest{
		"name":     {Token: tok.Token, Name: "", Endpoint: "tcp://h:2376"},
		"endpoint": {Token: tok.Token, Name: "h2", Endpoint: "http://h:2376"},
		"labels":   {Token: tok.Token, Name: "h2", Endpoint: "tcp://h:2376", Labels: map[string]string{"a=b": "c"}},
		"tls.ca":   {Token: tok.Token, Name: "h2", Endpoint: "tcp://h:2376", TLS: seal.TLSMaterial{CA: "x", Cert: pki.Client.Cert, Key: pki.Client.Key}},
	} {
		w := s.do(http.MethodPost, "/api/v1/hosts/register", nil, registerBody(t, bad))
		if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), field) {
			t.Errorf("bad %s: %d %s", field, w.Code, w.Body)
		}
	}
	w := s.do(http.MethodPost, "/api/v1/hosts/register", nil, withBody("application/json", `{"token":"`+tok.Token+`","nmae":"x"}`))
	if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "nmae") {
		t.Errorf("unknown field: %d %s", w.Code, w.Body)
	}

	// Revoked: the token no longer registers anything.
	s.mustJSON(s.do(http.MethodDelete, "/api/v1/environments/prod/registrationtokens/"+itoa(tok.ID), owner), http.StatusNoContent, nil)
	req.Name, req.Endpoint = "h3", "tcp://10.1.2.4:2376"
	if w := s.do(http.MethodPost, "/api/v1/hosts/register", nil, registerBody(t, req)); w.Code != http.StatusUnauthorized {
		t.Fatalf("revoked token: %d %s", w.Code, w.Body)
	}
	if w := s.do(http.MethodDelete, "/api/v1/environments/staging/registrationtokens/"+itoa(tok.ID), s.user("sam", false, map[string]auth.Role{"staging": auth.RoleOwner})); w.Code != http.StatusNotFound {
		t.Fatalf("revoke a prod token through staging: %d", w.Code)
	}

	es, err := s.db.AuditLog(context.Background(), store.AuditQuery{Environment: "prod"})
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, e := range es {
		actions = append(actions, e.Action+":"+e.Result)
	}
	want := "registrationtoken.revoke:ok,host.register:failed,host.register:failed,host.register:failed,host.register:failed,host.register:ok,host.register:ok,registrationtoken.create:ok"
	if got := strings.Join(actions, ","); got != want {
		t.Fatalf("audit\n got %s\nwant %s", got, want)
	}
}

func TestTokenExpiry(t *testing.T) {
	s := newAccessServer(t, "")
	admin := s.user("ada", true, nil)
	var tok tokenJSON
	s.mustJSON(s.do(http.MethodPost, "/api/v1/environments/staging/registrationtokens", admin, withBody("application/json", `{"ttl":"1m"}`)), http.StatusCreated, &tok)
	if w := s.do(http.MethodPost, "/api/v1/environments/staging/registrationtokens", admin, withBody("application/json", `{"ttl":"1s"}`)); w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "ttl") {
		t.Fatalf("ttl 1s: %d %s", w.Code, w.Body)
	}
	// Move the database's clock: make the token expired.
	if _, err := s.db.Exec(`UPDATE registration_tokens SET expires_at = '2000-01-01T00:00:00.000Z'`); err != nil {
		t.Fatal(err)
	}
	req := RegisterRequest{Token: tok.Token, Name: "h1", Endpoint: "unix:///var/run/docker.sock"}
	if w := s.do(http.MethodPost, "/api/v1/hosts/register", nil, registerBody(t, req)); w.Code != http.StatusUnauthorized {
		t.Fatalf("expired token: %d %s", w.Code, w.Body)
	}
}

func TestEnvironmentCreateAndFilteredList(t *testing.T) {
	s := newAccessServer(t, "")
	admin := s.user("ada", true, nil)
	stager := s.user("sam", false, map[string]auth.Role{"staging": auth.RoleRestricted})
	s.mustJSON(s.do(http.MethodPost, "/api/v1/environments", admin, withBody("application/json", `{"name":"qa","description":"testers"}`)), http.StatusCreated, nil)
	if w := s.do(http.MethodPost, "/api/v1/environments", admin, withBody("application/json", `{"name":"qa"}`)); w.Code != http.StatusConflict {
		t.Fatalf("twice: %d", w.Code)
	}
	if w := s.do(http.MethodPost, "/api/v1/environments", admin, withBody("application/json", `{"name":"no spaces"}`)); w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "name") {
		t.Fatalf("bad name: %d %s", w.Code, w.Body)
	}
	names := func(c *creds) string {
		var out struct{ Environments []environmentJSON }
		s.mustJSON(s.do(http.MethodGet, "/api/v1/environments", c), http.StatusOK, &out)
		var n []string
		for _, e := range out.Environments {
			n = append(n, e.Name)
		}
		return strings.Join(n, ",")
	}
	if got := names(admin); got != "prod,qa,staging" {
		t.Fatalf("admin sees %s", got)
	}
	if got := names(stager); got != "staging" {
		t.Fatalf("staging member sees %s", got)
	}
	es, _ := s.db.AuditLog(context.Background(), store.AuditQuery{Action: "environment.create"})
	if len(es) != 2 || es[1].Actor != "ada" || es[1].Result != "ok" || es[0].Result != "failed" {
		t.Fatalf("audit %+v", es)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
