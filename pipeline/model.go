// Package pipeline carries each push that matches an app through the test,
// build and ticket stages. The engine is a state machine over rows in the
// store: every transition is a conditional write made before its side
// effect, and every side effect looks before it acts, so a restart at any
// point resumes without running a stage twice.
package pipeline

import (
	"fmt"
	"time"
)

// RunState is where a run is.
type RunState string

// Run states: pending -> testing -> building -> ticketing -> ticketed, or
// failed, canceled, superseded.
const (
	RunPending    RunState = "pending"
	RunTesting    RunState = "testing"
	RunBuilding   RunState = "building"
	RunTicketing  RunState = "ticketing"
	RunTicketed   RunState = "ticketed"
	RunFailed     RunState = "failed"
	RunCanceled   RunState = "canceled"
	RunSuperseded RunState = "superseded"
)

// Terminal reports whether no further transition leaves s (except re-run).
func (s RunState) Terminal() bool {
	switch s {
	case RunTicketed, RunFailed, RunCanceled, RunSuperseded:
		return true
	}
	return false
}

// runTransitions is the one table of legal run transitions.
var runTransitions = map[RunState][]RunState{
	RunPending:   {RunTesting, RunCanceled, RunSuperseded, RunFailed},
	RunTesting:   {RunBuilding, RunFailed, RunCanceled, RunSuperseded},
	RunBuilding:  {RunTicketing, RunFailed, RunCanceled},
	RunTicketing: {RunTicketed, RunFailed},
	// A re-run starts over from pending with the next attempt.
	RunFailed:     {RunPending},
	RunCanceled:   {RunPending},
	RunSuperseded: {RunPending},
	RunTicketed:   {RunPending},
}

// CanTransition reports whether from -> to is legal.
func CanTransition(from, to RunState) bool {
	for _, s := range runTransitions[from] {
		if s == to {
			return true
		}
	}
	return false
}

// StageState is where a stage is.
type StageState string

// Stage states.
const (
	StagePending   StageState = "pending"
	StageRunning   StageState = "running"
	StageSucceeded StageState = "succeeded"
	StageFailed    StageState = "failed"
	StageSkipped   StageState = "skipped"
	StageCanceled  StageState = "canceled"
)

// Stage names, in order.
const (
	StageTest   = "test"
	StageBuild  = "build"
	StageTicket = "ticket"
)

// Run is one push carried through the stages.
type Run struct {
	ID          int64     `json:"id"`
	App         string    `json:"app"`
	Repo        string    `json:"repo"`
	Ref         string    `json:"ref"`
	Branch      string    `json:"branch,omitempty"`
	Tag         string    `json:"tag,omitempty"`
	Commit      string    `json:"commit"`
	Message     string    `json:"message,omitempty"`
	Pusher      string    `json:"pusher,omitempty"`
	Version     string    `json:"version"`
	Environment string    `json:"environment"`
	EventID     int64     `json:"event_id,omitempty"`
	State       RunState  `json:"state"`
	Reason      string    `json:"reason,omitempty"`
	Image       string    `json:"image,omitempty"`
	Digest      string    `json:"digest,omitempty"`
	Attempt     int       `json:"attempt"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
	Stages      []Stage   `json:"stages,omitempty"`
}

// Stage is one stage attempt of a run.
type Stage struct {
	RunID      int64             `json:"-"`
	Name       string            `json:"name"`
	Attempt    int               `json:"attempt"`
	Executor   string            `json:"executor"`
	State      StageState        `json:"state"`
	StartedAt  *time.Time        `json:"started_at,omitempty"`
	FinishedAt *time.Time        `json:"finished_at,omitempty"`
	Reason     string            `json:"reason,omitempty"`
	External   map[string]string `json:"-"`
	Links      map[string]string `json:"links,omitempty"`
	Log        string            `json:"-"`
}

// Duration is how long the stage ran (so far).
func (s Stage) Duration(now time.Time) time.Duration {
	if s.StartedAt == nil {
		return 0
	}
	end := now
	if s.FinishedAt != nil {
		end = *s.FinishedAt
	}
	return end.Sub(*s.StartedAt)
}

// TicketState is where a deployment ticket is.
type TicketState string

// Ticket states: open -> scheduled -> deploying -> awaiting-confirmation ->
// done | rolled-back, or failed, canceled, expired.
const (
	TicketOpen                 TicketState = "open"
	TicketScheduled            TicketState = "scheduled"
	TicketDeploying            TicketState = "deploying"
	TicketAwaitingConfirmation TicketState = "awaiting-confirmation"
	TicketDone                 TicketState = "done"
	TicketRolledBack           TicketState = "rolled-back"
	TicketFailed               TicketState = "failed"
	TicketCanceled             TicketState = "canceled"
	TicketExpired              TicketState = "expired"
)

// Ticket is a deployment ticket: one version of one app for one environment.
type Ticket struct {
	ID          int64             `json:"id"`
	Key         string            `json:"key"`
	App         string            `json:"app"`
	Branch      string            `json:"branch,omitempty"`
	Commit      string            `json:"commit,omitempty"`
	Version     string            `json:"version"`
	Image       string            `json:"image,omitempty"`
	Digest      string            `json:"digest,omitempty"`
	Environment string            `json:"environment"`
	Pusher      string            `json:"pusher,omitempty"`
	RunID       int64             `json:"run_id,omitempty"`
	State       TicketState       `json:"state"`
	Reason      string            `json:"reason,omitempty"`
	Links       map[string]string `json:"links,omitempty"`
	CreatedBy   string            `json:"created_by,omitempty"`
	CreatedAt   time.Time         `json:"created_at"`
	UpdatedAt   time.Time         `json:"updated_at"`
}

// Title is the human line, e.g. "DEPLOY-111: app JavaService1, branch
// release/1.0.1, environment production".
func (t Ticket) Title() string {
	return fmt.Sprintf("%s: app %s, branch %s, environment %s", t.Key, t.App, t.Branch, t.Environment)
}

// ImageRef is image@digest when the digest is known, else the image.
func (t Ticket) ImageRef() string {
	if t.Digest != "" {
		return trimTag(t.Image) + "@" + t.Digest
	}
	return t.Image
}
