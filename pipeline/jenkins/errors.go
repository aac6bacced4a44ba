package jenkins

import (
	"errors"
	"fmt"
	"html"
	"regexp"
	"strings"
)

// Sentinels for errors.Is. An *Error matches the one its status and operation map to.
var (
	ErrJobNotFound      = errors.New("jenkins job not found")
	ErrJobDisabled      = errors.New("jenkins job disabled")
	ErrNotParameterized = errors.New("jenkins job not parameterized")
	ErrAuth             = errors.New("jenkins authentication or permission failure")
	ErrQueueItemGone    = errors.New("jenkins queue item gone")
	ErrBuildNotFound    = errors.New("jenkins build not found")
)

// Error is a failed Jenkins call: the HTTP status, the job (full name, if any)
// and Jenkins' own reason text.
type Error struct {
	Op     string // "trigger", "queue item", "build", "find build", "crumb"
	Status int
	Job    string
	Reason string
	kind   error // one of the sentinels, or nil
}

func (e *Error) Error() string {
	var sb strings.Builder
	sb.WriteString("jenkins ")
	sb.WriteString(e.Op)
	if e.Job != "" {
		fmt.Fprintf(&sb, " job %q", e.Job)
	}
	fmt.Fprintf(&sb, ": HTTP %d", e.Status)
	if e.kind != nil {
		sb.WriteString(": ")
		sb.WriteString(e.kind.Error())
	}
	if e.Reason != "" {
		sb.WriteString(": ")
		sb.WriteString(e.Reason)
	}
	return sb.String()
}

// Unwrap exposes the sentinel so errors.Is(err, ErrJobDisabled) works.
func (e *Error) Unwrap() error { return e.kind }

// classify maps a status to a sentinel; which 404 it is depends on what was asked.
func classify(op string, status int, crumbProblem bool) error {
	switch {
	case status == 401, status == 403 && !crumbProblem:
		return ErrAuth
	case status == 409 && op == opTrigger:
		return ErrJobDisabled
	case status == 400 && op == opTrigger:
		// ParameterizedJobMixIn.doBuildWithParameters: "<job> is not parameterized";
		// older cores throw IllegalStateException "This build is not parameterized!"
		// and /build on a parameterised job answers "Nothing is submitted".
		return ErrNotParameterized
	case status == 404 && op == opQueueItem:
		return ErrQueueItemGone
	case status == 404 && op == opBuild:
		return ErrBuildNotFound
	case status == 404:
		return ErrJobNotFound
	}
	return nil
}

const (
	opTrigger   = "trigger"
	opQueueItem = "queue item"
	opBuild     = "build"
	opFind      = "find build"
	opCrumb     = "crumb"
)

var (
	tagRE   = regexp.MustCompile(`(?s)<[^>]*>`)
	spaceRE = regexp.MustCompile(`\s+`)
	titleRE = regexp.MustCompile(`(?is)<title>(.*?)</title>`)
	msgRE   = regexp.MustCompile(`(?is)<th>MESSAGE:</th>\s*<td>(.*?)</td>`)
)

// reason extracts a short human text from a Jenkins error body: Jetty's
// MESSAGE cell, else the page title, else the tag-stripped text.
func reason(body []byte) string {
	s := string(body)
	var out string
	if m := msgRE.FindStringSubmatch(s); m != nil {
		out = m[1]
	} else if m := titleRE.FindStringSubmatch(s); m != nil {
		out = m[1]
	} else {
		out = tagRE.ReplaceAllString(s, " ")
	}
	out = strings.TrimSpace(spaceRE.ReplaceAllString(html.UnescapeString(out), " "))
	if len(out) > 200 {
		out = out[:200] + "…"
	}
	return out
}

// isCrumbProblem recognises CrumbFilter's 403.
func isCrumbProblem(status int, body []byte) bool {
	return status == 403 && strings.Contains(strings.ToLower(string(body)), "no valid crumb")
}
