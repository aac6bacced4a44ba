package deployer_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/registry"

	"github.com/dockmaster/dockmaster/deployer"
	"github.com/dockmaster/dockmaster/internal/store/storetest"
)

// failing is an Engine whose daemon errors are injected; it holds no
// containers. Used only to check how daemon errors surface.
type failing struct {
	list, pull error
	pulled     []string
	auth       []*registry.AuthConfig
}

func (f *failing) List(context.Context, map[string]string) ([]deployer.Container, error) {
	return nil, f.list
}
func (f *failing) Inspect(_ context.Context, id string) (deployer.Container, error) {
	return deployer.Container{}, fmt.Errorf("inspect %s: %w", id, deployer.ErrNoSuchContainer)
}
func (f *failing) EnsureImage(_ context.Context, image string, _ bool, auth *registry.AuthConfig) error {
	f.pulled = append(f.pulled, image)
	f.auth = append(f.auth, auth)
	return f.pull
}
func (f *failing) EnsureNetwork(context.Context, string, map[string]string) error { return nil }
func (f *failing) Create(context.Context, deployer.CreateRequest) (string, error) {
	return "", errors.New("unexpected create")
}
func (f *failing) Start(context.Context, string) error               { return errors.New("unexpected start") }
func (f *failing) Stop(context.Context, string, time.Duration) error { return nil }
func (f *failing) Remove(context.Context, string) error              { return nil }
func (f *failing) Stats(context.Context, string) (deployer.Usage, error) {
	return deployer.Usage{}, nil
}
func (f *failing) Logs(context.Context, string, int, bool) (io.ReadCloser, error) { return nil, nil }
func (f *failing) Info(context.Context) (deployer.HostInfo, error) {
	return deployer.HostInfo{}, f.list
}
func (f *failing) Close() error { return nil }

func TestDaemonErrorsSurface(t *testing.T) {
	ctx := context.Background()
	spec := deployer.StackSpec{Name: "app", Services: []deployer.ServiceSpec{{Name: "web", Image: "reg.example/web:1"}}}

	down := &failing{list: errors.New("dial unix /x.sock: connect: connection refused")}
	ok := &failing{}
	d, err := deployer.New(deployer.Options{Env: "prod", Store: storetest.Open(t),
		Hosts: []deployer.Host{{Name: "a", Engine: ok}, {Name: "b", Engine: down}}})
	if err != nil {
		t.Fatal(err)
	}
	err = d.Up(ctx, spec, deployer.DeployOptions{})
	if !errors.Is(err, deployer.ErrHostUnreachable) || !strings.Contains(err.Error(), "b: dial unix") {
		t.Fatalf("unreachable host: err = %v", err)
	}

	pullErr := errors.New("pull access denied")
	bad := &failing{pull: pullErr}
	d, err = deployer.New(deployer.Options{Env: "prod", Store: storetest.Open(t),
		Hosts: []deployer.Host{{Name: "a", Engine: bad}},
		Auth: func(image string) (registry.AuthConfig, bool) {
			return registry.AuthConfig{Username: "u", Password: "p"}, strings.HasPrefix(image, "reg.example/")
		}})
	if err != nil {
		t.Fatal(err)
	}
	err = d.Up(ctx, spec, deployer.DeployOptions{})
	if !errors.Is(err, pullErr) || !strings.Contains(err.Error(), "up app/web") {
		t.Fatalf("pull failure: err = %v", err)
	}
	if len(bad.auth) != 1 || bad.auth[0] == nil || bad.auth[0].Username != "u" {
		t.Fatalf("auth passed to pull = %+v", bad.auth)
	}
}
