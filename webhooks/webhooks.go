// Package webhooks verifies and decodes incoming hooks from git hosts, Jenkins and
// Docker registries into a few normalized events (Push, Build, ImagePushed).
//
// It is pure: no HTTP server, no store, no clock. The caller reads the request
// body once (bounded by MaxBodyBytes), calls Receiver.Parse, stores the
// Delivery and maps the error with HTTPStatus.
//
// Contract of Receiver.Parse:
//   - (*Delivery, nil): a verified hook. Act on it only if Event.Actionable()
//     (branch/tag deletions and pings are recorded, nothing is started).
//   - *IgnoredError (errors.Is(err, ErrIgnored)): verified, but not an event
//     dockmaster acts on; answer 2xx with the reason so hosts do not disable the hook.
//   - *UnauthorizedError (ErrUnauthorized): missing/wrong signature or token, or no
//     secret configured and Options.AllowUnsigned is false.
//   - *MalformedError (ErrMalformed): the body or a required header/field is bad.
//   - ErrUnknownProvider: the endpoint names no provider.
//
// Verification always happens before the event is interpreted; the body is only
// peeked at beforehand to find the repository name that selects the secret.
package webhooks

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// MaxBodyBytes is the largest body a caller should read (GitHub and GitLab cap
// deliveries at 25 MB).
const MaxBodyBytes = 25 << 20

// Provider names as they appear in Delivery.Provider and as the first argument
// of SecretLookup.
const (
	ProviderGitHub          = "github"
	ProviderGitLab          = "gitlab"
	ProviderGitea           = "gitea"
	ProviderGogs            = "gogs"
	ProviderForgejo         = "forgejo"
	ProviderBitbucketCloud  = "bitbucket-cloud"
	ProviderBitbucketServer = "bitbucket-server"
	ProviderJenkins         = "jenkins"
	ProviderRegistry        = "registry"
	ProviderGeneric         = "generic"
)

// Kind is the normalized event type.
type Kind string

// Event kinds.
const (
	KindPush  Kind = "push"  // branch push (including creation and deletion)
	KindTag   Kind = "tag"   // tag push (including creation and deletion)
	KindPing  Kind = "ping"  // hook set-up test; never actionable
	KindBuild Kind = "build" // Jenkins build notification
	KindImage Kind = "image" // registry manifest push
)

// SecretLookup returns the secret for a provider and, when the hook names one,
// a repository full name (Jenkins and generic: the job full name). The Receiver
// calls it with the detected provider first, then with the endpoint name if it
// differs (so a secret set for "gitea" also covers Forgejo and Gogs hooks sent
// there, and "bitbucket" covers both Bitbucket variants); for each name it asks
// for (name, repo) and then (name, ""). ok=false means "no secret configured".
// It must be safe for concurrent use.
type SecretLookup func(provider, repoFullName string) (secret string, ok bool)

// Options configure a Receiver.
type Options struct {
	// Secrets finds the shared secret or token. Nil means none configured.
	Secrets SecretLookup
	// AllowUnsigned accepts hooks for which no secret is configured, without any
	// check. When false (the default) such hooks are refused as Unauthorized.
	// A configured secret is always enforced, whatever this says.
	AllowUnsigned bool
	// AllowSHA1 accepts GitHub's legacy X-Hub-Signature (HMAC-SHA1) when
	// X-Hub-Signature-256 is absent.
	AllowSHA1 bool
	// RepoScoped says some secrets are per repository, so the body is
	// peeked at for the repository name before verifying. Without it the
	// peek (as costly as the full decode) is skipped and Secrets is asked
	// with an empty repository only.
	RepoScoped bool
}

// Request is what Parse needs of an HTTP request.
type Request struct {
	Header http.Header
	// Query is the hook URL's query. Only "token" is read, and only for
	// providers that cannot sign or set headers (Bitbucket Cloud, Jenkins).
	Query url.Values
	// Body is the raw request body, exactly as received.
	Body []byte
}

// Delivery is one verified hook.
type Delivery struct {
	// Provider is the detected provider (one of the Provider* constants).
	Provider string
	// ID identifies the delivery for deduplication: the provider's delivery or
	// idempotency header, the registry event id, or else "sha256:" + hex of
	// sha256(provider, NUL, body).
	ID string
	// EventName is the provider's own event name (X-GitHub-Event, object_kind,
	// X-Event-Key, Jenkins phase, registry action, "build" for generic).
	EventName string
	Event     Event
	// Headers is a copy of the request headers with secrets redacted
	// (see RedactHeaders), safe to store.
	Headers http.Header
}

// Event is the normalized content of a Delivery. Exactly one of Push, Build or
// Images is set, according to Kind (none for KindPing).
type Event struct {
	Kind Kind
	// Push is the (first) ref change of a push or tag event.
	Push *Push
	// More holds further ref changes of the same delivery; only Bitbucket sends
	// several in one hook. Each has its own Branch/Tag and Deleted.
	More   []Push
	Build  *Build
	Images []ImagePushed
}

// Pushes returns Push followed by More.
func (e Event) Pushes() []Push {
	if e.Push == nil {
		return nil
	}
	return append([]Push{*e.Push}, e.More...)
}

// Actionable reports whether the event may start work: a push or tag with at
// least one ref change that is not a deletion, any build notification, or at
// least one pushed image. Deletions and pings are to be recorded only.
func (e Event) Actionable() bool {
	switch e.Kind {
	case KindPush, KindTag:
		for _, p := range e.Pushes() {
			if !p.Deleted {
				return true
			}
		}
		return false
	case KindBuild:
		return e.Build != nil
	case KindImage:
		return len(e.Images) > 0
	}
	return false
}

// Repo identifies a git repository.
type Repo struct {
	FullName string // owner/name (GitLab: path with namespace; Bitbucket Server: PROJECT/slug)
	CloneURL string // HTTP(S) clone URL
	WebURL   string
}

// Commit is a commit as reported by the hook.
type Commit struct {
	ID          string
	Message     string
	AuthorName  string
	AuthorEmail string
	Timestamp   time.Time // zero when the provider gave none or an unreadable one
}

// Push is one ref change.
type Push struct {
	Repo   Repo
	Ref    string // full ref: refs/heads/x or refs/tags/v1
	Branch string // set for branches, empty for tags
	Tag    string // set for tags, empty for branches
	Before string // zero SHA on creation
	After  string // zero SHA on deletion
	// Created, Deleted and Forced as reported, or derived from zero SHAs.
	Created bool
	Deleted bool
	Forced  bool
	// Pusher is the login when the provider gives one, else the display name.
	Pusher      string
	PusherEmail string
	// HeadCommit is the commit the ref now points to; nil on deletion. It may hold
	// only ID when the payload does not describe that commit.
	HeadCommit *Commit
	// CommitCount is the number of new commits as the provider counts them
	// (GitLab: total_commits_count, not the at most 20 listed).
	CommitCount int
}

// ZeroSHA is what git hosts send for the missing side of a created or deleted ref.
const ZeroSHA = "0000000000000000000000000000000000000000"

func isZeroSHA(s string) bool { return s != "" && strings.Trim(s, "0") == "" }

// setRef fills Ref, Branch and Tag from a full ref. Refs that are neither a
// branch nor a tag (refs/pull/..., refs/merge-requests/...) are ignored.
func (p *Push) setRef(provider, event, ref string) error {
	p.Ref = ref
	switch {
	case strings.HasPrefix(ref, "refs/heads/") && len(ref) > len("refs/heads/"):
		p.Branch = strings.TrimPrefix(ref, "refs/heads/")
	case strings.HasPrefix(ref, "refs/tags/") && len(ref) > len("refs/tags/"):
		p.Tag = strings.TrimPrefix(ref, "refs/tags/")
	case ref == "":
		return missing(provider, "ref")
	default:
		return &IgnoredError{Provider: provider, Event: event, Reason: fmt.Sprintf("ref %q is neither a branch nor a tag", ref)}
	}
	if isZeroSHA(p.Before) {
		p.Created = true
	}
	if isZeroSHA(p.After) {
		p.Deleted = true
	}
	if p.Deleted {
		p.HeadCommit = nil
	}
	return nil
}

func pushEvent(pushes []Push) Event {
	ev := Event{Kind: KindPush, Push: &pushes[0], More: pushes[1:]}
	if len(ev.More) == 0 {
		ev.More = nil
	}
	if ev.Push.Tag != "" {
		ev.Kind = KindTag
	}
	return ev
}

// Receiver verifies and decodes hooks. It holds no mutable state and is safe
// for concurrent use.
type Receiver struct {
	opts Options
}

// New returns a Receiver.
func New(opts Options) *Receiver { return &Receiver{opts: opts} }

// Endpoints lists the endpoint names Parse accepts (besides "" for detection).
func Endpoints() []string {
	return []string{ProviderGitHub, ProviderGitLab, ProviderGitea, ProviderGogs, ProviderForgejo,
		"bitbucket", ProviderBitbucketCloud, ProviderBitbucketServer,
		ProviderJenkins, ProviderRegistry, ProviderGeneric}
}

// Parse verifies and decodes one hook. endpoint is the provider name taken from
// the URL (/webhooks/{endpoint}); "" detects it from the headers (Jenkins and
// generic hooks cannot be detected). Gitea, Forgejo and Gogs are recognised by
// their own headers before GitHub's, on the github, gitea, forgejo and gogs
// endpoints alike. See the package comment for the error contract.
func (r *Receiver) Parse(endpoint string, req Request) (*Delivery, error) {
	if req.Header == nil {
		req.Header = http.Header{}
	}
	if endpoint == "" {
		endpoint = Detect(req.Header)
	}
	var (
		d   *Delivery
		err error
	)
	switch endpoint {
	case ProviderGitHub, ProviderGitea, ProviderForgejo, ProviderGogs:
		if v := giteaVariant(req.Header, endpoint); v != "" {
			d, err = r.parseGitea(v, endpoint, req)
		} else {
			d, err = r.parseGitHub(req)
		}
	case ProviderGitLab:
		d, err = r.parseGitLab(req)
	case "bitbucket", ProviderBitbucketCloud, ProviderBitbucketServer:
		if bitbucketVariant(req.Header, req.Body, endpoint) == ProviderBitbucketServer {
			d, err = r.parseBitbucketServer(endpoint, req)
		} else {
			d, err = r.parseBitbucketCloud(endpoint, req)
		}
	case ProviderJenkins:
		d, err = r.parseJenkins(req)
	case ProviderRegistry:
		d, err = r.parseRegistry(req)
	case ProviderGeneric:
		d, err = r.parseGeneric(req)
	default:
		return nil, fmt.Errorf("endpoint %q: %w", endpoint, ErrUnknownProvider)
	}
	if err != nil {
		return nil, err
	}
	if d.ID == "" {
		d.ID = hashID(d.Provider, req.Body)
	}
	d.Headers = RedactHeaders(req.Header)
	return d, nil
}

// Detect names the provider from headers alone, or returns "" when it cannot.
// Specific headers are checked before X-GitHub-Event, which Gitea, Forgejo and
// Gogs also send.
func Detect(h http.Header) string {
	switch {
	case h.Get("X-Gitlab-Event") != "":
		return ProviderGitLab
	case h.Get("X-Event-Key") != "":
		return "bitbucket"
	case h.Get("X-Forgejo-Event") != "":
		return ProviderForgejo
	case h.Get("X-Gitea-Event") != "":
		return ProviderGitea
	case h.Get("X-Gogs-Event") != "":
		return ProviderGogs
	case h.Get("X-GitHub-Event") != "":
		return ProviderGitHub
	case strings.HasPrefix(h.Get("Content-Type"), "application/vnd.docker.distribution.events."):
		return ProviderRegistry
	}
	return ""
}

func hashID(provider string, body []byte) string {
	s := sha256.New()
	s.Write([]byte(provider))
	s.Write([]byte{0})
	s.Write(body)
	return "sha256:" + hex.EncodeToString(s.Sum(nil))
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}
