package webhooks

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/dockmaster/dockmaster/internal/ingest/loadgen"
)

// BenchmarkParseGitHubPush is the verify-and-decode cost of one signed
// GitHub push (the load command's body) with 1 and 20 commits: the share of
// the webhook path that comes before the commit.
func BenchmarkParseGitHubPush(b *testing.B) {
	const secret = "bench-secret"
	r := New(Options{Secrets: func(string, string) (string, bool) { return secret, true }})
	for _, commits := range []int{1, 20} {
		h := loadgen.GitHubPush(secret, "bench/app", "0f3c2a7e-1d2b-4c5d-8e9f-0a1b2c3d4e5f", 7)
		body := withCommits(b, h.Body, commits)
		mac := hmac.New(sha256.New, []byte(secret))
		mac.Write(body)
		h.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(mac.Sum(nil)))
		b.Run(fmt.Sprintf("commits=%d", commits), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				if _, err := r.Parse(ProviderGitHub, Request{Header: h.Header, Body: body}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// withCommits repeats body's one commit n times, as a push of n commits.
func withCommits(b *testing.B, body []byte, n int) []byte {
	var push map[string]any
	if err := json.Unmarshal(body, &push); err != nil {
		b.Fatal(err)
	}
	one := push["commits"].([]any)[0]
	commits := make([]any, n)
	for i := range commits {
		commits[i] = one
	}
	push["commits"] = commits
	out, err := json.Marshal(push)
	if err != nil {
		b.Fatal(err)
	}
	return out
}
