package webhooks

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// ImagePushed is one manifest pushed to a registry.
type ImagePushed struct {
	EventID    string // registry event id, for deduplication
	Repository string // e.g. "team/app" (no registry host)
	Tag        string // empty for a push by digest
	Digest     string
	MediaType  string
	Size       int64
	URL        string
	Timestamp  time.Time
	Actor      string
}

// isManifestType reports whether a media type is an image (or index)
// manifest; the registry also notifies layer (blob) pushes, which are skipped.
func isManifestType(t string) bool {
	switch t {
	case "application/vnd.docker.distribution.manifest.v2+json",
		"application/vnd.docker.distribution.manifest.list.v2+json",
		"application/vnd.docker.distribution.manifest.v1+json",
		"application/vnd.docker.distribution.manifest.v1+prettyjws",
		"application/vnd.oci.image.manifest.v1+json",
		"application/vnd.oci.image.index.v1+json":
		return true
	}
	return false
}

type registryEnvelope struct {
	Events *[]struct {
		ID        string   `json:"id"`
		Timestamp flexTime `json:"timestamp"`
		Action    string   `json:"action"`
		Target    struct {
			MediaType  string `json:"mediaType"`
			Digest     string `json:"digest"`
			Size       int64  `json:"size"`
			Repository string `json:"repository"`
			URL        string `json:"url"`
			Tag        string `json:"tag"`
		} `json:"target"`
		Actor struct {
			Name string `json:"name"`
		} `json:"actor"`
	} `json:"events"`
}

// parseRegistry decodes a distribution notification envelope. Registries send
// configured static headers only, so the token comes as Authorization: Bearer.
// Delivery.ID is the first event's id: a retried envelope repeats it.
func (r *Receiver) parseRegistry(req Request) (*Delivery, error) {
	const prov = ProviderRegistry
	if err := r.verifyToken(prov, "", req, fromBearer, "Authorization: Bearer"); err != nil {
		return nil, err
	}
	var in registryEnvelope
	if err := decodeJSON(prov, req.Body, &in, false); err != nil {
		return nil, err
	}
	if in.Events == nil {
		return nil, missing(prov, "events")
	}
	d := &Delivery{Provider: prov, EventName: "push"}
	skipped := map[string]int{}
	var images []ImagePushed
	for i, e := range *in.Events {
		if d.ID == "" {
			d.ID = e.ID
		}
		t := e.Target
		if e.Action != "push" || !isManifestType(t.MediaType) {
			skipped[strings.TrimSpace(e.Action+" "+t.MediaType)]++
			continue
		}
		if t.Repository == "" {
			return nil, missing(prov, fmt.Sprintf("events[%d].target.repository", i))
		}
		if t.Digest == "" {
			return nil, missing(prov, fmt.Sprintf("events[%d].target.digest", i))
		}
		images = append(images, ImagePushed{EventID: e.ID, Repository: t.Repository, Tag: t.Tag, Digest: t.Digest,
			MediaType: t.MediaType, Size: t.Size, URL: t.URL, Timestamp: e.Timestamp.Time, Actor: e.Actor.Name})
	}
	if len(images) == 0 {
		return nil, &IgnoredError{Provider: prov, Event: "envelope", Reason: "no manifest push (" + describeSkipped(skipped) + ")"}
	}
	d.Event = Event{Kind: KindImage, Images: images}
	return d, nil
}

func describeSkipped(m map[string]int) string {
	if len(m) == 0 {
		return "no events"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%d× %s", m[k], k)
	}
	return strings.Join(parts, ", ")
}
