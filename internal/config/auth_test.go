package config

import (
	"strings"
	"testing"
	"time"
)

func TestAuthSection(t *testing.T) {
	t.Setenv("DM_ADMIN_PW", "s3cret-value")
	cfg, err := Parse("dm.yaml", []byte(`
auth:
  admin_user: root
  admin_password: {env: DM_ADMIN_PW}
  session_ttl: 2h
  same_site: strict
  trusted_proxies: [10.0.0.0/8, 127.0.0.1]
`))
	if err != nil {
		t.Fatal(err)
	}
	a := cfg.Auth.WithDefaults()
	if a.AdminUser != "root" || time.Duration(a.SessionTTL) != 2*time.Hour || a.SameSite != "strict" ||
		a.CookieSecure != "auto" || a.LoginAttemptsPerMinute != 5 || len(a.TrustedProxies) != 2 {
		t.Fatalf("auth %+v", a)
	}
	if v, _ := a.AdminPassword.Value(); v != "s3cret-value" {
		t.Fatal("admin password not read from the environment")
	}
	zero := Default().Auth.WithDefaults()
	if zero.AdminUser != "admin" || time.Duration(zero.SessionTTL) != 12*time.Hour || zero.SameSite != "lax" {
		t.Fatalf("defaults %+v", zero)
	}
}

func TestAuthSectionErrorsNameLineAndKey(t *testing.T) {
	for _, c := range []struct{ yaml, want string }{
		{"auth:\n  same_site: none\n", "dm.yaml:2: auth.same_site: want lax or strict"},
		{"auth:\n  session_ttl: 5s\n", "dm.yaml:2: auth.session_ttl: want at least 1m"},
		{"listen: 127.0.0.1:1\nauth:\n  cookie_secure: yes\n", "dm.yaml:3: auth.cookie_secure"},
		{"auth:\n  admin_user: x\n  colour: red\n", "dm.yaml:3: auth.colour: unknown key"},
		{"auth:\n  oidc:\n    issuer: http://idp\n", "dm.yaml:2: auth.oidc: issuer: want an https:// URL"},
		{"auth:\n  oidc:\n    tenant: x\n", "dm.yaml:3: auth.oidc.tenant: unknown key"},
		{"auth:\n  trusted_proxies: [nope]\n", "dm.yaml:2: auth.trusted_proxies"},
		{"auth:\n  admin_password: {env: DM_SURELY_UNSET_VAR}\n", "DM_SURELY_UNSET_VAR is not set"},
	} {
		_, err := Parse("dm.yaml", []byte(c.yaml))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want it to contain %q", c.yaml, err, c.want)
		}
	}
}
