package deployer

import (
	"context"
	"errors"
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
