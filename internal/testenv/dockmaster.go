package testenv

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var binary struct {
	once sync.Once
	path string
	err  error
}

// Binary builds ./cmd/dockmaster once per test process and returns its
// path. Tests that crash, restart or signal the service run the real
// binary, not an in-process server.
func Binary(t testing.TB) string {
	t.Helper()
	binary.once.Do(func() {
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..")
		dir, err := os.MkdirTemp("", "dockmaster-bin-")
		if err != nil {
			binary.err = err
			return
		}
		binary.path = filepath.Join(dir, "dockmaster")
		cmd := exec.Command("go", "build", "-o", binary.path, "./cmd/dockmaster")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			binary.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binary.err != nil {
		t.Fatal(binary.err)
	}
	return binary.path
}

// AdminPassword is the bootstrap admin's password in StartServer configs.
const AdminPassword = "test-admin-pw-0123456789"

// Server is a `dockmaster serve` child process on a temp store.
type Server struct {
	URL    string
	Addr   string
	Dir    string // holds the store, the config and the log
	Config string // config file path
	Env    []string

	t   testing.TB
	cmd *exec.Cmd
	log *os.File
}

// StartServer runs `dockmaster serve` with config (YAML without listen,
// store and auth, which it adds) and waits until /readyz answers. It is
// stopped (SIGKILL) on cleanup; its log is printed when the test failed.
func StartServer(t testing.TB, config string, env ...string) *Server {
	t.Helper()
	return startServer(t, "", config, env)
}

// ReplicaSigningKey is auth.signing_key in StartReplica configs.
const ReplicaSigningKey = "test-replica-signing-key-0123456789abcdef"

// StartReplica is StartServer on a shared store (a postgres:// URL, see
// internal/store/pgtest): several replicas of one dockmaster, each with
// its own port and directory, all signing with ReplicaSigningKey.
func StartReplica(t testing.TB, store, config string, env ...string) *Server {
	t.Helper()
	return startServer(t, store, config, env)
}

func startServer(t testing.TB, store, config string, env []string) *Server {
	t.Helper()
	dir := t.TempDir()
	addr := fmt.Sprintf("127.0.0.1:%d", FreePort(t))
	authExtra := ""
	if store == "" {
		store = filepath.Join(dir, "dockmaster.db")
	} else {
		authExtra = "  signing_key: " + ReplicaSigningKey + "\n"
	}
	cfg := fmt.Sprintf("listen: %s\nstore: %s\ndata_dir: %s\nlog:\n  format: json\n  level: debug\nauth:\n  admin_password: %s\n%s%s",
		addr, store, dir, AdminPassword, authExtra, config)
	path := filepath.Join(dir, "dockmaster.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	s := &Server{URL: "http://" + addr, Addr: addr, Dir: dir, Config: path, Env: env, t: t}
	t.Cleanup(func() {
		s.Kill()
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "serve.log"))
			t.Logf("dockmaster log (tail):\n%s", tail(string(b), 60))
		}
	})
	s.Start()
	return s
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Start (re)starts the process on the same store and waits for /readyz.
func (s *Server) Start() {
	s.t.Helper()
	log, err := os.OpenFile(filepath.Join(s.Dir, "serve.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		s.t.Fatal(err)
	}
	cmd := exec.Command(Binary(s.t), "serve", "--config", s.Config)
	cmd.Env = append(os.Environ(), s.Env...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Dir = s.Dir
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	s.cmd, s.log = cmd, log
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(s.URL + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(s.Dir, "serve.log"))
			s.t.Fatalf("dockmaster did not become ready: %v\n%s", err, tail(string(b), 40))
		}
		if cmd.ProcessState != nil {
			s.t.Fatalf("dockmaster exited early")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Kill ends the process with SIGKILL, as a crash would.
func (s *Server) Kill() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	_ = s.cmd.Wait()
	s.log.Close()
	s.cmd = nil
}

// Wait waits for the process to exit by itself (e.g. a crash point).
func (s *Server) Wait(timeout time.Duration) error {
	done := make(chan error, 1)
	go func() { done <- s.cmd.Wait() }()
	select {
	case err := <-done:
		s.log.Close()
		s.cmd = nil
		return err
	case <-time.After(timeout):
		return fmt.Errorf("dockmaster still running after %s", timeout)
	}
}

// Log returns what the process logged so far.
func (s *Server) Log() string {
	b, _ := os.ReadFile(filepath.Join(s.Dir, "serve.log"))
	return string(b)
}

// Client is an HTTP client logged in as a user (cookie session + CSRF).
type Client struct {
	t    testing.TB
	base string
	hc   *http.Client
	csrf string
}

// Login signs in as user with password.
func (s *Server) Login(user, password string) *Client {
	s.t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &Client{t: s.t, base: s.URL, hc: &http.Client{Jar: jar, Timeout: 60 * time.Second}}
	var out struct {
		CSRF string `json:"csrf_token"`
	}
	if st := c.Do("POST", "/login", map[string]string{"user": user, "password": password}, &out); st != http.StatusOK {
		s.t.Fatalf("login %s: status %d", user, st)
	}
	c.csrf = out.CSRF
	return c
}

// Admin is a client logged in as the bootstrap admin.
func (s *Server) Admin() *Client { return s.Login("admin", AdminPassword) }

// Do sends body as JSON (nil for none) and decodes a JSON answer into out
// (nil to discard). It returns the status; transport errors fail the test.
func (c *Client) Do(method, path string, body, out any) int {
	c.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			c.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if c.csrf != "" {
		req.Header.Set("X-CSRF-Token", c.csrf)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			c.t.Fatalf("%s %s: status %d, undecodable answer %q: %v", method, path, resp.StatusCode, b, err)
		}
	}
	return resp.StatusCode
}
