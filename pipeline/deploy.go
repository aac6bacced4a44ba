package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/dockmaster/dockmaster/pipeline/notify"
)

// Deploy errors.
var (
	ErrBlocked       = errors.New("version is blocked for this environment after a rollback")
	ErrWrongState    = errors.New("ticket is not in a state that allows this")
	ErrReasonMissing = errors.New("a reason is required")
	ErrNoPolicy      = errors.New("environment has no deploy policy")
)

// Target runs the environment side of a ticket: the built-in deployer or
// a Jenkins deploy job. Deploy must be safe to call again after a crash
// (a held upgrade of the same version reports Held, not an error).
type Target interface {
	// Deploy upgrades the ticket's app on its environment to its version.
	Deploy(ctx context.Context, t Ticket) (DeployOutcome, error)
	// Finish removes the old containers of a held upgrade.
	Finish(ctx context.Context, t Ticket) error
	// Rollback restores the old containers of a held upgrade.
	Rollback(ctx context.Context, t Ticket) error
	// Health observes the new containers of a held upgrade.
	Health(ctx context.Context, t Ticket) (Health, error)
}

// Observer is implemented by targets whose deploy runs outside
// dockmaster (a Jenkins deploy job) onto a stack dockmaster can see.
// Observe reports whether the ticket's version is held there (Held, with
// FromVersion); not held is no error. It errs when the stack cannot be
// read or holds another version. Deploys calls it on each tick for
// deploying tickets (the job waits for the hold before it ends) and when
// the job reports success. Safe for concurrent use.
type Observer interface {
	Observe(ctx context.Context, t Ticket) (DeployOutcome, error)
}

// DeployOutcome is what Deploy did.
type DeployOutcome struct {
	// Held: the service is in upgraded, old containers kept.
	Held bool
	// Pending: an external job runs the deploy; DeployFinished reports it.
	Pending     bool
	FromVersion string
	Links       map[string]string // e.g. the Jenkins deploy build
}

// Health of a held upgrade's new containers.
type Health struct {
	Healthy    bool     `json:"healthy"`
	Containers []string `json:"containers,omitempty"` // "host/name: health"
	Detail     string   `json:"detail,omitempty"`
}

// HoldMode is what happens to a held upgrade without a human answer.
type HoldMode string

// Hold modes.
const (
	HoldStay         HoldMode = "stay"          // wait for a human (default)
	HoldAutoFinish   HoldMode = "auto-finish"   // finish after AutoFinishAfter healthy
	HoldAutoRollback HoldMode = "auto-rollback" // roll back when unhealthy or at Expiry
)

// EnvPolicy is how tickets deploy on one environment (or one app there).
type EnvPolicy struct {
	Windows *Windows
	// Approval gates the deploy; Required 0 means none.
	Approval ApprovalPolicy
	// Finish gates finishing a held upgrade; Required 0 is treated as 1.
	Finish          ApprovalPolicy
	Hold            HoldMode
	AutoFinishAfter time.Duration
	Expiry          time.Duration // for auto-rollback; 0 none
	RemindAfter     time.Duration // 0: no reminder
	LinkTTL         time.Duration // default 24h
	// LinkOnly lets an approval link act without a signed-in user.
	LinkOnly bool
	// Promote opens a ticket for the app's next environment when an
	// upgrade finishes.
	Promote  bool
	Channels notify.Channels
}

// Schedule is a ticket waiting for its window, stored so a restart finds it.
type Schedule struct {
	Ticket      string    `json:"ticket"`
	Environment string    `json:"environment"`
	DueAt       time.Time `json:"due_at"`
	WindowEnd   time.Time `json:"window_end"`
	Next        string    `json:"next"`  // "Tue 02:00 CET"
	State       string    `json:"state"` // waiting, claimed
	ClaimedBy   string    `json:"claimed_by,omitempty"`
}

// HoldState is where an approval request of a held upgrade is.
type HoldState string

// Hold states.
const (
	HoldOpen       HoldState = "open"
	HoldFinished   HoldState = "finished"
	HoldRolledBack HoldState = "rolled-back"
)

// Hold is the approval request made when an upgrade reaches upgraded.
type Hold struct {
	ID            int64     `json:"id"`
	Ticket        string    `json:"ticket"`
	App           string    `json:"app"`
	Environment   string    `json:"environment"`
	FromVersion   string    `json:"from_version"`
	ToVersion     string    `json:"to_version"`
	State         HoldState `json:"state"`
	FinishNonce   string    `json:"-"`
	RollbackNonce string    `json:"-"`
	ExpiresAt     time.Time `json:"expires_at"`
	CreatedAt     time.Time `json:"created_at"`
	RemindedAt    time.Time `json:"reminded_at,omitzero"`
	DecidedBy     string    `json:"decided_by,omitempty"`
}

// Block keeps a rolled-back version off an environment until unblocked.
type Block struct {
	App         string    `json:"app"`
	Environment string    `json:"environment"`
	Version     string    `json:"version"`
	Reason      string    `json:"reason"`
	By          string    `json:"by"`
	At          time.Time `json:"at"`
}

// Record is one audited deploy event (approval, rejection, expiry,
// override, reminder, finish, rollback, window-missed, ...).
type Record struct {
	Action      string // e.g. deploy.approve
	Actor       string
	Source      string
	Environment string
	Target      string // ticket key
	Result      string // ok, denied, failed
	Detail      string
	At          time.Time
}

// DeployStore is what Deploys needs of the database. Conditional methods
// return errors wrapping ErrConflict when they match no row.
type DeployStore interface {
	Ticket(ctx context.Context, key string) (Ticket, error)
	Tickets(ctx context.Context, f TicketFilter) ([]Ticket, error)
	TransitionTicket(ctx context.Context, key string, from, to TicketState, reason string) error
	CreateTicket(ctx context.Context, t Ticket, prefix string) (Ticket, bool, error)

	// PutSchedule inserts or replaces the ticket's schedule as waiting.
	PutSchedule(ctx context.Context, s Schedule) error
	GetSchedule(ctx context.Context, ticket string) (Schedule, error)
	// DueSchedules lists waiting schedules due at or before now.
	DueSchedules(ctx context.Context, now time.Time) ([]Schedule, error)
	// ClaimSchedule moves a waiting schedule due at dueAt to claimed.
	ClaimSchedule(ctx context.Context, ticket string, dueAt time.Time, by string) error
	// TakeOverSchedule moves a claimed schedule from one replica to another.
	TakeOverSchedule(ctx context.Context, ticket, from, by string) error

	// AddVote records v; a second vote of the same voter on the same
	// ticket and stage wraps ErrAlreadyVoted.
	AddVote(ctx context.Context, v Vote) error
	Votes(ctx context.Context, ticket, stage string) ([]Vote, error)

	// CreateHold inserts h (one per ticket; an existing one is returned).
	CreateHold(ctx context.Context, h Hold) (Hold, error)
	GetHold(ctx context.Context, id int64) (Hold, error)
	HoldFor(ctx context.Context, ticket string) (Hold, error)
	OpenHolds(ctx context.Context) ([]Hold, error)
	DecideHold(ctx context.Context, id int64, to HoldState, by string) error // from open only
	MarkReminded(ctx context.Context, id int64, at time.Time) error          // once only
	// UseLink records a use of a link by who; a second use wraps ErrLinkUsed.
	UseLink(ctx context.Context, nonce, who string) error

	AddBlock(ctx context.Context, b Block) error
	RemoveBlock(ctx context.Context, app, env, version string) error
	GetBlock(ctx context.Context, app, env, version string) (Block, bool, error)
	Blocks(ctx context.Context) ([]Block, error)

	Record(ctx context.Context, r Record) error
}

// Actor is who acts: from the session or API key, never a request body.
type Actor struct {
	Name   string // "" for an anonymous link-only approval
	Source string // client address
}

func (a Actor) name() string {
	if a.Name == "" {
		return "anonymous"
	}
	return a.Name
}

// DeploysOptions configure Deploys.
type DeploysOptions struct {
	Store DeployStore
	// Policy returns the policy of app on env (with per-app overrides).
	Policy func(app, env string) (*EnvPolicy, error)
	// Target returns the deploy target of env.
	Target func(env string) (Target, error)
	// Apps finds an app (for promotion order); nil disables promotion.
	Apps     func(name string) (*App, bool)
	Signer   *Signer
	Notifier *notify.Notifier
	// LinkURL turns a token into the page URL, e.g. PublicURL+"/links/"+token.
	LinkURL      func(token string) string
	TicketPrefix string
	Clock        Clock
	Rand         func(n int64) int64 // [0,n); default math/rand/v2
	Tick         time.Duration       // the due loop's period, default 5s
	Log          *slog.Logger
	ID           string // this replica's name in claims
}

// Deploys schedules tickets into windows, runs their deploys, holds the
// upgrades and acts on approvals. State lives in the store; a Deploys can
// be killed and restarted at any point. Safe for concurrent use.
type Deploys struct {
	o    DeploysOptions
	wg   sync.WaitGroup
	mu   sync.Mutex
	busy map[string]bool // tickets being deployed by this process
	// resumed: the first Tick has restarted this replica's interrupted deploys.
	resumed bool
	// life is Run's context: deploys outlive the request that started them
	// (deploy now) but end with the process.
	life context.Context
}

// NewDeploys checks o and fills defaults.
func NewDeploys(o DeploysOptions) (*Deploys, error) {
	if o.Store == nil || o.Policy == nil || o.Target == nil || o.Signer == nil {
		return nil, errors.New("deploys: Store, Policy, Target and Signer are required")
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.Rand == nil {
		o.Rand = rand.Int64N
	}
	if o.Tick <= 0 {
		o.Tick = 5 * time.Second
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Notifier == nil {
		o.Notifier = notify.New()
	}
	if o.LinkURL == nil {
		o.LinkURL = func(tok string) string { return "/links/" + tok }
	}
	if o.TicketPrefix == "" {
		o.TicketPrefix = "DEPLOY"
	}
	if o.ID == "" {
		o.ID = NewNonce()[:8]
	}
	return &Deploys{o: o, busy: map[string]bool{}}, nil
}

func (d *Deploys) record(ctx context.Context, action string, who Actor, t Ticket, result, detail string) {
	if result == "" {
		result = "ok"
	}
	err := d.o.Store.Record(context.WithoutCancel(ctx), Record{Action: "deploy." + action, Actor: who.name(), Source: who.Source,
		Environment: t.Environment, Target: t.Key, Result: result, Detail: detail, At: d.o.Clock()})
	if err != nil {
		d.o.Log.Error("deploys: audit write failed", "action", action, "ticket", t.Key, "err", err)
	}
}

var system = Actor{Name: "dockmaster"}

// OnTicket is the engine's Options.OnTicket hook: it schedules the ticket.
func (d *Deploys) OnTicket(t Ticket) {
	if err := d.Schedule(context.Background(), t.Key, system); err != nil {
		d.o.Log.Warn("deploys: ticket not scheduled", "ticket", t.Key, "err", err)
	}
}

// Schedule puts an open ticket into its next window when it may go: not
// blocked, approved if its environment requires approval. It is a no-op
// for a ticket past open, and returns nil (with the reason on the ticket)
// when the ticket has to keep waiting.
func (d *Deploys) Schedule(ctx context.Context, key string, who Actor) error {
	t, err := d.o.Store.Ticket(ctx, key)
	if err != nil {
		return err
	}
	if t.State != TicketOpen {
		return nil
	}
	pol, err := d.o.Policy(t.App, t.Environment)
	if err != nil {
		return err
	}
	if b, blocked, err := d.o.Store.GetBlock(ctx, t.App, t.Environment, t.Version); err != nil {
		return err
	} else if blocked {
		reason := fmt.Sprintf("version %s is blocked on %s since its rollback by %s; unblock it to deploy", t.Version, t.Environment, b.By)
		d.setReason(ctx, t, reason)
		d.record(ctx, "blocked", who, t, "denied", reason)
		return nil
	}
	now := d.o.Clock()
	if pol.Approval.Required > 0 {
		votes, err := d.o.Store.Votes(ctx, t.Key, ApprovalDeploy)
		if err != nil {
			return err
		}
		st := DeriveApproval(pol.Approval, t.CreatedAt, votes, now, t.Pusher, t.CreatedBy)
		switch {
		case st.Rejected:
			return d.transition(ctx, t, TicketOpen, TicketCanceled, "rejected by "+st.RejectedBy)
		case st.Expired:
			d.record(ctx, "expire", system, t, "ok", "approval deadline passed: "+st.String())
			return d.transition(ctx, t, TicketOpen, TicketExpired, "approval deadline passed with "+st.String())
		case !st.Approved:
			d.setReason(ctx, t, "waiting for approval: "+st.String())
			return nil
		}
	}
	iv, err := pol.Windows.Next(now)
	if err != nil {
		d.setReason(ctx, t, err.Error())
		return err
	}
	due := iv.Start
	if j := pol.Windows.Jitter(); j > 0 {
		if span := iv.End.Sub(iv.Start); span < j {
			j = span
		}
		if j > 0 {
			due = due.Add(time.Duration(d.o.Rand(int64(j))))
		}
	}
	s := Schedule{Ticket: t.Key, Environment: t.Environment, DueAt: due, WindowEnd: iv.End, Next: pol.Windows.Describe(iv.Start)}
	if err := d.o.Store.PutSchedule(ctx, s); err != nil {
		return err
	}
	reason := "next window: " + s.Next
	if !iv.Start.After(now) {
		reason = "window open now"
	}
	if err := d.transition(ctx, t, TicketOpen, TicketScheduled, reason); err != nil {
		return err
	}
	d.record(ctx, "schedule", who, t, "ok", reason)
	return nil
}

func (d *Deploys) setReason(ctx context.Context, t Ticket, reason string) {
	if t.Reason == reason {
		return
	}
	if err := d.o.Store.TransitionTicket(ctx, t.Key, t.State, t.State, reason); err != nil && !errors.Is(err, ErrConflict) {
		d.o.Log.Warn("deploys: set reason", "ticket", t.Key, "err", err)
	}
}

func (d *Deploys) transition(ctx context.Context, t Ticket, from, to TicketState, reason string) error {
	if err := d.o.Store.TransitionTicket(ctx, t.Key, from, to, reason); err != nil {
		return fmt.Errorf("ticket %s %s -> %s: %w", t.Key, from, to, err)
	}
	d.o.Log.Info("ticket", "ticket", t.Key, "from", from, "to", to, "reason", reason)
	return nil
}

// Run calls Tick every Options.Tick until ctx ends, then waits for the
// deploys it started.
func (d *Deploys) Run(ctx context.Context) {
	d.mu.Lock()
	d.life = ctx
	d.mu.Unlock()
	defer d.wg.Wait()
	t := time.NewTicker(d.o.Tick)
	defer t.Stop()
	for {
		if err := d.Tick(ctx); err != nil && ctx.Err() == nil {
			d.o.Log.Error("deploys: tick", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Wait blocks until deploys started by Tick have returned (tests).
func (d *Deploys) Wait() { d.wg.Wait() }

// Tick does what is due now: re-looks at open tickets waiting for
// approval, claims due schedules and starts their deploys (in the
// background; Wait waits for them), reschedules schedules whose window
// passed while nobody ran, resumes deploys a crash interrupted, and
// applies hold policies and reminders.
func (d *Deploys) Tick(ctx context.Context) error {
	now := d.o.Clock()
	var errs []error
	open, err := d.o.Store.Tickets(ctx, TicketFilter{States: []TicketState{TicketOpen}, Limit: 10000})
	if err != nil {
		return err
	}
	for _, t := range open {
		if err := d.Schedule(ctx, t.Key, system); err != nil && !errors.Is(err, ErrConflict) {
			errs = append(errs, err)
		}
	}
	due, err := d.o.Store.DueSchedules(ctx, now)
	if err != nil {
		return err
	}
	for _, s := range due {
		if err := d.due(ctx, s, now); err != nil && !errors.Is(err, ErrConflict) {
			errs = append(errs, err)
		}
	}
	d.mu.Lock()
	first := !d.resumed
	d.resumed = true
	d.mu.Unlock()
	deploying, err := d.o.Store.Tickets(ctx, TicketFilter{States: []TicketState{TicketDeploying}, Limit: 10000})
	if err != nil {
		return err
	}
	for _, t := range deploying {
		if s, err := d.o.Store.GetSchedule(ctx, t.Key); err == nil && s.ClaimedBy == d.o.ID {
			if first {
				d.start(ctx, t) // ours, interrupted by a restart
			}
		} else if err == nil && s.ClaimedBy != "" && now.Sub(s.DueAt) > time.Hour {
			// Claimed by a replica that has not finished within an hour:
			// resume it here; Deploy is idempotent.
			if err := d.o.Store.TakeOverSchedule(ctx, t.Key, s.ClaimedBy, d.o.ID); err == nil {
				d.start(ctx, t)
			}
		}
	}
	for _, t := range deploying {
		if err := d.observe(ctx, t); err != nil && !errors.Is(err, ErrConflict) {
			errs = append(errs, err)
		}
	}
	holds, err := d.o.Store.OpenHolds(ctx)
	if err != nil {
		return err
	}
	for _, h := range holds {
		if err := d.tickHold(ctx, h, now); err != nil && !errors.Is(err, ErrConflict) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (d *Deploys) due(ctx context.Context, s Schedule, now time.Time) error {
	t, err := d.o.Store.Ticket(ctx, s.Ticket)
	if err != nil {
		return err
	}
	if t.State != TicketScheduled {
		return nil
	}
	pol, err := d.o.Policy(t.App, t.Environment)
	if err != nil {
		return err
	}
	if _, open := pol.Windows.OpenAt(now); !open || !now.Before(s.WindowEnd) {
		// The window passed (or a freeze began) while nobody ran it: wait
		// for the next one and say so, never skip silently.
		iv, err := pol.Windows.Next(now)
		if err != nil {
			return err
		}
		ns := Schedule{Ticket: t.Key, Environment: t.Environment, DueAt: iv.Start, WindowEnd: iv.End, Next: pol.Windows.Describe(iv.Start)}
		if err := d.o.Store.PutSchedule(ctx, ns); err != nil {
			return err
		}
		why := fmt.Sprintf("window %s passed before the deploy ran (due %s); next window: %s",
			s.Next, s.DueAt.UTC().Format(time.RFC3339), ns.Next)
		if fz, frozen := pol.Windows.Frozen(now); frozen {
			why = fmt.Sprintf("frozen (%s) until %s; next window: %s", fz.Reason, fz.End.UTC().Format(time.RFC3339), ns.Next)
		}
		d.setReason(ctx, t, why)
		d.record(ctx, "window-missed", system, t, "ok", why)
		return nil
	}
	if err := d.o.Store.ClaimSchedule(ctx, t.Key, s.DueAt, d.o.ID); err != nil {
		return err // another replica claimed it
	}
	if err := d.transition(ctx, t, TicketScheduled, TicketDeploying, "deploying "+t.Version); err != nil {
		return err
	}
	t.State = TicketDeploying
	d.start(ctx, t)
	return nil
}

// start runs the deploy of t in the background unless it already runs
// here. The deploy runs under Run's context, not ctx: ctx may be a request
// that ends long before the deploy does.
func (d *Deploys) start(ctx context.Context, t Ticket) {
	d.mu.Lock()
	if d.busy[t.Key] {
		d.mu.Unlock()
		return
	}
	if d.life != nil {
		ctx = d.life
	} else {
		ctx = context.WithoutCancel(ctx) // no Run (tests driving Tick)
	}
	d.busy[t.Key] = true
	d.mu.Unlock()
	d.wg.Add(1)
	go func() {
		defer func() {
			d.mu.Lock()
			delete(d.busy, t.Key)
			d.mu.Unlock()
			d.wg.Done()
		}()
		if err := d.deploy(ctx, t); err != nil && ctx.Err() == nil {
			d.o.Log.Warn("deploys: deploy", "ticket", t.Key, "err", err)
		}
	}()
}

// deploy runs the target for a ticket in deploying and moves the ticket on.
func (d *Deploys) deploy(ctx context.Context, t Ticket) error {
	target, err := d.o.Target(t.Environment)
	if err != nil {
		return d.transition(ctx, t, TicketDeploying, TicketFailed, err.Error())
	}
	out, err := target.Deploy(ctx, t)
	if ctx.Err() != nil {
		return ctx.Err() // interrupted: the next start resumes
	}
	if err != nil {
		d.record(ctx, "deploy", system, t, "failed", err.Error())
		return d.transition(ctx, t, TicketDeploying, TicketFailed, "deploy failed: "+err.Error())
	}
	switch {
	case out.Pending:
		d.setReason(ctx, t, "deploy job running")
		return nil
	case !out.Held:
		// Nothing was replaced (a first deploy): nothing to confirm.
		d.record(ctx, "deploy", system, t, "ok", "deployed "+t.Version+"; nothing held")
		if err := d.transition(ctx, t, TicketDeploying, TicketDone, "deployed; no previous version to hold"); err != nil {
			return err
		}
		t.State = TicketDone
		return d.promote(ctx, t)
	}
	return d.held(ctx, t, out.FromVersion)
}

// DeployFinished reports the outcome of an external deploy job (the
// Jenkins deploy path): the lead's engine calls it from Build events of
// the deploy job, whose DOCKMASTER_TICKET parameter names the ticket.
func (d *Deploys) DeployFinished(ctx context.Context, key string, ok bool, detail string) error {
	t, err := d.o.Store.Ticket(ctx, key)
	if err != nil {
		return err
	}
	if t.State != TicketDeploying {
		return nil // already settled; webhooks repeat
	}
	if !ok {
		d.record(ctx, "deploy", system, t, "failed", detail)
		return d.transition(ctx, t, TicketDeploying, TicketFailed, "deploy job failed: "+detail)
	}
	// The job may have left the stack held in upgraded (up --upgrade):
	// then the ticket waits for a human as a built-in deploy does.
	if target, err := d.o.Target(t.Environment); err == nil {
		if obs, ok := target.(Observer); ok {
			out, err := obs.Observe(ctx, t)
			if err != nil {
				// Failing the ticket, not returning the error: the engine
				// would retry this event forever on a lasting error.
				d.record(ctx, "deploy", system, t, "failed", err.Error())
				return d.transition(ctx, t, TicketDeploying, TicketFailed, "deploy job succeeded, but its stack: "+err.Error())
			}
			if out.Held {
				d.record(ctx, "deploy", system, t, "ok", detail)
				return d.held(ctx, t, out.FromVersion)
			}
		}
	}
	d.record(ctx, "deploy", system, t, "ok", detail)
	if err := d.transition(ctx, t, TicketDeploying, TicketDone, "deploy job succeeded"); err != nil {
		return err
	}
	return d.promote(ctx, t)
}

// observe holds a deploying ticket whose deploy job (an Observer target)
// has left its version upgraded, without waiting for the job to end: the
// job waits for the hold to print its approval links. Errors are left to
// DeployFinished, which reports them when the job ends.
func (d *Deploys) observe(ctx context.Context, t Ticket) error {
	d.mu.Lock()
	busy := d.busy[t.Key]
	d.mu.Unlock()
	if busy {
		return nil // its Deploy is still running here
	}
	target, err := d.o.Target(t.Environment)
	if err != nil {
		return nil
	}
	obs, ok := target.(Observer)
	if !ok {
		return nil
	}
	out, err := obs.Observe(ctx, t)
	if err != nil || !out.Held {
		if err != nil {
			d.o.Log.Debug("deploys: observe", "ticket", t.Key, "err", err)
		}
		return nil
	}
	return d.held(ctx, t, out.FromVersion)
}

func (d *Deploys) held(ctx context.Context, t Ticket, from string) error {
	pol, err := d.o.Policy(t.App, t.Environment)
	if err != nil {
		return err
	}
	ttl := pol.LinkTTL
	if ttl <= 0 {
		ttl = 24 * time.Hour
	}
	now := d.o.Clock()
	h, err := d.o.Store.CreateHold(ctx, Hold{Ticket: t.Key, App: t.App, Environment: t.Environment, FromVersion: from,
		ToVersion: t.Version, State: HoldOpen, FinishNonce: NewNonce(), RollbackNonce: NewNonce(), ExpiresAt: now.Add(ttl), CreatedAt: now})
	if err != nil {
		return err
	}
	if err := d.transition(ctx, t, TicketDeploying, TicketAwaitingConfirmation,
		fmt.Sprintf("upgraded %s -> %s; held until finished or rolled back", orNone(from), t.Version)); err != nil {
		return err
	}
	d.record(ctx, "held", system, t, "ok", fmt.Sprintf("%s -> %s", orNone(from), t.Version))
	d.announce(ctx, pol, t, h, notify.KindHeld, "")
	return nil
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// Links returns the finish and rollback tokens of a hold.
func (d *Deploys) Links(h Hold) (finish, rollback string) {
	finish = d.o.Signer.Sign(Link{Request: h.ID, Action: ActionFinish, Env: h.Environment, Expires: h.ExpiresAt, Nonce: h.FinishNonce})
	rollback = d.o.Signer.Sign(Link{Request: h.ID, Action: ActionRollback, Env: h.Environment, Expires: h.ExpiresAt, Nonce: h.RollbackNonce})
	return finish, rollback
}

// LinkURLs returns the finish and rollback page URLs of a hold, as the
// held notification carries them.
func (d *Deploys) LinkURLs(h Hold) (finish, rollback string) {
	f, r := d.Links(h)
	return d.o.LinkURL(f), d.o.LinkURL(r)
}

func (d *Deploys) announce(ctx context.Context, pol *EnvPolicy, t Ticket, h Hold, kind, actor string) {
	m := notify.Message{Kind: kind, Ticket: t.Key, App: t.App, Environment: t.Environment, FromVersion: h.FromVersion,
		ToVersion: t.Version, Pusher: t.Pusher, Actor: actor}
	if kind == notify.KindHeld || kind == notify.KindReminder {
		f, r := d.Links(h)
		m.FinishURL, m.RollbackURL = d.o.LinkURL(f), d.o.LinkURL(r)
	}
	if err := d.o.Notifier.Send(ctx, pol.Channels, m); err != nil {
		d.o.Log.Warn("deploys: notification failed", "ticket", t.Key, "kind", kind, "err", err)
		d.record(ctx, "notify", system, t, "failed", err.Error())
	}
}

// tickHold sends the reminder and applies the hold policy.
func (d *Deploys) tickHold(ctx context.Context, h Hold, now time.Time) error {
	t, err := d.o.Store.Ticket(ctx, h.Ticket)
	if err != nil {
		return err
	}
	if t.State != TicketAwaitingConfirmation {
		return nil
	}
	pol, err := d.o.Policy(t.App, t.Environment)
	if err != nil {
		return err
	}
	if pol.RemindAfter > 0 && h.RemindedAt.IsZero() && now.Sub(h.CreatedAt) >= pol.RemindAfter {
		if err := d.o.Store.MarkReminded(ctx, h.ID, now); err == nil {
			d.record(ctx, "remind", system, t, "ok", fmt.Sprintf("no answer after %s", pol.RemindAfter))
			d.announce(ctx, pol, t, h, notify.KindReminder, "")
		}
	}
	switch pol.Hold {
	case HoldAutoFinish:
		if now.Sub(h.CreatedAt) < pol.AutoFinishAfter {
			return nil
		}
		target, err := d.o.Target(t.Environment)
		if err != nil {
			return err
		}
		hl, err := target.Health(ctx, t)
		if err != nil || !hl.Healthy {
			return err // keep holding; a human decides
		}
		return d.finish(ctx, t, h, pol, Actor{Name: "dockmaster (auto-finish)"}, "healthy for "+pol.AutoFinishAfter.String())
	case HoldAutoRollback:
		target, err := d.o.Target(t.Environment)
		if err != nil {
			return err
		}
		if pol.Expiry > 0 && now.Sub(h.CreatedAt) >= pol.Expiry {
			d.record(ctx, "expire", system, t, "ok", "no answer within "+pol.Expiry.String())
			return d.rollback(ctx, t, h, pol, Actor{Name: "dockmaster (expiry)"}, "expired without confirmation")
		}
		if hl, err := target.Health(ctx, t); err == nil && !hl.Healthy {
			return d.rollback(ctx, t, h, pol, Actor{Name: "dockmaster (unhealthy)"}, "unhealthy: "+hl.Detail)
		}
	}
	return nil
}

// Approve votes for t: before its deploy (ticket open or scheduled) or,
// on a held upgrade, to finish it (as Confirm).
func (d *Deploys) Approve(ctx context.Context, key string, who Actor) (ApprovalStatus, error) {
	t, err := d.o.Store.Ticket(ctx, key)
	if err != nil {
		return ApprovalStatus{}, err
	}
	if t.State == TicketAwaitingConfirmation {
		return d.Confirm(ctx, key, who)
	}
	if t.State != TicketOpen && t.State != TicketScheduled {
		return ApprovalStatus{}, fmt.Errorf("approve %s: %w (%s)", key, ErrWrongState, t.State)
	}
	pol, err := d.o.Policy(t.App, t.Environment)
	if err != nil {
		return ApprovalStatus{}, err
	}
	st, err := d.vote(ctx, t, pol.Approval, ApprovalDeploy, who, true)
	if err != nil {
		return st, err
	}
	return st, d.Schedule(ctx, key, who)
}

// Reject votes against t's deploy (cancels it) or rolls a held upgrade back.
func (d *Deploys) Reject(ctx context.Context, key string, who Actor) error {
	t, err := d.o.Store.Ticket(ctx, key)
	if err != nil {
		return err
	}
	if t.State == TicketAwaitingConfirmation {
		return d.Rollback(ctx, key, who)
	}
	if t.State != TicketOpen && t.State != TicketScheduled {
		return fmt.Errorf("reject %s: %w (%s)", key, ErrWrongState, t.State)
	}
	pol, err := d.o.Policy(t.App, t.Environment)
	if err != nil {
		return err
	}
	if _, err := d.vote(ctx, t, pol.Approval, ApprovalDeploy, who, false); err != nil {
		return err
	}
	return d.transition(ctx, t, t.State, TicketCanceled, "rejected by "+who.name())
}

func (d *Deploys) vote(ctx context.Context, t Ticket, pol ApprovalPolicy, stage string, who Actor, approve bool) (ApprovalStatus, error) {
	action := "approve"
	if !approve {
		action = "reject"
	}
	if err := pol.Eligible(who.Name, t.Pusher, t.CreatedBy); err != nil {
		d.record(ctx, action, who, t, "denied", err.Error())
		return ApprovalStatus{}, fmt.Errorf("%s %s: %w", action, t.Key, err)
	}
	now := d.o.Clock()
	if err := d.o.Store.AddVote(ctx, Vote{Ticket: t.Key, Stage: stage, Voter: who.Name, Approve: approve, Source: who.Source, At: now}); err != nil {
		d.record(ctx, action, who, t, "denied", err.Error())
		return ApprovalStatus{}, fmt.Errorf("%s %s: %w", action, t.Key, err)
	}
	votes, err := d.o.Store.Votes(ctx, t.Key, stage)
	if err != nil {
		return ApprovalStatus{}, err
	}
	opened := t.CreatedAt
	if stage == ApprovalFinish {
		if h, err := d.o.Store.HoldFor(ctx, t.Key); err == nil {
			opened = h.CreatedAt
		}
	}
	st := DeriveApproval(pol, opened, votes, now, t.Pusher, t.CreatedBy)
	d.record(ctx, action, who, t, "ok", stage+": "+st.String())
	return st, nil
}

// Status is the derived approval status of a ticket's stage.
func (d *Deploys) Status(ctx context.Context, t Ticket, stage string) (ApprovalStatus, error) {
	pol, err := d.o.Policy(t.App, t.Environment)
	if err != nil {
		return ApprovalStatus{}, err
	}
	votes, err := d.o.Store.Votes(ctx, t.Key, stage)
	if err != nil {
		return ApprovalStatus{}, err
	}
	p, opened := pol.Approval, t.CreatedAt
	if stage == ApprovalFinish {
		p = finishPolicy(pol)
		if h, err := d.o.Store.HoldFor(ctx, t.Key); err == nil {
			opened = h.CreatedAt
		}
	}
	return DeriveApproval(p, opened, votes, d.o.Clock(), t.Pusher, t.CreatedBy), nil
}

func finishPolicy(pol *EnvPolicy) ApprovalPolicy {
	p := pol.Finish
	if p.Required <= 0 {
		p.Required = 1
	}
	return p
}

// Confirm votes to finish a held upgrade; when enough distinct approvers
// agree, the upgrade is finished and the ticket done.
func (d *Deploys) Confirm(ctx context.Context, key string, who Actor) (ApprovalStatus, error) {
	t, h, pol, err := d.heldTicket(ctx, key)
	if err != nil {
		return ApprovalStatus{}, err
	}
	st, err := d.vote(ctx, t, finishPolicy(pol), ApprovalFinish, who, true)
	if err != nil || !st.Approved {
		return st, err
	}
	return st, d.finish(ctx, t, h, pol, who, st.String())
}

// Rollback rolls a held upgrade back and blocks its version on the
// environment. One approver suffices: rolling back is the safe side.
func (d *Deploys) Rollback(ctx context.Context, key string, who Actor) error {
	t, h, pol, err := d.heldTicket(ctx, key)
	if err != nil {
		return err
	}
	if err := finishPolicy(pol).Eligible(who.Name); err != nil && !(who.Name == "" && pol.LinkOnly) {
		d.record(ctx, "rollback", who, t, "denied", err.Error())
		return fmt.Errorf("rollback %s: %w", key, err)
	}
	return d.rollback(ctx, t, h, pol, who, "rolled back by "+who.name())
}

func (d *Deploys) heldTicket(ctx context.Context, key string) (Ticket, Hold, *EnvPolicy, error) {
	t, err := d.o.Store.Ticket(ctx, key)
	if err != nil {
		return t, Hold{}, nil, err
	}
	if t.State != TicketAwaitingConfirmation {
		return t, Hold{}, nil, fmt.Errorf("%s is %s, not awaiting confirmation: %w", key, t.State, ErrWrongState)
	}
	h, err := d.o.Store.HoldFor(ctx, key)
	if err != nil {
		return t, h, nil, err
	}
	pol, err := d.o.Policy(t.App, t.Environment)
	return t, h, pol, err
}

func (d *Deploys) finish(ctx context.Context, t Ticket, h Hold, pol *EnvPolicy, who Actor, why string) error {
	if err := d.o.Store.DecideHold(ctx, h.ID, HoldFinished, who.name()); err != nil {
		return err // someone else decided first
	}
	target, err := d.o.Target(t.Environment)
	if err == nil {
		err = target.Finish(ctx, t)
	}
	if err != nil {
		d.record(ctx, "finish", who, t, "failed", err.Error())
		return d.transition(ctx, t, TicketAwaitingConfirmation, TicketFailed, "finish failed: "+err.Error())
	}
	d.record(ctx, "finish", who, t, "ok", why)
	if err := d.transition(ctx, t, TicketAwaitingConfirmation, TicketDone, "finished by "+who.name()); err != nil {
		return err
	}
	d.announce(ctx, pol, t, h, notify.KindFinished, who.name())
	t.State = TicketDone
	return d.promote(ctx, t)
}

func (d *Deploys) rollback(ctx context.Context, t Ticket, h Hold, pol *EnvPolicy, who Actor, why string) error {
	if err := d.o.Store.DecideHold(ctx, h.ID, HoldRolledBack, who.name()); err != nil {
		return err
	}
	target, err := d.o.Target(t.Environment)
	if err == nil {
		err = target.Rollback(ctx, t)
	}
	if err != nil {
		d.record(ctx, "rollback", who, t, "failed", err.Error())
		return d.transition(ctx, t, TicketAwaitingConfirmation, TicketFailed, "rollback failed: "+err.Error())
	}
	if err := d.o.Store.AddBlock(ctx, Block{App: t.App, Environment: t.Environment, Version: t.Version,
		Reason: why, By: who.name(), At: d.o.Clock()}); err != nil {
		return err
	}
	d.record(ctx, "rollback", who, t, "ok", why+"; version "+t.Version+" blocked")
	if err := d.transition(ctx, t, TicketAwaitingConfirmation, TicketRolledBack, why); err != nil {
		return err
	}
	d.announce(ctx, pol, t, h, notify.KindRolledBack, who.name())
	return nil
}

// promote opens the ticket for the app's next environment.
func (d *Deploys) promote(ctx context.Context, t Ticket) error {
	pol, err := d.o.Policy(t.App, t.Environment)
	if err != nil || !pol.Promote || d.o.Apps == nil {
		return err
	}
	a, ok := d.o.Apps(t.App)
	if !ok {
		return nil
	}
	next := a.NextEnvironment(t.Environment)
	if next == "" {
		return nil
	}
	nt, created, err := d.o.Store.CreateTicket(ctx, Ticket{App: t.App, Branch: t.Branch, Commit: t.Commit, Version: t.Version,
		Image: t.Image, Digest: t.Digest, Environment: next, Pusher: t.Pusher, RunID: t.RunID, Links: t.Links,
		CreatedBy: "promotion from " + t.Key}, d.o.TicketPrefix)
	if err != nil || !created {
		return err
	}
	d.record(ctx, "promote", system, t, "ok", "opened "+nt.Key+" for "+next)
	return d.Schedule(ctx, nt.Key, system)
}

// DeployNow overrides the window: an owner starts the deploy now. The
// reason is required and audited. Approvals still apply.
func (d *Deploys) DeployNow(ctx context.Context, key string, who Actor, reason string) error {
	if reason == "" {
		return fmt.Errorf("deploy now %s: %w", key, ErrReasonMissing)
	}
	t, err := d.o.Store.Ticket(ctx, key)
	if err != nil {
		return err
	}
	if t.State != TicketOpen && t.State != TicketScheduled {
		return fmt.Errorf("deploy now %s: %w (%s)", key, ErrWrongState, t.State)
	}
	if _, blocked, err := d.o.Store.GetBlock(ctx, t.App, t.Environment, t.Version); err != nil {
		return err
	} else if blocked {
		return fmt.Errorf("deploy now %s: %w", key, ErrBlocked)
	}
	if t.State == TicketOpen {
		pol, err := d.o.Policy(t.App, t.Environment)
		if err != nil {
			return err
		}
		if pol.Approval.Required > 0 {
			st, err := d.Status(ctx, t, ApprovalDeploy)
			if err != nil {
				return err
			}
			if !st.Approved {
				return fmt.Errorf("deploy now %s: %w: %s", key, ErrWrongState, "waiting for approval: "+st.String())
			}
		}
	}
	now := d.o.Clock()
	if err := d.o.Store.PutSchedule(ctx, Schedule{Ticket: key, Environment: t.Environment, DueAt: now, WindowEnd: now.Add(time.Hour), Next: "now (override)"}); err != nil {
		return err
	}
	if err := d.o.Store.ClaimSchedule(ctx, key, now, d.o.ID); err != nil {
		return err
	}
	if err := d.transition(ctx, t, t.State, TicketDeploying, "deploy now by "+who.name()+": "+reason); err != nil {
		return err
	}
	d.record(ctx, "override", who, t, "ok", reason)
	t.State = TicketDeploying
	d.start(ctx, t)
	return nil
}

// Unblock lets automation deploy a rolled-back version again.
func (d *Deploys) Unblock(ctx context.Context, app, env, version string, who Actor) error {
	if err := d.o.Store.RemoveBlock(ctx, app, env, version); err != nil {
		return err
	}
	d.record(ctx, "unblock", who, Ticket{Environment: env, Key: app + "@" + version}, "ok", "")
	return nil
}

// LinkPage is what an approval link's page shows.
type LinkPage struct {
	Link   Link
	Hold   Hold
	Ticket Ticket
	Health Health
	Status ApprovalStatus
	// LinkOnly: the environment lets the link act without a login.
	LinkOnly bool
}

// OpenLink verifies a token and gathers its page. It never acts.
func (d *Deploys) OpenLink(ctx context.Context, token string) (LinkPage, error) {
	l, err := d.o.Signer.Verify(token)
	if err != nil {
		return LinkPage{Link: l}, err
	}
	h, err := d.o.Store.GetHold(ctx, l.Request)
	if err != nil {
		return LinkPage{Link: l}, fmt.Errorf("%w: %w", ErrLinkInvalid, err)
	}
	if h.Environment != l.Env {
		return LinkPage{Link: l}, ErrLinkInvalid
	}
	t, err := d.o.Store.Ticket(ctx, h.Ticket)
	if err != nil {
		return LinkPage{Link: l}, err
	}
	pol, err := d.o.Policy(t.App, t.Environment)
	if err != nil {
		return LinkPage{Link: l}, err
	}
	p := LinkPage{Link: l, Hold: h, Ticket: t, LinkOnly: pol.LinkOnly}
	p.Status, _ = d.Status(ctx, t, ApprovalFinish)
	if h.State == HoldOpen || h.State == HoldFinished {
		// A finished upgrade's page (the answer to its POST) still shows
		// how the version it kept runs; a rolled-back one has none.
		p.Health = d.health(ctx, t)
	}
	if h.State != HoldOpen {
		return p, fmt.Errorf("%w: the upgrade was already %s by %s", ErrLinkUsed, h.State, h.DecidedBy)
	}
	return p, nil
}

func (d *Deploys) health(ctx context.Context, t Ticket) Health {
	target, err := d.o.Target(t.Environment)
	if err != nil {
		return Health{Detail: err.Error()}
	}
	hl, err := target.Health(ctx, t)
	if err != nil {
		return Health{Detail: err.Error()}
	}
	return hl
}

// ActOnLink performs action (finish or rollback) for the page's POST.
// who is the signed-in user, or an anonymous Actor when the environment
// allows link-only approval (the caller checks the role otherwise). A
// link acts once per person; once the upgrade is decided it acts no more.
func (d *Deploys) ActOnLink(ctx context.Context, token, action string, who Actor) (ApprovalStatus, error) {
	l, err := d.o.Signer.Verify(token)
	if err != nil {
		d.record(ctx, "link", who, Ticket{Environment: l.Env}, "denied", err.Error())
		return ApprovalStatus{}, err
	}
	if action != ActionFinish && action != ActionRollback {
		return ApprovalStatus{}, fmt.Errorf("action %q: want finish or rollback", action)
	}
	h, err := d.o.Store.GetHold(ctx, l.Request)
	if err != nil || h.Environment != l.Env {
		return ApprovalStatus{}, ErrLinkInvalid
	}
	t, err := d.o.Store.Ticket(ctx, h.Ticket)
	if err != nil {
		return ApprovalStatus{}, err
	}
	if h.State != HoldOpen || t.State != TicketAwaitingConfirmation {
		d.record(ctx, "link", who, t, "denied", "link used after the upgrade was decided")
		return ApprovalStatus{}, fmt.Errorf("%w: the upgrade was already %s", ErrLinkUsed, h.State)
	}
	pol, err := d.o.Policy(t.App, t.Environment)
	if err != nil {
		return ApprovalStatus{}, err
	}
	if who.Name == "" && !pol.LinkOnly {
		return ApprovalStatus{}, fmt.Errorf("%w: sign in to act on %s", ErrNotEligible, t.Environment)
	}
	user := who.Name
	if user == "" {
		user = "link"
	}
	if err := d.o.Store.UseLink(ctx, l.Nonce, user); err != nil {
		d.record(ctx, "link", who, t, "denied", err.Error())
		return ApprovalStatus{}, err
	}
	if action == ActionRollback {
		return ApprovalStatus{}, d.rollback(ctx, t, h, pol, who, "rolled back by "+who.name()+" via link")
	}
	fp := finishPolicy(pol)
	if who.Name == "" {
		// An anonymous link counts as one approver of its own.
		who.Name = "link:" + l.Nonce[:8]
		fp.Groups = nil
	}
	st, err := d.vote(ctx, t, fp, ApprovalFinish, who, true)
	if err != nil || !st.Approved {
		return st, err
	}
	return st, d.finish(ctx, t, h, pol, who, st.String()+" via link")
}
