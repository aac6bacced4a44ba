package pipeline

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Link errors; the page shows them, nothing else happens.
var (
	ErrLinkInvalid = errors.New("link is invalid or was tampered with")
	ErrLinkExpired = errors.New("link has expired")
	ErrLinkUsed    = errors.New("link was already used")
)

// Link actions.
const (
	ActionFinish   = "finish"
	ActionRollback = "rollback"
)

// Link is what an approval link carries, signed.
type Link struct {
	Request int64  // the hold (approval request) id
	Action  string // finish or rollback
	Env     string
	Expires time.Time
	Nonce   string // makes each link single-use on its own
}

// Signer makes and checks approval link tokens with HMAC-SHA256.
type Signer struct {
	key []byte
	now Clock
}

// NewSigner returns a Signer; key must be at least 16 bytes.
func NewSigner(key []byte, now Clock) (*Signer, error) {
	if len(key) < 16 {
		return nil, fmt.Errorf("links: signing key is %d bytes, want at least 16", len(key))
	}
	if now == nil {
		now = time.Now
	}
	return &Signer{key: append([]byte(nil), key...), now: now}, nil
}

// NewNonce is a random link nonce.
func NewNonce() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (s *Signer) mac(payload string) []byte {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte("dockmaster-link-v1\n"))
	m.Write([]byte(payload))
	return m.Sum(nil)
}

// Sign returns the URL-safe token for l.
func (s *Signer) Sign(l Link) string {
	payload := strings.Join([]string{strconv.FormatInt(l.Request, 10), l.Action, l.Env,
		strconv.FormatInt(l.Expires.Unix(), 10), l.Nonce}, "|")
	enc := base64.RawURLEncoding
	return enc.EncodeToString([]byte(payload)) + "." + enc.EncodeToString(s.mac(payload))
}

// Parse checks token's signature and decodes it, without looking at the
// expiry (a page can still say what an expired link was for).
func (s *Signer) Parse(token string) (Link, error) {
	enc := base64.RawURLEncoding
	p64, m64, ok := strings.Cut(token, ".")
	if !ok {
		return Link{}, ErrLinkInvalid
	}
	payload, err1 := enc.DecodeString(p64)
	mac, err2 := enc.DecodeString(m64)
	if err1 != nil || err2 != nil || !hmac.Equal(mac, s.mac(string(payload))) {
		return Link{}, ErrLinkInvalid
	}
	f := strings.Split(string(payload), "|")
	if len(f) != 5 {
		return Link{}, ErrLinkInvalid
	}
	id, err1 := strconv.ParseInt(f[0], 10, 64)
	exp, err2 := strconv.ParseInt(f[3], 10, 64)
	if err1 != nil || err2 != nil || (f[1] != ActionFinish && f[1] != ActionRollback) {
		return Link{}, ErrLinkInvalid
	}
	return Link{Request: id, Action: f[1], Env: f[2], Expires: time.Unix(exp, 0), Nonce: f[4]}, nil
}

// Verify is Parse plus the expiry check.
func (s *Signer) Verify(token string) (Link, error) {
	l, err := s.Parse(token)
	if err != nil {
		return l, err
	}
	if !s.now().Before(l.Expires) {
		return l, fmt.Errorf("%w (at %s)", ErrLinkExpired, l.Expires.UTC().Format(time.RFC3339))
	}
	return l, nil
}
