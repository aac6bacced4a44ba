package webhooks

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"hash"
	"net/http"
	"strings"
)

// TokenHeader is the header dockmaster's own senders (Jenkinsfile curl steps,
// proxies) put a shared token in. "Authorization: Bearer <token>" is accepted too.
const TokenHeader = "X-Dockmaster-Token"

// secret finds the secret for the detected provider, then for the endpoint
// name, each first scoped to repo, then provider-wide.
func (r *Receiver) secret(provider, endpoint, repo string) (string, bool) {
	if r.opts.Secrets == nil {
		return "", false
	}
	names := []string{provider}
	if endpoint != "" && endpoint != provider {
		names = append(names, endpoint)
	}
	for _, n := range names {
		if repo != "" {
			if s, ok := r.opts.Secrets(n, repo); ok {
				return s, true
			}
		}
		if s, ok := r.opts.Secrets(n, ""); ok {
			return s, true
		}
	}
	return "", false
}

// noSecret is the outcome when nothing is configured: explicit refusal unless
// AllowUnsigned.
func (r *Receiver) noSecret(provider, header string) error {
	if r.opts.AllowUnsigned {
		return nil
	}
	return &UnauthorizedError{Provider: provider, Header: header,
		Reason: "no secret configured for " + provider + " (set one, or allow unsigned hooks)"}
}

// headerValue returns the header's value and whether it was sent at all, so
// that an empty value (Gitea's "unsigned") is told apart from a missing one.
func headerValue(h http.Header, name string) (string, bool) {
	v, ok := h[http.CanonicalHeaderKey(name)]
	if !ok || len(v) == 0 {
		return "", false
	}
	return strings.TrimSpace(v[0]), true
}

// checkHMAC verifies header = prefix + hex(HMAC(secret, msg)) in constant time.
func checkHMAC(provider string, h http.Header, header, prefix string, newHash func() hash.Hash, secret string, msg []byte) error {
	v, sent := headerValue(h, header)
	switch {
	case !sent:
		return &UnauthorizedError{Provider: provider, Header: header, Reason: "missing"}
	case v == "" || v == prefix:
		return &UnauthorizedError{Provider: provider, Header: header, Reason: "empty (the sender has no secret configured)"}
	}
	if prefix != "" {
		algo, _, _ := strings.Cut(v, "=")
		if !strings.HasPrefix(v, prefix) {
			return &UnauthorizedError{Provider: provider, Header: header,
				Reason: "unsupported algorithm " + quoteShort(algo) + ", want " + strings.TrimSuffix(prefix, "=")}
		}
		v = v[len(prefix):]
	}
	got, err := hex.DecodeString(v)
	if err != nil {
		return &UnauthorizedError{Provider: provider, Header: header, Reason: "signature is not hex"}
	}
	mac := hmac.New(newHash, []byte(secret))
	mac.Write(msg)
	if !hmac.Equal(got, mac.Sum(nil)) {
		return &UnauthorizedError{Provider: provider, Header: header, Reason: "signature mismatch"}
	}
	return nil
}

func quoteShort(s string) string {
	if len(s) > 16 {
		s = s[:16] + "..."
	}
	return `"` + s + `"`
}

// tokenEqual compares in constant time; hashing first hides the length.
func tokenEqual(got, want string) bool {
	a := sha256.Sum256([]byte(got))
	b := sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}

// tokenSource is one place a token may arrive.
type tokenSource int

const (
	fromTokenHeader tokenSource = 1 << iota // X-Dockmaster-Token
	fromBearer                              // Authorization: Bearer
	fromBasic                               // Authorization: Basic, password part
	fromQuery                               // ?token=
)

// presentedToken finds the token in the allowed places, in a fixed order.
func presentedToken(req Request, from tokenSource) (string, bool) {
	if from&fromTokenHeader != 0 {
		if v, ok := headerValue(req.Header, TokenHeader); ok {
			return v, true
		}
	}
	auth, hasAuth := headerValue(req.Header, "Authorization")
	if hasAuth && from&fromBearer != 0 {
		if scheme, tok, ok := strings.Cut(auth, " "); ok && strings.EqualFold(scheme, "Bearer") {
			return strings.TrimSpace(tok), true
		}
	}
	if hasAuth && from&fromBasic != 0 {
		r := http.Request{Header: http.Header{"Authorization": {auth}}}
		if _, pass, ok := r.BasicAuth(); ok {
			return pass, true
		}
	}
	if from&fromQuery != 0 && req.Query != nil {
		if v, ok := req.Query["token"]; ok && len(v) > 0 {
			return v[0], true
		}
	}
	return "", false
}

// checkToken verifies a shared token. expected names the places for the error.
func checkToken(provider string, req Request, from tokenSource, expected, secret string) error {
	tok, ok := presentedToken(req, from)
	switch {
	case !ok:
		return &UnauthorizedError{Provider: provider, Header: expected, Reason: "missing"}
	case tok == "":
		return &UnauthorizedError{Provider: provider, Header: expected, Reason: "empty"}
	case !tokenEqual(tok, secret):
		return &UnauthorizedError{Provider: provider, Header: expected, Reason: "token mismatch"}
	}
	return nil
}

// redacted replaces secret-bearing header values in RedactHeaders.
const redacted = "[redacted]"

// RedactHeaders returns a deep copy of h for storage, with every header that can
// carry a credential replaced by "[redacted]": Authorization, Proxy-Authorization,
// Cookie, X-Gitlab-Token, X-Dockmaster-Token, and any header whose name contains
// "token", "secret", "password" or "api-key". Signature headers (X-Hub-Signature*,
// X-*-Signature, Webhook-Signature) are kept: an HMAC of a body does not reveal
// the key, and they help explain a rejected delivery.
func RedactHeaders(h http.Header) http.Header {
	out := make(http.Header, len(h))
	for k, vs := range h {
		if sensitiveHeader(k) {
			red := make([]string, len(vs))
			for i := range red {
				red[i] = redacted
			}
			out[k] = red
			continue
		}
		out[k] = append([]string(nil), vs...)
	}
	return out
}

func sensitiveHeader(name string) bool {
	n := strings.ToLower(name)
	switch n {
	case "authorization", "proxy-authorization", "cookie", "set-cookie":
		return true
	}
	for _, s := range []string{"token", "secret", "password", "api-key", "apikey"} {
		if strings.Contains(n, s) {
			return true
		}
	}
	return false
}
