package lb

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// newLB returns an LB whose source ports listen on 127.0.0.1:0.
func newLB(t testing.TB) *LB {
	l := New(Options{Listen: func(uint16) (net.Listener, error) { return net.Listen("tcp", "127.0.0.1:0") }})
	t.Cleanup(func() { _ = l.Close(context.Background()) })
	return l
}

// backend answers its name on every path.
func backend(t testing.TB, name string) *httptest.Server {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, name)
	}))
	t.Cleanup(s.Close)
	return s
}

func hostOf(s *httptest.Server) string { return strings.TrimPrefix(s.URL, "http://") }

func get(t testing.TB, url, host string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if host != "" {
		req.Host = host
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestHTTPRoundRobinHostnamePathAndReconfigure(t *testing.T) {
	a, b, api := backend(t, "a"), backend(t, "b"), backend(t, "api")
	l := newLB(t)
	c := Config{Rules: []Rule{
		{SourcePort: 80, Service: "web", Backends: []string{hostOf(a), hostOf(b)}},
		{SourcePort: 80, Service: "api", Hostname: "api.example.com", Path: "/v1", Backends: []string{hostOf(api)}},
	}}
	c.Seal()
	if err := l.Apply(c); err != nil {
		t.Fatal(err)
	}
	addr := l.Addr(80).String()
	url := "http://" + addr
	seen := map[string]int{}
	for range 4 {
		_, body := get(t, url+"/", "")
		seen[body]++
	}
	if seen["a"] != 2 || seen["b"] != 2 {
		t.Errorf("round robin: %v", seen)
	}
	if _, body := get(t, url+"/v1/x", "api.example.com:80"); body != "api" {
		t.Errorf("host+path rule: got %q", body)
	}
	if _, body := get(t, url+"/v2", "api.example.com"); body != "a" && body != "b" {
		t.Errorf("path mismatch falls to the default rule: got %q", body)
	}

	// New backends, same port: no restart (same listener address).
	c.Rules[0].Backends = []string{hostOf(b)}
	c.Seal()
	if err := l.Apply(c); err != nil {
		t.Fatal(err)
	}
	if got := l.Addr(80).String(); got != addr {
		t.Fatalf("listener changed on reconfigure: %s -> %s", addr, got)
	}
	for range 3 {
		if _, body := get(t, url+"/", ""); body != "b" {
			t.Fatalf("after reconfigure got %q, want b", body)
		}
	}
	c.Rules[0].Backends = nil
	if err := l.Apply(c); err != nil {
		t.Fatal(err)
	}
	if code, _ := get(t, url+"/", ""); code != http.StatusServiceUnavailable {
		t.Errorf("no backends: status %d, want 503", code)
	}
	// A port no longer configured is closed.
	if err := l.Apply(Config{Rules: []Rule{{SourcePort: 81, Backends: []string{hostOf(a)}}}}); err != nil {
		t.Fatal(err)
	}
	if l.Addr(80) != nil {
		t.Error("port 80 still open after its rules went away")
	}
}

func TestGetRetriesAnotherBackendWhenOneIsGone(t *testing.T) {
	a := backend(t, "a")
	dead := backend(t, "dead")
	deadAddr := hostOf(dead)
	dead.Close() // connection refused from now on
	l := newLB(t)
	if err := l.Apply(Config{Rules: []Rule{{SourcePort: 80, Backends: []string{deadAddr, hostOf(a)}}}}); err != nil {
		t.Fatal(err)
	}
	url := "http://" + l.Addr(80).String() + "/"
	for i := range 6 {
		if code, body := get(t, url, ""); code != 200 || body != "a" {
			t.Fatalf("request %d: %d %q, want 200 a", i, code, body)
		}
	}
	// A POST with a body is not replayed after the request was sent, but
	// a refused connect is retried: nothing reached the dead backend.
	resp, err := http.Post(url, "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("POST after refused connect: %d", resp.StatusCode)
	}
}

// A backend that resets connections mid-request (stopped during an
// upgrade) costs idempotent requests nothing.
func TestGetRetriesAfterResetMidRequest(t *testing.T) {
	getsPassBrokenBackend(t, func(c net.Conn) {
		_, _ = bufio.NewReader(c).ReadString('\n') // read the request line, then drop it
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
	})
}

// A backend that dies between its headers and its body (busybox httpd
// killed mid-response as its container stops) costs a GET nothing: a small
// response is read whole before it is passed on, and a failed read is
// retried on another backend like a failed connect.
func TestGetRetriesWhenBodyIsCutAfterHeaders(t *testing.T) {
	getsPassBrokenBackend(t, func(c net.Conn) {
		r := bufio.NewReader(c)
		for { // the request's head
			l, err := r.ReadString('\n')
			if err != nil || l == "\r\n" {
				break
			}
		}
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n") // and no body
	})
}

// getsPassBrokenBackend routes to a healthy backend "a" and to one that
// runs broken on each connection and then closes it: every GET must be
// answered by "a".
func getsPassBrokenBackend(t *testing.T, broken func(net.Conn)) {
	t.Helper()
	a := backend(t, "a")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			broken(c)
			c.Close()
		}
	}()
	l := newLB(t)
	if err := l.Apply(Config{Rules: []Rule{{SourcePort: 80, Backends: []string{ln.Addr().String(), hostOf(a)}}}}); err != nil {
		t.Fatal(err)
	}
	url := "http://" + l.Addr(80).String() + "/"
	for i := range 4 {
		if code, body := get(t, url, ""); code != 200 || body != "a" {
			t.Fatalf("request %d: %d %q, want 200 a", i, code, body)
		}
	}
}

// When every backend of a route is gone (the old containers of a rolling
// upgrade stopped before the LB heard of the new ones), a request waits
// for the next config and is answered by its backends.
func TestRequestWaitsForNewBackendsWhenAllFailed(t *testing.T) {
	dead := backend(t, "dead")
	deadAddr := hostOf(dead)
	dead.Close()
	l := newLB(t)
	if err := l.Apply(Config{Rules: []Rule{{SourcePort: 80, Backends: []string{deadAddr}}}}); err != nil {
		t.Fatal(err)
	}
	url := "http://" + l.Addr(80).String() + "/"
	a := backend(t, "a")
	go func() {
		time.Sleep(200 * time.Millisecond)
		_ = l.Apply(Config{Version: "2", Rules: []Rule{{SourcePort: 80, Backends: []string{hostOf(a)}}}})
	}()
	if code, body := get(t, url, ""); code != 200 || body != "a" {
		t.Fatalf("GET while the config changes: %d %q, want 200 a", code, body)
	}

	// No newer config: the request fails once DownFor has passed.
	a.Close()
	start := time.Now()
	if code, _ := get(t, url, ""); code != http.StatusBadGateway {
		t.Errorf("GET with every backend gone and no new config: %d, want 502", code)
	}
	if waited := time.Since(start); waited > 5*time.Second {
		t.Errorf("waited %v for a config that never came, want about DownFor (2s)", waited)
	}
}

func TestStickyCookiePinsBackend(t *testing.T) {
	a, b := backend(t, "a"), backend(t, "b")
	l := newLB(t)
	if err := l.Apply(Config{Rules: []Rule{{SourcePort: 80, StickyCookie: "lb", Backends: []string{hostOf(a), hostOf(b)}}}}); err != nil {
		t.Fatal(err)
	}
	url := "http://" + l.Addr(80).String() + "/"
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	first, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var cookie *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == "lb" {
			cookie = c
		}
	}
	if cookie == nil {
		t.Fatal("no sticky cookie set")
	}
	for range 4 {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		req.AddCookie(cookie)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != string(first) {
			t.Fatalf("sticky: got %q, first was %q", body, first)
		}
	}
}

func TestTCPForwarding(t *testing.T) {
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { echo.Close() })
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	l := newLB(t)
	if err := l.Apply(Config{Rules: []Rule{{SourcePort: 5432, Protocol: "tcp", Backends: []string{"127.0.0.1:1", echo.Addr().String()}}}}); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		c, err := net.Dial("tcp", l.Addr(5432).String())
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(c, "hello %d", i)
		c.(*net.TCPConn).CloseWrite()
		got, _ := io.ReadAll(c)
		c.Close()
		if string(got) != fmt.Sprintf("hello %d", i) {
			t.Fatalf("conn %d: echo %q", i, got)
		}
	}
}

func TestValidateNamesTheRule(t *testing.T) {
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{Rules: []Rule{{SourcePort: 80, Protocol: "udp"}}}, `rule 0 (port 80): protocol "udp"`},
		{Config{Rules: []Rule{{SourcePort: 80}, {SourcePort: 80, Protocol: "tcp"}}}, "rule 1 (port 80): port already has a http rule"},
		{Config{Rules: []Rule{{SourcePort: 0}}}, "rule 0 (port 0): source_port is 0"},
	} {
		err := c.cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Validate(%+v) = %v, want %q", c.cfg.Rules, err, c.want)
		}
	}
}

func TestPollerAppliesEachNewVersion(t *testing.T) {
	var mu sync.Mutex
	versions := []Config{{Rules: []Rule{{SourcePort: 80, Backends: []string{"10.0.0.1:80"}}}}, {Rules: []Rule{{SourcePort: 80, Backends: []string{"10.0.0.2:80"}}}}}
	for i := range versions {
		versions[i].Seal()
	}
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer tok" || r.URL.Query().Get("host") != "h1" {
			http.Error(w, "bad auth or host", http.StatusForbidden)
			return
		}
		mu.Lock()
		calls++
		n := calls
		mu.Unlock()
		switch {
		case n == 2:
			http.Error(w, "down for a moment", http.StatusBadGateway) // the LB keeps its config
			return
		case n >= 3 && r.URL.Query().Get("wait") != versions[0].Version:
			t.Errorf("poll %d waited on %q", n, r.URL.Query().Get("wait"))
		}
		_ = json.NewEncoder(w).Encode(versions[min(n-1, 1)])
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var applied []string
	p := &Poller{URL: srv.URL + "/lb?x=1", Token: "tok", Host: "h1", Retry: 10 * time.Millisecond}
	_ = p.Run(ctx, func(c Config) error {
		applied = append(applied, c.Rules[0].Backends[0])
		if len(applied) == 2 {
			cancel()
		}
		return nil
	}, func(string, ...any) {})
	if strings.Join(applied, ",") != "10.0.0.1:80,10.0.0.2:80" {
		t.Fatalf("applied %v", applied)
	}
}
