package pipeline

import (
	"context"
	"errors"
	"time"
)

// ErrConflict is wrapped by Store errors when a conditional write matched
// no row: someone else moved the run or ticket first. Look again.
var ErrConflict = errors.New("conflict")

// Store is what the engine needs of the database. Every method is atomic;
// the Transition methods are conditional (zero rows matched returns an error
// wrapping ErrConflict), so two workers can never both advance the
// same run or ticket. Safe for concurrent use.
type Store interface {
	// Cursor is the id of the last webhook event the engine handled.
	Cursor(ctx context.Context) (int64, error)
	SetCursor(ctx context.Context, eventID int64) error
	// EventsAfter returns up to limit stored webhook events after id, oldest first.
	EventsAfter(ctx context.Context, id int64, limit int) ([]StoredEvent, error)

	// CreateRun inserts r; for a run started by an event it is idempotent on
	// (EventID, App) and returns the existing run with created=false.
	CreateRun(ctx context.Context, r Run) (run Run, created bool, err error)
	// SupersedeOlder moves the app's older pending runs of the same branch to
	// superseded, returning their ids.
	SupersedeOlder(ctx context.Context, r Run) ([]int64, error)
	Run(ctx context.Context, id int64) (Run, error)
	Runs(ctx context.Context, f RunFilter) ([]Run, error)
	// TransitionRun moves run id from one state to another, setting reason.
	TransitionRun(ctx context.Context, id int64, from, to RunState, reason string) error
	// Rerun moves a terminal run back to pending with attempt+1.
	Rerun(ctx context.Context, id int64, from RunState) (Run, error)
	SetRunImage(ctx context.Context, id int64, image, digest string) error

	// StartStage creates the stage attempt in running state, or returns the
	// existing one (created=false) so a resumed engine continues it.
	StartStage(ctx context.Context, s Stage) (stage Stage, created bool, err error)
	// UpdateStage writes s if the stored attempt is still in state from.
	UpdateStage(ctx context.Context, s Stage, from StageState) error

	// CreateTicket inserts t with the next key of prefix; for a run it is
	// idempotent on (RunID, Environment).
	CreateTicket(ctx context.Context, t Ticket, prefix string) (ticket Ticket, created bool, err error)
	Ticket(ctx context.Context, key string) (Ticket, error)
	Tickets(ctx context.Context, f TicketFilter) ([]Ticket, error)
	TransitionTicket(ctx context.Context, key string, from, to TicketState, reason string) error
}

// StoredEvent is a normalized webhook event (JSON of webhooks.Event).
type StoredEvent struct {
	ID      int64
	Payload []byte
}

// RunFilter selects runs; zero fields match everything.
type RunFilter struct {
	App    string
	Branch string
	States []RunState
	Limit  int
	Before int64 // id cursor for paging
}

// TicketFilter selects tickets; zero fields match everything.
type TicketFilter struct {
	App         string
	Environment string
	States      []TicketState
	Limit       int
	Before      int64
}

// Clock is injected so tests control time.
type Clock func() time.Time
