package seal_test

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/dockmaster/dockmaster/internal/seal"
	"github.com/dockmaster/dockmaster/internal/seal/sealtest"
)

func sealer(t *testing.T, secret string) *seal.Sealer {
	t.Helper()
	s, err := seal.FromSecret([]byte(secret), "host-tls")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSealOpen(t *testing.T) {
	s := sealer(t, strings.Repeat("k", 32))
	pt := []byte("-----BEGIN EC PRIVATE KEY----- secret")
	a, b := s.Seal(pt, "owner-1"), s.Seal(pt, "owner-1")
	if bytes.Contains(a, pt) || bytes.Equal(a, b) {
		t.Fatal("sealed value shows the plaintext or repeats (nonce reuse)")
	}
	got, err := s.Open(a, "owner-1")
	if err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("Open = %q, %v", got, err)
	}
	flipped := bytes.Clone(a)
	flipped[len(flipped)-1] ^= 1
	other := sealer(t, strings.Repeat("x", 32))
	for name, try := range map[string]func() ([]byte, error){
		"other owner": func() ([]byte, error) { return s.Open(a, "owner-2") },
		"tampered":    func() ([]byte, error) { return s.Open(flipped, "owner-1") },
		"other key":   func() ([]byte, error) { return other.Open(a, "owner-1") },
		"truncated":   func() ([]byte, error) { return s.Open(a[:10], "owner-1") },
	} {
		if _, err := try(); !errors.Is(err, seal.ErrOpen) {
			t.Errorf("%s: err %v, want ErrOpen", name, err)
		}
	}
	if _, err := seal.FromSecret([]byte("short"), "x"); err == nil {
		t.Error("FromSecret accepted a 5-byte secret")
	}
	// Purposes derive unrelated keys from one secret.
	p2, _ := seal.FromSecret([]byte(strings.Repeat("k", 32)), "tokens")
	if _, err := p2.Open(a, "owner-1"); !errors.Is(err, seal.ErrOpen) {
		t.Errorf("a value sealed for one purpose opened under another: %v", err)
	}
}

// TestTLSMaterialConnects seals generated material, opens it and uses the
// built configuration against a server that requires the client
// certificate, so a wrong CA or a dropped client certificate fails.
func TestTLSMaterialConnects(t *testing.T) {
	s := sealer(t, strings.Repeat("k", 32))
	pki := sealtest.New(t)
	owner := seal.HostOwner("prod", "tcp://127.0.0.1:2376")
	sealed, err := s.SealTLS(pki.Client, owner)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, []byte("PRIVATE KEY")) {
		t.Fatal("sealed material shows the key")
	}
	m, err := s.OpenTLS(sealed, owner)
	if err != nil || m != pki.Client {
		t.Fatalf("OpenTLS: %v", err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	srv.TLS = pki.Server
	srv.StartTLS()
	defer srv.Close()
	get := func(cfg *tls.Config) error {
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
		resp, err := c.Get(srv.URL)
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	cfg, err := m.Config("")
	if err != nil {
		t.Fatal(err)
	}
	if err := get(cfg); err != nil {
		t.Fatalf("with the opened material: %v", err)
	}
	noCert := cfg.Clone()
	noCert.Certificates = nil
	if err := get(noCert); err == nil {
		t.Error("server accepted a client without certificate; the test proves nothing")
	}
	otherCA, _ := sealtest.New(t).Client.Config("")
	otherCA.Certificates = cfg.Certificates
	if err := get(otherCA); err == nil {
		t.Error("client trusted a server its CA did not sign")
	}
}

func TestTLSMaterialValidate(t *testing.T) {
	good := sealtest.New(t).Client
	cases := map[string]struct {
		m    seal.TLSMaterial
		want string
	}{
		"empty":        {seal.TLSMaterial{}, ""},
		"complete":     {good, ""},
		"missing key":  {seal.TLSMaterial{CA: good.CA, Cert: good.Cert}, "missing [key]"},
		"ca not pem":   {seal.TLSMaterial{CA: "nope", Cert: good.Cert, Key: good.Key}, "tls.ca"},
		"key mismatch": {seal.TLSMaterial{CA: good.CA, Cert: good.Cert, Key: sealtest.New(t).Client.Key}, "tls.cert/tls.key"},
	}
	for name, c := range cases {
		err := c.m.Validate()
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", name, err)
		case c.want != "" && (!errors.Is(err, seal.ErrBadTLS) || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: err %v, want ErrBadTLS naming %q", name, err, c.want)
		}
	}
}
