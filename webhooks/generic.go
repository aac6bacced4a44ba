package webhooks

import (
	"encoding/json"
	"fmt"
)

// genericBuild is the body a Jenkinsfile post step sends; see GENERIC.md.
// Unknown fields are rejected so that a typo is reported, not silently lost.
type genericBuild struct {
	Job     string `json:"job"`
	Number  *int64 `json:"number"`
	Phase   string `json:"phase"`
	Status  string `json:"status"`
	URL     string `json:"url"`
	QueueID int64  `json:"queue_id"`
	SCM     *struct {
		URL    string `json:"url"`
		Branch string `json:"branch"`
		Commit string `json:"commit"`
	} `json:"scm"`
	Parameters params `json:"parameters"`
}

func (r *Receiver) parseGeneric(req Request) (*Delivery, error) {
	const prov = ProviderGeneric
	var peek struct {
		Job string `json:"job"`
		URL string `json:"url"`
	}
	_ = json.Unmarshal(req.Body, &peek) // only picks a per-job secret
	if err := r.verifyToken(prov, firstNonEmpty(peek.Job, JobFromURL(peek.URL)), req, fromTokenHeader|fromBearer,
		TokenHeader+" or Authorization: Bearer"); err != nil {
		return nil, err
	}
	var in genericBuild
	if err := decodeJSON(prov, req.Body, &in, true); err != nil {
		return nil, err
	}
	if in.Number == nil {
		return nil, missing(prov, "number")
	}
	b := &Build{
		Job:        firstNonEmpty(in.Job, JobFromURL(in.URL)),
		Number:     *in.Number,
		QueueID:    in.QueueID,
		URL:        in.URL,
		Parameters: in.Parameters,
	}
	b.Name = b.Job
	if in.SCM != nil {
		b.SCM = SCM(*in.SCM)
	}
	if b.Job == "" {
		return nil, missing(prov, "job")
	}
	phase := in.Phase
	if phase == "" {
		phase = string(PhaseFinalized)
	}
	if err := setPhaseStatus(prov, "", b, phase, in.Status); err != nil {
		return nil, err
	}
	if b.Phase == PhaseFinished {
		return nil, &MalformedError{Provider: prov, Field: "phase", Offset: -1, Err: fmt.Errorf("FINISHED is legacy; send FINALIZED")}
	}
	return &Delivery{Provider: prov, EventName: "build", Event: Event{Kind: KindBuild, Build: b}}, nil
}
