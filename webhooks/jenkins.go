package webhooks

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/url"
	"strings"
	"time"
)

// Phase is a Jenkins Notification plugin phase.
type Phase string

// Phases in the order the plugin sends them. FINISHED is what plugins before
// 1.6 sent instead of FINALIZED.
const (
	PhaseQueued    Phase = "QUEUED"
	PhaseStarted   Phase = "STARTED"
	PhaseCompleted Phase = "COMPLETED" // result known, post-build steps not yet run
	PhaseFinalized Phase = "FINALIZED" // all done: use this (or Finished) for "build over"
	PhaseFinished  Phase = "FINISHED"  // legacy FINALIZED
)

// Final reports whether the build is entirely over (FINALIZED or legacy FINISHED).
func (p Phase) Final() bool { return p == PhaseFinalized || p == PhaseFinished }

func parsePhase(s string) (Phase, bool) {
	switch p := Phase(strings.ToUpper(strings.TrimSpace(s))); p {
	case PhaseQueued, PhaseStarted, PhaseCompleted, PhaseFinalized, PhaseFinished:
		return p, true
	}
	return "", false
}

// Status is a Jenkins build result.
type Status string

// Jenkins results. Empty means no result yet (QUEUED, STARTED).
const (
	StatusSuccess  Status = "SUCCESS"
	StatusUnstable Status = "UNSTABLE"
	StatusFailure  Status = "FAILURE"
	StatusNotBuilt Status = "NOT_BUILT"
	StatusAborted  Status = "ABORTED"
)

func parseStatus(s string) (Status, bool) {
	switch st := Status(strings.ToUpper(strings.TrimSpace(s))); st {
	case "", StatusSuccess, StatusUnstable, StatusFailure, StatusNotBuilt, StatusAborted:
		return st, true
	}
	return "", false
}

// SCM is what the build checked out.
type SCM struct {
	URL    string
	Branch string // as Jenkins reports it, e.g. "origin/master"
	Commit string
}

// Build is a Jenkins build notification.
type Build struct {
	// Job is the full name with folders, "folder/sub/job", derived from the job
	// URL because the Notification plugin's "name" is the short name only.
	Job string
	// Name is the name as sent (short name, or display name).
	Name    string
	Number  int64
	QueueID int64 // 0 when not sent (plugin < 1.6)
	Phase   Phase
	Status  Status // empty until a result exists
	// URL is the absolute build URL when Jenkins knows its root URL, else the
	// relative one ("job/x/12/").
	URL        string
	SCM        SCM
	Parameters map[string]string
	Timestamp  time.Time     // zero when not sent
	Duration   time.Duration // zero when not sent
}

// params reads build parameters either as the Notification plugin's object
// {"NAME": "value"} or as the Jenkins API list [{"name": ..., "value": ...}].
// Non-string values (booleans, numbers) are kept in their JSON spelling.
type params map[string]string

func (p *params) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	out := map[string]string{}
	switch {
	case bytes.Equal(b, []byte("null")):
		*p = nil
		return nil
	case len(b) > 0 && b[0] == '{':
		var m map[string]json.RawMessage
		if err := json.Unmarshal(b, &m); err != nil {
			return err
		}
		for k, v := range m {
			out[k] = scalarString(v)
		}
	case len(b) > 0 && b[0] == '[':
		var l []struct {
			Name  string          `json:"name"`
			Value json.RawMessage `json:"value"`
		}
		if err := json.Unmarshal(b, &l); err != nil {
			return err
		}
		for i, e := range l {
			if e.Name == "" {
				return &fieldError{field: fmt.Sprintf("parameters[%d].name", i), err: errMissing}
			}
			out[e.Name] = scalarString(e.Value)
		}
	default:
		return &fieldError{field: "parameters", err: errors.New("want an object or a list of {name, value}")}
	}
	*p = out
	return nil
}

func scalarString(v json.RawMessage) string {
	var s string
	if json.Unmarshal(v, &s) == nil {
		return s
	}
	if t := bytes.TrimSpace(v); !bytes.Equal(t, []byte("null")) {
		return string(t)
	}
	return ""
}

type jenkinsNotification struct {
	Name        string `json:"name"`
	DisplayName string `json:"display_name"`
	URL         string `json:"url"`
	Build       *struct {
		FullURL   string `json:"full_url"`
		Number    *int64 `json:"number"`
		QueueID   int64  `json:"queue_id"`
		Timestamp int64  `json:"timestamp"`
		Duration  int64  `json:"duration"`
		Phase     string `json:"phase"`
		Status    string `json:"status"`
		URL       string `json:"url"`
		SCM       struct {
			URL    string `json:"url"`
			Branch string `json:"branch"`
			Commit string `json:"commit"`
		} `json:"scm"`
		Parameters params `json:"parameters"`
	} `json:"build"`
}

// parseJenkins decodes a Notification plugin payload. The plugin cannot sign or
// add headers; it sends Basic auth when the endpoint URL has user-info, so the
// token is accepted as X-Dockmaster-Token, Bearer, the Basic password, or ?token=.
func (r *Receiver) parseJenkins(req Request) (*Delivery, error) {
	const prov = ProviderJenkins
	if ct, _, _ := mime.ParseMediaType(req.Header.Get("Content-Type")); strings.HasSuffix(ct, "xml") {
		return nil, &MalformedError{Provider: prov, Field: "header Content-Type", Offset: -1,
			Err: fmt.Errorf("%s: only the JSON format of the Notification plugin is supported", ct)}
	}
	var peek jenkinsNotification
	_ = json.Unmarshal(req.Body, &peek) // only picks a per-job secret
	job := ""
	if peek.Build != nil {
		job = jenkinsJob(peek.URL, peek.Build.URL, peek.Build.FullURL, peek.Name)
	}
	if err := r.verifyToken(prov, job, req, fromTokenHeader|fromBearer|fromBasic|fromQuery,
		TokenHeader+", Authorization or ?token="); err != nil {
		return nil, err
	}
	var in jenkinsNotification
	if err := decodeJSON(prov, req.Body, &in, false); err != nil {
		return nil, err
	}
	if in.Build == nil {
		return nil, missing(prov, "build")
	}
	b := in.Build
	if b.Number == nil {
		return nil, missing(prov, "build.number")
	}
	out := &Build{
		Job:        jenkinsJob(in.URL, b.URL, b.FullURL, in.Name),
		Name:       firstNonEmpty(in.Name, in.DisplayName),
		Number:     *b.Number,
		QueueID:    b.QueueID,
		URL:        firstNonEmpty(b.FullURL, b.URL),
		SCM:        SCM(b.SCM),
		Parameters: b.Parameters,
		Duration:   time.Duration(b.Duration) * time.Millisecond,
	}
	if b.Timestamp > 0 {
		out.Timestamp = time.UnixMilli(b.Timestamp).UTC()
	}
	if err := setPhaseStatus(prov, "build.", out, b.Phase, b.Status); err != nil {
		return nil, err
	}
	if out.Job == "" {
		return nil, missing(prov, "name")
	}
	return &Delivery{Provider: prov, EventName: string(out.Phase), Event: Event{Kind: KindBuild, Build: out}}, nil
}

func setPhaseStatus(prov, prefix string, b *Build, phase, status string) error {
	var ok bool
	if b.Phase, ok = parsePhase(phase); !ok {
		if phase == "" {
			return missing(prov, prefix+"phase")
		}
		return &MalformedError{Provider: prov, Field: prefix + "phase", Offset: -1,
			Err: fmt.Errorf("unknown phase %q (want QUEUED, STARTED, COMPLETED, FINALIZED or FINISHED)", phase)}
	}
	if b.Status, ok = parseStatus(status); !ok {
		return &MalformedError{Provider: prov, Field: prefix + "status", Offset: -1,
			Err: fmt.Errorf("unknown status %q (want SUCCESS, UNSTABLE, FAILURE, NOT_BUILT or ABORTED)", status)}
	}
	if b.Status == "" && (b.Phase == PhaseCompleted || b.Phase.Final()) {
		return &MalformedError{Provider: prov, Field: prefix + "status", Offset: -1,
			Err: fmt.Errorf("missing; required in phase %s", b.Phase)}
	}
	if b.Number <= 0 {
		return &MalformedError{Provider: prov, Field: prefix + "number", Offset: -1, Err: fmt.Errorf("%d is not a build number", b.Number)}
	}
	return nil
}

// verifyToken checks a shared token for the providers that cannot sign.
// scope is the repository or job the secret may be scoped to.
func (r *Receiver) verifyToken(prov, scope string, req Request, from tokenSource, expected string) error {
	secret, ok := r.secret(prov, "", scope)
	if !ok {
		return r.noSecret(prov, expected)
	}
	return checkToken(prov, req, from, expected, secret)
}

// jenkinsJob derives the full job name from the first URL that has a job path:
// "job/folder/job/sub/job/app/" (relative or absolute, with or without a build
// number) gives "folder/sub/app". Names are unescaped once, as Jenkins escapes
// them once in URLs. It falls back to name.
func jenkinsJob(jobURL, buildURL, fullURL, name string) string {
	for _, u := range []string{jobURL, buildURL, fullURL} {
		if j := JobFromURL(u); j != "" {
			return j
		}
	}
	return name
}

// JobFromURL returns the full job name in a Jenkins job or build URL, or "" if
// the URL has no job path.
func JobFromURL(u string) string {
	if u == "" {
		return ""
	}
	path := u
	if pu, err := url.Parse(u); err == nil && pu.Scheme != "" {
		path = pu.EscapedPath()
	}
	segs := strings.Split(strings.Trim(path, "/"), "/")
	var names []string
	for i := 0; i < len(segs); i++ {
		if segs[i] != "job" || i+1 >= len(segs) {
			if len(names) > 0 {
				break // the build number or an action after the job path
			}
			continue
		}
		i++
		n, err := url.PathUnescape(segs[i])
		if err != nil || n == "" {
			return ""
		}
		names = append(names, n)
	}
	return strings.Join(names, "/")
}
