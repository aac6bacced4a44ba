package jenkins

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestJobPath(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"app", "/job/app"},
		{"team/sub/app", "/job/team/job/sub/job/app"},
		{"my app", "/job/my%20app"},
		{"multi/feature%2Fx", "/job/multi/job/feature%252Fx"},
		{"", "error"}, {"/app", "error"}, {"a//b", "error"}, {"a/", "error"}, {"a/../b", "error"},
	} {
		got, err := JobPath(tc.in)
		if err != nil {
			got = "error"
		}
		if got != tc.want {
			t.Errorf("JobPath(%q) = %q (%v), want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestQueueIDFromURL(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
	}{
		{"http://ci/queue/item/143/", 143},
		{"https://ci/jenkins/queue/item/7", 7},
		{"queue/item/9/", 9},
		{"http://ci/job/x/", 0},
		{"http://ci/queue/item/abc/", 0},
		{"http://ci/queue/item/0/", 0},
		{"", 0},
	} {
		got, err := queueIDFromURL(tc.in)
		if (err != nil) != (tc.want == 0) || got != tc.want {
			t.Errorf("queueIDFromURL(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
}

func TestReason(t *testing.T) {
	jetty := "<html><head><title>Error 409 x</title></head><body><h2>HTTP ERROR 409</h2><table>" +
		"<tr><th>MESSAGE:</th><td>folder/app is not buildable</td></tr></table></body></html>"
	for _, tc := range []struct{ in, want string }{
		{jetty, "folder/app is not buildable"},
		{"<html><head><title>Error 404 Not &amp; Found</title></head></html>", "Error 404 Not & Found"},
		{"plain\n  text", "plain text"},
		{"", ""},
	} {
		if got := reason([]byte(tc.in)); got != tc.want {
			t.Errorf("reason(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// The real payloads (copies of /work/shared/fixtures/webhooks/jenkins) decode
// into what the engine reads.
func TestDecodeRealFixtures(t *testing.T) {
	read := func(name string, v any) {
		t.Helper()
		b, err := os.ReadFile(filepath.Join("../../test/jenkinsemu/testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	var wb wireBuild
	read("api-build-info.json", &wb)
	b := wb.info()
	want := BuildInfo{Number: 10, URL: "http://localhost:32769/job/fish/10/", Result: "SUCCESS",
		Duration: 60750 * time.Millisecond, Timestamp: time.UnixMilli(1461091892486), QueueID: 73}
	if b.Number != want.Number || b.URL != want.URL || b.Result != want.Result || b.Building ||
		b.Duration != want.Duration || !b.Timestamp.Equal(want.Timestamp) || b.QueueID != want.QueueID || !b.Done() {
		t.Errorf("build = %+v, want %+v", b, want)
	}
	if b.Parameters["bear"] != "true" || b.Parameters["fish"] != "salmon" {
		t.Errorf("parameters = %v, want bear=true (boolean kept as text) fish=salmon", b.Parameters)
	}

	for _, tc := range []struct {
		file                                string
		blocked, left, cancelled, buildable bool
		number                              int
		why                                 string
	}{
		{"api-queue-item-blocked.json", true, false, false, false, 0, "Build #9 is already in progress (ETA:15 sec)"},
		{"api-queue-item-cancelled.json", false, true, true, false, 0, ""},
		{"api-queue-item-left-executable.json", false, true, false, false, 14, ""},
	} {
		var wi wireItem
		read(tc.file, &wi)
		it := wi.item()
		if it.ID != 143 || it.Blocked != tc.blocked || it.Left != tc.left || it.Cancelled != tc.cancelled ||
			it.BuildNumber != tc.number || it.Why != tc.why || it.Parameters["a"] != "4" {
			t.Errorf("%s: item = %+v", tc.file, it)
		}
		if tc.number > 0 && it.BuildURL != "http://localhost:8082/job/test/14/" {
			t.Errorf("%s: build URL = %q", tc.file, it.BuildURL)
		}
		if !sameJob(wi.Task.URL, "/job/test") || sameJob(wi.Task.URL, "/job/other/job/test") {
			t.Errorf("%s: sameJob mismatch for task URL %q", tc.file, wi.Task.URL)
		}
	}
}

func TestNewRejectsBadBaseURL(t *testing.T) {
	for _, u := range []string{"", "ci.example.com", "ftp://ci", "http://", "://x"} {
		if _, err := New(u, "", ""); err == nil {
			t.Errorf("New(%q) succeeded, want an error", u)
		}
	}
}
