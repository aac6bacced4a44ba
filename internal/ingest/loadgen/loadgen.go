// Package loadgen makes signed GitHub push hooks and fires them at a
// dockmaster over real HTTP, recording each answer. The bench command and
// the end-to-end tests use it.
package loadgen

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Hook is one request to send.
type Hook struct {
	DeliveryID string
	Header     http.Header
	Body       []byte
}

// GitHubPush returns a push of commit number i to refs/heads/main of repo,
// signed with secret (X-Hub-Signature-256) and identified by deliveryID.
// The body has the shape and size of GitHub's (6-8 KB, most of it the
// repository's and the sender's API links), so that verifying, parsing and
// storing it cost what a real push costs.
func GitHubPush(secret, repo, deliveryID string, i int) Hook {
	sha := fmt.Sprintf("%040x", i+1)
	owner, _, _ := strings.Cut(repo, "/")
	commit := map[string]any{"id": sha, "tree_id": fmt.Sprintf("%040x", i+2), "distinct": true,
		"message": fmt.Sprintf("change %d", i), "timestamp": "2024-03-01T10:00:00Z",
		"url":       "https://github.com/" + repo + "/commit/" + sha,
		"author":    map[string]any{"name": "Bench", "email": "bench@example.com", "username": owner},
		"committer": map[string]any{"name": "Bench", "email": "bench@example.com", "username": owner},
		"added":     []string{}, "removed": []string{}, "modified": []string{"README.md"}}
	body, _ := json.Marshal(map[string]any{ // cannot fail: plain maps and strings
		"ref": "refs/heads/main", "before": fmt.Sprintf("%040x", i), "after": sha,
		"created": false, "deleted": false, "forced": false, "base_ref": nil,
		"compare":     "https://github.com/" + repo + "/compare/" + fmt.Sprintf("%012x...%012x", i, i+1),
		"commits":     []any{commit},
		"head_commit": commit,
		"repository":  githubRepository(repo, owner),
		"pusher":      map[string]any{"name": owner, "email": "bench@example.com"},
		"sender":      githubUser(owner),
	})
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set("X-GitHub-Event", "push")
	h.Set("X-GitHub-Delivery", deliveryID)
	h.Set("X-GitHub-Hook-ID", "292430182")
	h.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(mac.Sum(nil)))
	h.Set("User-Agent", "GitHub-Hookshot/dockmaster-bench")
	return Hook{DeliveryID: deliveryID, Header: h, Body: body}
}

// githubRepository is a push's "repository" object as GitHub sends it.
func githubRepository(repo, owner string) map[string]any {
	web, api := "https://github.com/"+repo, "https://api.github.com/repos/"+repo
	r := map[string]any{"id": 135493233, "node_id": "MDEwOlJlcG9zaXRvcnkxMzU0OTMyMzM=", "name": path.Base(repo),
		"full_name": repo, "owner": githubUser(owner), "private": false, "html_url": web, "description": nil,
		"fork": false, "url": web, "created_at": 1527711484, "updated_at": "2024-03-01T10:00:00Z", "pushed_at": 1709287200,
		"git_url": "git://github.com/" + repo + ".git", "ssh_url": "git@github.com:" + repo + ".git",
		"clone_url": web + ".git", "svn_url": web, "homepage": nil, "size": 0, "stargazers_count": 0,
		"watchers_count": 0, "language": nil, "has_issues": true, "has_projects": true, "has_downloads": true,
		"has_wiki": true, "has_pages": true, "forks_count": 0, "mirror_url": nil, "archived": false,
		"open_issues_count": 2, "license": nil, "forks": 0, "open_issues": 2, "watchers": 0,
		"default_branch": "main", "stargazers": 0, "master_branch": "main"}
	for _, l := range [][2]string{{"forks_url", "forks"}, {"keys_url", "keys{/key_id}"},
		{"collaborators_url", "collaborators{/collaborator}"}, {"teams_url", "teams"}, {"hooks_url", "hooks"},
		{"issue_events_url", "issues/events{/number}"}, {"events_url", "events"}, {"assignees_url", "assignees{/user}"},
		{"branches_url", "branches{/branch}"}, {"tags_url", "tags"}, {"blobs_url", "git/blobs{/sha}"},
		{"git_tags_url", "git/tags{/sha}"}, {"git_refs_url", "git/refs{/sha}"}, {"trees_url", "git/trees{/sha}"},
		{"statuses_url", "statuses/{sha}"}, {"languages_url", "languages"}, {"stargazers_url", "stargazers"},
		{"contributors_url", "contributors"}, {"subscribers_url", "subscribers"}, {"subscription_url", "subscription"},
		{"commits_url", "commits{/sha}"}, {"git_commits_url", "git/commits{/sha}"}, {"comments_url", "comments{/number}"},
		{"issue_comment_url", "issues/comments{/number}"}, {"contents_url", "contents/{+path}"},
		{"compare_url", "compare/{base}...{head}"}, {"merges_url", "merges"}, {"archive_url", "{archive_format}{/ref}"},
		{"downloads_url", "downloads"}, {"issues_url", "issues{/number}"}, {"pulls_url", "pulls{/number}"},
		{"milestones_url", "milestones{/number}"}, {"notifications_url", "notifications{?since,all,participating}"},
		{"labels_url", "labels{/name}"}, {"releases_url", "releases{/id}"}, {"deployments_url", "deployments"}} {
		r[l[0]] = api + "/" + l[1]
	}
	return r
}

// githubUser is a user object (owner, sender) as GitHub sends it.
func githubUser(login string) map[string]any {
	api := "https://api.github.com/users/" + login
	return map[string]any{"login": login, "id": 21031067, "node_id": "MDQ6VXNlcjIxMDMxMDY3",
		"avatar_url": "https://avatars.githubusercontent.com/u/21031067?v=4", "gravatar_id": "",
		"url": api, "html_url": "https://github.com/" + login, "followers_url": api + "/followers",
		"following_url": api + "/following{/other_user}", "gists_url": api + "/gists{/gist_id}",
		"starred_url": api + "/starred{/owner}{/repo}", "subscriptions_url": api + "/subscriptions",
		"organizations_url": api + "/orgs", "repos_url": api + "/repos", "events_url": api + "/events{/privacy}",
		"received_events_url": api + "/received_events", "type": "User", "site_admin": false}
}

// Result is the answer to one Hook.
type Result struct {
	DeliveryID string
	Status     int // 0 when no response arrived
	Latency    time.Duration
	Err        error
}

// Acknowledged reports a 2xx answer: the server promised the delivery is stored.
func (r Result) Acknowledged() bool { return r.Status >= 200 && r.Status < 300 }

// NewClient is an HTTP client keeping up to conns connections to one host.
func NewClient(conns int) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = conns
	t.MaxIdleConnsPerHost = conns
	t.MaxConnsPerHost = conns
	return &http.Client{Transport: t, Timeout: 30 * time.Second}
}

// NewConnPerRequestClient opens a new connection for every request, as
// webhook senders do (each delivery is its own request from the provider's
// workers), with at most conns open at once.
func NewConnPerRequestClient(conns int) *http.Client {
	c := NewClient(conns)
	c.Transport.(*http.Transport).DisableKeepAlives = true
	return c
}

// Fire posts hooks to url from conc goroutines and returns one Result per
// hook, in hooks' order. It stops sending new hooks when ctx ends.
func Fire(ctx context.Context, client *http.Client, url string, hooks []Hook, conc int) []Result {
	out := make([]Result, len(hooks))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range max(conc, 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= len(hooks) {
					return
				}
				out[i] = send(ctx, client, url, hooks[i])
			}
		}()
	}
	wg.Wait()
	return out
}

func send(ctx context.Context, client *http.Client, url string, h Hook) Result {
	res := Result{DeliveryID: h.DeliveryID}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(h.Body))
	if err != nil {
		res.Err = err
		return res
	}
	for k, v := range h.Header {
		req.Header[k] = v
	}
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		res.Err, res.Latency = err, time.Since(start)
		return res
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	res.Latency = time.Since(start)
	// A status without its complete body is still the server's answer.
	res.Status, res.Err = resp.StatusCode, err
	return res
}

// Stats summarizes a run.
type Stats struct {
	Sent, Acknowledged, Failed int
	Elapsed                    time.Duration
	PerSecond                  float64 // acknowledged per second of Elapsed
	P50, P99                   time.Duration
}

// Summarize computes Stats over results that took elapsed in total.
func Summarize(results []Result, elapsed time.Duration) Stats {
	s := Stats{Sent: len(results), Elapsed: elapsed}
	lat := make([]time.Duration, 0, len(results))
	for _, r := range results {
		if r.Acknowledged() {
			s.Acknowledged++
			lat = append(lat, r.Latency)
		} else {
			s.Failed++
		}
	}
	if elapsed > 0 {
		s.PerSecond = float64(s.Acknowledged) / elapsed.Seconds()
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	s.P50, s.P99 = quantile(lat, 0.50), quantile(lat, 0.99)
	return s
}

func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(q*float64(len(sorted))))]
}
