// Package seal encrypts small secrets at rest (hosts' Docker TLS
// material, registration tokens) with AES-256-GCM. Each sealed value is
// bound to what it belongs to through the additional data, so a value
// copied onto another row fails to open instead of being used there.
package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
)

// version prefixes every sealed value so the format can change later.
const version byte = 1

// Errors; compare with errors.Is.
var (
	// ErrOpen means a sealed value was tampered with, belongs to another
	// row, or was sealed with another key.
	ErrOpen = errors.New("seal: cannot open: wrong key, wrong owner or tampered")
	// ErrBadTLS means TLS material is incomplete or does not parse.
	ErrBadTLS = errors.New("invalid TLS material")
)

// Sealer seals and opens values with one key. Safe for concurrent use.
type Sealer struct{ aead cipher.AEAD }

// New makes a sealer from a 32-byte key.
func New(key []byte) (*Sealer, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("seal: key is %d bytes, want 32", len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	return &Sealer{aead: aead}, nil
}

// FromSecret derives the key from a configured secret of any length
// (at least 32 characters) with HKDF-SHA256, so one configured value can
// serve several purposes without the keys being related.
func FromSecret(secret []byte, purpose string) (*Sealer, error) {
	if len(secret) < 32 {
		return nil, fmt.Errorf("seal: secret is %d bytes, want at least 32", len(secret))
	}
	key, err := hkdf.Key(sha256.New, secret, nil, "dockmaster seal v1: "+purpose, 32)
	if err != nil {
		return nil, fmt.Errorf("seal: derive key: %w", err)
	}
	return New(key)
}

// Seal encrypts plaintext bound to owner (e.g. "host:prod/tcp://h1:2376").
func (s *Sealer) Seal(plaintext []byte, owner string) []byte {
	nonce := make([]byte, s.aead.NonceSize())
	_, _ = rand.Read(nonce) // crypto/rand.Read never fails (Go 1.24+)
	out := append([]byte{version}, nonce...)
	return s.aead.Seal(out, nonce, plaintext, []byte(owner))
}

// Open decrypts a value sealed for owner; ErrOpen when it cannot.
func (s *Sealer) Open(sealed []byte, owner string) ([]byte, error) {
	n := s.aead.NonceSize()
	if len(sealed) < 1+n+s.aead.Overhead() || sealed[0] != version {
		return nil, ErrOpen
	}
	pt, err := s.aead.Open(nil, sealed[1:1+n], sealed[1+n:], []byte(owner))
	if err != nil {
		return nil, ErrOpen
	}
	return pt, nil
}

// TLSMaterial is a Docker host's client TLS material, PEM encoded: the CA
// that signed the daemon's certificate, and the client certificate and key
// (as in docker --tlsverify --tlscacert --tlscert --tlskey).
type TLSMaterial struct {
	CA   string `json:"ca"`
	Cert string `json:"cert"`
	Key  string `json:"key"`
}

// IsZero reports whether no material is set (plain unix or tcp).
func (m TLSMaterial) IsZero() bool { return m.CA == "" && m.Cert == "" && m.Key == "" }

// Config checks the material and builds a client configuration that
// verifies the daemon against CA. serverName may be "" (taken from the
// dialed address).
func (m TLSMaterial) Config(serverName string) (*tls.Config, error) {
	if m.CA == "" || m.Cert == "" || m.Key == "" {
		var missing []string
		for name, v := range map[string]string{"ca": m.CA, "cert": m.Cert, "key": m.Key} {
			if v == "" {
				missing = append(missing, name)
			}
		}
		slices.Sort(missing)
		return nil, fmt.Errorf("%w: tls: want ca, cert and key together; missing %v", ErrBadTLS, missing)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(m.CA)) {
		return nil, fmt.Errorf("%w: tls.ca: no PEM certificate found", ErrBadTLS)
	}
	pair, err := tls.X509KeyPair([]byte(m.Cert), []byte(m.Key))
	if err != nil {
		return nil, fmt.Errorf("%w: tls.cert/tls.key: %v", ErrBadTLS, err)
	}
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}, ServerName: serverName,
		MinVersion: tls.VersionTLS12}, nil
}

// Validate checks that the material is empty or complete and parses.
func (m TLSMaterial) Validate() error {
	if m.IsZero() {
		return nil
	}
	if _, err := m.Config(""); err != nil {
		return err
	}
	if b, _ := pem.Decode([]byte(m.Key)); b == nil {
		return fmt.Errorf("%w: tls.key: not PEM", ErrBadTLS)
	}
	return nil
}

// SealTLS seals m for owner; nil for empty material.
func (s *Sealer) SealTLS(m TLSMaterial, owner string) ([]byte, error) {
	if m.IsZero() {
		return nil, nil
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	return s.Seal(b, owner), nil
}

// OpenTLS opens material sealed by SealTLS; empty material for nil.
func (s *Sealer) OpenTLS(sealed []byte, owner string) (TLSMaterial, error) {
	var m TLSMaterial
	if len(sealed) == 0 {
		return m, nil
	}
	b, err := s.Open(sealed, owner)
	if err != nil {
		return m, err
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("seal: TLS material: %w", err)
	}
	return m, nil
}

// HostOwner is the owner string host TLS material is sealed for: the
// environment and the endpoint, which together identify a host.
func HostOwner(env, endpoint string) string { return "host-tls:" + env + "\x00" + endpoint }
