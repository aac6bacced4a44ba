package deployer

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/dockmaster/dockmaster/deployer/scheduler"
)

func TestSchedulerSnapshotMapping(t *testing.T) {
	held := ctr("old1", "web", "d0", "h0", 1, "exited")
	held.Ports = []PortSpec{{HostPort: 8080, ContainerPort: 8080, Protocol: "tcp"}}
	held.Resources = Resources{MemoryLimit: 1 << 30}
	cur := ctr("new2", "web", "d1", "h1", 2, "running")
	cur.Resources = Resources{NanoCPUs: 5e8, MemoryReservation: 64 << 20}
	foreign := Container{ID: "j1", Name: "java-service-1-1", State: "running", Running: true,
		Labels: map[string]string{"team": "java"},
		Ports:  []PortSpec{{HostIP: "0.0.0.0", HostPort: 8080, ContainerPort: 8080, Protocol: "tcp"}, {ContainerPort: 9000}}}
	otherEnv := ctr("s1", "web", "dx", "hx", 1, "running")
	otherEnv.Labels[LabelEnv] = "staging"
	hosts := []HostSnapshot{
		{Name: "h1", Env: "prod", Labels: map[string]string{"env": "prod"}, Info: HostInfo{NCPU: 4, MemTotal: 8 << 30},
			Containers: []Container{held, cur}, Others: []Container{foreign, otherEnv, cur /* listed twice: once */}},
		{Name: "h2", Env: "prod", State: "draining"},
		{Name: "h3", Env: "prod", Err: errors.New("connection refused")},
	}
	s := SchedulerSnapshot(hosts)
	if len(s.Hosts) != 3 {
		t.Fatalf("hosts %d", len(s.Hosts))
	}
	h1 := s.Hosts[0]
	if h1.State != scheduler.HostActive || h1.NanoCPUs != 4e9 || h1.MemoryBytes != 8<<30 || h1.Labels["env"] != "prod" {
		t.Fatalf("h1 = %+v", h1)
	}
	if s.Hosts[1].State != scheduler.HostDraining || s.Hosts[2].State != scheduler.HostUnreachable {
		t.Fatalf("states %s %s", s.Hosts[1].State, s.Hosts[2].State)
	}
	if len(h1.Containers) != 4 {
		t.Fatalf("h1 containers %d, want 4 (duplicate dropped): %+v", len(h1.Containers), h1.Containers)
	}
	byID := map[string]scheduler.Container{}
	for _, c := range h1.Containers {
		byID[c.ID] = c
	}
	if c := byID["old1"]; !c.Stopped || c.Stack != "app" || c.Service != "web" || c.Index != 1 {
		t.Errorf("held old container = %+v, want stopped app/web index 1", c)
	}
	if c := byID["new2"]; c.Stopped || c.Resources.NanoCPUs != 5e8 || c.Resources.MemoryReservation != 64<<20 {
		t.Errorf("current container = %+v", c)
	}
	if c := byID["j1"]; c.Stack != "" || !reflect.DeepEqual(c.Ports, []scheduler.Port{{HostIP: "0.0.0.0", HostPort: 8080, Protocol: "tcp"}}) {
		t.Errorf("foreign container = %+v, want foreign with only the published port", c)
	}
	if c := byID["s1"]; c.Stack != "" {
		t.Errorf("other environment's container counted as ours: %+v", c)
	}

	// What the scheduler makes of it: the stopped held container frees its
	// port and memory; the foreign one holds 8080; draining and unreachable
	// hosts take nothing.
	svc := ServiceSpec{Name: "api", Ports: []PortSpec{{HostPort: 8080, ContainerPort: 80}}}
	_, err := Scheduler{}.Place(hosts, "app", svc, 1)
	var nf *scheduler.NoFitError
	if !errors.Is(err, ErrNoHost) || !errors.As(err, &nf) {
		t.Fatalf("err = %v, want a NoFitError", err)
	}
	want := "no host fits app/api: h1: port 8080/tcp in use by java-service-1-1; h2: host draining; h3: host unreachable"
	if err.Error() != want {
		t.Fatalf("err = %v\nwant it to contain %q", err, want)
	}
	var pe *PlacementError
	if !errors.As(err, &pe) || pe.Reasons["h1"] != "port 8080/tcp in use by java-service-1-1" {
		t.Fatalf("PlacementError = %+v", pe)
	}
	hosts[0].Others = []Container{otherEnv}
	got, err := Scheduler{}.Place(hosts, "app", svc, 1)
	if err != nil || !reflect.DeepEqual(got, []string{"h1"}) {
		t.Fatalf("without the foreign container: %v %v", got, err)
	}
	big := ServiceSpec{Name: "big", Resources: Resources{MemoryReservation: 8 << 30}}
	if _, err := (Scheduler{}).Place(hosts, "app", big, 1); err == nil || !strings.Contains(err.Error(), "h1: memory 8192MiB requested, 8128MiB free") {
		t.Fatalf("memory: %v", err)
	}
}

func TestSchedulerPlaceRules(t *testing.T) {
	hosts := []HostSnapshot{
		{Name: "h1", Labels: map[string]string{"env": "prod"}},
		{Name: "h2", Labels: map[string]string{"env": "test"}},
		{Name: "h3", Labels: map[string]string{"env": "prod"}},
	}
	svc := ServiceSpec{Name: "web", Labels: map[string]string{"io.rancher.scheduler.affinity:host_label": "env=prod"}}
	got, err := Scheduler{}.Place(hosts, "app", svc, 4)
	if err != nil || !reflect.DeepEqual(got, []string{"h1", "h3", "h1", "h3"}) {
		t.Fatalf("host_label: %v %v", got, err)
	}
	// The native form, from rancher-compose.yml, does the same.
	native := ServiceSpec{Name: "web", Scheduling: &scheduler.Scheduling{NativeAffinity: scheduler.NativeAffinity{HostLabelNe: []string{"env=prod"}}}}
	if got, err := (Scheduler{}).Place(hosts, "app", native, 2); err != nil || !reflect.DeepEqual(got, []string{"h2", "h2"}) {
		t.Fatalf("native host_label_ne: %v %v", got, err)
	}
	// A fixed port fits once per host: the third of scale 3 on two hosts
	// fails naming both.
	two := hosts[:2]
	port := ServiceSpec{Name: "web", Ports: []PortSpec{{HostPort: 8080, ContainerPort: 8080}}}
	_, err = Scheduler{}.Place(two, "app", port, 3)
	if err == nil || !strings.Contains(err.Error(), "(placed 2 of 3): h1: port 8080/tcp in use by app-web-1; h2: port 8080/tcp in use by app-web-2") {
		t.Fatalf("scale 3 on 2 hosts: %v", err)
	}
	// Global: one per eligible host; one on an ineligible host goes.
	g := ServiceSpec{Name: "agent", Global: true, Labels: map[string]string{"io.rancher.scheduler.affinity:host_label": "env=prod"}}
	onTest := ctr("a2", "agent", "d", "h", 1, "running")
	withAgent := []HostSnapshot{hosts[0], {Name: "h2", Labels: hosts[1].Labels, Containers: []Container{onTest}}, hosts[2]}
	add, extra, err := Scheduler{}.PlaceGlobal(withAgent, "app", g)
	if err != nil || !reflect.DeepEqual(add, []string{"h1", "h3"}) || !reflect.DeepEqual(extra, []string{"a2"}) {
		t.Fatalf("global: add %v extra %v err %v", add, extra, err)
	}
}

func TestReconcileGlobalAndReturningHost(t *testing.T) {
	// A global service: created on every eligible host, removed from a
	// draining one, whatever Scale says.
	spec := ServiceSpec{Name: "agent", Global: true}
	hash := ConfigHash(spec)
	hosts := []HostSnapshot{
		{Name: "h1", Containers: []Container{ctr("a1", "agent", "d1", hash, 1, "running")}},
		{Name: "h2", State: "draining", Containers: []Container{ctr("a2", "agent", "d1", hash, 2, "running")}},
		{Name: "h3"},
	}
	for i := range hosts {
		for j := range hosts[i].Containers {
			hosts[i].Containers[j].Host = hosts[i].Name
		}
	}
	p, err := reconcile(desired{Stack: "app", Spec: spec, Deployment: "d1", Hash: hash, Scale: 1}, hosts, Scheduler{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := p.String(), "remove app-agent-2 on h2 (global: host no longer eligible)\ncreate app-agent-3 on h3"; got != want {
		t.Fatalf("global plan:\n%s\nwant:\n%s", got, want)
	}

	// A host comes back after its container was replaced: of the two with
	// index 2, the older (on the returning host) goes.
	web := ServiceSpec{Name: "web", Scale: 2}
	wh := ConfigHash(web)
	back := ctr("old2", "web", "d1", wh, 2, "running")
	back.Created = time.Unix(100, 0)
	repl := ctr("new2", "web", "d1", wh, 2, "running")
	repl.Created = time.Unix(200, 0)
	one := ctr("c1", "web", "d1", wh, 1, "running")
	hosts = []HostSnapshot{{Name: "h1", Containers: []Container{one, repl}}, {Name: "h2", Containers: []Container{back}}}
	for i := range hosts {
		for j := range hosts[i].Containers {
			hosts[i].Containers[j].Host = hosts[i].Name
		}
	}
	p, err = reconcile(desired{Stack: "app", Spec: web, Deployment: "d1", Hash: wh, Scale: 2}, hosts, Scheduler{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := p.String(), "remove app-web-2 on h2 (replaced while its host was unreachable)"; got != want {
		t.Fatalf("returning host plan:\n%s\nwant:\n%s", got, want)
	}
}

func TestConfigHashIgnoresScheduling(t *testing.T) {
	s := ServiceSpec{Name: "web", Image: "web:1"}
	h := ConfigHash(s)
	s.Scheduling = &scheduler.Scheduling{NativeAffinity: scheduler.NativeAffinity{HostLabel: []string{"a=b"}}}
	if ConfigHash(s) != h {
		t.Fatal("scheduling rules changed the config hash")
	}
}
