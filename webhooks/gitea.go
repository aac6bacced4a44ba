package webhooks

import (
	"crypto/sha256"
	"net/http"
)

// giteaVariant tells Forgejo, Gitea and Gogs apart by their own headers, which
// they send besides X-GitHub-Event. Forgejo also sends the Gitea headers and
// Gitea the Gogs ones, hence the order. Without any of them the endpoint name
// decides, except on the github endpoint ("" = GitHub).
func giteaVariant(h http.Header, endpoint string) string {
	switch {
	case h.Get("X-Forgejo-Event") != "":
		return ProviderForgejo
	case h.Get("X-Gitea-Event") != "":
		return ProviderGitea
	case h.Get("X-Gogs-Event") != "":
		return ProviderGogs
	case endpoint == ProviderGitHub:
		return ""
	}
	return endpoint
}

// giteaHeaders are the per-variant header names.
func giteaHeaders(variant string) (event, delivery, signature string) {
	switch variant {
	case ProviderForgejo:
		return "X-Forgejo-Event", "X-Forgejo-Delivery", "X-Forgejo-Signature"
	case ProviderGogs:
		return "X-Gogs-Event", "X-Gogs-Delivery", "X-Gogs-Signature"
	}
	return "X-Gitea-Event", "X-Gitea-Delivery", "X-Gitea-Signature"
}

func (r *Receiver) parseGitea(variant, endpoint string, req Request) (*Delivery, error) {
	evH, delH, sigH := giteaHeaders(variant)
	payload, err := formPayload(variant, req)
	if err != nil {
		return nil, err
	}
	if err := r.verifyGitea(variant, endpoint, sigH, req, payload); err != nil {
		return nil, err
	}
	event := firstNonEmpty(req.Header.Get(evH), req.Header.Get("X-GitHub-Event"))
	if event == "" {
		return nil, missing(variant, "header "+evH)
	}
	d := &Delivery{Provider: variant, EventName: event,
		ID: firstNonEmpty(req.Header.Get(delH), req.Header.Get("X-Gitea-Delivery"), req.Header.Get("X-GitHub-Delivery"))}
	if event != "push" {
		return nil, &IgnoredError{Provider: variant, Event: event, Reason: "only push is handled"}
	}
	p, err := decodeGHPush(variant, event, payload, func(u ghUser) string {
		return firstNonEmpty(u.Login, u.Username, u.Name)
	})
	if err != nil {
		return nil, err
	}
	d.Event = pushEvent([]Push{*p})
	return d, nil
}

// verifyGitea checks the bare-hex HMAC-SHA256 over the JSON payload. For form
// hooks that is the decoded payload field, not the raw body (unlike GitHub).
// Forgejo falls back to X-Gitea-Signature, which it sends too.
func (r *Receiver) verifyGitea(variant, endpoint, sigH string, req Request, payload []byte) error {
	secret, ok := r.secret(variant, endpoint, r.peekRepo(payload))
	if !ok {
		return r.noSecret(variant, sigH)
	}
	if _, sent := headerValue(req.Header, sigH); !sent && variant == ProviderForgejo {
		if _, sentGitea := headerValue(req.Header, "X-Gitea-Signature"); sentGitea {
			sigH = "X-Gitea-Signature"
		}
	}
	return checkHMAC(variant, req.Header, sigH, "", sha256.New, secret, payload)
}
