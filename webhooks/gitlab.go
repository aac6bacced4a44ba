package webhooks

import "encoding/json"

type glPush struct {
	ObjectKind   string `json:"object_kind"`
	Before       string `json:"before"`
	After        string `json:"after"`
	Ref          string `json:"ref"`
	CheckoutSHA  string `json:"checkout_sha"`
	UserName     string `json:"user_name"`
	UserUsername string `json:"user_username"`
	UserEmail    string `json:"user_email"`
	Project      struct {
		PathWithNamespace string `json:"path_with_namespace"`
		WebURL            string `json:"web_url"`
		GitHTTPURL        string `json:"git_http_url"`
	} `json:"project"`
	Commits []struct {
		ID        string   `json:"id"`
		Message   string   `json:"message"`
		Timestamp flexTime `json:"timestamp"`
		Author    struct {
			Name  string `json:"name"`
			Email string `json:"email"`
		} `json:"author"`
	} `json:"commits"`
	TotalCommitsCount int `json:"total_commits_count"`
}

// parseGitLab routes on the body's object_kind, not on X-Gitlab-Event: hooks
// delivered by integrations say "Service Hook" and system hooks "System Hook".
func (r *Receiver) parseGitLab(req Request) (*Delivery, error) {
	const prov, tokH = ProviderGitLab, "X-Gitlab-Token"
	var peek struct {
		ObjectKind string `json:"object_kind"`
		Project    struct {
			PathWithNamespace string `json:"path_with_namespace"`
		} `json:"project"`
	}
	if r.opts.RepoScoped {
		_ = json.Unmarshal(req.Body, &peek) // only picks the secret; decoded fully below
	}
	secret, ok := r.secret(prov, "", peek.Project.PathWithNamespace)
	if !ok {
		if err := r.noSecret(prov, tokH); err != nil {
			return nil, err
		}
	} else {
		// X-Gitlab-Token is the plain secret, no HMAC.
		v, sent := headerValue(req.Header, tokH)
		switch {
		case !sent:
			return nil, &UnauthorizedError{Provider: prov, Header: tokH, Reason: "missing"}
		case v == "":
			return nil, &UnauthorizedError{Provider: prov, Header: tokH, Reason: "empty"}
		case !tokenEqual(v, secret):
			return nil, &UnauthorizedError{Provider: prov, Header: tokH, Reason: "token mismatch"}
		}
	}

	var in glPush
	if err := decodeJSON(prov, req.Body, &in, false); err != nil {
		return nil, err
	}
	event := firstNonEmpty(in.ObjectKind, req.Header.Get("X-Gitlab-Event"))
	// Idempotency-Key survives retries; X-Gitlab-Event-UUID is shared by all
	// hooks of one event (and kept across retries); X-Gitlab-Webhook-UUID is
	// new per request, so useless for deduplication.
	d := &Delivery{Provider: prov, EventName: event,
		ID: firstNonEmpty(req.Header.Get("Idempotency-Key"), req.Header.Get("X-Gitlab-Event-UUID"))}
	switch in.ObjectKind {
	case "push", "tag_push":
	case "":
		return nil, missing(prov, "object_kind")
	default:
		return nil, &IgnoredError{Provider: prov, Event: event, Reason: "only push and tag_push are handled"}
	}
	if in.Project.PathWithNamespace == "" {
		return nil, missing(prov, "project.path_with_namespace")
	}
	if in.After == "" {
		return nil, missing(prov, "after")
	}
	p := Push{
		Repo:        Repo{FullName: in.Project.PathWithNamespace, CloneURL: in.Project.GitHTTPURL, WebURL: in.Project.WebURL},
		Before:      in.Before,
		After:       in.After,
		Pusher:      firstNonEmpty(in.UserUsername, in.UserName),
		PusherEmail: in.UserEmail,
		CommitCount: in.TotalCommitsCount,
	}
	if p.PusherEmail == "[REDACTED]" {
		p.PusherEmail = ""
	}
	if len(in.Commits) > p.CommitCount {
		p.CommitCount = len(in.Commits)
	}
	head := firstNonEmpty(in.CheckoutSHA, in.After)
	p.HeadCommit = &Commit{ID: head}
	for _, c := range in.Commits {
		if c.ID == head {
			p.HeadCommit = &Commit{ID: c.ID, Message: c.Message, AuthorName: c.Author.Name,
				AuthorEmail: c.Author.Email, Timestamp: c.Timestamp.Time}
		}
	}
	if err := p.setRef(prov, event, in.Ref); err != nil {
		return nil, err
	}
	d.Event = pushEvent([]Push{p})
	return d, nil
}
