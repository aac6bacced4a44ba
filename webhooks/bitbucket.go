package webhooks

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// bitbucketVariant tells Cloud from Server/Data Center on the shared
// "bitbucket" endpoint: Cloud sends X-Hook-UUID / X-Request-UUID, Server
// X-Request-Id and event keys of its own, and a top-level "eventKey" in the body.
func bitbucketVariant(h http.Header, body []byte, endpoint string) string {
	switch endpoint {
	case ProviderBitbucketCloud, ProviderBitbucketServer:
		return endpoint
	}
	key := h.Get("X-Event-Key")
	switch {
	case h.Get("X-Hook-UUID") != "" || h.Get("X-Request-UUID") != "":
		return ProviderBitbucketCloud
	case h.Get("X-Request-Id") != "":
		return ProviderBitbucketServer
	case key == "repo:push":
		return ProviderBitbucketCloud
	case key == "repo:refs_changed" || key == "diagnostics:ping" || strings.HasPrefix(key, "pr:") || strings.HasPrefix(key, "mirror:"):
		return ProviderBitbucketServer
	case bytes.Contains(body, []byte(`"eventKey"`)):
		return ProviderBitbucketServer
	}
	return ProviderBitbucketCloud
}

type bbcUser struct {
	Nickname    string `json:"nickname"`
	Username    string `json:"username"`
	DisplayName string `json:"display_name"`
}

type bbcRef struct {
	Type   string `json:"type"`
	Name   string `json:"name"`
	Target struct {
		Hash    string   `json:"hash"`
		Message string   `json:"message"`
		Date    flexTime `json:"date"`
		Author  struct {
			Raw  string   `json:"raw"` // "Name <email>"
			User *bbcUser `json:"user"`
			bbcUser
		} `json:"author"`
	} `json:"target"`
}

type bbcPush struct {
	Actor      bbcUser `json:"actor"`
	Repository struct {
		FullName string `json:"full_name"`
		Links    struct {
			HTML struct {
				Href string `json:"href"`
			} `json:"html"`
		} `json:"links"`
	} `json:"repository"`
	Push *struct {
		Changes []struct {
			New       *bbcRef           `json:"new"`
			Old       *bbcRef           `json:"old"`
			Created   bool              `json:"created"`
			Closed    bool              `json:"closed"`
			Forced    bool              `json:"forced"`
			Truncated bool              `json:"truncated"`
			Commits   []json.RawMessage `json:"commits"`
		} `json:"changes"`
	} `json:"push"`
}

// parseBitbucketCloud verifies X-Hub-Signature (sha256, raw body) when the hook
// has a secret; Cloud hooks without one cannot sign, so the same secret must
// then come as ?token= in the hook URL (or X-Dockmaster-Token).
func (r *Receiver) parseBitbucketCloud(endpoint string, req Request) (*Delivery, error) {
	const prov = ProviderBitbucketCloud
	secret, ok := r.secret(prov, endpoint, r.peekRepo(req.Body))
	switch {
	case !ok:
		if err := r.noSecret(prov, "X-Hub-Signature or ?token="); err != nil {
			return nil, err
		}
	default:
		if _, signed := headerValue(req.Header, "X-Hub-Signature"); signed {
			if err := checkHMAC(prov, req.Header, "X-Hub-Signature", "sha256=", sha256.New, secret, req.Body); err != nil {
				return nil, err
			}
		} else if err := checkToken(prov, req, fromQuery|fromTokenHeader, "X-Hub-Signature or ?token=", secret); err != nil {
			return nil, err
		}
	}
	event := req.Header.Get("X-Event-Key")
	d := &Delivery{Provider: prov, EventName: event, ID: req.Header.Get("X-Request-UUID")}
	switch event {
	case "repo:push":
	case "":
		return nil, missing(prov, "header X-Event-Key")
	default:
		return nil, &IgnoredError{Provider: prov, Event: event, Reason: "only repo:push is handled"}
	}
	var in bbcPush
	if err := decodeJSON(prov, req.Body, &in, false); err != nil {
		return nil, err
	}
	if in.Repository.FullName == "" {
		return nil, missing(prov, "repository.full_name")
	}
	if in.Push == nil {
		return nil, missing(prov, "push")
	}
	repo := Repo{FullName: in.Repository.FullName, WebURL: in.Repository.Links.HTML.Href,
		// Cloud payloads carry no clone URL; Cloud lives at one address.
		CloneURL: "https://bitbucket.org/" + in.Repository.FullName + ".git"}
	var pushes []Push
	for i, c := range in.Push.Changes {
		ref := c.New
		if ref == nil {
			ref = c.Old
		}
		if ref == nil {
			return nil, missing(prov, fmt.Sprintf("push.changes[%d].new", i))
		}
		p := Push{Repo: repo, Before: ZeroSHA, After: ZeroSHA, Created: c.Created, Deleted: c.Closed, Forced: c.Forced,
			Pusher: firstNonEmpty(in.Actor.Nickname, in.Actor.Username, in.Actor.DisplayName), CommitCount: len(c.Commits)}
		if c.Old != nil {
			p.Before = c.Old.Target.Hash
		}
		if c.New != nil {
			t := c.New.Target
			p.After = t.Hash
			name, email := splitRawAuthor(t.Author.Raw)
			if name == "" && t.Author.User != nil {
				name = t.Author.User.DisplayName
			}
			p.HeadCommit = &Commit{ID: t.Hash, Message: t.Message, Timestamp: t.Date.Time,
				AuthorName: firstNonEmpty(name, t.Author.DisplayName), AuthorEmail: email}
		}
		var full string
		switch ref.Type {
		case "branch", "named_branch":
			full = "refs/heads/" + ref.Name
		case "tag", "annotated_tag":
			full = "refs/tags/" + ref.Name
		default:
			return nil, &MalformedError{Provider: prov, Field: fmt.Sprintf("push.changes[%d].new.type", i), Offset: -1,
				Err: fmt.Errorf("unknown ref type %q", ref.Type)}
		}
		if ref.Name == "" {
			return nil, missing(prov, fmt.Sprintf("push.changes[%d].new.name", i))
		}
		if err := p.setRef(prov, event, full); err != nil {
			return nil, err
		}
		pushes = append(pushes, p)
	}
	if len(pushes) == 0 {
		return nil, noChanges(prov, event, nil)
	}
	d.Event = pushEvent(pushes)
	return d, nil
}

// splitRawAuthor splits "Name <email>".
func splitRawAuthor(raw string) (name, email string) {
	name, rest, ok := strings.Cut(raw, "<")
	if !ok {
		return strings.TrimSpace(raw), ""
	}
	email, _, _ = strings.Cut(rest, ">")
	return strings.TrimSpace(name), strings.TrimSpace(email)
}

type bbsEvent struct {
	EventKey string `json:"eventKey"`
	Actor    struct {
		Name         string `json:"name"`
		EmailAddress string `json:"emailAddress"`
		DisplayName  string `json:"displayName"`
	} `json:"actor"`
	Repository struct {
		Slug    string `json:"slug"`
		Project struct {
			Key string `json:"key"`
		} `json:"project"`
		Links struct {
			Clone []struct {
				Href string `json:"href"`
				Name string `json:"name"`
			} `json:"clone"`
			Self []struct {
				Href string `json:"href"`
			} `json:"self"`
		} `json:"links"`
	} `json:"repository"`
	Changes []struct {
		Ref struct {
			ID   string `json:"id"`
			Type string `json:"type"`
		} `json:"ref"`
		RefID    string `json:"refId"`
		FromHash string `json:"fromHash"`
		ToHash   string `json:"toHash"`
		Type     string `json:"type"`
	} `json:"changes"`
	ToCommit *struct {
		ID      string `json:"id"`
		Message string `json:"message"`
		Author  struct {
			Name         string `json:"name"`
			EmailAddress string `json:"emailAddress"`
		} `json:"author"`
		AuthorTimestamp int64 `json:"authorTimestamp"`
	} `json:"toCommit"`
	Commits []json.RawMessage `json:"commits"`
}

func (r *Receiver) parseBitbucketServer(endpoint string, req Request) (*Delivery, error) {
	const prov, sigH = ProviderBitbucketServer, "X-Hub-Signature"
	var peek struct {
		Repository struct {
			Slug    string `json:"slug"`
			Project struct {
				Key string `json:"key"`
			} `json:"project"`
		} `json:"repository"`
	}
	var repoName string
	if json.Unmarshal(req.Body, &peek) == nil && peek.Repository.Slug != "" {
		repoName = peek.Repository.Project.Key + "/" + peek.Repository.Slug
	}
	secret, ok := r.secret(prov, endpoint, repoName)
	if !ok {
		if err := r.noSecret(prov, sigH); err != nil {
			return nil, err
		}
	} else if err := checkHMAC(prov, req.Header, sigH, "sha256=", sha256.New, secret, req.Body); err != nil {
		return nil, err
	}
	event := req.Header.Get("X-Event-Key")
	d := &Delivery{Provider: prov, EventName: event, ID: req.Header.Get("X-Request-Id")}
	if event == "diagnostics:ping" {
		d.Event = Event{Kind: KindPing}
		return d, nil
	}
	var in bbsEvent
	if err := decodeJSON(prov, req.Body, &in, false); err != nil {
		return nil, err
	}
	if event == "" {
		event, d.EventName = in.EventKey, in.EventKey
	}
	switch event {
	case "repo:refs_changed":
	case "":
		return nil, missing(prov, "header X-Event-Key")
	default:
		return nil, &IgnoredError{Provider: prov, Event: event, Reason: "only repo:refs_changed is handled"}
	}
	if in.Repository.Slug == "" {
		return nil, missing(prov, "repository.slug")
	}
	repo := Repo{FullName: in.Repository.Project.Key + "/" + in.Repository.Slug}
	for _, l := range in.Repository.Links.Clone {
		if l.Name == "http" || l.Name == "https" {
			repo.CloneURL = l.Href
		}
	}
	if len(in.Repository.Links.Self) > 0 {
		repo.WebURL = in.Repository.Links.Self[0].Href
	}
	var (
		pushes      []Push
		lastIgnored error
	)
	for i, c := range in.Changes {
		p := Push{Repo: repo, Before: c.FromHash, After: c.ToHash,
			Created: c.Type == "ADD", Deleted: c.Type == "DELETE",
			Pusher: firstNonEmpty(in.Actor.Name, in.Actor.DisplayName), PusherEmail: in.Actor.EmailAddress,
			HeadCommit: &Commit{ID: c.ToHash}}
		if i == 0 {
			p.CommitCount = len(in.Commits)
		}
		if tc := in.ToCommit; tc != nil && tc.ID == c.ToHash {
			p.HeadCommit = &Commit{ID: tc.ID, Message: tc.Message, AuthorName: tc.Author.Name, AuthorEmail: tc.Author.EmailAddress}
			if tc.AuthorTimestamp > 0 {
				p.HeadCommit.Timestamp = unixMaybeMillis(tc.AuthorTimestamp)
			}
		}
		if c.ToHash == "" {
			return nil, missing(prov, fmt.Sprintf("changes[%d].toHash", i))
		}
		if err := p.setRef(prov, event, firstNonEmpty(c.Ref.ID, c.RefID)); err != nil {
			if errors.Is(err, ErrIgnored) {
				lastIgnored = err
				continue
			}
			return nil, err
		}
		pushes = append(pushes, p)
	}
	if len(pushes) == 0 {
		return nil, noChanges(prov, event, lastIgnored)
	}
	d.Event = pushEvent(pushes)
	return d, nil
}

// noChanges is the result of a push whose changes were all skipped.
func noChanges(prov, event string, last error) error {
	if last != nil {
		return last
	}
	return &IgnoredError{Provider: prov, Event: event, Reason: "no ref changes"}
}
