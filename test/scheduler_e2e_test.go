package test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"
	"github.com/docker/go-connections/nat"

	"github.com/dockmaster/dockmaster/deployer"
	"github.com/dockmaster/dockmaster/deployer/scheduler"
	"github.com/dockmaster/dockmaster/internal/store"
	"github.com/dockmaster/dockmaster/internal/testenv"
)

const schedEnv = "sched"

// TestSchedulerOnDocker runs the scheduler's placement, plan and drain on
// two real dockerd hosts: h1 labelled zone=a, h2 zone=b.
func TestSchedulerOnDocker(t *testing.T) {
	ctx := context.Background()
	var hosts []*testenv.Host
	labels := map[string]map[string]string{"h1": {"zone": "a"}, "h2": {"zone": "b"}}
	for _, name := range []string{"h1", "h2"} {
		h := testenv.StartHost(t, name)
		// Before the harness stops the host (cleanups are LIFO): dockerd
		// leaks the bridges of networks left behind.
		t.Cleanup(func() { removeSchedOwned(t, h.Client) })
		testenv.HTTPServerImage(t, h.Client, "1.0.0")
		hosts = append(hosts, h)
	}
	db, err := store.Open(ctx, filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	// newDeployer builds what the fleet builds: hosts with their labels and
	// stored state, the scheduler as placer.
	newDeployer := func(t *testing.T, states map[string]string) *deployer.Deployer {
		t.Helper()
		var dh []deployer.Host
		for _, h := range hosts {
			e, err := deployer.NewDockerEngine(deployer.HostConfig{Name: h.Name, Endpoint: h.Endpoint, Timeout: 20 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { e.Close() })
			dh = append(dh, deployer.Host{Name: h.Name, Labels: labels[h.Name], Address: h.IP, Engine: e, State: states[h.Name]})
		}
		d, err := deployer.New(deployer.Options{Env: schedEnv, Hosts: dh, Store: db, Placer: deployer.Scheduler{},
			StopGrace: time.Second, RunningGrace: 300 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	count := func(t *testing.T, stack string) map[string]int {
		t.Helper()
		out := map[string]int{}
		for _, h := range hosts {
			list, err := h.Client.ContainerList(ctx, container.ListOptions{Filters: filters.NewArgs(
				filters.Arg("label", deployer.LabelStack+"="+stack), filters.Arg("label", deployer.LabelEnv+"="+schedEnv))})
			if err != nil {
				t.Error(err)
				return nil
			}
			out[h.Name] = len(list) // running only (no All)
		}
		return out
	}

	t.Run("HostLabelAffinity", func(t *testing.T) {
		d := newDeployer(t, nil)
		spec := webSpec("aff", 3, nil)
		spec.Services[0].Labels = map[string]string{"io.rancher.scheduler.affinity:host_label": "zone=b"}
		if err := d.Up(ctx, spec, deployer.DeployOptions{}); err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprint(count(t, "aff")); got != "map[h1:0 h2:3]" {
			t.Fatalf("running per host = %s, want all 3 on h2 (zone=b)", got)
		}
	})

	t.Run("PortsOfEveryContainerAndReasons", func(t *testing.T) {
		// A container dockmaster does not own publishes 9090 on h1.
		cli := hosts[0].Client
		port := nat.Port("9090/tcp")
		f, err := cli.ContainerCreate(ctx, &container.Config{Image: testenv.BaseImage, Cmd: []string{"sleep", "300"},
			ExposedPorts: nat.PortSet{port: {}}},
			&container.HostConfig{PortBindings: nat.PortMap{port: {{HostPort: "9090"}}}}, nil, nil, "java-service-1-1")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cli.ContainerRemove(ctx, f.ID, container.RemoveOptions{Force: true}) })
		if err := cli.ContainerStart(ctx, f.ID, container.StartOptions{}); err != nil {
			t.Fatal(err)
		}
		d := newDeployer(t, nil)

		// Scale 3 publishing 8080 on two hosts: two fit, the third is
		// refused before anything is created, with each host's reason.
		spec := webSpec("ports", 3, []deployer.PortSpec{{HostPort: 8080, ContainerPort: 8080, Protocol: "tcp"}})
		plan, err := d.Plan(ctx, spec)
		if err != nil {
			t.Fatal(err)
		}
		sp := plan.Services[0]
		if len(sp.Actions) != 0 || sp.Err == nil {
			// reconcile returns no actions when placement fails; the reasons
			// carry what was placed.
			t.Fatalf("plan = %s", plan)
		}
		var nf *scheduler.NoFitError
		if !errors.As(plan.Err(), &nf) || nf.Placed != 2 || nf.Wanted != 3 {
			t.Fatalf("plan error = %v, want a NoFitError placing 2 of 3", plan.Err())
		}
		want := "h1: port 8080/tcp in use by ports-web-"
		if msg := plan.Err().Error(); !strings.Contains(msg, want) || !strings.Contains(msg, "h2: port 8080/tcp in use by ports-web-") {
			t.Fatalf("plan error = %v, want the port reason for each host", msg)
		}
		err = d.Up(ctx, spec, deployer.DeployOptions{})
		if !errors.Is(err, deployer.ErrNoHost) || !errors.As(err, &nf) || !strings.HasPrefix(err.Error(), "no host fits ports/web (placed 2 of 3): ") {
			t.Fatalf("Up err = %v, want a placement error naming the stack and service once", err)
		}
		if got := fmt.Sprint(count(t, "ports")); got != "map[h1:0 h2:0]" {
			t.Fatalf("refused Up created containers: %s", got)
		}

		// Publishing 9090, only h2 fits: h1's foreign container holds the
		// port, which the plan names.
		spec = webSpec("ports", 2, []deployer.PortSpec{{HostPort: 9090, ContainerPort: 8080, Protocol: "tcp"}})
		plan, err = d.Plan(ctx, spec)
		if err != nil {
			t.Fatal(err)
		}
		if msg := fmt.Sprint(plan.Err()); !strings.Contains(msg, "h1: port 9090/tcp in use by java-service-1-1") {
			t.Fatalf("plan error = %s, want h1's foreign container named", msg)
		}
		// Only planned, not started: the harness hosts share this machine's
		// ports, so a real 9090 on h2 would collide with h1's.
		spec.Services[0].Scale = 1
		if plan, err = d.Plan(ctx, spec); err != nil || plan.Err() != nil {
			t.Fatalf("plan: %v %v", err, plan.Err())
		}
		if got := plan.String(); got != "web: create ports-web-1 on h2\n" {
			t.Fatalf("plan = %q, want the one on h2", got)
		}
	})

	t.Run("DrainKeepsScaleThenRebalance", func(t *testing.T) {
		d := newDeployer(t, nil)
		const scale = 2
		if err := d.Up(ctx, webSpec("drain", scale, nil), deployer.DeployOptions{}); err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprint(count(t, "drain")); got != "map[h1:1 h2:1]" {
			t.Fatalf("spread = %s", got)
		}
		// Poll the running count for the whole drain.
		watch := func(t *testing.T, f func()) (minimum int) {
			stop := make(chan struct{})
			var wg sync.WaitGroup
			minimum = 1 << 30
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					n := 0
					for _, v := range count(t, "drain") {
						n += v
					}
					minimum = min(minimum, n)
					select {
					case <-stop:
						return
					case <-time.After(30 * time.Millisecond):
					}
				}
			}()
			f()
			close(stop)
			wg.Wait()
			return minimum
		}
		var res deployer.DrainResult
		low := watch(t, func() {
			var err error
			res, err = d.Drain(ctx, "h1", nil)
			if err != nil {
				t.Error(err)
			}
		})
		if low < scale {
			t.Fatalf("running containers dropped to %d during the drain (scale %d)", low, scale)
		}
		if got := fmt.Sprint(count(t, "drain")); got != "map[h1:0 h2:2]" {
			t.Fatalf("after drain = %s, want nothing on h1", got)
		}
		if len(res.Moved) != 1 || res.Moved[0].From != "h1" || res.Moved[0].To != "h2" {
			t.Fatalf("moved = %+v", res.Moved)
		}
		if all := allOn(t, hosts[0].Client, "drain"); all != 0 {
			t.Fatalf("%d containers (running or not) left on the drained host", all)
		}

		// The host stays draining (as the store says): the reconciler and
		// a scale-up place nothing there.
		draining := newDeployer(t, map[string]string{"h1": "draining"})
		if err := draining.Up(ctx, webSpec("drain", 3, nil), deployer.DeployOptions{}); err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprint(count(t, "drain")); got != "map[h1:0 h2:3]" {
			t.Fatalf("scale-up on a draining host = %s", got)
		}
		if _, err := draining.Rebalance(ctx, "h1", nil); !errors.Is(err, scheduler.ErrBadRequest) {
			t.Fatalf("rebalance onto a draining host: %v", err)
		}

		// Activated, it gets containers back only by an explicit rebalance.
		active := newDeployer(t, nil)
		if err := active.Reconcile(ctx); err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprint(count(t, "drain")); got != "map[h1:0 h2:3]" {
			t.Fatalf("reconcile moved containers back: %s", got)
		}
		var moved []deployer.MoveResult
		low = watch(t, func() {
			var err error
			moved, err = active.Rebalance(ctx, "h1", nil)
			if err != nil {
				t.Error(err)
			}
		})
		if low < 3 {
			t.Fatalf("running containers dropped to %d during the rebalance", low)
		}
		if got := fmt.Sprint(count(t, "drain")); got != "map[h1:1 h2:2]" || len(moved) != 1 {
			t.Fatalf("after rebalance = %s, moved %+v", got, moved)
		}

		// h1 stops answering (its engine points nowhere). Within the grace
		// the reconciler refuses; past it, h1's container is replaced on h2.
		lost := func(grace time.Duration) *deployer.Deployer {
			dead, err := deployer.NewDockerEngine(deployer.HostConfig{Name: "h1", Endpoint: "unix:///nonexistent/docker.sock", Timeout: time.Second})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { dead.Close() })
			h2, err := deployer.NewDockerEngine(deployer.HostConfig{Name: "h2", Endpoint: hosts[1].Endpoint, Timeout: 20 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { h2.Close() })
			d, err := deployer.New(deployer.Options{Env: schedEnv, Store: db, StopGrace: time.Second, RescheduleAfter: grace,
				Hosts: []deployer.Host{{Name: "h1", Labels: labels["h1"], Engine: dead}, {Name: "h2", Labels: labels["h2"], Address: hosts[1].IP, Engine: h2}}})
			if err != nil {
				t.Fatal(err)
			}
			return d
		}
		if err := lost(time.Hour).Reconcile(ctx); !errors.Is(err, deployer.ErrHostUnreachable) {
			t.Fatalf("within the grace: %v, want ErrHostUnreachable", err)
		}
		d1ns := lost(time.Nanosecond)
		_ = d1ns.Reconcile(ctx) // first pass: h1 seen down
		if err := d1ns.Reconcile(ctx); err != nil {
			t.Fatalf("past the grace: %v", err)
		}
		if got := fmt.Sprint(count(t, "drain")); got != "map[h1:1 h2:3]" {
			t.Fatalf("after rescheduling = %s, want a replacement on h2", got)
		}
		// h1 answers again: its replaced container goes, nothing moves back.
		if err := newDeployer(t, nil).Reconcile(ctx); err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprint(count(t, "drain")); got != "map[h1:0 h2:3]" {
			t.Fatalf("after h1 returned = %s", got)
		}
	})
}

// webSpec is a stack with one web service on the harness HTTP image,
// health-checked on /healthz.
func webSpec(stack string, scale int, ports []deployer.PortSpec) deployer.StackSpec {
	return deployer.StackSpec{Name: stack, Services: []deployer.ServiceSpec{{
		Name: "web", Image: "dockmaster-test/web:1.0.0", Scale: scale, Ports: ports,
		HealthCheck: &deployer.HealthCheck{Port: 8080, RequestLine: "GET /healthz HTTP/1.0",
			Interval: 150 * time.Millisecond, ResponseTimeout: time.Second, HealthyThreshold: 2,
			InitializingTimeout: 5 * time.Second},
	}}}
}

// allOn counts the stack's containers on a host, stopped ones included.
func allOn(t *testing.T, cli *client.Client, stack string) int {
	list, err := cli.ContainerList(context.Background(), container.ListOptions{All: true,
		Filters: filters.NewArgs(filters.Arg("label", deployer.LabelStack+"="+stack))})
	if err != nil {
		t.Fatal(err)
	}
	return len(list)
}

// removeSchedOwned removes the containers and networks of schedEnv.
func removeSchedOwned(t *testing.T, cli *client.Client) {
	if _, err := testenv.RemoveLabeled(context.Background(), cli, deployer.LabelEnv+"="+schedEnv); err != nil {
		t.Errorf("cleanup: %v", err)
	}
}
