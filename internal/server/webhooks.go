package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"

	"github.com/bytedance/sonic"
	"github.com/gin-gonic/gin"

	"github.com/dockmaster/dockmaster/internal/config"
	"github.com/dockmaster/dockmaster/internal/store"
	"github.com/dockmaster/dockmaster/webhooks"
)

// DeliverySubmitter makes a delivery durable before it is acknowledged;
// *ingest.Committer implements it.
type DeliverySubmitter interface {
	Submit(ctx context.Context, d store.NewDelivery) (store.InsertResult, error)
}

// WebhookAPI receives hooks on POST /webhooks/:provider.
//
// Responses: 202 {"delivery", "delivery_id", "status": "accepted"}; 200 with
// status "duplicate", or "ignored"/"ping" and a reason; 401 naming the
// expected header; 400 with the parse error; 413 over MaxBodyBytes; 404 for
// an unknown provider; 503 when the delivery could not be stored. Nothing is
// stored for 4xx and 5xx answers.
type WebhookAPI struct {
	Receiver     *webhooks.Receiver
	Ingest       DeliverySubmitter
	MaxBodyBytes int64 // <= 0: 5 MiB
	Log          *slog.Logger
}

// Register mounts POST /webhooks/:provider on r.
func (a *WebhookAPI) Register(r gin.IRouter) {
	r.POST("/webhooks/:provider", a.receive)
}

// WebhookSecrets resolves the configured secrets once into a lookup for
// webhooks.Options. Repository secrets win over provider secrets; the
// "bitbucket" key also answers for both Bitbucket variants (the Receiver
// asks for the endpoint name after the detected provider).
func WebhookSecrets(cfg config.Webhooks) (webhooks.SecretLookup, error) {
	providers := make(map[string]string, len(cfg.Secrets))
	for p, s := range cfg.Secrets {
		v, err := s.Value()
		if err != nil {
			return nil, fmt.Errorf("webhooks.secrets.%s: %w", p, err)
		}
		if v != "" {
			providers[p] = v
		}
	}
	repos := make(map[string]string, len(cfg.RepoSecrets))
	for r, s := range cfg.RepoSecrets {
		v, err := s.Value()
		if err != nil {
			return nil, fmt.Errorf("webhooks.repo_secrets.%s: %w", r, err)
		}
		if v != "" {
			repos[r] = v
		}
	}
	// Both maps are read-only from here on, so the lookup is safe for
	// concurrent use.
	return func(provider, repo string) (string, bool) {
		if repo != "" {
			v, ok := repos[repo]
			return v, ok
		}
		v, ok := providers[provider]
		return v, ok
	}, nil
}

type webhookResponse struct {
	Delivery   int64  `json:"delivery,omitempty"`
	DeliveryID string `json:"delivery_id,omitempty"`
	Status     string `json:"status"`
	Reason     string `json:"reason,omitempty"`
}

func (a *WebhookAPI) receive(c *gin.Context) {
	endpoint := c.Param("provider")
	if !slices.Contains(webhooks.Endpoints(), endpoint) {
		c.JSON(http.StatusNotFound, gin.H{"error": fmt.Sprintf("unknown webhook provider %q (one of %v)", endpoint, webhooks.Endpoints())})
		return
	}
	limit := a.MaxBodyBytes
	if limit <= 0 {
		limit = 5 << 20
	}
	body, err := readBody(c.Writer, c.Request, limit)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			c.JSON(http.StatusRequestEntityTooLarge, gin.H{"error": fmt.Sprintf("body larger than webhooks.max_body_bytes (%d bytes)", limit)})
			return
		}
		c.JSON(http.StatusBadRequest, gin.H{"error": "reading body: " + err.Error()})
		return
	}
	req := webhooks.Request{Header: c.Request.Header, Query: c.Request.URL.Query(), Body: body}
	d, err := a.Receiver.Parse(endpoint, req)
	var rec store.NewDelivery
	var ignored *webhooks.IgnoredError
	switch {
	case err == nil:
		rec, err = accepted(d, body)
		if err != nil {
			internalError(c, err)
			return
		}
	case errors.As(err, &ignored):
		prov := ignored.Provider
		if prov == "" {
			prov = endpoint
		}
		rec = store.NewDelivery{Provider: prov, DeliveryID: deliveryID(prov, req.Header, body), EventName: ignored.Event,
			Verdict: store.VerdictIgnored, Reason: ignored.Reason, Headers: webhooks.RedactHeaders(req.Header), Body: body}
	default:
		status := webhooks.HTTPStatus(err)
		resp := gin.H{"error": err.Error()}
		var unauth *webhooks.UnauthorizedError
		if errors.As(err, &unauth) {
			resp["header"] = unauth.Header
		}
		if status >= 500 {
			internalError(c, err)
			return
		}
		c.JSON(status, resp)
		return
	}
	res, err := a.Ingest.Submit(c.Request.Context(), rec)
	if err != nil {
		// Not known to be stored: the sender must retry.
		if a.Log != nil {
			a.Log.Error("webhook not stored", "provider", rec.Provider, "delivery_id", rec.DeliveryID, "err", err)
		}
		c.JSON(http.StatusServiceUnavailable, gin.H{"error": "delivery not stored, retry later"})
		return
	}
	out := webhookResponse{Delivery: res.ID, DeliveryID: rec.DeliveryID, Status: string(rec.Verdict), Reason: rec.Reason}
	status := http.StatusOK
	switch {
	case res.Duplicate:
		out.Status, out.Reason = string(store.VerdictDuplicate), ""
	case rec.Verdict == store.VerdictAccepted:
		status = http.StatusAccepted
	}
	c.JSON(status, out)
}

// readBody reads the whole body, failing with *http.MaxBytesError past limit.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	if r.ContentLength > limit {
		return nil, &http.MaxBytesError{Limit: limit}
	}
	rd := http.MaxBytesReader(w, r.Body, limit)
	if r.ContentLength > 0 {
		buf := make([]byte, r.ContentLength)
		// net/http stops the body at Content-Length.
		if _, err := io.ReadFull(rd, buf); err != nil {
			return nil, err
		}
		return buf, nil
	}
	return io.ReadAll(rd)
}

// accepted turns a verified delivery into its record: accepted when
// actionable, else ping or ignored with the reason.
func accepted(d *webhooks.Delivery, body []byte) (store.NewDelivery, error) {
	ev, err := sonic.ConfigStd.Marshal(d.Event) // encoding/json's output, faster: this is the hot path
	if err != nil {
		return store.NewDelivery{}, fmt.Errorf("webhook %s/%s: encode event: %w", d.Provider, d.ID, err)
	}
	rec := store.NewDelivery{Provider: d.Provider, DeliveryID: d.ID, EventName: d.EventName, Repository: eventRepository(d.Event),
		Verdict: store.VerdictAccepted, Headers: d.Headers, Body: body, EventKind: string(d.Event.Kind), Event: ev,
		Actionable: d.Event.Actionable()}
	switch {
	case d.Event.Kind == webhooks.KindPing:
		rec.Verdict, rec.Reason = store.VerdictPing, "ping: hook set up, nothing to do"
	case !rec.Actionable:
		rec.Verdict, rec.Reason = store.VerdictIgnored, notActionableReason(d.Event)
	}
	return rec, nil
}

func notActionableReason(e webhooks.Event) string {
	if p := e.Push; p != nil && p.Deleted {
		if p.Tag != "" {
			return fmt.Sprintf("tag %s deleted: nothing to build", p.Tag)
		}
		return fmt.Sprintf("branch %s deleted: nothing to build", p.Branch)
	}
	return fmt.Sprintf("%s event carries nothing to act on", e.Kind)
}

// eventRepository is what the deliveries list filters on: the git repository,
// the Jenkins job, or the (first) image repository.
func eventRepository(e webhooks.Event) string {
	switch {
	case e.Push != nil:
		return e.Push.Repo.FullName
	case e.Build != nil:
		return e.Build.Job
	case len(e.Images) > 0:
		return e.Images[0].Repository
	}
	return ""
}

// deliveryID identifies an ignored hook for deduplication.
// webhooks.IgnoredError does not carry the Delivery, so this reads the
// providers' delivery headers itself, else hashes the body as webhooks does.
func deliveryID(provider string, h http.Header, body []byte) string {
	for _, k := range [...]string{"X-GitHub-Delivery", "X-Gitea-Delivery", "X-Gogs-Delivery", "X-Forgejo-Delivery",
		"Idempotency-Key", "X-Gitlab-Event-UUID", "X-Request-UUID", "X-Request-Id"} {
		if v := h.Get(k); v != "" {
			return v
		}
	}
	s := sha256.New()
	s.Write([]byte(provider))
	s.Write([]byte{0})
	s.Write(body)
	return "sha256:" + hex.EncodeToString(s.Sum(nil))
}
