package webhooks

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/bytedance/sonic"
)

// Sentinel errors; the typed errors below match them with errors.Is.
var (
	ErrUnauthorized    = errors.New("webhook unauthorized")
	ErrIgnored         = errors.New("webhook ignored")
	ErrMalformed       = errors.New("malformed webhook")
	ErrUnknownProvider = errors.New("unknown webhook provider")
)

var errMissing = errors.New("missing")

// UnauthorizedError says which header (or query parameter) was expected and why
// it did not verify. It never holds the secret or the received value.
type UnauthorizedError struct {
	Provider string
	Header   string // expected header, e.g. "X-Hub-Signature-256", or "?token"
	Reason   string // "missing", "empty", "signature mismatch", "no secret configured", ...
}

func (e *UnauthorizedError) Error() string {
	return fmt.Sprintf("%s: unauthorized: %s: %s", e.Provider, e.Header, e.Reason)
}

// Is makes errors.Is(err, ErrUnauthorized) true.
func (e *UnauthorizedError) Is(target error) bool { return target == ErrUnauthorized }

// IgnoredError is a verified hook that dockmaster does not act on (other event
// types, non-branch refs, registry pulls and layer pushes). Answer 2xx.
type IgnoredError struct {
	Provider string
	Event    string
	Reason   string
}

func (e *IgnoredError) Error() string {
	if e.Event == "" {
		return fmt.Sprintf("%s: ignored: %s", e.Provider, e.Reason)
	}
	return fmt.Sprintf("%s: ignored %q event: %s", e.Provider, e.Event, e.Reason)
}

// Is makes errors.Is(err, ErrIgnored) true.
func (e *IgnoredError) Is(target error) bool { return target == ErrIgnored }

// MalformedError is a bad body, header or field. Field names the JSON path
// ("build.number") or header; Line/Column/Offset locate a JSON error in the
// decoded payload (1-based line and column; Offset -1 when unknown).
type MalformedError struct {
	Provider string
	Field    string
	Offset   int64
	Line     int
	Column   int
	Err      error
}

func (e *MalformedError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: malformed", e.Provider)
	if e.Field != "" {
		fmt.Fprintf(&b, " %s", e.Field)
	}
	if e.Line > 0 {
		fmt.Fprintf(&b, " at line %d, column %d (offset %d)", e.Line, e.Column, e.Offset)
	}
	if e.Err != nil {
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	return b.String()
}

// Is makes errors.Is(err, ErrMalformed) true.
func (e *MalformedError) Is(target error) bool { return target == ErrMalformed }

// Unwrap returns the parse error.
func (e *MalformedError) Unwrap() error { return e.Err }

// HTTPStatus is the one mapping from Parse's error to the response status:
// nil 202 (accepted for processing), ignored 200 (answer with the reason),
// unauthorized 401, malformed 400, unknown provider 404, anything else 500.
func HTTPStatus(err error) int {
	switch {
	case err == nil:
		return http.StatusAccepted
	case errors.Is(err, ErrIgnored):
		return http.StatusOK
	case errors.Is(err, ErrUnauthorized):
		return http.StatusUnauthorized
	case errors.Is(err, ErrMalformed):
		return http.StatusBadRequest
	case errors.Is(err, ErrUnknownProvider):
		return http.StatusNotFound
	}
	return http.StatusInternalServerError
}

// sonicStd and sonicStrict decode like encoding/json, about five times
// faster on a push payload: the decode is most of a webhook's cost. sonicStd
// matches keys exactly (providers spell them one way): trying every unknown
// key of a push (GitHub's repository alone has ~90) case-insensitively cost
// a fifth of the decode. Both are frozen, read-only values.
var (
	sonicStd = sonic.Config{EscapeHTML: true, SortMapKeys: true, CompactMarshaler: true, CopyString: true,
		ValidateString: true, CaseSensitive: true}.Froze()
	sonicStrict = sonic.Config{EscapeHTML: true, SortMapKeys: true, CompactMarshaler: true, CopyString: true,
		ValidateString: true, DisallowUnknownFields: true}.Froze()
)

// decodeJSON unmarshals body into v and turns any failure into a
// *MalformedError locating it. strict rejects unknown fields (formats we own).
func decodeJSON(provider string, body []byte, v any, strict bool) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return &MalformedError{Provider: provider, Field: "body", Offset: -1, Err: errors.New("empty")}
	}
	api := sonicStd
	if strict {
		api = sonicStrict
	}
	if api.Unmarshal(body, v) == nil {
		return nil
	}
	// Decode again with encoding/json: its errors locate the problem, and
	// it has the last word on what is valid.
	if !strict {
		if err := json.Unmarshal(body, v); err != nil {
			return jsonError(provider, body, err)
		}
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(provider, body, err)
	}
	if dec.More() {
		off := dec.InputOffset()
		return locate(&MalformedError{Provider: provider, Field: "body", Offset: off, Err: errors.New("data after the JSON value")}, body)
	}
	return nil
}

func jsonError(provider string, body []byte, err error) error {
	m := &MalformedError{Provider: provider, Offset: -1, Err: err}
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		m.Offset = se.Offset
	case errors.As(err, &te):
		m.Offset, m.Field = te.Offset, te.Field
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		// encoding/json exposes no type for this; the field name is all it gives.
		m.Field = strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
	default:
		var fe *fieldError
		if errors.As(err, &fe) {
			m.Field = fe.field
		}
	}
	return locate(m, body)
}

func locate(m *MalformedError, body []byte) *MalformedError {
	if m.Offset < 0 || m.Offset > int64(len(body)) {
		return m
	}
	// encoding/json reports the number of bytes read, so the culprit is the
	// byte before Offset.
	pos := max(m.Offset-1, 0)
	prefix := body[:pos]
	m.Line = bytes.Count(prefix, []byte("\n")) + 1
	m.Column = int(pos) - bytes.LastIndexByte(prefix, '\n')
	return m
}

// fieldError lets custom UnmarshalJSON methods name their field.
type fieldError struct {
	field string
	err   error
}

func (e *fieldError) Error() string { return e.field + ": " + e.err.Error() }
func (e *fieldError) Unwrap() error { return e.err }

func missing(provider, field string) error {
	return &MalformedError{Provider: provider, Field: field, Offset: -1, Err: errMissing}
}
