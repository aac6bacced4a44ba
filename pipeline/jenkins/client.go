// Package jenkins is a client for Jenkins' remote access API: trigger a
// parameterised job, follow its queue item to a build, read the build, and find
// a build already started for a run (so a restarted engine does not trigger twice).
//
// Contract: every method takes ctx first and is safe for concurrent use.
// HTTP failures come back as *Error, which matches one of the Err* sentinels
// with errors.Is; transport failures are wrapped with %w.
package jenkins

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"sync"
	"time"
)

const maxBody = 8 << 20 // Jenkins JSON for 50 builds stays far below this

// Client talks to one Jenkins controller as one user.
type Client struct {
	base  *url.URL // root URL, path without trailing slash
	user  string
	token string
	hc    *http.Client
	// timeout overrides hc.Timeout when set.
	timeout time.Duration

	mu    sync.Mutex
	crumb *crumb // cached after Jenkins first asked for one
}

type crumb struct{ field, value string }

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient uses hc's transport and timeout. The client is copied: a
// cookie jar is added if it has none (crumbs are tied to the session cookie)
// and redirects are never followed (201/303 carry the queue item in Location).
func WithHTTPClient(hc *http.Client) Option {
	return func(c *Client) {
		cp := *hc
		c.hc = &cp
	}
}

// WithTimeout bounds each HTTP request (default 30s, or hc's from WithHTTPClient),
// whatever the order of the options.
func WithTimeout(d time.Duration) Option {
	return func(c *Client) { c.timeout = d }
}

// New returns a client for the Jenkins at baseURL (e.g. "https://ci.example.com/jenkins"),
// authenticating with HTTP Basic user + API token (no auth when user is "").
func New(baseURL, user, token string, opts ...Option) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil {
		return nil, fmt.Errorf("jenkins base URL %q: %w", baseURL, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("jenkins base URL %q: want http(s)://host[/path]", baseURL)
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath, u.RawQuery, u.Fragment = "", "", ""
	c := &Client{base: u, user: user, token: token, hc: &http.Client{Timeout: 30 * time.Second}}
	for _, o := range opts {
		o(c)
	}
	if c.timeout > 0 {
		c.hc.Timeout = c.timeout
	}
	if c.hc.Jar == nil {
		jar, err := cookiejar.New(nil)
		if err != nil {
			return nil, fmt.Errorf("jenkins cookie jar: %w", err)
		}
		c.hc.Jar = jar
	}
	c.hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return c, nil
}

// JobPath turns a full job name "a/b/c" into "/job/a/job/b/job/c", escaping
// each segment. Multibranch branch names with "/" must be given pre-encoded
// by the caller ("feature%2Fx"); they are escaped once more, as Jenkins expects.
func JobPath(job string) (string, error) {
	if job == "" {
		return "", errors.New("empty job name")
	}
	var sb strings.Builder
	for seg := range strings.SplitSeq(job, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return "", fmt.Errorf("job name %q: empty or relative segment", job)
		}
		sb.WriteString("/job/")
		sb.WriteString(url.PathEscape(seg))
	}
	return sb.String(), nil
}

// response is a fully read HTTP answer.
type response struct {
	status   int
	header   http.Header
	body     []byte
	statusLn string
}

// do sends one request with auth; POSTs carry the cached crumb and, when
// Jenkins refuses for want of a crumb, fetch a fresh one and retry once.
func (c *Client) do(ctx context.Context, method, pathAndQuery string, form url.Values) (*response, error) {
	var body string
	if form != nil {
		body = form.Encode()
	}
	send := func(withCrumb *crumb) (*response, error) {
		req, err := http.NewRequestWithContext(ctx, method, c.base.String()+pathAndQuery, strings.NewReader(body))
		if err != nil {
			return nil, err
		}
		if form != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		req.Header.Set("Accept", "application/json")
		if c.user != "" {
			req.SetBasicAuth(c.user, c.token)
		}
		if withCrumb != nil {
			req.Header.Set(withCrumb.field, withCrumb.value)
		}
		resp, err := c.hc.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
		if err != nil {
			return nil, fmt.Errorf("reading %s %s: %w", method, pathAndQuery, err)
		}
		return &response{status: resp.StatusCode, header: resp.Header, body: b, statusLn: resp.Status}, nil
	}
	if method != http.MethodPost {
		return send(nil)
	}
	c.mu.Lock()
	cached := c.crumb
	c.mu.Unlock()
	r, err := send(cached)
	if err != nil || !r.crumbProblem() {
		return r, err
	}
	fresh, err := c.fetchCrumb(ctx)
	if err != nil {
		return nil, err
	}
	return send(fresh)
}

func (r *response) crumbProblem() bool {
	return isCrumbProblem(r.status, r.body) || isCrumbProblem(r.status, []byte(r.statusLn))
}

// fetchCrumb asks /crumbIssuer/api/json; the cookie jar keeps the session the crumb is bound to.
func (c *Client) fetchCrumb(ctx context.Context) (*crumb, error) {
	r, err := c.do(ctx, http.MethodGet, "/crumbIssuer/api/json", nil)
	if err != nil {
		return nil, fmt.Errorf("jenkins crumb: %w", err)
	}
	if r.status != http.StatusOK {
		return nil, c.httpError(opCrumb, "", r)
	}
	var v struct {
		Crumb             string `json:"crumb"`
		CrumbRequestField string `json:"crumbRequestField"`
	}
	if err := json.Unmarshal(r.body, &v); err != nil {
		return nil, fmt.Errorf("jenkins crumb: decoding /crumbIssuer/api/json: %w", err)
	}
	if v.Crumb == "" || v.CrumbRequestField == "" {
		return nil, errors.New("jenkins crumb: /crumbIssuer/api/json has no crumb or crumbRequestField")
	}
	cr := &crumb{field: v.CrumbRequestField, value: v.Crumb}
	c.mu.Lock()
	c.crumb = cr
	c.mu.Unlock()
	return cr, nil
}

func (c *Client) httpError(op, job string, r *response) *Error {
	crumb := r.crumbProblem()
	e := &Error{Op: op, Status: r.status, Job: job, Reason: reason(r.body), kind: classify(op, r.status, crumb)}
	if e.Reason == "" {
		e.Reason = strings.TrimSpace(strings.TrimPrefix(r.statusLn, fmt.Sprint(r.status)))
	}
	return e
}

func (c *Client) getJSON(ctx context.Context, op, job, pathAndQuery string, v any) error {
	r, err := c.do(ctx, http.MethodGet, pathAndQuery, nil)
	if err != nil {
		return fmt.Errorf("jenkins %s %s: %w", op, pathAndQuery, err)
	}
	if r.status != http.StatusOK {
		return c.httpError(op, job, r)
	}
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("jenkins %s: decoding %s: %w", op, pathAndQuery, err)
	}
	return nil
}
