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
	"sort"
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
func GitHubPush(secret, repo, deliveryID string, i int) Hook {
	sha := fmt.Sprintf("%040x", i+1)
	body, _ := json.Marshal(map[string]any{ // cannot fail: plain maps and strings
		"ref": "refs/heads/main", "before": fmt.Sprintf("%040x", i), "after": sha,
		"repository": map[string]any{"full_name": repo, "clone_url": "https://git.example/" + repo + ".git",
			"html_url": "https://git.example/" + repo},
		"pusher":      map[string]any{"name": "bench", "email": "bench@example.com"},
		"head_commit": map[string]any{"id": sha, "message": fmt.Sprintf("change %d", i), "timestamp": "2024-03-01T10:00:00Z", "author": map[string]any{"name": "Bench", "email": "bench@example.com"}},
		"commits":     []any{map[string]any{"id": sha, "message": fmt.Sprintf("change %d", i)}},
	})
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set("X-GitHub-Event", "push")
	h.Set("X-GitHub-Delivery", deliveryID)
	h.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(mac.Sum(nil)))
	h.Set("User-Agent", "GitHub-Hookshot/dockmaster-bench")
	return Hook{DeliveryID: deliveryID, Header: h, Body: body}
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
