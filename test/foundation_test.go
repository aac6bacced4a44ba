package test

import (
	"context"
	"database/sql"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/dockmaster/dockmaster/internal/testenv"
)

// runBinary runs the binary to completion and returns its exit code and
// combined output.
func runBinary(t *testing.T, dir string, env []string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(testenv.Binary(t), args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, string(out)
}

// With no config file at all, serve keeps its state in ./data and answers
// /healthz within 5 seconds; SIGTERM stops it with exit code 0.
func TestServeWithEmbeddedDefaults(t *testing.T) {
	dir := t.TempDir()
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	cmd := exec.Command(testenv.Binary(t), "serve")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "DOCKMASTER_LISTEN="+addr, "DOCKMASTER_CONFIG=")
	var log strings.Builder
	cmd.Stdout, cmd.Stderr = &log, &log
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	for {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Since(start) > 5*time.Second {
			t.Fatalf("no 200 from /healthz within 5s (last error %v)\n%s", err, log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("/healthz answered 200 after %s", time.Since(start).Round(time.Millisecond))
	if _, err := os.Stat(filepath.Join(dir, "data", "dockmaster.db")); err != nil {
		t.Fatalf("default store not created: %v", err)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, log.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("still running 10s after SIGTERM")
	}
}

func TestConfigErrorsExit2WithFileLineAndKey(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "dockmaster.yaml")
	if err := os.WriteFile(cfg, []byte("listen: 127.0.0.1:0\nlog:\n  levle: info\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"serve", "--config", cfg}, {"config", "check", cfg}} {
		code, out := runBinary(t, dir, nil, args...)
		if code != 2 || !strings.Contains(out, cfg+":3") || !strings.Contains(out, "levle") {
			t.Fatalf("%v: exit %d, output %q; want 2 naming %s:3 and the key", args, code, out, cfg)
		}
	}
	example, err := filepath.Abs(filepath.Join("..", "dockmaster.example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	code, out := runBinary(t, dir, []string{"GITHUB_WEBHOOK_SECRET=planted-s3cret"}, "config", "check", example)
	if code != 0 || !strings.Contains(out, "effective config") || strings.Contains(out, "planted-s3cret") {
		t.Fatalf("example config: exit %d (want 0, secret redacted): %s", code, out)
	}
}

func TestRefusesDatabaseFromANewerSchema(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "dm.db")
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	// A first start creates and migrates the database.
	cmd := exec.Command(testenv.Binary(t), "serve", "--store", store, "--listen", addr)
	cmd.Dir = dir
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		if resp, err := http.Get("http://" + addr + "/readyz"); err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("first start never became ready")
		}
		time.Sleep(50 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
	db, err := sql.Open("sqlite", store)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(context.Background(), `INSERT INTO schema_migrations(version, name) VALUES (9999, '9999_future.sql')`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	code, out := runBinary(t, dir, nil, "serve", "--store", store, "--listen", addr)
	if code == 0 || !strings.Contains(out, "newer than this binary") || !strings.Contains(out, "9999") {
		t.Fatalf("exit %d, output %q; want a refusal naming the versions", code, out)
	}
}

func TestCLIExitCodes(t *testing.T) {
	dir := t.TempDir()
	if code, out := runBinary(t, dir, nil, "version"); code != 0 || !strings.HasPrefix(out, "dockmaster ") {
		t.Fatalf("version: %d %q", code, out)
	}
	if code, out := runBinary(t, dir, nil, "--help"); code != 0 || !strings.Contains(out, "Exit codes") {
		t.Fatalf("--help: %d %q", code, out)
	}
	if code, _ := runBinary(t, dir, nil, "no-such-command"); code != 2 {
		t.Fatalf("unknown command: exit %d, want 2", code)
	}
	if code, _ := runBinary(t, dir, nil, "serve", "--no-such-flag"); code != 2 {
		t.Fatalf("bad flag: exit %d, want 2", code)
	}
}
