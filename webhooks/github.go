package webhooks

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/json"
	"mime"
	"net/url"
	"strings"
	"time"
)

// ghPush is the push payload of GitHub, which Gitea, Forgejo and Gogs copy.
type ghPush struct {
	Ref     string `json:"ref"`
	Before  string `json:"before"`
	After   string `json:"after"`
	Created bool   `json:"created"`
	Deleted bool   `json:"deleted"`
	Forced  bool   `json:"forced"`
	// Commits are counted, and decoded only when head_commit is missing:
	// a push carries up to 20, and decoding them costs more than the rest.
	Commits      []json.RawMessage `json:"commits"`
	TotalCommits int               `json:"total_commits"` // Gitea/Forgejo only
	HeadCommit   *ghCommit         `json:"head_commit"`
	Repository   struct {
		FullName string `json:"full_name"`
		CloneURL string `json:"clone_url"`
		HTMLURL  string `json:"html_url"`
	} `json:"repository"`
	Pusher ghUser `json:"pusher"`
	Sender ghUser `json:"sender"`
}

type ghCommit struct {
	ID        string   `json:"id"`
	Message   string   `json:"message"`
	Timestamp flexTime `json:"timestamp"`
	Author    ghUser   `json:"author"`
}

type ghUser struct {
	Login    string `json:"login"`
	Username string `json:"username"`
	Name     string `json:"name"`
	Email    string `json:"email"`
}

// repoPeek reads only the repository name, before verification, to pick a
// repository-scoped secret. Failures are ignored: the full decode reports them.
type repoPeek struct {
	Repository struct {
		FullName string `json:"full_name"`
	} `json:"repository"`
}

// peekRepo reads the repository full name from an unverified body, only
// to pick a repository-scoped secret.
func (r *Receiver) peekRepo(payload []byte) string {
	if !r.opts.RepoScoped {
		return ""
	}
	var p repoPeek
	if json.Unmarshal(payload, &p) != nil {
		return ""
	}
	return p.Repository.FullName
}

// formPayload returns the JSON of a hook: the body itself, or the "payload"
// field of an application/x-www-form-urlencoded body.
func formPayload(provider string, req Request) ([]byte, error) {
	ct, _, _ := mime.ParseMediaType(req.Header.Get("Content-Type"))
	isForm := ct == "application/x-www-form-urlencoded" ||
		(ct == "" && bytes.HasPrefix(req.Body, []byte("payload=")))
	if !isForm {
		return req.Body, nil
	}
	vals, err := url.ParseQuery(string(req.Body))
	if err != nil {
		return nil, &MalformedError{Provider: provider, Field: "form body", Offset: -1, Err: err}
	}
	p, ok := vals["payload"]
	if !ok || len(p) == 0 {
		return nil, missing(provider, "form field payload")
	}
	return []byte(p[0]), nil
}

func (r *Receiver) parseGitHub(req Request) (*Delivery, error) {
	const prov = ProviderGitHub
	payload, err := formPayload(prov, req)
	if err != nil {
		return nil, err
	}
	if err := r.verifyGitHub(req, r.peekRepo(payload)); err != nil {
		return nil, err
	}
	event, _ := headerValue(req.Header, "X-GitHub-Event")
	if event == "" {
		return nil, missing(prov, "header X-GitHub-Event")
	}
	d := &Delivery{Provider: prov, EventName: event, ID: req.Header.Get("X-GitHub-Delivery")}
	switch event {
	case "ping":
		var ping struct {
			Zen    string `json:"zen"`
			HookID int64  `json:"hook_id"`
		}
		if err := decodeJSON(prov, payload, &ping, false); err != nil {
			return nil, err
		}
		d.Event = Event{Kind: KindPing}
		return d, nil
	case "push":
		p, err := decodeGHPush(prov, event, payload, func(u ghUser) string { return u.Name })
		if err != nil {
			return nil, err
		}
		d.Event = pushEvent([]Push{*p})
		return d, nil
	}
	return nil, &IgnoredError{Provider: prov, Event: event, Reason: "only push and ping are handled"}
}

// verifyGitHub checks X-Hub-Signature-256 over the raw body (for form hooks
// too: GitHub signs the bytes it sends), or the SHA-1 header when allowed.
func (r *Receiver) verifyGitHub(req Request, repo string) error {
	const prov, h256, h1 = ProviderGitHub, "X-Hub-Signature-256", "X-Hub-Signature"
	secret, ok := r.secret(prov, "", repo)
	if !ok {
		return r.noSecret(prov, h256)
	}
	if _, sent := headerValue(req.Header, h256); !sent {
		if v, sent1 := headerValue(req.Header, h1); sent1 && v != "" && v != "sha1=" {
			if !r.opts.AllowSHA1 {
				return &UnauthorizedError{Provider: prov, Header: h256, Reason: "missing; only the legacy SHA-1 " + h1 + " was sent and SHA-1 is not allowed"}
			}
			return checkHMAC(prov, req.Header, h1, "sha1=", sha1.New, secret, req.Body)
		}
	}
	return checkHMAC(prov, req.Header, h256, "sha256=", sha256.New, secret, req.Body)
}

// decodeGHPush decodes a GitHub-shaped push. pusher picks the pusher's login
// from the user object, whose fields differ between GitHub and its clones.
func decodeGHPush(prov, event string, payload []byte, pusher func(ghUser) string) (*Push, error) {
	var in ghPush
	if err := decodeJSON(prov, payload, &in, false); err != nil {
		return nil, err
	}
	if in.Repository.FullName == "" {
		return nil, missing(prov, "repository.full_name")
	}
	if in.After == "" {
		return nil, missing(prov, "after")
	}
	p := &Push{
		Repo:        Repo{FullName: in.Repository.FullName, CloneURL: in.Repository.CloneURL, WebURL: in.Repository.HTMLURL},
		Before:      in.Before,
		After:       in.After,
		Created:     in.Created,
		Deleted:     in.Deleted,
		Forced:      in.Forced,
		Pusher:      firstNonEmpty(pusher(in.Pusher), in.Sender.Login),
		PusherEmail: in.Pusher.Email,
		CommitCount: len(in.Commits),
	}
	if in.TotalCommits > p.CommitCount {
		p.CommitCount = in.TotalCommits
	}
	head := in.HeadCommit
	for i := len(in.Commits) - 1; head == nil && i >= 0; i-- {
		// A commit of the wrong shape is skipped: the rest of the push
		// stands without its details.
		var c ghCommit
		if sonicStd.Unmarshal(in.Commits[i], &c) == nil && c.ID == in.After {
			head = &c
		}
	}
	if head != nil {
		p.HeadCommit = &Commit{ID: head.ID, Message: head.Message, AuthorName: head.Author.Name,
			AuthorEmail: head.Author.Email, Timestamp: head.Timestamp.Time}
	} else {
		p.HeadCommit = &Commit{ID: in.After}
	}
	if err := p.setRef(prov, event, in.Ref); err != nil {
		return nil, err
	}
	return p, nil
}

// flexTime accepts the timestamp spellings hosts use; anything else (or null)
// leaves it zero, since commit times are informational only.
type flexTime struct{ time.Time }

func (t *flexTime) UnmarshalJSON(b []byte) error {
	var s string
	if json.Unmarshal(b, &s) != nil {
		var n int64
		if json.Unmarshal(b, &n) == nil && n > 0 {
			t.Time = unixMaybeMillis(n)
		}
		return nil
	}
	for _, l := range [...]string{time.RFC3339Nano, "2006-01-02T15:04:05Z0700", "2006-01-02 15:04:05 -0700", "2006-01-02T15:04:05"} {
		if v, err := time.Parse(l, strings.TrimSpace(s)); err == nil {
			t.Time = v
			return nil
		}
	}
	return nil
}

// unixMaybeMillis reads seconds or milliseconds since the epoch (Jenkins and
// Bitbucket use milliseconds, GitHub's repository dates seconds).
func unixMaybeMillis(n int64) time.Time {
	if n > 1e11 {
		return time.UnixMilli(n).UTC()
	}
	return time.Unix(n, 0).UTC()
}
