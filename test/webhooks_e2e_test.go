package test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/dockmaster/dockmaster/internal/ingest/loadgen"
	"github.com/dockmaster/dockmaster/internal/store"
)

const whSecret = "e2e-secret"

// whBuild builds the dockmaster binary once per test.
func whBuild(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "dockmaster")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/dockmaster")
	cmd.Dir = ".."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// whServer is a dockmaster serve process.
type whServer struct {
	cmd    *exec.Cmd
	addr   string
	exited chan struct{}
	err    error // Wait's result, after exited is closed
	log    *lockedBuffer
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func whConfig(t *testing.T, dir string) string {
	t.Helper()
	cfg := filepath.Join(dir, "dockmaster.yaml")
	body := "webhooks:\n  secrets:\n    github: " + whSecret + "\nshutdown_timeout: 8s\n"
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// whStart starts serve on dir's store, on a port the kernel picks (so no
// other process can take it between choosing and binding), and waits for
// /healthz.
func whStart(t *testing.T, bin, dir string) *whServer {
	t.Helper()
	s := &whServer{exited: make(chan struct{}), log: &lockedBuffer{}}
	s.cmd = exec.Command(bin, "serve", "--config", whConfig(t, dir), "--store", filepath.Join(dir, "dm.db"), "--listen", "127.0.0.1:0")
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.err = s.cmd.Wait(); close(s.exited) }()
	t.Cleanup(func() {
		select {
		case <-s.exited:
		default:
			s.cmd.Process.Kill()
			<-s.exited
		}
		if t.Failed() {
			t.Logf("server log:\n%s", s.log.String())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		if s.addr == "" {
			s.addr = whListenAddr(s.log.String())
		}
		if s.addr != "" {
			resp, err := http.Get("http://" + s.addr + "/healthz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return s
				}
			}
		}
		select {
		case <-s.exited:
			t.Fatalf("dockmaster serve exited: %v\n%s", s.err, s.log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("dockmaster serve (addr %q) not healthy after 30s:\n%s", s.addr, s.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// whListenAddr finds the address in serve's "dockmaster serving" log line
// (JSON, as stderr is not a terminal).
func whListenAddr(log string) string {
	for _, line := range strings.Split(log, "\n") {
		var l struct {
			Msg  string `json:"msg"`
			Addr string `json:"addr"`
		}
		if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "dockmaster serving" {
			return l.Addr
		}
	}
	return ""
}

func (s *whServer) url() string { return "http://" + s.addr + "/webhooks/github" }

// countingTransport calls at once, when the n-th 2xx response arrives.
type countingTransport struct {
	base http.RoundTripper
	acks atomic.Int64
	n    int64
	at   func()
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := c.base.RoundTrip(r)
	if err == nil && resp.StatusCode/100 == 2 && c.acks.Add(1) == c.n {
		c.at()
	}
	return resp, err
}

// TestWebhookCrashSafety: SIGKILL mid-burst loses no acknowledged delivery,
// and stores none twice or without its event.
func TestWebhookCrashSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := whBuild(t)
	dir := t.TempDir()
	srv := whStart(t, bin, dir)

	const total, conc = 600, 16
	hooks := make([]loadgen.Hook, total)
	for i := range hooks {
		hooks[i] = loadgen.GitHubPush(whSecret, "e2e/app", fmt.Sprintf("crash-%04d", i), i)
	}
	client := loadgen.NewClient(conc)
	ct := &countingTransport{base: client.Transport, n: 150, at: func() { srv.cmd.Process.Signal(syscall.SIGKILL) }}
	client.Transport = ct
	results := loadgen.Fire(context.Background(), client, srv.url(), hooks, conc)
	<-srv.exited

	var acked []string
	failed := 0
	for _, r := range results {
		if r.Acknowledged() {
			acked = append(acked, r.DeliveryID)
		} else {
			failed++
		}
	}
	if len(acked) < 150 || failed == 0 {
		t.Fatalf("%d acknowledged, %d failed: the kill did not land mid-burst", len(acked), failed)
	}
	t.Logf("%d acknowledged before SIGKILL, %d not", len(acked), failed)

	srv2 := whStart(t, bin, dir)
	db, err := store.Open(context.Background(), filepath.Join(dir, "dm.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	stored := map[string]int{}
	rows, err := db.Query(`SELECT d.delivery_id, (SELECT COUNT(*) FROM events e WHERE e.delivery = d.id) FROM deliveries d WHERE provider = 'github'`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id string
		var events int
		if err := rows.Scan(&id, &events); err != nil {
			t.Fatal(err)
		}
		stored[id]++
		if events != 1 {
			t.Errorf("delivery %s has %d events rows, want 1 (delivery and event commit together)", id, events)
		}
	}
	rows.Close()
	missing := 0
	for _, id := range acked {
		if stored[id] != 1 {
			missing++
			t.Errorf("acknowledged delivery %s stored %d times", id, stored[id])
		}
	}
	if missing > 0 {
		t.Fatalf("%d of %d acknowledged deliveries not stored exactly once", missing, len(acked))
	}

	// The restarted server still knows them: a retry is a duplicate.
	again := hooks[0]
	res := loadgen.Fire(context.Background(), loadgen.NewClient(1), srv2.url(), []loadgen.Hook{again}, 1)
	if res[0].Status != http.StatusOK {
		t.Errorf("redelivery of %s after restart: %d %v, want 200 duplicate", again.DeliveryID, res[0].Status, res[0].Err)
	}
}

// TestWebhookSIGTERMDrains: a request whose body is still arriving when
// SIGTERM comes completes normally, and the process exits 0.
func TestWebhookSIGTERMDrains(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := whBuild(t)
	srv := whStart(t, bin, t.TempDir())
	hook := loadgen.GitHubPush(whSecret, "e2e/app", "slow-1", 1)

	conn, err := net.Dial("tcp", srv.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var head strings.Builder
	fmt.Fprintf(&head, "POST /webhooks/github HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n", srv.addr, len(hook.Body))
	for k, vs := range hook.Header {
		fmt.Fprintf(&head, "%s: %s\r\n", k, vs[0])
	}
	head.WriteString("\r\n")
	if _, err := io.WriteString(conn, head.String()); err != nil {
		t.Fatal(err)
	}
	// Trickle the body over ~2 s; SIGTERM after the first piece.
	const pieces = 10
	step := (len(hook.Body) + pieces - 1) / pieces
	start := time.Now()
	for i := 0; i < len(hook.Body); i += step {
		if _, err := conn.Write(hook.Body[i:min(i+step, len(hook.Body))]); err != nil {
			t.Fatalf("writing body after %s: %v", time.Since(start), err)
		}
		if i == 0 {
			time.Sleep(100 * time.Millisecond) // let the server start reading it
			if err := srv.cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no response to the in-flight request: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted || !strings.Contains(string(body), `"accepted"`) {
		t.Fatalf("in-flight request answered %d %s, want 202 accepted", resp.StatusCode, body)
	}
	select {
	case <-srv.exited:
		if srv.err != nil {
			t.Fatalf("exit after SIGTERM: %v, want status 0", srv.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("still running 10 s after SIGTERM")
	}
	if d := time.Since(start); d < 1500*time.Millisecond {
		t.Errorf("body took only %s to send; the test wants ~2 s in flight", d)
	}
}
