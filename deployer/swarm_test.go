package deployer_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/swarm"

	"github.com/dockmaster/dockmaster/deployer"
	"github.com/dockmaster/dockmaster/deployer/scheduler"
	"github.com/dockmaster/dockmaster/internal/store/storetest"
	"github.com/dockmaster/dockmaster/internal/testenv"
)

func TestSwarmSpecMapping(t *testing.T) {
	svc := deployer.ServiceSpec{
		Name: "web", Image: "img:v2", Command: []string{"httpd", "-f"}, Scale: 3,
		Environment: map[string]string{"B": "2", "A": "1"},
		Labels: map[string]string{
			"io.rancher.scheduler.affinity:host_label":         "zone=a",
			"io.rancher.scheduler.affinity:host_label_ne":      "disk=hdd",
			"io.rancher.scheduler.affinity:host_label_soft":    "rack=r1",
			"io.rancher.scheduler.affinity:container_label_ne": "io.rancher.stack_service.name=${stack_name}/${service_name}",
			deployer.LabelPublishMode:                          "host",
		},
		Ports:       []deployer.PortSpec{{HostPort: 80, ContainerPort: 8080, Protocol: "tcp"}, {ContainerPort: 9000, Protocol: "tcp"}},
		Volumes:     []string{"/srv:/data:ro", "cache:/cache"},
		ExtraHosts:  []string{"db:10.0.0.5"},
		HealthCheck: &deployer.HealthCheck{Port: 8080, RequestLine: "GET /healthz HTTP/1.0", Interval: time.Second, UnhealthyThreshold: 4},
		Upgrade:     deployer.UpgradeStrategy{StartFirst: true, BatchSize: 2, Interval: 1500 * time.Millisecond},
		Resources:   deployer.Resources{CPUShares: 512, MemoryLimit: 64 << 20},
	}
	spec, warns, err := deployer.SwarmSpec("prod", "shop", svc, "dep1", "v2", swarm.UpdateFailureActionRollback, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	eq := func(name string, got, want any) {
		t.Helper()
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	eq("name", spec.Name, "shop_web")
	eq("replicas", *spec.Mode.Replicated.Replicas, 3)
	cs := spec.TaskTemplate.ContainerSpec
	eq("args", cs.Args, []string{"httpd", "-f"})
	eq("env", cs.Env, []string{"A=1", "B=2"})
	eq("hosts", cs.Hosts, []string{"10.0.0.5 db"})
	eq("owner label", cs.Labels[deployer.LabelDeployment]+"/"+cs.Labels[deployer.LabelVersion], "dep1/v2")
	eq("mounts", fmt.Sprintf("%s %s %s %v | %s %s %s", cs.Mounts[0].Type, cs.Mounts[0].Source, cs.Mounts[0].Target, cs.Mounts[0].ReadOnly,
		cs.Mounts[1].Type, cs.Mounts[1].Source, cs.Mounts[1].Target), "bind /srv /data true | volume cache /cache")
	eq("health", cs.Healthcheck.Test, []string{"CMD", "wget", "-q", "-O", "-", "http://127.0.0.1:8080/healthz"})
	eq("health retries", cs.Healthcheck.Retries, 4)
	p := spec.TaskTemplate.Placement
	eq("constraints", p.Constraints, []string{"node.labels.zone==a", "node.labels.disk!=hdd"})
	eq("preferences", p.Preferences[0].Spread.SpreadDescriptor, "node.labels.rack")
	eq("max replicas", p.MaxReplicas, 1)
	u := spec.UpdateConfig
	eq("update", fmt.Sprintf("%d %s %s %s", u.Parallelism, u.Delay, u.Order, u.FailureAction), "2 1.5s start-first rollback")
	eq("ports", len(spec.EndpointSpec.Ports), 1)
	eq("publish mode", spec.EndpointSpec.Ports[0].PublishMode, swarm.PortConfigPublishModeHost)
	eq("published", spec.EndpointSpec.Ports[0].PublishedPort, 80)
	eq("network", spec.TaskTemplate.Networks[0].Target+" "+spec.TaskTemplate.Networks[0].Aliases[0], "prod_shop web")
	joined := strings.Join(warns, "\n")
	for _, w := range []string{"cpu_shares", "soft host_label rack=r1"} {
		if !strings.Contains(joined, w) {
			t.Errorf("warnings %q lack %q", joined, w)
		}
	}

	// The swarm hash follows the spec: same input, same hash; new scale, new hash.
	again, _, _ := deployer.SwarmSpec("prod", "shop", svc, "dep1", "v2", swarm.UpdateFailureActionRollback, time.Second)
	svc.Scale = 4
	scaled, _, _ := deployer.SwarmSpec("prod", "shop", svc, "dep1", "v2", swarm.UpdateFailureActionRollback, time.Second)
	if again.Labels[deployer.LabelSwarmHash] != spec.Labels[deployer.LabelSwarmHash] || scaled.Labels[deployer.LabelSwarmHash] == spec.Labels[deployer.LabelSwarmHash] {
		t.Errorf("swarm hash not stable or not sensitive: %s %s %s", spec.Labels[deployer.LabelSwarmHash], again.Labels[deployer.LabelSwarmHash], scaled.Labels[deployer.LabelSwarmHash])
	}
}

func TestSwarmSpecGlobalTCPAndWarnings(t *testing.T) {
	svc := deployer.ServiceSpec{Name: "agent", Image: "a", Global: true,
		Ports:       []deployer.PortSpec{{HostIP: "10.1.1.1", HostPort: 53, ContainerPort: 53, Protocol: "udp"}},
		HealthCheck: &deployer.HealthCheck{Port: 53},
		Scheduling: &scheduler.Scheduling{Strategy: "binpack",
			Soft: scheduler.NativeAffinity{ContainerLabel: []string{"app=db"}}},
	}
	spec, warns, err := deployer.SwarmSpec("e", "s", svc, "d", "v", swarm.UpdateFailureActionPause, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if spec.Mode.Global == nil || spec.Mode.Replicated != nil {
		t.Errorf("mode = %+v, want global", spec.Mode)
	}
	if got := spec.TaskTemplate.ContainerSpec.Healthcheck.Test; !slices.Equal(got, []string{"CMD", "nc", "-z", "127.0.0.1", "53"}) {
		t.Errorf("tcp check = %v", got)
	}
	if p := spec.EndpointSpec.Ports[0]; p.Protocol != swarm.PortConfigProtocolUDP || p.PublishMode != swarm.PortConfigPublishModeIngress {
		t.Errorf("port = %+v, want udp ingress", p)
	}
	if spec.UpdateConfig.FailureAction != swarm.UpdateFailureActionPause || spec.UpdateConfig.Order != swarm.UpdateOrderStopFirst {
		t.Errorf("update config = %+v", spec.UpdateConfig)
	}
	joined := strings.Join(warns, "\n")
	for _, w := range []string{"host IP is ignored", "soft rule app=db is not enforced", "strategy binpack"} {
		if !strings.Contains(joined, w) {
			t.Errorf("warnings %q lack %q", joined, w)
		}
	}
}

func TestSwarmSpecErrorsNameTheField(t *testing.T) {
	for _, tc := range []struct {
		svc  deployer.ServiceSpec
		want string
	}{
		{deployer.ServiceSpec{Name: "w", Labels: map[string]string{deployer.LabelPublishMode: "mesh"}}, "io.dockmaster.swarm.publish"},
		{deployer.ServiceSpec{Name: "w", ExtraHosts: []string{"nocolon"}}, `extra_hosts "nocolon"`},
		{deployer.ServiceSpec{Name: "w", Volumes: []string{"a:relative"}}, `volumes "a:relative"`},
		{deployer.ServiceSpec{Name: "w", Labels: map[string]string{"io.rancher.scheduler.affinity:host_label": "novalue"}}, "io.rancher.scheduler.affinity:host_label"},
	} {
		_, _, err := deployer.SwarmSpec("e", "s", tc.svc, "d", "v", swarm.UpdateFailureActionRollback, time.Second)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "s/w") {
			t.Errorf("%+v: err = %v, want one naming s/w and %q", tc.svc, err, tc.want)
		}
	}
}

// swarmRig is a single-node swarm on a harness daemon with the web image
// at v1 and v2, and a Swarm target on a real store.
type swarmRig struct {
	host *testenv.Host
	sw   *deployer.Swarm
	db   deployer.Store
}

func newSwarmRig(t *testing.T) *swarmRig {
	t.Helper()
	h := testenv.StartHost(t, "swarm")
	testenv.HTTPServerImage(t, h.Client, "v1")
	testenv.HTTPServerImage(t, h.Client, "v2")
	testenv.InitSwarm(t, h)
	db := storetest.Open(t)
	sw, err := deployer.NewSwarm(deployer.SwarmOptions{Env: "prod", Manager: h.Endpoint, Store: db,
		Poll: 200 * time.Millisecond, Monitor: time.Second, PendingTimeout: 3 * time.Second, Timeout: 2 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sw.Close() })
	return &swarmRig{host: h, sw: sw, db: db}
}

func swarmWebStack(version string, scale int, labels map[string]string) deployer.StackSpec {
	return deployer.StackSpec{Name: "shop", Services: []deployer.ServiceSpec{{
		Name: "web", Image: "dockmaster-test/web:" + version, Scale: scale, Labels: labels,
		HealthCheck: &deployer.HealthCheck{Port: 8080, RequestLine: "GET /healthz HTTP/1.0",
			Interval: 500 * time.Millisecond, ResponseTimeout: time.Second, HealthyThreshold: 1, UnhealthyThreshold: 2},
		Upgrade: deployer.UpgradeStrategy{StartFirst: true, BatchSize: 2},
	}}}
}

func swarmServiceOf(t *testing.T, st deployer.StackStatus, name string) deployer.ServiceStatus {
	t.Helper()
	for _, s := range st.Services {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("status has no service %s: %+v", name, st)
	return deployer.ServiceStatus{}
}

// runningVersions counts the running tasks of svc by version.
func runningVersions(s deployer.ServiceStatus) map[string]int {
	out := map[string]int{}
	for _, c := range s.Containers {
		if c.State == "running" {
			out[c.Version]++
		}
	}
	return out
}

// TestSwarmUpgradeFinishRollback runs the held-upgrade cycle on a real
// single-node swarm: up v1, upgrade to v2 (held), finish, upgrade to v1
// again (held), rollback (Swarm's previous spec: v2 healthy again).
func TestSwarmUpgradeFinishRollback(t *testing.T) {
	r := newSwarmRig(t)
	ctx := context.Background()
	if err := r.sw.Up(ctx, swarmWebStack("v1", 2, nil), deployer.DeployOptions{}); err != nil {
		t.Fatalf("up: %v", err)
	}
	st, err := r.sw.Status(ctx, "shop")
	if err != nil {
		t.Fatal(err)
	}
	web := swarmServiceOf(t, st, "web")
	if web.Running != 2 || web.Healthy != 2 || web.State != deployer.StateActive || web.Version != "v1" {
		t.Fatalf("after up: %+v", web)
	}
	if len(st.Hosts) != 1 || st.Hosts[0].Err != "" {
		t.Errorf("hosts = %+v, want one ready node", st.Hosts)
	}

	// Logs come through the manager.
	lines, err := r.sw.Logs(ctx, "shop", "web", "", deployer.LogOptions{Tail: 10})
	if err != nil {
		t.Fatalf("logs: %v", err)
	}
	for range lines { // busybox httpd -f writes nothing; the stream must end
	}

	var events []deployer.Event
	err = r.sw.Upgrade(ctx, swarmWebStack("v2", 2, nil), deployer.DeployOptions{Progress: func(e deployer.Event) { events = append(events, e) }})
	if err != nil {
		t.Fatalf("upgrade: %v", err)
	}
	rec, err := r.db.Service(ctx, "prod", "shop", "web")
	if err != nil || rec.State != deployer.StateUpgraded || rec.Version != "v2" || rec.OldVersion != "v1" {
		t.Fatalf("after upgrade: %+v, %v", rec, err)
	}
	st, _ = r.sw.Status(ctx, "shop")
	web = swarmServiceOf(t, st, "web")
	if got := runningVersions(web); got["v2"] != 2 || got["v1"] != 0 {
		t.Errorf("running after upgrade = %v, want 2 of v2", got)
	}
	if web.OldVersion != "v1" {
		t.Errorf("old version = %q", web.OldVersion)
	}
	if !slices.ContainsFunc(events, func(e deployer.Event) bool { return e.Step == "state" && e.Message == "upgraded" }) {
		t.Errorf("no upgraded event in %+v", events)
	}
	// Held: another upgrade is refused, Up too.
	if err := r.sw.Upgrade(ctx, swarmWebStack("v1", 2, nil), deployer.DeployOptions{}); !errors.Is(err, deployer.ErrUpgradeHeld) {
		t.Errorf("upgrade while held: %v, want ErrUpgradeHeld", err)
	}

	if err := r.sw.Finish(ctx, "shop", nil); err != nil {
		t.Fatalf("finish: %v", err)
	}
	rec, _ = r.db.Service(ctx, "prod", "shop", "web")
	if rec.State != deployer.StateActive || rec.Version != "v2" || rec.Old != nil {
		t.Fatalf("after finish: %+v", rec)
	}

	// Upgrade to v3 (same image as v1, new version label), then roll back:
	// Swarm's previous spec, v2, must run healthy again.
	if err := r.sw.Upgrade(ctx, swarmWebStack("v1", 2, nil), deployer.DeployOptions{Version: "v3"}); err != nil {
		t.Fatalf("second upgrade: %v", err)
	}
	if err := r.sw.Rollback(ctx, "shop", nil); err != nil {
		t.Fatalf("rollback: %v", err)
	}
	rec, _ = r.db.Service(ctx, "prod", "shop", "web")
	if rec.State != deployer.StateActive || rec.Version != "v2" || rec.Spec.Image != "dockmaster-test/web:v2" {
		t.Fatalf("after rollback: %+v", rec)
	}
	st, _ = r.sw.Status(ctx, "shop")
	web = swarmServiceOf(t, st, "web")
	if got := runningVersions(web); got["v2"] != 2 || len(got) != 1 || web.Healthy != 2 {
		t.Errorf("running after rollback = %v (healthy %d), want 2 of v2", got, web.Healthy)
	}
	svc, _, err := r.host.Client.ServiceInspectWithRaw(ctx, "shop_web", swarm.ServiceInspectOptions{})
	if err != nil || svc.Spec.TaskTemplate.ContainerSpec.Image != "dockmaster-test/web:v2" {
		t.Errorf("swarm spec after rollback: image %q, %v", svc.Spec.TaskTemplate.ContainerSpec.Image, err)
	}
}

// TestSwarmPlacement: a global service runs one task per node; a node label
// constraint that matches runs; one that no node meets leaves the task
// pending and the error carries Swarm's reason.
func TestSwarmPlacement(t *testing.T) {
	r := newSwarmRig(t)
	ctx := context.Background()
	nodes, err := r.host.Client.NodeList(ctx, swarm.NodeListOptions{})
	if err != nil || len(nodes) != 1 {
		t.Fatalf("nodes: %v %v", nodes, err)
	}
	n := nodes[0]
	n.Spec.Labels = map[string]string{"zone": "a"}
	if err := r.host.Client.NodeUpdate(ctx, n.ID, n.Version, n.Spec); err != nil {
		t.Fatal(err)
	}

	global := swarmWebStack("v1", 0, map[string]string{"io.rancher.scheduler.global": "true"})
	global.Name = "agents"
	if err := r.sw.Up(ctx, global, deployer.DeployOptions{}); err != nil {
		t.Fatalf("global up: %v", err)
	}
	st, _ := r.sw.Status(ctx, "agents")
	if web := swarmServiceOf(t, st, "web"); web.Running != 1 {
		t.Errorf("global: running %d, want 1 (one node)", web.Running)
	}

	match := swarmWebStack("v1", 1, map[string]string{"io.rancher.scheduler.affinity:host_label": "zone=a"})
	match.Name = "matched"
	if err := r.sw.Up(ctx, match, deployer.DeployOptions{}); err != nil {
		t.Fatalf("matching constraint: %v", err)
	}

	miss := swarmWebStack("v1", 1, map[string]string{"io.rancher.scheduler.affinity:host_label": "zone=b"})
	miss.Name = "missed"
	err = r.sw.Up(ctx, miss, deployer.DeployOptions{})
	var pe *deployer.PlacementError
	if !errors.As(err, &pe) || !strings.Contains(err.Error(), "no suitable node") {
		t.Fatalf("unsatisfiable constraint: %v, want a PlacementError with Swarm's reason", err)
	}
	st, _ = r.sw.Status(ctx, "missed")
	web := swarmServiceOf(t, st, "web")
	if web.Running != 0 || len(web.Containers) == 0 || !strings.Contains(web.Containers[0].Health, "no suitable node") {
		t.Errorf("pending task status = %+v, want the scheduling reason", web.Containers)
	}
}
