package lb

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

// Poller long-polls dockmaster for the LB's config and applies each new
// one. While dockmaster is unreachable the LB keeps its last config.
type Poller struct {
	// URL is the config endpoint (DOCKMASTER_LB_CONFIG_URL).
	URL string
	// Token is sent as "Authorization: Bearer" (DOCKMASTER_LB_TOKEN).
	Token string
	// Host is the Docker host this instance runs on; dockmaster gives it
	// container IPs for backends on the same host.
	Host string
	// Wait is how long dockmaster may hold a poll (default 25s).
	Wait time.Duration
	// Retry is the pause after a failed poll (default 500ms).
	Retry  time.Duration
	Client *http.Client
}

// Run polls until ctx ends, calling apply for every config whose version
// differs from the last one applied. It returns ctx's error.
func (p *Poller) Run(ctx context.Context, apply func(Config) error, logf func(msg string, args ...any)) error {
	if p.Wait <= 0 {
		p.Wait = 25 * time.Second
	}
	if p.Retry <= 0 {
		p.Retry = 500 * time.Millisecond
	}
	cl := p.Client
	if cl == nil {
		cl = &http.Client{Timeout: p.Wait + 15*time.Second}
	}
	version := ""
	for ctx.Err() == nil {
		c, err := p.fetch(ctx, cl, version)
		if err == nil && c.Version != version {
			if err = apply(c); err == nil {
				version = c.Version
				logf("lb: config applied", "version", c.Version, "rules", len(c.Rules))
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			logf("lb: config poll failed; keeping the last config", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(p.Retry):
			}
		}
	}
	return ctx.Err()
}

func (p *Poller) fetch(ctx context.Context, cl *http.Client, version string) (Config, error) {
	u, err := url.Parse(p.URL)
	if err != nil {
		return Config{}, fmt.Errorf("config url %q: %w", p.URL, err)
	}
	q := u.Query()
	if p.Host != "" {
		q.Set("host", p.Host)
	}
	if version != "" {
		q.Set("wait", version)
		q.Set("timeout", p.Wait.String())
	}
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return Config{}, err
	}
	if p.Token != "" {
		req.Header.Set("Authorization", "Bearer "+p.Token)
	}
	resp, err := cl.Do(req)
	if err != nil {
		return Config{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return Config{}, fmt.Errorf("GET %s: %w", u.Redacted(), err)
	}
	if resp.StatusCode != http.StatusOK {
		return Config{}, fmt.Errorf("GET %s: %s: %.200s", u.Redacted(), resp.Status, body)
	}
	var c Config
	if err := json.Unmarshal(body, &c); err != nil {
		return Config{}, fmt.Errorf("GET %s: decode config: %w", u.Redacted(), err)
	}
	return c, nil
}
