package jenkins_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dockmaster/dockmaster/pipeline/jenkins"
	"github.com/dockmaster/dockmaster/test/jenkinsemu"
)

// countingTransport counts requests by "METHOD path" to show what the client sent.
type countingTransport struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.mu.Lock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[r.Method+" "+r.URL.Path]++
	c.mu.Unlock()
	return http.DefaultTransport.RoundTrip(r)
}

func (c *countingTransport) count(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[key]
}

func newClient(t *testing.T, base, user, token string) (*jenkins.Client, *countingTransport) {
	t.Helper()
	ct := &countingTransport{}
	c, err := jenkins.New(base, user, token, jenkins.WithHTTPClient(&http.Client{Transport: ct}), jenkins.WithTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	return c, ct
}

func waitStarted(t *testing.T, c *jenkins.Client, q jenkins.QueueRef) jenkins.QueueItem {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(5 * time.Second)
	for {
		it, err := c.QueueItem(ctx, q)
		if err != nil {
			t.Fatalf("QueueItem(%d): %v", q.ID, err)
		}
		if it.Started() || it.Cancelled {
			return it
		}
		if time.Now().After(deadline) {
			t.Fatalf("queue item %d never started: %+v", q.ID, it)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func waitDone(t *testing.T, c *jenkins.Client, job string, n int) jenkins.BuildInfo {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, err := c.Build(context.Background(), job, n)
		if err != nil {
			t.Fatalf("Build(%s, %d): %v", job, n, err)
		}
		if b.Done() {
			return b
		}
		if time.Now().After(deadline) {
			t.Fatalf("build %s #%d never finished: %+v", job, n, b)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestTriggerQueueBuild(t *testing.T) {
	for _, crumbs := range []bool{false, true} {
		name := "no crumb"
		if crumbs {
			name = "crumb required"
		}
		t.Run(name, func(t *testing.T) {
			emu := jenkinsemu.New(t, jenkinsemu.Options{
				User: "bot", Token: "tok", RequireCrumb: crumbs,
				QueueDelay: 5 * time.Millisecond, BuildDuration: 10 * time.Millisecond,
			})
			emu.AddJob("team/my app", jenkinsemu.Job{Parameters: []string{"RUN_ID", "SHA"}})
			c, ct := newClient(t, emu.URL()+"/", "bot", "tok")
			ctx := context.Background()

			q, err := c.Trigger(ctx, "team/my app", map[string]string{"RUN_ID": "r-1", "SHA": "abc", "EXTRA": "dropped"})
			if err != nil {
				t.Fatal(err)
			}
			if q.ID != 1 || q.Merged || q.URL != emu.URL()+"/queue/item/1/" {
				t.Errorf("Trigger = %+v, want new item 1", q)
			}
			it := waitStarted(t, c, q)
			if it.BuildNumber != 1 || it.BuildURL != emu.URL()+"/job/team/job/my%20app/1/" || !it.Left || it.Cancelled {
				t.Errorf("queue item = %+v, want left with build 1", it)
			}
			b := waitDone(t, c, "team/my app", it.BuildNumber)
			if b.Result != "SUCCESS" || b.QueueID != 1 || b.Number != 1 || b.Timestamp.IsZero() ||
				b.Parameters["RUN_ID"] != "r-1" || b.Parameters["SHA"] != "abc" || len(b.Parameters) != 2 {
				t.Errorf("build = %+v", b)
			}

			// A second trigger reuses the cached crumb: no new crumb GET, no 403 round trip.
			if _, err := c.Trigger(ctx, "team/my app", map[string]string{"RUN_ID": "r-2"}); err != nil {
				t.Fatal(err)
			}
			wantCrumbGets, wantPosts := 0, 2
			if crumbs {
				wantCrumbGets, wantPosts = 1, 3 // first POST was refused once
			}
			if n := ct.count("GET /crumbIssuer/api/json"); n != wantCrumbGets {
				t.Errorf("crumb fetches = %d, want %d", n, wantCrumbGets)
			}
			if n := ct.count("POST /job/team/job/my app/buildWithParameters"); n != wantPosts {
				t.Errorf("trigger POSTs = %d, want %d", n, wantPosts)
			}
			if n := emu.TriggerCount("team/my app"); n != 2 {
				t.Errorf("emulator TriggerCount = %d, want 2", n)
			}
		})
	}
}

func TestCrumbRefetchedAfterSessionExpiry(t *testing.T) {
	emu := jenkinsemu.New(t, jenkinsemu.Options{User: "bot", Token: "tok", RequireCrumb: true, QueueDelay: time.Hour})
	emu.AddJob("app", jenkinsemu.Job{Parameters: []string{"RUN_ID"}})
	c, ct := newClient(t, emu.URL(), "bot", "tok")
	ctx := context.Background()
	if _, err := c.Trigger(ctx, "app", map[string]string{"RUN_ID": "1"}); err != nil {
		t.Fatal(err)
	}
	emu.ExpireSessions()
	if _, err := c.Trigger(ctx, "app", map[string]string{"RUN_ID": "2"}); err != nil {
		t.Fatalf("trigger after session expiry: %v", err)
	}
	if n := ct.count("GET /crumbIssuer/api/json"); n != 2 {
		t.Errorf("crumb fetches = %d, want 2", n)
	}
}

func TestTriggerMergedInQueue(t *testing.T) {
	emu := jenkinsemu.New(t, jenkinsemu.Options{QueueDelay: time.Hour})
	emu.AddJob("app", jenkinsemu.Job{Parameters: []string{"RUN_ID"}})
	c, _ := newClient(t, emu.URL(), "", "")
	ctx := context.Background()
	q1, err := c.Trigger(ctx, "app", map[string]string{"RUN_ID": "r-1"})
	if err != nil {
		t.Fatal(err)
	}
	q2, err := c.Trigger(ctx, "app", map[string]string{"RUN_ID": "r-1"})
	if err != nil {
		t.Fatal(err)
	}
	if q1.Merged || !q2.Merged || q2.ID != q1.ID {
		t.Errorf("triggers = %+v, %+v; want the second merged (303) into the first", q1, q2)
	}
	it, err := c.QueueItem(ctx, q2)
	if err != nil {
		t.Fatal(err)
	}
	if it.Left || it.Started() || it.Class != "hudson.model.Queue$WaitingItem" || it.Why == "" || it.Parameters["RUN_ID"] != "r-1" {
		t.Errorf("waiting item = %+v", it)
	}
}

func TestQueueItemBlockedCancelledGone(t *testing.T) {
	emu := jenkinsemu.New(t, jenkinsemu.Options{QueueRetention: 30 * time.Millisecond})
	emu.AddJob("app", jenkinsemu.Job{Parameters: []string{"RUN_ID"}})
	emu.Hold("app", "Build #9 is already in progress (ETA:15 sec)")
	c, _ := newClient(t, emu.URL(), "", "")
	ctx := context.Background()
	q, err := c.Trigger(ctx, "app", map[string]string{"RUN_ID": "r-1"})
	if err != nil {
		t.Fatal(err)
	}
	it, err := c.QueueItem(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	if !it.Blocked || it.Why != "Build #9 is already in progress (ETA:15 sec)" || it.Left {
		t.Errorf("blocked item = %+v", it)
	}
	emu.Cancel(int(q.ID))
	if it, err = c.QueueItem(ctx, q); err != nil {
		t.Fatal(err)
	}
	if !it.Left || !it.Cancelled || it.Started() {
		t.Errorf("cancelled item = %+v", it)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err = c.QueueItem(ctx, q)
		if err != nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	var je *jenkins.Error
	if !errors.Is(err, jenkins.ErrQueueItemGone) || !errors.As(err, &je) || je.Status != 404 {
		t.Errorf("expired item: err = %v, want *Error 404 matching ErrQueueItemGone", err)
	}
}

func TestTypedErrors(t *testing.T) {
	emu := jenkinsemu.New(t, jenkinsemu.Options{User: "bot", Token: "tok"})
	emu.AddJob("plain", jenkinsemu.Job{})
	emu.AddJob("off", jenkinsemu.Job{Parameters: []string{"X"}, Disabled: true})
	emu.AddJob("ok", jenkinsemu.Job{Parameters: []string{"X"}})
	good, _ := newClient(t, emu.URL(), "bot", "tok")
	bad, _ := newClient(t, emu.URL(), "bot", "wrong")
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		c      *jenkins.Client
		job    string
		want   error
		status int
		reason string
	}{
		{"missing job", good, "nope", jenkins.ErrJobNotFound, 404, "Not Found"},
		{"disabled", good, "off", jenkins.ErrJobDisabled, 409, "off is not buildable"},
		{"not parameterised", good, "plain", jenkins.ErrNotParameterized, 400, "plain is not parameterized"},
		{"wrong token", bad, "ok", jenkins.ErrAuth, 401, "Invalid password/token for user: bot"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.c.Trigger(ctx, tc.job, map[string]string{"X": "1"})
			var je *jenkins.Error
			if !errors.Is(err, tc.want) || !errors.As(err, &je) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if je.Status != tc.status || je.Job != tc.job || je.Reason != tc.reason {
				t.Errorf("Error = %+v, want status %d job %q reason %q", je, tc.status, tc.job, tc.reason)
			}
			for _, other := range []error{jenkins.ErrJobNotFound, jenkins.ErrJobDisabled, jenkins.ErrNotParameterized, jenkins.ErrAuth} {
				if other != tc.want && errors.Is(err, other) {
					t.Errorf("err also matches %v", other)
				}
			}
		})
	}
	if _, err := good.Build(ctx, "ok", 7); !errors.Is(err, jenkins.ErrBuildNotFound) {
		t.Errorf("missing build: err = %v, want ErrBuildNotFound", err)
	}
	if _, err := good.FindBuild(ctx, "nope", "X", "1"); !errors.Is(err, jenkins.ErrJobNotFound) {
		t.Errorf("FindBuild on missing job: err = %v, want ErrJobNotFound", err)
	}
}

// Jenkins answers 403 both for a missing crumb and for a missing permission;
// only the first is retried, and only once.
func TestForbidden(t *testing.T) {
	var mu sync.Mutex
	posts := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/crumbIssuer/api/json":
			w.Write([]byte(`{"_class":"hudson.security.csrf.DefaultCrumbIssuer","crumb":"c0ffee","crumbRequestField":"Jenkins-Crumb"}`))
		case strings.HasPrefix(r.URL.Path, "/job/crumbless/"):
			mu.Lock()
			posts++
			mu.Unlock()
			http.Error(w, "HTTP ERROR 403 No valid crumb was included in the request", 403)
		default:
			http.Error(w, "bot is missing the Job/Build permission", 403)
		}
	}))
	t.Cleanup(srv.Close)
	c, _ := newClient(t, srv.URL, "bot", "tok")
	ctx := context.Background()

	_, err := c.Trigger(ctx, "crumbless", nil)
	var je *jenkins.Error
	if !errors.As(err, &je) || je.Status != 403 || errors.Is(err, jenkins.ErrAuth) || posts != 2 {
		t.Errorf("always-refused crumb: err = %v after %d POSTs, want a 403 *Error (not ErrAuth) after 2", err, posts)
	}
	_, err = c.Trigger(ctx, "locked", nil)
	if !errors.Is(err, jenkins.ErrAuth) || !strings.Contains(err.Error(), "missing the Job/Build permission") {
		t.Errorf("permission 403: err = %v, want ErrAuth with Jenkins' reason", err)
	}
}

func TestFindBuild(t *testing.T) {
	emu := jenkinsemu.New(t, jenkinsemu.Options{User: "bot", Token: "tok"})
	emu.AddJob("team/app", jenkinsemu.Job{Parameters: []string{"RUN_ID"}})
	emu.AddJob("app", jenkinsemu.Job{Parameters: []string{"RUN_ID"}})
	c, _ := newClient(t, emu.URL(), "bot", "tok")
	ctx := context.Background()

	// A finished build of team/app with run r-1.
	q, err := c.Trigger(ctx, "team/app", map[string]string{"RUN_ID": "r-1"})
	if err != nil {
		t.Fatal(err)
	}
	waitDone(t, c, "team/app", waitStarted(t, c, q).BuildNumber)

	// A queued item of team/app with run r-2, and one of the top-level "app" with r-3.
	emu.Hold("team/app", "")
	emu.Hold("app", "")
	q2, err := c.Trigger(ctx, "team/app", map[string]string{"RUN_ID": "r-2"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Trigger(ctx, "app", map[string]string{"RUN_ID": "r-3"}); err != nil {
		t.Fatal(err)
	}

	f, err := c.FindBuild(ctx, "team/app", "RUN_ID", "r-1")
	if err != nil || f == nil || f.Build == nil || f.Queue != nil || f.Build.Number != 1 || f.Build.Result != "SUCCESS" {
		t.Errorf("FindBuild(r-1) = %+v, %v; want finished build 1", f, err)
	}
	f, err = c.FindBuild(ctx, "team/app", "RUN_ID", "r-2")
	if err != nil || f == nil || f.Queue == nil || f.Queue.ID != q2.ID || f.Build != nil {
		t.Errorf("FindBuild(r-2) = %+v, %v; want queued item %d", f, err, q2.ID)
	}
	// r-3 is queued for "app", not "team/app": folders must not be confused.
	if f, err = c.FindBuild(ctx, "team/app", "RUN_ID", "r-3"); err != nil || f != nil {
		t.Errorf("FindBuild(team/app, r-3) = %+v, %v; want nothing", f, err)
	}
	if f, err = c.FindBuild(ctx, "app", "RUN_ID", "r-3"); err != nil || f == nil || f.Queue == nil {
		t.Errorf("FindBuild(app, r-3) = %+v, %v; want the queued item", f, err)
	}
	if f, err = c.FindBuild(ctx, "team/app", "RUN_ID", "r-9"); err != nil || f != nil {
		t.Errorf("FindBuild(r-9) = %+v, %v; want nil, nil", f, err)
	}
	// Once started, the r-2 item is found as a build.
	emu.Release("team/app")
	waitStarted(t, c, q2)
	if f, err = c.FindBuild(ctx, "team/app", "RUN_ID", "r-2"); err != nil || f == nil || f.Build == nil || f.Build.Number != 2 {
		t.Errorf("FindBuild(r-2) after start = %+v, %v; want build 2", f, err)
	}
}

func TestResultsFromEmulator(t *testing.T) {
	emu := jenkinsemu.New(t, jenkinsemu.Options{})
	emu.AddJob("app", jenkinsemu.Job{Parameters: []string{"RUN_ID"}})
	emu.SetResult("app", jenkinsemu.Failure)
	c, _ := newClient(t, emu.URL(), "", "")
	q, err := c.Trigger(context.Background(), "app", map[string]string{"RUN_ID": "r"})
	if err != nil {
		t.Fatal(err)
	}
	if b := waitDone(t, c, "app", waitStarted(t, c, q).BuildNumber); b.Result != "FAILURE" {
		t.Errorf("result = %q, want FAILURE", b.Result)
	}
}

func TestContextCancelled(t *testing.T) {
	emu := jenkinsemu.New(t, jenkinsemu.Options{})
	emu.AddJob("app", jenkinsemu.Job{Parameters: []string{"RUN_ID"}})
	c, _ := newClient(t, emu.URL(), "", "")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.Trigger(ctx, "app", nil); !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
	if emu.TriggerCount("app") != 0 {
		t.Error("a cancelled trigger reached Jenkins")
	}
}
