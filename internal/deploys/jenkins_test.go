package deploys

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/dockmaster/dockmaster/deployer"
	"github.com/dockmaster/dockmaster/pipeline"
	"github.com/dockmaster/dockmaster/pipeline/jenkins"
)

// fakeStack is a deployer.Target whose status is set by the test and
// whose finish/rollback are recorded.
type fakeStack struct {
	deployer.Target // methods the tests must not reach panic
	mu              sync.Mutex
	status          deployer.StackStatus
	calls           []string
}

func (f *fakeStack) Status(_ context.Context, stack string) (deployer.StackStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "status "+stack)
	return f.status, nil
}

func (f *fakeStack) Finish(_ context.Context, stack string, _ func(deployer.Event)) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "finish "+stack)
	return nil
}

func (f *fakeStack) Rollback(_ context.Context, stack string, _ func(deployer.Event)) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "rollback "+stack)
	return nil
}

func (f *fakeStack) Calls() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return strings.Join(f.calls, ",")
}

// fakeJenkins records triggers; FindBuild finds none.
type fakeJenkins struct {
	pipeline.Jenkins
	triggered []map[string]string
}

func (f *fakeJenkins) FindBuild(context.Context, string, string, string) (*jenkins.Found, error) {
	return nil, nil
}

func (f *fakeJenkins) Trigger(_ context.Context, _ string, p map[string]string) (jenkins.QueueRef, error) {
	f.triggered = append(f.triggered, p)
	return jenkins.QueueRef{}, nil
}

func svc(state deployer.ServiceState, version, old string) deployer.ServiceStatus {
	return deployer.ServiceStatus{Name: "web", State: state, Version: version, OldVersion: old, Scale: 1, Healthy: 1}
}

// TestJenkinsJobObservesTheStack: the job's target sees the stack the job
// upgraded (held or not, or holding another version) and finishes and
// rolls it back through the built-in deployer.
func TestJenkinsJobObservesTheStack(t *testing.T) {
	stack := &fakeStack{}
	jk := &fakeJenkins{}
	ts := &Targets{Jenkins: jk, Stacks: map[string]string{"Billing": "bill"},
		Jobs: func(env string) string {
			return map[string]string{"prod": "deploy-prod", "legacy": "deploy-legacy"}[env]
		},
		Deployers: func(_ context.Context, env string) (deployer.Target, error) {
			if env == "legacy" {
				return nil, errors.New("environment legacy is not known")
			}
			return stack, nil
		}}
	ctx := context.Background()
	tk := pipeline.Ticket{Key: "DEPLOY-4", App: "Web", Version: "2.0", Environment: "prod"}
	target, err := ts.Target("prod")
	if err != nil {
		t.Fatal(err)
	}
	obs, ok := target.(pipeline.Observer)
	if !ok {
		t.Fatalf("%T is no pipeline.Observer", target)
	}
	out, err := target.Deploy(ctx, tk)
	if err != nil || !out.Pending || len(jk.triggered) != 1 || jk.triggered[0][pipeline.TicketParam] != "DEPLOY-4" || jk.triggered[0]["VERSION"] != "2.0" {
		t.Fatalf("Deploy = %+v, %v; triggered %v", out, err, jk.triggered)
	}

	for _, c := range []struct {
		name     string
		services []deployer.ServiceStatus
		held     bool
		from     string
		err      error
	}{
		{"not deployed yet", nil, false, "", nil},
		{"first version, nothing held", []deployer.ServiceStatus{svc(deployer.StateActive, "2.0", "")}, false, "", nil},
		{"upgrading", []deployer.ServiceStatus{svc(deployer.StateUpgrading, "2.0", "1.0")}, false, "", nil},
		{"held", []deployer.ServiceStatus{svc(deployer.StateUpgraded, "2.0", "1.0")}, true, "1.0", nil},
		{"holds another version", []deployer.ServiceStatus{svc(deployer.StateUpgraded, "1.5", "1.0")}, false, "", deployer.ErrUpgradeHeld},
	} {
		stack.mu.Lock()
		stack.status = deployer.StackStatus{Stack: "web", Services: c.services}
		stack.mu.Unlock()
		out, err := obs.Observe(ctx, tk)
		if out.Held != c.held || out.FromVersion != c.from || !errors.Is(err, c.err) || (c.err == nil) != (err == nil) {
			t.Errorf("%s: Observe = %+v, %v; want held %v from %q, err %v", c.name, out, err, c.held, c.from, c.err)
		}
	}
	if err := target.Finish(ctx, tk); err != nil {
		t.Fatal(err)
	}
	if err := target.Rollback(ctx, pipeline.Ticket{App: "Billing", Version: "3.0", Environment: "prod"}); err != nil {
		t.Fatal(err)
	}
	if h, err := target.Health(ctx, tk); err != nil || !h.Healthy || len(h.Containers) != 0 {
		t.Errorf("Health = %+v, %v", h, err)
	}
	if got, want := stack.Calls(), "status web,status web,status web,status web,status web,finish web,rollback bill,status web"; got != want {
		t.Errorf("deployer calls:\n%s\nwant\n%s", got, want)
	}

	// Without a deployer for the environment the job alone deploys:
	// nothing is held, finish is a no-op and rollback is refused.
	legacy, err := ts.Target("legacy")
	if err != nil {
		t.Fatal(err)
	}
	if out, err := legacy.(pipeline.Observer).Observe(ctx, tk); err != nil || out.Held {
		t.Errorf("legacy Observe = %+v, %v", out, err)
	}
	if err := legacy.Finish(ctx, tk); err != nil {
		t.Errorf("legacy Finish: %v", err)
	}
	if err := legacy.Rollback(ctx, tk); err == nil || !strings.Contains(err.Error(), "previous VERSION") {
		t.Errorf("legacy Rollback: %v", err)
	}
}
