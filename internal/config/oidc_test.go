package config

import (
	"strings"
	"testing"
)

func TestOIDCSection(t *testing.T) {
	cfg, err := Parse("dm.yaml", []byte(`
auth:
  hosts_tls_key: 0123456789abcdef0123456789abcdef
  oidc:
    issuer: https://idp.example.com
    client_id: dockmaster
    client_secret: s3cret
    redirect_url: https://dm.example.com/login/oidc/callback
    groups_claim: roles
    admin_group: ops
    groups:
      - {group: devs, environment: staging, role: member}
      - {group: devs, environment: prod, role: read-only}
`))
	if err != nil {
		t.Fatal(err)
	}
	o := cfg.Auth.OIDC
	if !o.Enabled() || o.GroupsClaim != "roles" || len(o.Groups) != 2 || o.Groups[1] != (OIDCGroup{"devs", "prod", "read-only"}) {
		t.Fatalf("oidc %+v", o)
	}
	if v, _ := cfg.Auth.HostsTLSKey.Value(); len(v) != 32 {
		t.Fatal("hosts_tls_key not read")
	}
	for name, c := range map[string]struct{ yaml, want string }{
		"bad role": {`
auth:
  oidc:
    issuer: https://idp
    client_id: dm
    groups:
      - group: devs
        environment: prod
        role: boss
`, "dm.yaml:9: auth.oidc.role: groups[0]: role \"boss\""},
		"unknown group key": {`
auth:
  oidc:
    issuer: https://idp
    client_id: dm
    groups:
      - {group: devs, env: prod, role: member}
`, "dm.yaml:7: auth.oidc.groups.env: unknown key"},
		"no client id": {`
auth:
  oidc:
    issuer: https://idp
`, "dm.yaml:4: auth.oidc.client_id: required"},
		"no issuer": {`
auth:
  oidc:
    client_id: dm
`, "auth.oidc.issuer: required"},
	} {
		_, err := Parse("dm.yaml", []byte(c.yaml))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", name, err, c.want)
		}
	}
}
