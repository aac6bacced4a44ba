package loadgen

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/dockmaster/dockmaster/webhooks"
)

func TestGitHubPushVerifiesAndDecodes(t *testing.T) {
	h := GitHubPush("s3cret", "team/app", "d-7", 7)
	rcv := webhooks.New(webhooks.Options{Secrets: func(provider, _ string) (string, bool) { return "s3cret", provider == webhooks.ProviderGitHub }})
	d, err := rcv.Parse(webhooks.ProviderGitHub, webhooks.Request{Header: h.Header, Body: h.Body})
	if err != nil {
		t.Fatal(err)
	}
	p := d.Event.Push
	if d.ID != "d-7" || p == nil || p.Repo.FullName != "team/app" || p.Branch != "main" || p.HeadCommit == nil ||
		p.HeadCommit.ID != p.After || p.Repo.CloneURL != "https://github.com/team/app.git" {
		t.Fatalf("decoded %+v, push %+v", d, p)
	}
}

// The bench's pushes cost what GitHub's do: the same fields in the
// repository and sender objects, and a size near the real payload's.
func TestGitHubPushHasGitHubsShape(t *testing.T) {
	var real []byte
	for _, d := range []string{filepath.Join(os.Getenv("DOCKMASTER_SHARED"), "fixtures", "webhooks"), filepath.Join("..", "..", "..", "..", "shared", "fixtures", "webhooks")} {
		if b, err := os.ReadFile(filepath.Join(d, "github", "push.json")); err == nil {
			real = b
			break
		}
	}
	if real == nil {
		t.Skip("shared webhook fixtures not found (set DOCKMASTER_SHARED)")
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, real); err != nil {
		t.Fatal(err)
	}
	ours := GitHubPush("s", "Codertocat/Hello-World", "d", 1).Body
	if n, want := len(ours), compact.Len(); n < want*8/10 || n > want*12/10 {
		t.Errorf("body is %d bytes, GitHub's (compact) %d", n, want)
	}
	var o, r map[string]any
	if err := json.Unmarshal(ours, &o); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(real, &r); err != nil {
		t.Fatal(err)
	}
	for _, obj := range []string{"", "repository", "sender"} {
		ro, oo := r, o
		if obj != "" {
			ro, _ = r[obj].(map[string]any)
			oo, _ = o[obj].(map[string]any)
		}
		for k := range ro {
			if _, ok := oo[k]; !ok {
				t.Errorf("%s: no %q", obj, k)
			}
		}
	}
}
