package test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dockmaster/dockmaster/internal/testenv"
)

// dmServer is a `dockmaster serve` process on a temp store, with an
// environment prod made of harness hosts and a prod member key.
type dmServer struct {
	URL            string
	Bin            string
	Access, Secret string
	Dir            string
	log            *os.File
}

// repoRoot is the module root (the parent of test/).
func repoRoot(t testing.TB) string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("no caller")
	}
	return filepath.Dir(filepath.Dir(file))
}

// buildDockmaster builds the binary into a temp dir.
func buildDockmaster(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "dockmaster")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/dockmaster")
	cmd.Dir = repoRoot(t)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/dockmaster: %v\n%s", err, out)
	}
	return bin
}

// startDockmaster runs `bin serve` with prod = hosts, and creates a prod
// member key through the bootstrap admin. Stopped (SIGTERM) on cleanup.
func startDockmaster(t testing.TB, bin string, hosts ...*testenv.Host) *dmServer {
	t.Helper()
	dir := t.TempDir()
	port := testenv.FreePort(t)
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "listen: 127.0.0.1:%d\nstore: %s\npublic_url: http://127.0.0.1:%d\nlog: {format: json, level: warn}\nshutdown_timeout: 5s\n",
		port, filepath.Join(dir, "dm.db"), port)
	fmt.Fprintf(&cfg, "auth:\n  admin_password: admin-pw-for-e2e-1\nenvironments:\n  - name: prod\n    hosts:\n")
	for _, h := range hosts {
		fmt.Fprintf(&cfg, "      - {name: %s, endpoint: %q, address: %s}\n", h.Name, h.Endpoint, h.IP)
	}
	cfgPath := filepath.Join(dir, "dockmaster.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "serve.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", "--config", cfgPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = cleanEnv()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &dmServer{URL: fmt.Sprintf("http://127.0.0.1:%d", port), Bin: bin, Dir: dir, log: logf}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("dockmaster serve log:\n%s", tail(string(b), 4000))
		}
		logf.Close()
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(s.URL + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(logf.Name())
			t.Fatalf("dockmaster serve did not answer /healthz: %v\n%s", err, b)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Bootstrap admin -> session -> an environment key for prod.
	var login struct {
		CSRF string `json:"csrf_token"`
	}
	resp := s.call(t, http.MethodPost, "/login", nil, `{"user":"admin","password":"admin-pw-for-e2e-1"}`, &login)
	var key struct {
		AccessKey string `json:"access_key"`
		Secret    string `json:"secret"`
	}
	s.call(t, http.MethodPost, "/api/v1/environments/prod/keys", func(r *http.Request) {
		for _, c := range resp.Cookies() {
			r.AddCookie(c)
		}
		r.Header.Set("X-CSRF-Token", login.CSRF)
	}, `{"role":"member","description":"e2e"}`, &key)
	s.Access, s.Secret = key.AccessKey, key.Secret
	return s
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// call sends a JSON request and decodes a 2xx answer into out.
func (s *dmServer) call(t testing.TB, method, path string, prep func(*http.Request), body string, out any) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, s.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if prep != nil {
		prep(req)
	} else if s.Access != "" {
		req.SetBasicAuth(s.Access, s.Secret)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %v in %s", method, path, err, b)
		}
	}
	return resp
}

// stackStatus is the part of GET .../stacks/:stack the tests read.
type stackStatus struct {
	State    string `json:"state"`
	Services []struct {
		Name       string `json:"name"`
		State      string `json:"state"`
		Version    string `json:"version"`
		OldVersion string `json:"old_version"`
		Running    int    `json:"running"`
		Healthy    int    `json:"healthy"`
		PerHost    map[string]struct {
			Running int `json:"running"`
		} `json:"per_host"`
	} `json:"services"`
	Hosts []struct {
		Name  string `json:"name"`
		Usage struct {
			MemUsage uint64
		} `json:"usage"`
	} `json:"hosts"`
}

func (s *dmServer) status(t testing.TB, stack string) stackStatus {
	t.Helper()
	var st stackStatus
	s.call(t, http.MethodGet, "/api/v1/environments/prod/stacks/"+stack, nil, "", &st)
	return st
}

// tryStatus is status, with ok false instead of failing on a non-2xx answer
// (a detached job may not have created the stack yet).
func (s *dmServer) tryStatus(t testing.TB, stack string) (stackStatus, bool) {
	t.Helper()
	var st stackStatus
	req, _ := http.NewRequest(http.MethodGet, s.URL+"/api/v1/environments/prod/stacks/"+stack, nil)
	req.SetBasicAuth(s.Access, s.Secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, false
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st, true
}

// cleanEnv is the process environment without dockmaster's and
// rancher's variables, so the host running the tests cannot leak in.
func cleanEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "DOCKMASTER_") || strings.HasPrefix(kv, "RANCHER_") || strings.HasPrefix(kv, "COMPOSE_") ||
			strings.HasPrefix(kv, "VERSION=") {
			continue
		}
		out = append(out, kv)
	}
	return out
}

// runCLI runs bin args in dir with the server's URL and key in the
// environment (unless s.URL is empty), plus extra; it returns stdout, stderr and the exit code.
func (s *dmServer) runCLI(t testing.TB, dir string, extra []string, bin string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	cmd.Env = cleanEnv()
	if s.URL != "" {
		cmd.Env = append(cmd.Env, "DOCKMASTER_URL="+s.URL, "DOCKMASTER_ACCESS_KEY="+s.Access, "DOCKMASTER_SECRET_KEY="+s.Secret)
	}
	cmd.Env = append(cmd.Env, extra...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatalf("%s %v: %v", bin, args, err)
	}
	return out.String(), errb.String(), code
}

// removeOwned removes what dockmaster created on the hosts (containers
// and the stack networks) before the harness stops them: leaked bridges
// exhaust the subnets. Register it before StartServer, so that it runs once
// the server (and its reconciler) has stopped.
func removeOwned(t testing.TB, hosts ...*testenv.Host) {
	t.Cleanup(func() {
		for _, h := range hosts {
			// A container create sent just before the server stopped may
			// still land: sweep until a pass finds nothing left to remove.
			var last error
			for range 10 {
				found, err := testenv.RemoveLabeled(context.Background(), h.Client, "io.dockmaster.env")
				if last = err; found == 0 {
					break
				}
				time.Sleep(200 * time.Millisecond)
			}
			if last != nil {
				t.Errorf("%s: %v", h.Name, last)
			}
		}
	})
}

const upCompose = `version: '2'
services:
  web:
    image: dockmaster-test/web:${VERSION}
    # httpd as PID 1 ignores SIGTERM: every stop would wait the 10s grace.
    command: ["sh", "-c", "trap 'exit 0' TERM; httpd -f -p 8080 -h /www & wait"]
    labels:
      app: java-service-1
`

const upRancher = `version: '2'
services:
  web:
    scale: 3
    health_check:
      port: 8080
      request_line: GET /healthz HTTP/1.0
      interval: 300
      healthy_threshold: 1
      unhealthy_threshold: 3
      response_timeout: 1000
      initializing_timeout: 20000
    upgrade_strategy:
      start_first: true
      batch_size: 2
`

// TestUpCLI drives `dockmaster up` against real hosts: scale 3 over two
// hosts with per-host progress, an upgrade held in upgraded, a second one
// refused until --confirm-upgrade, then a rollback.
func TestUpCLI(t *testing.T) {
	testenv.Docker(t)
	h1, h2 := testenv.StartHost(t, "h1"), testenv.StartHost(t, "h2")
	for _, h := range []*testenv.Host{h1, h2} {
		for _, v := range []string{"1.0.0", "1.0.1", "1.0.2"} {
			testenv.HTTPServerImage(t, h.Client, v)
		}
	}
	removeOwned(t, h1, h2)
	bin := buildDockmaster(t)
	s := startDockmaster(t, bin, h1, h2)

	work := filepath.Join(t.TempDir(), "java-service-1")
	if err := os.MkdirAll(work, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, text := range map[string]string{"docker-compose.yml": upCompose, "rancher-compose.yml": upRancher} {
		if err := os.WriteFile(filepath.Join(work, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	up := func(args ...string) (string, string, int) {
		return s.runCLI(t, work, nil, bin, append([]string{"up", "-f", "docker-compose.yml", "-e", "prod"}, args...)...)
	}

	// Stack name defaults to the directory: java-service-1.
	out, errOut, code := up("--set", "VERSION=1.0.0")
	if code != 0 {
		t.Fatalf("up: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	for _, want := range []string{"web: h1 started", "h2 started", "(scale 3)", "web: active 1.0.0"} {
		if !strings.Contains(out, want) {
			t.Errorf("up output lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(out, "healthy 2/2") || !strings.Contains(out, "healthy 1/1") {
		t.Errorf("up output does not show 2+1 placement, all healthy:\n%s", out)
	}
	st := s.status(t, "java-service-1")
	if st.State != "active" || st.Services[0].Running != 3 || st.Services[0].Healthy != 3 || len(st.Services[0].PerHost) != 2 {
		t.Fatalf("after up: %+v", st)
	}
	for _, h := range st.Hosts { // resource use is sampled (a second) only when asked for
		if h.Usage.MemUsage != 0 {
			t.Errorf("stack status sampled host %s's use unasked: %+v", h.Name, st.Hosts)
		}
	}
	var withUse stackStatus
	s.call(t, http.MethodGet, "/api/v1/environments/prod/stacks/java-service-1?usage=1", nil, "", &withUse)
	for _, h := range withUse.Hosts {
		if h.Usage.MemUsage == 0 {
			t.Errorf("stack status?usage=1: host %s has no memory use: %+v", h.Name, withUse.Hosts)
		}
	}
	if len(withUse.Hosts) != 2 {
		t.Errorf("stack status hosts = %+v, want 2", withUse.Hosts)
	}

	out, errOut, code = up("--upgrade", "--set", "VERSION=1.0.1")
	if code != 0 || !strings.Contains(out, "web: upgraded 1.0.1 (previous 1.0.0 kept stopped)") || !strings.Contains(out, "dockmaster finish -e prod -s java-service-1") {
		t.Fatalf("upgrade: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	if st := s.status(t, "java-service-1"); st.State != "upgraded" || st.Services[0].Version != "1.0.1" || st.Services[0].Running != 3 {
		t.Fatalf("after upgrade: %+v", st)
	}

	out, errOut, code = up("--upgrade", "--set", "VERSION=1.0.2")
	if code != 1 || !strings.Contains(errOut, "finish or roll back first, or pass --confirm-upgrade") {
		t.Fatalf("second upgrade while held: exit %d, want 1 with the way out\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	if st := s.status(t, "java-service-1"); st.Services[0].Version != "1.0.1" {
		t.Fatalf("refused upgrade changed the stack: %+v", st)
	}

	out, errOut, code = up("--upgrade", "--confirm-upgrade", "--set", "VERSION=1.0.2")
	if code != 0 || !strings.Contains(out, "web: upgraded 1.0.2 (previous 1.0.1 kept stopped)") {
		t.Fatalf("upgrade --confirm-upgrade: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}

	out, errOut, code = s.runCLI(t, work, nil, bin, "rollback", "-e", "prod", "-s", "java-service-1")
	if code != 0 || !strings.Contains(out, "web: active 1.0.1") {
		t.Fatalf("rollback: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	out, _, code = s.runCLI(t, work, nil, bin, "status", "-e", "prod", "-s", "java-service-1")
	if code != 0 || !strings.Contains(out, "stack java-service-1: active") {
		t.Fatalf("status: exit %d\n%s", code, out)
	}
	out, _, code = s.runCLI(t, work, nil, bin, "revisions", "-e", "prod", "-s", "java-service-1")
	if code != 0 || strings.Count(out, "\n") != 4 { // header + 3 revisions (the refused one made none)
		t.Fatalf("revisions: exit %d\n%s", code, out)
	}
	if strings.Count(out, "key:"+s.Access) != 3 { // each revision names who deployed it: the CLI's key
		t.Errorf("revisions do not name the key that deployed them:\n%s", out)
	}
	out, _, code = s.runCLI(t, work, nil, bin, "logs", "-e", "prod", "-s", "java-service-1", "--tail", "5")
	if code != 0 {
		t.Fatalf("logs: exit %d\n%s", code, out)
	}
}
