package server

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/dockmaster/dockmaster/internal/config"
	"github.com/dockmaster/dockmaster/internal/ingest"
	"github.com/dockmaster/dockmaster/internal/ingest/loadgen"
	"github.com/dockmaster/dockmaster/internal/store"
	"github.com/dockmaster/dockmaster/internal/store/storetest"
	"github.com/dockmaster/dockmaster/webhooks"
)

const hookSecret = "s3cret"

type hookServer struct {
	srv *Server
	db  *store.DB
}

func newHookServer(t *testing.T, maxBody int64) *hookServer {
	t.Helper()
	db := storetest.Open(t)
	lookup, err := WebhookSecrets(config.Webhooks{Secrets: map[string]config.Secret{"github": config.NewSecret(hookSecret)}})
	if err != nil {
		t.Fatal(err)
	}
	w := db.DeliveryWriter()
	com := ingest.New(w, ingest.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { com.Run(ctx); w.Close(); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv := New(log, nil)
	(&WebhookAPI{Receiver: webhooks.New(webhooks.Options{Secrets: lookup}), Ingest: com, MaxBodyBytes: maxBody, Log: log}).Register(srv.Engine)
	(&DeliveryAPI{Store: db}).Register(srv.Engine.Group("/api/v1"))
	return &hookServer{srv: srv, db: db}
}

func (s *hookServer) post(t *testing.T, path string, h http.Header, body []byte) (int, map[string]any) {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(string(body)))
	for k, v := range h {
		req.Header[k] = v
	}
	return s.serve(t, req)
}

func (s *hookServer) serve(t *testing.T, req *http.Request) (int, map[string]any) {
	t.Helper()
	w := httptest.NewRecorder()
	s.srv.Engine.ServeHTTP(w, req)
	var out map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil {
		t.Fatalf("%s %s: %d %q is not JSON: %v", req.Method, req.URL, w.Code, w.Body, err)
	}
	return w.Code, out
}

func (s *hookServer) count(t *testing.T, table string) int {
	t.Helper()
	var n int
	if err := s.db.QueryRow(`SELECT COUNT(*) FROM ` + table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func signed(event, delivery string, body []byte) http.Header {
	mac := hmac.New(sha256.New, []byte(hookSecret))
	mac.Write(body)
	return http.Header{"Content-Type": {"application/json"}, "X-Github-Event": {event}, "X-Github-Delivery": {delivery},
		"X-Hub-Signature-256": {"sha256=" + hex.EncodeToString(mac.Sum(nil))}}
}

func TestWebhookAcceptedThenDuplicate(t *testing.T) {
	s := newHookServer(t, 0)
	hook := loadgen.GitHubPush(hookSecret, "team/app", "d-1", 1)
	code, out := s.post(t, "/webhooks/github", hook.Header, hook.Body)
	if code != http.StatusAccepted || out["status"] != "accepted" || out["delivery"] == nil || out["delivery_id"] != "d-1" {
		t.Fatalf("first: %d %v", code, out)
	}
	first := out["delivery"]
	code, out = s.post(t, "/webhooks/github", hook.Header, hook.Body)
	if code != http.StatusOK || out["status"] != "duplicate" || out["delivery"] != first {
		t.Fatalf("second: %d %v, want 200 duplicate of %v", code, out, first)
	}
	if d, e := s.count(t, "deliveries"), s.count(t, "events"); d != 1 || e != 1 {
		t.Fatalf("%d deliveries, %d events; want 1, 1", d, e)
	}
	// The stored headers are the redacted copy, the body is byte-exact.
	var headers string
	var body []byte
	var repo, verdict string
	s.db.QueryRow(`SELECT headers, body, repository, verdict FROM deliveries`).Scan(&headers, &body, &repo, &verdict)
	if string(body) != string(hook.Body) || repo != "team/app" || verdict != "accepted" || !strings.Contains(headers, "X-Github-Delivery") {
		t.Errorf("stored %s %s %q %q", verdict, repo, headers, body)
	}
}

func TestWebhookConcurrentCopies(t *testing.T) {
	s := newHookServer(t, 0)
	hook := loadgen.GitHubPush(hookSecret, "team/app", "same", 7)
	const copies = 8
	codes := make([]int, copies)
	var wg sync.WaitGroup
	for i := range copies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i], _ = s.post(t, "/webhooks/github", hook.Header, hook.Body)
		}()
	}
	wg.Wait()
	acc, dup := 0, 0
	for _, c := range codes {
		switch c {
		case http.StatusAccepted:
			acc++
		case http.StatusOK:
			dup++
		}
	}
	if acc != 1 || dup != copies-1 {
		t.Fatalf("codes %v: want one 202 and %d 200", codes, copies-1)
	}
	if d, e := s.count(t, "deliveries"), s.count(t, "events"); d != 1 || e != 1 {
		t.Fatalf("%d deliveries, %d events; want 1, 1", d, e)
	}
}

func TestWebhookRejectsStoreNothing(t *testing.T) {
	s := newHookServer(t, 16<<10)
	hook := loadgen.GitHubPush(hookSecret, "team/app", "d-1", 1)

	unsigned := hook.Header.Clone()
	unsigned.Del("X-Hub-Signature-256")
	code, out := s.post(t, "/webhooks/github", unsigned, hook.Body)
	if code != http.StatusUnauthorized || out["header"] != "X-Hub-Signature-256" || !strings.Contains(fmt.Sprint(out["error"]), "X-Hub-Signature-256") {
		t.Errorf("unsigned: %d %v", code, out)
	}
	forged := loadgen.GitHubPush("wrong", "team/app", "d-1", 1)
	if code, out := s.post(t, "/webhooks/github", forged.Header, forged.Body); code != http.StatusUnauthorized {
		t.Errorf("wrong secret: %d %v", code, out)
	}

	bad := []byte(`{"ref": "refs/heads/main",`)
	if code, out := s.post(t, "/webhooks/github", signed("push", "d-2", bad), bad); code != http.StatusBadRequest || out["error"] == "" {
		t.Errorf("malformed: %d %v", code, out)
	}

	big := []byte(`{"pad":"` + strings.Repeat("x", 17<<10) + `"}`)
	if code, out := s.post(t, "/webhooks/github", signed("push", "d-3", big), big); code != http.StatusRequestEntityTooLarge || !strings.Contains(fmt.Sprint(out["error"]), "max_body_bytes") {
		t.Errorf("too large: %d %v", code, out)
	}
	// Without Content-Length (chunked) the limit holds while reading.
	req := httptest.NewRequest(http.MethodPost, "/webhooks/github", io.MultiReader(strings.NewReader(string(big))))
	req.ContentLength = -1
	for k, v := range signed("push", "d-4", big) {
		req.Header[k] = v
	}
	if code, out := s.serve(t, req); code != http.StatusRequestEntityTooLarge {
		t.Errorf("too large, chunked: %d %v", code, out)
	}

	if code, _ := s.post(t, "/webhooks/svn", hook.Header, hook.Body); code != http.StatusNotFound {
		t.Errorf("unknown provider: %d", code)
	}
	if n := s.count(t, "deliveries"); n != 0 {
		t.Fatalf("%d deliveries stored for rejected hooks", n)
	}
}

func TestWebhookIgnoredAndPing(t *testing.T) {
	s := newHookServer(t, 0)
	issue := []byte(`{"action":"opened","repository":{"full_name":"team/app"}}`)
	code, out := s.post(t, "/webhooks/github", signed("issues", "i-1", issue), issue)
	if code != http.StatusOK || out["status"] != "ignored" || out["reason"] == nil {
		t.Fatalf("issues: %d %v", code, out)
	}
	code, out = s.post(t, "/webhooks/github", signed("issues", "i-1", issue), issue)
	if code != http.StatusOK || out["status"] != "duplicate" {
		t.Fatalf("issues again: %d %v", code, out)
	}
	ping := []byte(`{"zen":"Keep it logically awesome.","hook_id":1}`)
	if code, out := s.post(t, "/webhooks/github", signed("ping", "p-1", ping), ping); code != http.StatusOK || out["status"] != "ping" {
		t.Fatalf("ping: %d %v", code, out)
	}
	del := []byte(`{"ref":"refs/heads/old","before":"1111111111111111111111111111111111111111","after":"0000000000000000000000000000000000000000","deleted":true,"repository":{"full_name":"team/app"}}`)
	if code, out := s.post(t, "/webhooks/github", signed("push", "x-1", del), del); code != http.StatusOK || out["status"] != "ignored" || !strings.Contains(fmt.Sprint(out["reason"]), "old") {
		t.Fatalf("branch delete: %d %v", code, out)
	}

	rows, err := s.db.Deliveries(context.Background(), store.DeliveryFilter{Verdict: store.VerdictIgnored})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || rows[1].EventName != "issues" || !strings.Contains(rows[1].Reason, "push") || rows[1].Duplicates != 1 {
		t.Fatalf("ignored rows %+v", rows)
	}
	if n := s.count(t, "events"); n != 0 {
		t.Fatalf("%d events for non-actionable hooks", n)
	}
}

func TestDeliveriesAPIAndReplay(t *testing.T) {
	s := newHookServer(t, 0)
	for i := range 3 {
		h := loadgen.GitHubPush(hookSecret, "team/app", fmt.Sprintf("d-%d", i), i)
		if code, out := s.post(t, "/webhooks/github", h.Header, h.Body); code != http.StatusAccepted {
			t.Fatalf("push %d: %d %v", i, code, out)
		}
	}
	issue := []byte(`{"action":"opened"}`)
	_, ign := s.post(t, "/webhooks/github", signed("issues", "i-1", issue), issue)

	get := func(path string) (int, map[string]any) {
		return s.serve(t, httptest.NewRequest(http.MethodGet, path, nil))
	}
	code, out := get("/api/v1/deliveries?limit=2&provider=github&verdict=accepted")
	list, _ := out["deliveries"].([]any)
	if code != http.StatusOK || len(list) != 2 || out["next_before"] == nil {
		t.Fatalf("list: %d %v", code, out)
	}
	if first := list[0].(map[string]any); first["delivery_id"] != "d-2" || first["repository"] != "team/app" {
		t.Fatalf("newest first: %v", first)
	}
	code, out = get(fmt.Sprintf("/api/v1/deliveries?limit=2&verdict=accepted&before=%v", out["next_before"]))
	if list, _ := out["deliveries"].([]any); code != http.StatusOK || len(list) != 1 || list[0].(map[string]any)["delivery_id"] != "d-0" {
		t.Fatalf("page 2: %d %v", code, out)
	}
	for _, bad := range []string{"?limit=x", "?limit=5000", "?before=-1", "?verdict=duplicate"} {
		if code, out := get("/api/v1/deliveries" + bad); code != http.StatusBadRequest || out["error"] == nil {
			t.Errorf("list%s: %d %v, want 400", bad, code, out)
		}
	}

	code, out = get("/api/v1/deliveries/1")
	if code != http.StatusOK || out["delivery_id"] != "d-0" || out["event"] == nil {
		t.Fatalf("show: %d %v", code, out)
	}
	if body, _ := out["body"].(map[string]any); body["ref"] != "refs/heads/main" {
		t.Errorf("show body %v", out["body"])
	}
	if code, _ := get("/api/v1/deliveries/999"); code != http.StatusNotFound {
		t.Errorf("show missing: %d", code)
	}
	if code, _ := get("/api/v1/deliveries/abc"); code != http.StatusBadRequest {
		t.Errorf("show abc: %d", code)
	}

	post := func(path string) (int, map[string]any) {
		return s.serve(t, httptest.NewRequest(http.MethodPost, path, nil))
	}
	before := s.count(t, "events")
	code, out = post("/api/v1/deliveries/1/replay")
	if code != http.StatusCreated || out["event"] == nil || s.count(t, "events") != before+1 {
		t.Fatalf("replay: %d %v, events %d -> %d", code, out, before, s.count(t, "events"))
	}
	if code, out := post(fmt.Sprintf("/api/v1/deliveries/%v/replay", ign["delivery"])); code != http.StatusConflict {
		t.Errorf("replay ignored: %d %v, want 409", code, out)
	}
	if code, _ := post("/api/v1/deliveries/999/replay"); code != http.StatusNotFound {
		t.Errorf("replay missing: %d", code)
	}
}
