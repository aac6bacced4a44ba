package jenkinsemu

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func fixture(t *testing.T, name string) map[string]any {
	t.Helper()
	// Copies of /work/shared/fixtures/webhooks/jenkins (real Jenkins output).
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("fixture %s: %v", name, err)
	}
	return m
}

// missingKeys lists the keys (as paths) present in want but absent from got,
// recursing into objects and, element by element, into arrays.
func missingKeys(path string, want, got any, skip map[string]bool) []string {
	if skip[path] {
		return nil
	}
	var out []string
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			if got == nil { // e.g. executable null in one, object in the other
				return nil
			}
			return []string{path + " (not an object)"}
		}
		for k, wv := range w {
			p := path + "." + k
			if skip[p] {
				continue
			}
			gv, ok := g[k]
			if !ok {
				out = append(out, p)
				continue
			}
			out = append(out, missingKeys(p, wv, gv, skip)...)
		}
	case []any:
		g, _ := got.([]any)
		for i := range min(len(w), len(g)) {
			out = append(out, missingKeys(path+"[]", w[i], g[i], skip)...)
		}
	}
	slices.Sort(out)
	return out
}

func do(t *testing.T, method, u string, form url.Values, hdr http.Header) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range hdr {
		req.Header[k] = v
	}
	hc := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func getJSON(t *testing.T, u string) (int, map[string]any) {
	t.Helper()
	resp := do(t, http.MethodGet, u, nil, nil)
	var m map[string]any
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
			t.Fatalf("GET %s: %v", u, err)
		}
	}
	return resp.StatusCode, m
}

func trigger(t *testing.T, s *Server, job string, form url.Values) (int, string) {
	t.Helper()
	resp := do(t, http.MethodPost, s.URL()+jobURLPath(job)+"buildWithParameters", form, nil)
	return resp.StatusCode, resp.Header.Get("Location")
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestQueueItemShapesMatchFixtures(t *testing.T) {
	s := New(t, Options{QueueDelay: time.Hour, ManualFinish: true})
	s.AddJob("test", Job{Parameters: []string{"a"}})

	// Blocked.
	s.Hold("test", "Build #9 is already in progress (ETA:15 sec)")
	code, loc := trigger(t, s, "test", url.Values{"a": {"4"}})
	if code != http.StatusCreated || !strings.HasSuffix(loc, "/queue/item/1/") {
		t.Fatalf("trigger = %d %q, want 201 .../queue/item/1/", code, loc)
	}
	_, blocked := getJSON(t, loc+"api/json")
	if got := missingKeys("", fixture(t, "api-queue-item-blocked.json"), blocked, nil); len(got) > 0 {
		t.Errorf("blocked item lacks fixture keys %v", got)
	}
	if blocked["_class"] != "hudson.model.Queue$BlockedItem" || blocked["params"] != "\na=4" {
		t.Errorf("blocked item = %v", blocked)
	}

	// Cancelled.
	if !s.Cancel(1) {
		t.Fatal("Cancel(1) = false")
	}
	_, cancelled := getJSON(t, loc+"api/json")
	if got := missingKeys("", fixture(t, "api-queue-item-cancelled.json"), cancelled, nil); len(got) > 0 {
		t.Errorf("cancelled item lacks fixture keys %v", got)
	}
	if cancelled["cancelled"] != true || cancelled["executable"] != nil || cancelled["_class"] != "hudson.model.Queue$LeftItem" {
		t.Errorf("cancelled item = %v", cancelled)
	}
}

func TestStartedItemAndBuildMatchFixtures(t *testing.T) {
	s := New(t, Options{ManualFinish: true})
	s.AddJob("test", Job{Parameters: []string{"a", "fish"}, Defaults: map[string]string{"fish": "salmon"}})
	_, loc := trigger(t, s, "test", url.Values{"a": {"4"}, "undefined": {"dropped"}})
	var item map[string]any
	eventually(t, "item to start", func() bool {
		_, item = getJSON(t, loc+"api/json")
		return item["executable"] != nil
	})
	if got := missingKeys("", fixture(t, "api-queue-item-left-executable.json"), item, nil); len(got) > 0 {
		t.Errorf("left item lacks fixture keys %v", got)
	}
	exe := item["executable"].(map[string]any)
	if exe["number"] != 1.0 || exe["url"] != s.URL()+"/job/test/1/" {
		t.Errorf("executable = %v", exe)
	}

	code, running := getJSON(t, s.URL()+"/job/test/1/api/json")
	if code != 200 || running["building"] != true || running["result"] != nil {
		t.Fatalf("running build = %d %v", code, running)
	}
	if err := s.Complete("test", 1, Unstable); err != nil {
		t.Fatal(err)
	}
	_, done := getJSON(t, s.URL()+"/job/test/1/api/json")
	// The fixture's extra actions come from plugins (badge, display-url).
	skip := map[string]bool{".actions[]._class": true, ".actions[].text": true, ".actions[].iconPath": true, ".artifacts[]": true, ".culprits[]": true}
	if got := missingKeys("", fixture(t, "api-build-info.json"), done, skip); len(got) > 0 {
		t.Errorf("build lacks fixture keys %v", got)
	}
	if done["building"] != false || done["result"] != Unstable || done["queueId"] != 1.0 {
		t.Errorf("finished build = %v", done)
	}
	params := done["actions"].([]any)[0].(map[string]any)["parameters"].([]any)
	want := []any{
		map[string]any{"_class": "hudson.model.StringParameterValue", "name": "a", "value": "4"},
		map[string]any{"_class": "hudson.model.StringParameterValue", "name": "fish", "value": "salmon"},
	}
	if !reflect.DeepEqual(params, want) {
		t.Errorf("parameters = %v, want defined ones with defaults %v", params, want)
	}
}

func TestTriggerStatuses(t *testing.T) {
	s := New(t, Options{QueueDelay: time.Hour})
	s.AddJob("f/app", Job{Parameters: []string{"RUN"}})
	s.AddJob("plain", Job{})
	s.AddJob("off", Job{Parameters: []string{"RUN"}, Disabled: true})

	c1, l1 := trigger(t, s, "f/app", url.Values{"RUN": {"1"}})
	c2, l2 := trigger(t, s, "f/app", url.Values{"RUN": {"1"}})
	c3, l3 := trigger(t, s, "f/app", url.Values{"RUN": {"2"}})
	if c1 != 201 || c2 != 303 || l2 != l1 || c3 != 201 || l3 == l1 {
		t.Errorf("triggers = %d %s, %d %s, %d %s; want 201, 303 to the same item, 201 to a new one", c1, l1, c2, l2, c3, l3)
	}
	if n := s.TriggerCount("f/app"); n != 3 {
		t.Errorf("TriggerCount = %d, want 3", n)
	}
	if n := s.Queued("f/app"); n != 2 {
		t.Errorf("Queued = %d, want 2", n)
	}
	for _, tc := range []struct {
		job  string
		want int
	}{{"nope", 404}, {"f", 404}, {"off", 409}, {"plain", 400}} {
		if code, _ := trigger(t, s, tc.job, url.Values{"RUN": {"1"}}); code != tc.want {
			t.Errorf("trigger %s = %d, want %d", tc.job, code, tc.want)
		}
	}
	if code, _ := trigger(t, s, "f/app", url.Values{"RUN": {"1", "2"}}); code != 400 {
		t.Errorf("parameter given twice = %d, want 400", code)
	}
	if resp := do(t, http.MethodGet, s.URL()+"/job/f/job/app/buildWithParameters", nil, nil); resp.StatusCode != 405 {
		t.Errorf("GET buildWithParameters = %d, want 405", resp.StatusCode)
	}
	if resp := do(t, http.MethodPost, s.URL()+"/job/plain/build", nil, nil); resp.StatusCode != 201 {
		t.Errorf("POST plain/build = %d, want 201", resp.StatusCode)
	}
}

func TestAuthAndCrumb(t *testing.T) {
	s := New(t, Options{User: "bot", Token: "tok", RequireCrumb: true})
	s.AddJob("app", Job{Parameters: []string{"RUN"}})
	u := s.URL() + "/job/app/buildWithParameters"
	auth := func(user, pass string) http.Header {
		r, _ := http.NewRequest("GET", "/", nil)
		r.SetBasicAuth(user, pass)
		return r.Header
	}
	if resp := do(t, "POST", u, nil, nil); resp.StatusCode != 401 {
		t.Errorf("no auth = %d, want 401", resp.StatusCode)
	}
	if resp := do(t, "POST", u, nil, auth("bot", "wrong")); resp.StatusCode != 401 {
		t.Errorf("wrong token = %d, want 401", resp.StatusCode)
	}
	resp := do(t, "POST", u, nil, auth("bot", "tok"))
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 403 || !strings.Contains(string(body), noCrumbText) {
		t.Errorf("no crumb = %d %s, want 403 %q", resp.StatusCode, body, noCrumbText)
	}

	resp = do(t, "GET", s.URL()+"/crumbIssuer/api/json", nil, auth("bot", "tok"))
	var cr struct{ Class, Crumb, CrumbRequestField string }
	if err := json.NewDecoder(resp.Body).Decode(&cr); err != nil || cr.Crumb == "" || cr.CrumbRequestField != "Jenkins-Crumb" {
		t.Fatalf("crumb issuer = %v %+v", err, cr)
	}
	cookies := resp.Cookies()
	if len(cookies) != 1 || !strings.HasPrefix(cookies[0].Name, "JSESSIONID.") {
		t.Fatalf("crumb issuer cookies = %v, want one JSESSIONID.*", cookies)
	}
	withCrumb := auth("bot", "tok")
	withCrumb.Set("Jenkins-Crumb", cr.Crumb)
	if resp := do(t, "POST", u, nil, withCrumb); resp.StatusCode != 403 {
		t.Errorf("crumb without its session = %d, want 403", resp.StatusCode)
	}
	withCrumb.Set("Cookie", cookies[0].Name+"="+cookies[0].Value)
	if resp := do(t, "POST", u, nil, withCrumb); resp.StatusCode != 201 {
		t.Errorf("crumb with its session = %d, want 201", resp.StatusCode)
	}
	s.ExpireSessions()
	if resp := do(t, "POST", u, url.Values{"RUN": {"x"}}, withCrumb); resp.StatusCode != 403 {
		t.Errorf("crumb after session expiry = %d, want 403", resp.StatusCode)
	}
}

func TestQueueRetentionAndQueueList(t *testing.T) {
	s := New(t, Options{QueueRetention: 20 * time.Millisecond})
	s.AddJob("app", Job{Parameters: []string{"RUN"}})
	s.Hold("app", "")
	_, loc := trigger(t, s, "app", url.Values{"RUN": {"r1"}})
	code, q := getJSON(t, s.URL()+"/queue/api/json?tree=items[id,task[name],actions[parameters[name,value]]]")
	if code != 200 {
		t.Fatalf("queue = %d", code)
	}
	items := q["items"].([]any)
	wantItem := map[string]any{"_class": "hudson.model.Queue$BlockedItem", "id": 1.0,
		"task": map[string]any{"_class": "hudson.model.FreeStyleProject", "name": "app"},
		"actions": []any{
			map[string]any{"_class": "hudson.model.ParametersAction", "parameters": []any{
				map[string]any{"_class": "hudson.model.StringParameterValue", "name": "RUN", "value": "r1"}}},
			map[string]any{"_class": "hudson.model.CauseAction"},
		}}
	if len(items) != 1 || !reflect.DeepEqual(items[0], wantItem) {
		t.Errorf("queue items = %v, want [%v]", items, wantItem)
	}
	s.Release("app")
	eventually(t, "build to finish", func() bool {
		b := s.Builds("app")
		return len(b) == 1 && b[0].Result == Success
	})
	eventually(t, "left item to expire", func() bool {
		code, _ := getJSON(t, loc+"api/json")
		return code == 404
	})
	if _, q := getJSON(t, s.URL()+"/queue/api/json"); len(q["items"].([]any)) != 0 {
		t.Errorf("queue after start = %v, want empty", q["items"])
	}
}

func TestJobAPIBuildsList(t *testing.T) {
	s := New(t, Options{Results: func(job string, p map[string]string) string {
		if p["RUN"] == "bad" {
			return Failure
		}
		return ""
	}})
	s.AddJob("app", Job{Parameters: []string{"RUN"}})
	trigger(t, s, "app", url.Values{"RUN": {"good"}})
	eventually(t, "build 1", func() bool { return len(s.Builds("app")) == 1 && !s.Builds("app")[0].Building })
	trigger(t, s, "app", url.Values{"RUN": {"bad"}})
	eventually(t, "build 2", func() bool { return len(s.Builds("app")) == 2 && !s.Builds("app")[1].Building })

	_, shallow := getJSON(t, s.URL()+"/job/app/api/json")
	builds := shallow["builds"].([]any)
	if len(builds) != 2 || !reflect.DeepEqual(builds[0], map[string]any{"_class": "hudson.model.FreeStyleBuild", "number": 2.0, "url": s.URL() + "/job/app/2/"}) {
		t.Errorf("shallow builds = %v, want newest first with _class, number, url", builds)
	}
	_, deep := getJSON(t, s.URL()+"/job/app/api/json?tree=builds[number,result,actions[parameters[value]]]{1,}")
	got := deep["builds"].([]any)
	if len(got) != 1 || got[0].(map[string]any)["number"] != 1.0 || got[0].(map[string]any)["result"] != Success {
		t.Errorf("tree builds{1,} = %v, want only build 1 with SUCCESS", got)
	}
	if b := s.Builds("app"); b[1].Result != Failure || b[1].Params["RUN"] != "bad" {
		t.Errorf("build 2 = %+v, want FAILURE from Results", b[1])
	}
	if code, _ := getJSON(t, s.URL()+"/job/app/api/json?tree=builds[number"); code != 400 {
		t.Errorf("bad tree = %d, want 400", code)
	}
}

func TestNotifications(t *testing.T) {
	var mu sync.Mutex
	var got []map[string]any
	var hdrs []http.Header
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m map[string]any
		if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		mu.Lock()
		got, hdrs = append(got, m), append(hdrs, r.Header.Clone())
		mu.Unlock()
	}))
	t.Cleanup(recv.Close)

	s := New(t, Options{
		NotifyURL:     recv.URL + "/hooks/jenkins",
		NotifyHeaders: http.Header{"X-Dockmaster-Token": {"secret"}},
		SCM: func(job string, p map[string]string) *SCM {
			return &SCM{URL: "https://git.example/app.git", Branch: "origin/main", Commit: p["SHA"]}
		},
	})
	s.AddJob("team/app", Job{Parameters: []string{"SHA", "RUN_ID"}})
	s.SetResult("team/app", Failure)
	trigger(t, s, "team/app", url.Values{"SHA": {"c6d86dc"}, "RUN_ID": {"r-1"}})
	eventually(t, "4 notifications", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) == 4
	})
	mu.Lock()
	defer mu.Unlock()
	var phases []string
	for i, m := range got {
		b := m["build"].(map[string]any)
		phases = append(phases, b["phase"].(string))
		if hdrs[i].Get("X-Dockmaster-Token") != "secret" || hdrs[i].Get("Content-Type") != "application/json;charset=UTF-8" {
			t.Errorf("notification %d headers = %v", i, hdrs[i])
		}
		if m["name"] != "app" || m["url"] != "job/team/job/app/" || b["url"] != "job/team/job/app/1/" ||
			b["full_url"] != s.URL()+"/job/team/job/app/1/" || b["queue_id"] != 1.0 {
			t.Errorf("notification %d = %v", i, m)
		}
		_, hasStatus := b["status"]
		if final := i >= 2; hasStatus != final {
			t.Errorf("notification %d (%s) has status = %v, want %v (absent until a result exists)", i, b["phase"], hasStatus, final)
		}
	}
	if want := []string{"QUEUED", "STARTED", "COMPLETED", "FINALIZED"}; !slices.Equal(phases, want) {
		t.Errorf("phases = %v, want %v", phases, want)
	}
	if got[0]["build"].(map[string]any)["parameters"].(map[string]any)["RUN_ID"] != "r-1" {
		t.Errorf("notification parameters = %v", got[0]["build"])
	}
	// Keys of the real payloads; artifacts depend on the job archiving files.
	skip := map[string]bool{".build.artifacts": true}
	if miss := missingKeys("", fixture(t, "notification-completed-success.json"), got[2], skip); len(miss) > 0 {
		t.Errorf("COMPLETED notification lacks fixture keys %v", miss)
	}
	if got[3]["build"].(map[string]any)["status"] != Failure {
		t.Errorf("FINALIZED status = %v, want FAILURE", got[3]["build"])
	}
	if miss := missingKeys("", fixture(t, "notification-started.json"), got[1], nil); len(miss) > 0 {
		t.Errorf("STARTED notification lacks fixture keys %v", miss)
	}
	// The emulator records a delivery once the receiver has answered.
	eventually(t, "4 recorded deliveries", func() bool { return len(s.Notifications()) == 4 })
	if n := s.Notifications()[3]; n.Phase != "FINALIZED" || n.Status != 200 || n.Err != nil || n.Number != 1 {
		t.Errorf("last delivery = %s #%d %s: %d %v", n.Job, n.Number, n.Phase, n.Status, n.Err)
	}
}

func TestParseTree(t *testing.T) {
	for _, tc := range []struct {
		in, want string
	}{
		{"a", "a"},
		{"builds[number,actions[parameters[name,value]]]{0,50}", "builds[number,actions[parameters[name,value]]]{0,50}"},
		{"items[id],jobs{3}", "items[id],jobs{3,4}"},
		{"x{2,}", "x{2,}"},
		{"x[", "error"}, {"x[a", "error"}, {"x{a}", "error"}, {",", "error"}, {"x]", "error"},
	} {
		f, err := parseTree(tc.in)
		got := "error"
		if err == nil {
			got = formatTree(f)
		}
		if got != tc.want {
			t.Errorf("parseTree(%q) = %s (%v), want %s", tc.in, got, err, tc.want)
		}
	}
}

func formatTree(fs []treeField) string {
	var parts []string
	for _, f := range fs {
		s := f.name
		if f.sub != nil {
			s += "[" + formatTree(f.sub) + "]"
		}
		if f.ranged {
			hi := ""
			if f.to >= 0 {
				hi = itoa(f.to)
			}
			s += "{" + itoa(f.from) + "," + hi + "}"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, ",")
}
