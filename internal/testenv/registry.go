package testenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// registryBin is Debian's docker-registry (distribution 2.8).
const registryBin = "docker-registry"

// Registry is a docker-registry process serving plain HTTP on 127.0.0.1.
// Docker daemons treat 127.0.0.0/8 registries as insecure, so any daemon on
// this machine pushes to and pulls from it without TLS or extra flags:
// tag images Addr+"/name:tag".
type Registry struct {
	Addr string // host:port, e.g. "127.0.0.1:41234"
	URL  string // "http://" + Addr
	User string // set by StartRegistryWithAuth
	Pass string // set by StartRegistryWithAuth
}

// FreePort returns a TCP port that was free on 127.0.0.1 a moment ago. Another
// process may take it before the caller binds it; callers that start servers
// should retry on "address in use".
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testenv: free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// StartRegistry starts an unauthenticated registry with a temporary storage
// dir and waits until GET /v2/ answers. The process is killed on cleanup.
func StartRegistry(t testing.TB) *Registry {
	t.Helper()
	return startRegistry(t, "", "")
}

// StartRegistryWithAuth starts a registry requiring HTTP basic auth with the
// single account user:pass (htpasswd, bcrypt). Pushes and pulls without
// credentials get 401; pass credentials to the daemon with
// registry.EncodeAuthConfig(registry.AuthConfig{Username, Password,
// ServerAddress: r.Addr}) as PushOptions/PullOptions.RegistryAuth.
func StartRegistryWithAuth(t testing.TB, user, pass string) *Registry {
	t.Helper()
	if user == "" {
		t.Fatalf("testenv: StartRegistryWithAuth: empty user")
	}
	return startRegistry(t, user, pass)
}

func startRegistry(t testing.TB, user, pass string) *Registry {
	t.Helper()
	bin, err := exec.LookPath(registryBin)
	if err != nil {
		t.Fatalf("testenv: registry: %v (install docker-registry, see scripts/setup.sh)", err)
	}
	dir := t.TempDir()
	auth := ""
	if user != "" {
		hash, err := bcrypt.GenerateFromPassword([]byte(pass), bcrypt.MinCost)
		if err != nil {
			t.Fatalf("testenv: registry htpasswd: %v", err)
		}
		htpasswd := filepath.Join(dir, "htpasswd")
		if err := os.WriteFile(htpasswd, []byte(user+":"+string(hash)+"\n"), 0o600); err != nil {
			t.Fatalf("testenv: registry htpasswd: %v", err)
		}
		auth = fmt.Sprintf("auth:\n  htpasswd:\n    realm: dockmaster-test\n    path: %s\n", htpasswd)
	}
	// The port may be taken between FreePort and the registry's bind: retry.
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t)))
		r, err := runRegistry(t, bin, dir, addr, auth)
		if err == nil {
			r.User, r.Pass = user, pass
			return r
		}
		lastErr = err
	}
	t.Fatalf("testenv: registry: %v", lastErr)
	return nil
}

// runRegistry starts one registry on addr. On error nothing is left running.
func runRegistry(t testing.TB, bin, dir, addr, auth string) (*Registry, error) {
	t.Helper()
	storage := filepath.Join(dir, "storage-"+addr[len("127.0.0.1:"):])
	config := fmt.Sprintf(`version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
%s`, storage, addr, auth)
	cfgPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgPath, []byte(config), 0o600); err != nil {
		return nil, fmt.Errorf("write config: %w", err)
	}
	logPath := filepath.Join(dir, "registry.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("create log: %w", err)
	}
	defer logf.Close() // the child has its own copy
	cmd := exec.Command(bin, "serve", cfgPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group, so a ^C meant for `go test` reaches it only through our cleanup.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() {
		_ = cmd.Process.Kill()
		<-exited
	}

	r := &Registry{Addr: addr, URL: "http://" + addr}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for {
		select {
		case err := <-exited:
			exited <- err // stop() reads it again
			stop()
			return nil, fmt.Errorf("%s exited before answering on %s: %v; output:\n%s", bin, addr, err, readTail(logPath))
		case <-ctx.Done():
			stop()
			return nil, fmt.Errorf("no answer on %s within 15s; output:\n%s", r.URL+"/v2/", readTail(logPath))
		case <-time.After(50 * time.Millisecond):
		}
		if err := pingRegistry(ctx, r.URL); err == nil {
			break
		}
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("testenv: registry %s output:\n%s", addr, readTail(logPath))
		}
	})
	return r, nil
}

// pingRegistry succeeds when the registry answers /v2/ with 200 or, with
// auth on, 401.
func pingRegistry(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/v2/", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusUnauthorized {
		return errors.New(resp.Status)
	}
	return nil
}

// readTail returns the last 4 KiB of a log file, for error messages.
func readTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	if len(b) > 4096 {
		b = b[len(b)-4096:]
	}
	return string(b)
}
