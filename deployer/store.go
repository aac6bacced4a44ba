package deployer

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ErrNotFound is wrapped by Store implementations when a record is missing.
var ErrNotFound = errors.New("deployer: not found")

// ErrConflict is wrapped by Store implementations when a conditional
// transition matched no row: the service was not in the expected state.
var ErrConflict = errors.New("deployer: state changed concurrently")

// ServiceState is a service's place in Rancher 1.x's upgrade cycle:
// active -> upgrading -> upgraded -> finishing-upgrade -> active, or
// upgraded/upgrading -> rolling-back -> active.
type ServiceState string

const (
	StateActive           ServiceState = "active"
	StateUpgrading        ServiceState = "upgrading"
	StateUpgraded         ServiceState = "upgraded"
	StateFinishingUpgrade ServiceState = "finishing-upgrade"
	StateRollingBack      ServiceState = "rolling-back"
)

// canMove is the one table of allowed state moves. Staying in the same
// state (recording progress or a failure) is always allowed.
func canMove(from, to ServiceState) bool {
	if from == to {
		return true
	}
	switch from {
	case StateActive:
		return to == StateUpgrading
	case StateUpgrading:
		return to == StateUpgraded || to == StateRollingBack
	case StateUpgraded:
		return to == StateFinishingUpgrade || to == StateRollingBack
	case StateFinishingUpgrade, StateRollingBack:
		return to == StateActive
	}
	return false
}

// Revision is one deployed definition of a stack, kept for history and
// redeploys.
type Revision struct {
	Env, Stack string
	Number     int // assigned by the store, 1, 2, ...
	Version    string
	Spec       StackSpec
	// Compose and Rancher are the source files; Variables the values they
	// were interpolated with.
	Compose, Rancher string
	Variables        map[string]string
	CreatedAt        time.Time
	CreatedBy        string // who deployed it (DeployOptions.By)
}

// ServiceRecord is the persisted state of one service. While an upgrade is
// held (upgrading, upgraded, rolling-back, finishing-upgrade) Old* describe
// the previous definition whose containers are kept stopped.
type ServiceRecord struct {
	Env, Stack, Service string
	State               ServiceState
	// Failed is the reason the last operation failed; empty when it did not.
	Failed     string
	Spec       ServiceSpec
	Deployment string
	Version    string
	Revision   int

	Old           *ServiceSpec
	OldDeployment string
	OldVersion    string
	OldRevision   int

	UpdatedAt time.Time
}

// Store persists revisions and service state. Implementations are safe for
// concurrent use; *store.DB (internal/store) is the SQLite one.
type Store interface {
	// AddRevision stores rev with the next number for its stack and
	// returns that number.
	AddRevision(ctx context.Context, rev Revision) (int, error)
	// Revision returns one revision (ErrNotFound when missing).
	Revision(ctx context.Context, env, stack string, number int) (Revision, error)
	// Revisions lists a stack's revisions, oldest first.
	Revisions(ctx context.Context, env, stack string) ([]Revision, error)

	// Service returns one service record (ErrNotFound when missing).
	Service(ctx context.Context, env, stack, service string) (ServiceRecord, error)
	// Services lists the env's services (all stacks when stack is "").
	Services(ctx context.Context, env, stack string) ([]ServiceRecord, error)
	// CreateService inserts rec; ErrConflict if it exists.
	CreateService(ctx context.Context, rec ServiceRecord) error
	// UpdateService writes rec only if the stored state is still from
	// (UPDATE ... WHERE state = from); ErrConflict otherwise.
	UpdateService(ctx context.Context, rec ServiceRecord, from ServiceState) error
}

// beginFinish marks a held service finishing-upgrade (a record already
// finishing is resumed as it is).
func beginFinish(ctx context.Context, st Store, rec *ServiceRecord, o DeployOptions) error {
	if rec.State != StateUpgraded {
		return nil
	}
	return moveService(ctx, st, rec, StateFinishingUpgrade, "finish", o)
}

// endFinish records a finished upgrade: active at the new version, with no
// old definition left to roll back to.
func endFinish(ctx context.Context, st Store, rec ServiceRecord, o DeployOptions) error {
	rec.Failed = ""
	rec.Old, rec.OldDeployment, rec.OldVersion, rec.OldRevision = nil, "", "", 0
	return moveService(ctx, st, &rec, StateActive, "finish", o)
}

// moveService writes rec in state to, conditional on its current state,
// and reports the change.
func moveService(ctx context.Context, st Store, rec *ServiceRecord, to ServiceState, op string, o DeployOptions) error {
	from := rec.State
	rec.State = to
	if err := st.UpdateService(ctx, *rec, from); err != nil {
		return fmt.Errorf("%s %s/%s: %w", op, rec.Stack, rec.Service, err)
	}
	o.emit(Event{Stack: rec.Stack, Service: rec.Service, Step: "state", Message: string(to)})
	return nil
}

// finishServices confirms a stack's held upgrades: an interrupted one
// (upgrading) is first completed by rollout, then finish removes what the
// old definition left and records the service active. A stack rolling back
// is refused. Idempotent: active services are left as they are.
func finishServices(ctx context.Context, st Store, env, stack string,
	rollout, finish func(ctx context.Context, rec ServiceRecord) error) error {
	recs, err := st.Services(ctx, env, stack)
	if err != nil {
		return err
	}
	for _, rec := range recs {
		if rec.State == StateRollingBack {
			return fmt.Errorf("finish %s/%s: %w (%s)", stack, rec.Service, ErrBusy, rec.State)
		}
	}
	for _, rec := range recs {
		if rec.State == StateUpgrading {
			if err := rollout(ctx, rec); err != nil {
				return fmt.Errorf("finish %s/%s: complete interrupted upgrade: %w", stack, rec.Service, err)
			}
			rec.State = StateUpgraded
		}
		if rec.State == StateUpgraded || rec.State == StateFinishingUpgrade {
			if err := finish(ctx, rec); err != nil {
				return err
			}
		}
	}
	return nil
}

// rollbackServices returns every held or interrupted upgrade of a stack to
// its previous definition: each is marked rolling-back, restore brings the
// old definition back (back is the record to write), and it is recorded
// active at the old version. A record found rolling back (a crash) is
// restored again, so the walk is resumable; a finishing one is refused,
// its old containers may be gone.
func rollbackServices(ctx context.Context, st Store, env, stack string, o DeployOptions,
	restore func(ctx context.Context, rec ServiceRecord, back *ServiceRecord) error) error {
	recs, err := st.Services(ctx, env, stack)
	if err != nil {
		return err
	}
	for _, rec := range recs {
		if rec.State == StateFinishingUpgrade {
			return fmt.Errorf("rollback %s/%s: %w (%s: old containers may be gone)", stack, rec.Service, ErrBusy, rec.State)
		}
	}
	for _, rec := range recs {
		if rec.Old == nil || (rec.State != StateUpgrading && rec.State != StateUpgraded && rec.State != StateRollingBack) {
			continue
		}
		if rec.State != StateRollingBack {
			if err := moveService(ctx, st, &rec, StateRollingBack, "rollback", o); err != nil {
				return err
			}
		}
		back := rec
		back.Spec, back.Deployment, back.Version, back.Revision = *rec.Old, rec.OldDeployment, rec.OldVersion, rec.OldRevision
		back.Old, back.OldDeployment, back.OldVersion, back.OldRevision = nil, "", "", 0
		if err := restore(ctx, rec, &back); err != nil {
			return fmt.Errorf("rollback %s/%s: %w", stack, rec.Service, err)
		}
		if err := moveService(ctx, st, &back, StateActive, "rollback", o); err != nil {
			return err
		}
	}
	return nil
}

// upgrader is what an upgrade does on its target: the standalone Deployer
// places and replaces containers itself, Swarm asks for rolling updates.
// upgradeStack is the record walk both share.
type upgrader interface {
	// checkPlan refuses a spec that cannot be deployed, before anything
	// changes.
	checkPlan(ctx context.Context, spec StackSpec, recs []*ServiceRecord) error
	finishService(ctx context.Context, rec ServiceRecord, o DeployOptions) error
	addRevision(ctx context.Context, spec StackSpec, o DeployOptions) (int, error)
	// convergeService brings an active service (new or unchanged) to its spec.
	convergeService(ctx context.Context, rec ServiceRecord, o DeployOptions) error
	// rollout drives a service recorded upgrading to upgraded.
	rollout(ctx context.Context, rec ServiceRecord, o DeployOptions) error
	rollback(ctx context.Context, stack string, o DeployOptions) error
}

// upgradeStack upgrades every changed service of spec and holds it in
// upgraded; unchanged services converge, new ones are created. A held
// service refuses the upgrade (ErrUpgradeHeld) unless o.FinishHeld, which
// finishes it first. Each upgrading record is written before its target is
// touched, so Finish or Rollback can resume after a crash.
func upgradeStack(ctx context.Context, u upgrader, st Store, env string, newID func() string, spec StackSpec, o DeployOptions) error {
	recs := make([]*ServiceRecord, len(spec.Services))
	for i, s := range spec.Services {
		rec, err := st.Service(ctx, env, spec.Name, s.Name)
		switch {
		case errors.Is(err, ErrNotFound):
			continue
		case err != nil:
			return err
		case rec.State == StateUpgraded && !o.FinishHeld:
			return fmt.Errorf("upgrade %s/%s: %w (finish or roll back first)", spec.Name, s.Name, ErrUpgradeHeld)
		case rec.State != StateActive && rec.State != StateUpgraded:
			return fmt.Errorf("upgrade %s/%s: %w (%s)", spec.Name, s.Name, ErrBusy, rec.State)
		}
		recs[i] = &rec
	}
	if err := u.checkPlan(ctx, spec, recs); err != nil {
		return fmt.Errorf("upgrade %s: %w", spec.Name, err)
	}
	for _, rec := range recs {
		if rec != nil && rec.State == StateUpgraded { // only with o.FinishHeld
			if err := u.finishService(ctx, *rec, o); err != nil {
				return err
			}
			fresh, err := st.Service(ctx, env, rec.Stack, rec.Service)
			if err != nil {
				return err
			}
			*rec = fresh
		}
	}
	rev, err := u.addRevision(ctx, spec, o)
	if err != nil {
		return err
	}
	for i, s := range spec.Services {
		rec := recs[i]
		switch {
		case rec == nil:
			n := ServiceRecord{Env: env, Stack: spec.Name, Service: s.Name, State: StateActive,
				Spec: s, Deployment: newID(), Version: versionOf(o, s), Revision: rev}
			if err := st.CreateService(ctx, n); err != nil {
				return fmt.Errorf("upgrade %s/%s: %w", spec.Name, s.Name, err)
			}
			if err := u.convergeService(ctx, n, o); err != nil {
				return fmt.Errorf("upgrade %s/%s: %w", spec.Name, s.Name, err)
			}
		case ConfigHash(rec.Spec) == ConfigHash(s):
			rec.Spec, rec.Revision = s, rev
			if err := st.UpdateService(ctx, *rec, StateActive); err != nil {
				return fmt.Errorf("upgrade %s/%s: %w", spec.Name, s.Name, err)
			}
			if err := u.convergeService(ctx, *rec, o); err != nil {
				return fmt.Errorf("upgrade %s/%s: %w", spec.Name, s.Name, err)
			}
		default:
			old := rec.Spec
			next := *rec
			next.State, next.Failed = StateUpgrading, ""
			next.Old, next.OldDeployment, next.OldVersion, next.OldRevision = &old, rec.Deployment, rec.Version, rec.Revision
			next.Spec, next.Deployment, next.Version, next.Revision = s, newID(), versionOf(o, s), rev
			if err := st.UpdateService(ctx, next, StateActive); err != nil {
				return fmt.Errorf("upgrade %s/%s: %w", spec.Name, s.Name, err)
			}
			o.emit(Event{Stack: spec.Name, Service: s.Name, Step: "state", Message: string(StateUpgrading)})
			if err := u.rollout(ctx, next, o); err != nil {
				return failUpgrade(ctx, u, st, next, err, o)
			}
		}
	}
	return nil
}

// failUpgrade records err on the service and rolls the stack back unless
// the caller opted out. It returns err (joined with a rollback failure).
func failUpgrade(ctx context.Context, u upgrader, st Store, rec ServiceRecord, err error, o DeployOptions) error {
	err = fmt.Errorf("upgrade %s/%s: %w", rec.Stack, rec.Service, err)
	if ctx.Err() != nil {
		return err // interrupted, not failed: leave the record for a resume
	}
	rec.Failed = err.Error()
	if uerr := st.UpdateService(ctx, rec, StateUpgrading); uerr != nil {
		return errors.Join(err, uerr)
	}
	if o.NoAutoRollback {
		return err
	}
	if rerr := u.rollback(ctx, rec.Stack, o); rerr != nil {
		return errors.Join(err, fmt.Errorf("automatic rollback: %w", rerr))
	}
	return fmt.Errorf("%w (rolled back)", err)
}

// upRecords loads the records Up converges; fresh[i] says spec's i-th
// service has none yet. A held or busy service refuses Up, and so does a
// changed definition (that is an Upgrade) unless the record has no
// deployment yet.
func upRecords(ctx context.Context, st Store, env string, spec StackSpec) (recs []ServiceRecord, fresh []bool, err error) {
	recs = make([]ServiceRecord, len(spec.Services))
	fresh = make([]bool, len(spec.Services))
	for i, s := range spec.Services {
		rec, err := st.Service(ctx, env, spec.Name, s.Name)
		switch {
		case errors.Is(err, ErrNotFound):
			fresh[i] = true
			continue
		case err != nil:
			return nil, nil, err
		case rec.State == StateUpgraded:
			return nil, nil, fmt.Errorf("up %s/%s: %w", spec.Name, s.Name, ErrUpgradeHeld)
		case rec.State != StateActive:
			return nil, nil, fmt.Errorf("up %s/%s: %w (%s)", spec.Name, s.Name, ErrBusy, rec.State)
		case rec.Deployment != "" && ConfigHash(rec.Spec) != ConfigHash(s):
			return nil, nil, fmt.Errorf("up %s/%s: %w", spec.Name, s.Name, ErrConfigChanged)
		}
		recs[i] = rec
	}
	return recs, fresh, nil
}

// recordUp writes the records Up converges at revision rev: a fresh service
// is created at a new deployment, an existing one takes its definition.
func recordUp(ctx context.Context, st Store, env string, newID func() string, spec StackSpec, recs []ServiceRecord, fresh []bool, rev int, o DeployOptions) error {
	for i, s := range spec.Services {
		if fresh[i] {
			recs[i] = ServiceRecord{Env: env, Stack: spec.Name, Service: s.Name, State: StateActive,
				Spec: s, Deployment: newID(), Version: versionOf(o, s), Revision: rev}
			if err := st.CreateService(ctx, recs[i]); err != nil {
				return fmt.Errorf("up %s/%s: %w", spec.Name, s.Name, err)
			}
			continue
		}
		recs[i].Spec, recs[i].Revision, recs[i].Failed = s, rev, ""
		if err := st.UpdateService(ctx, recs[i], StateActive); err != nil {
			return fmt.Errorf("up %s/%s: %w", spec.Name, s.Name, err)
		}
	}
	return nil
}
