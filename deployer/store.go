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
