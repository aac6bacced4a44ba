package pipeline

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestLinks(t *testing.T) {
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	s, err := NewSigner([]byte("0123456789abcdef0123"), func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	l := Link{Request: 42, Action: ActionFinish, Env: "prod", Expires: now.Add(24 * time.Hour), Nonce: NewNonce()}
	tok := s.Sign(l)
	got, err := s.Verify(tok)
	if err != nil || got.Request != 42 || got.Action != ActionFinish || got.Env != "prod" || got.Nonce != l.Nonce {
		t.Fatalf("Verify = %+v, %v", got, err)
	}
	// Flip one character of the payload: the signature no longer matches.
	tampered := []byte(tok)
	tampered[2] ^= 1
	if _, err := s.Verify(string(tampered)); !errors.Is(err, ErrLinkInvalid) {
		t.Errorf("tampered: %v", err)
	}
	// A token for another request signed with another key.
	other, _ := NewSigner([]byte("another key of 16+ bytes"), nil)
	if _, err := s.Verify(other.Sign(l)); !errors.Is(err, ErrLinkInvalid) {
		t.Errorf("foreign key: %v", err)
	}
	payload, mac, _ := strings.Cut(tok, ".")
	if _, err := s.Verify(payload + "." + mac[:len(mac)-2]); !errors.Is(err, ErrLinkInvalid) {
		t.Errorf("short mac: %v", err)
	}
	for _, bad := range []string{"", ".", "abc", "a.b"} {
		if _, err := s.Verify(bad); !errors.Is(err, ErrLinkInvalid) {
			t.Errorf("Verify(%q) = %v", bad, err)
		}
	}
	now = now.Add(24 * time.Hour)
	if _, err := s.Verify(tok); !errors.Is(err, ErrLinkExpired) {
		t.Errorf("expired: %v", err)
	}
	if _, err := s.Parse(tok); err != nil {
		t.Errorf("Parse of an expired link: %v", err)
	}
	if _, err := NewSigner([]byte("short"), nil); err == nil {
		t.Error("short key accepted")
	}
}
