package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"
)

// The shared client of the CLI commands that talk to a running dockmaster.
//
//	cf := addClientFlags(fs)          // --url, -o table|json
//	parseFlags(fs, args)
//	c, err := cf.client()             // base URL and API key from flags/env
//	c, e, err := cf.clientIn(ctx, *env, "") // and the environment (env := envFlag(fs))
//	err = c.get(ctx, "/api/v1/x", query, &out)
//	if cf.wantJSON() { return writeJSON(stdout, out) }
//
// Base URL: --url, else DOCKMASTER_URL, else RANCHER_URL, else
// http://127.0.0.1:8080. API key: DOCKMASTER_ACCESS_KEY/DOCKMASTER_SECRET_KEY,
// else RANCHER_ACCESS_KEY/RANCHER_SECRET_KEY, sent as HTTP basic auth; none
// set means anonymous. A non-2xx answer is an *apiError carrying the server's
// "error" field, which main prints before exiting 1.

// clientFlags are the flags every API command takes.
type clientFlags struct {
	url    *string
	output *string
}

func addClientFlags(fs *flag.FlagSet) *clientFlags {
	return &clientFlags{
		url:    fs.String("url", "", "dockmaster URL (env DOCKMASTER_URL, RANCHER_URL; default http://127.0.0.1:8080)"),
		output: fs.String("o", "table", "output format: table or json"),
	}
}

// wantJSON reports whether -o json was asked for.
func (f *clientFlags) wantJSON() bool { return *f.output == "json" }

// client validates the flags and returns a client for the configured server.
func (f *clientFlags) client() (*apiClient, error) {
	switch *f.output {
	case "table", "json":
	default:
		return nil, usagef("-o %q: want table or json", *f.output)
	}
	base := *f.url
	if base == "" {
		base = envOr("http://127.0.0.1:8080", "DOCKMASTER_URL", "RANCHER_URL")
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, usagef("dockmaster URL %q: want http(s)://host[:port]", base)
	}
	c := &apiClient{base: strings.TrimRight(base, "/"), http: &http.Client{Timeout: 60 * time.Second}}
	c.access = envOr("", "DOCKMASTER_ACCESS_KEY")
	c.secret = envOr("", "DOCKMASTER_SECRET_KEY")
	if c.access == "" && c.secret == "" {
		c.access, c.secret = envOr("", "RANCHER_ACCESS_KEY"), envOr("", "RANCHER_SECRET_KEY")
	}
	if (c.access == "") != (c.secret == "") {
		return nil, usagef("set both DOCKMASTER_ACCESS_KEY and DOCKMASTER_SECRET_KEY, or neither")
	}
	return c, nil
}

// envFlag is -e, the environment a command acts in (see resolveEnv).
func envFlag(fs *flag.FlagSet) *string {
	return fs.String("e", "", "environment (env DOCKMASTER_ENV; default: the API key's environment)")
}

// clientIn is client plus the environment to act in: env (-e), else what
// resolveEnv finds, else def.
func (f *clientFlags) clientIn(ctx context.Context, env, def string) (*apiClient, string, error) {
	c, err := f.client()
	if err != nil {
		return nil, "", err
	}
	e, err := resolveEnv(ctx, c, env, def)
	if err != nil {
		return nil, "", err
	}
	return c, e, nil
}

// apiClient talks JSON to the dockmaster API.
type apiClient struct {
	base           string
	access, secret string
	http           *http.Client
	csrf           string // after login: sent with the session cookie
}

// login signs in with a password instead of the API key, as the login page
// does: later requests carry the session cookie and its CSRF token. The
// returned func signs out.
func (c *apiClient) login(ctx context.Context, user, password string) (logout func(), err error) {
	jar, err := cookiejar.New(nil)
	if err != nil {
		return nil, err
	}
	c.http.Jar, c.access, c.secret = jar, "", ""
	var out struct {
		CSRF string `json:"csrf_token"`
	}
	if err := c.post(ctx, "/login", map[string]string{"user": user, "password": password}, &out); err != nil {
		return nil, err
	}
	c.csrf = out.CSRF
	return func() { _ = c.post(context.WithoutCancel(ctx), "/logout", nil, nil) }, nil
}

// apiError is a non-2xx answer.
type apiError struct {
	Method, URL string
	Status      int
	Message     string // the server's "error" field, or the status text
}

func (e *apiError) Error() string {
	return fmt.Sprintf("%s %s: %d %s", e.Method, e.URL, e.Status, e.Message)
}

func (c *apiClient) get(ctx context.Context, path string, query url.Values, out any) error {
	return c.do(ctx, http.MethodGet, path, query, nil, out)
}

func (c *apiClient) post(ctx context.Context, path string, in, out any) error {
	return c.do(ctx, http.MethodPost, path, nil, in, out)
}

// request builds an authenticated request sending in (if not nil) as JSON.
func (c *apiClient) request(ctx context.Context, method, path string, query url.Values, in any, accept string) (*http.Request, error) {
	target := c.base + path
	if len(query) > 0 {
		target += "?" + query.Encode()
	}
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", accept)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.access != "" {
		req.SetBasicAuth(c.access, c.secret)
	}
	if c.csrf != "" {
		req.Header.Set("X-CSRF-Token", c.csrf)
	}
	return req, nil
}

// do sends in (if not nil) as JSON and decodes a 2xx answer into out (if not
// nil; a *json.RawMessage receives the body as is).
func (c *apiClient) do(ctx context.Context, method, path string, query url.Values, in, out any) error {
	req, err := c.request(ctx, method, path, query, in, "application/json")
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, req.URL.String(), err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("%s %s: reading answer: %w", method, req.URL.String(), err)
	}
	if resp.StatusCode/100 != 2 {
		e := &apiError{Method: method, URL: req.URL.String(), Status: resp.StatusCode, Message: http.StatusText(resp.StatusCode)}
		var msg struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(data, &msg) == nil && msg.Error != "" {
			e.Message = msg.Error
		}
		return e
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s %s: answer is not the expected JSON: %w", method, req.URL.String(), err)
	}
	return nil
}

// writeJSON prints v indented.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// newTable returns a writer for aligned columns; Flush it when done.
func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
}
