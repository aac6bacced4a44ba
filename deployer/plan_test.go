package deployer

import (
	"errors"
	"strings"
	"testing"
)

func TestConfigHashIgnoresScaleAndUpgrade(t *testing.T) {
	base := ServiceSpec{Name: "web", Image: "web:1.0.0", Scale: 1, Environment: map[string]string{"A": "1", "B": "2"}}
	h := ConfigHash(base)
	scaled := base
	scaled.Scale = 5
	scaled.Upgrade = UpgradeStrategy{StartFirst: true, BatchSize: 2}
	scaled.HealthCheck = &HealthCheck{Port: 80}
	if got := ConfigHash(scaled); got != h {
		t.Fatalf("scale/upgrade/health changed the hash: %s != %s", got, h)
	}
	for name, mut := range map[string]func(*ServiceSpec){
		"image":   func(s *ServiceSpec) { s.Image = "web:1.0.1" },
		"env":     func(s *ServiceSpec) { s.Environment = map[string]string{"A": "1", "B": "3"} },
		"command": func(s *ServiceSpec) { s.Command = []string{"sh"} },
		"ports":   func(s *ServiceSpec) { s.Ports = []PortSpec{{HostPort: 80, ContainerPort: 8080}} },
	} {
		s := base
		mut(&s)
		if ConfigHash(s) == h {
			t.Errorf("changing %s did not change the hash", name)
		}
	}
}

// ctr builds an observed container of stack "app".
func ctr(id, service, dep, hash string, idx int, state string) Container {
	return Container{ID: id, Name: ContainerName("app", service, idx), State: state, Running: state == "running",
		ExitCode: map[bool]int{true: 137}[state == "exited"],
		Labels: map[string]string{LabelEnv: "prod", LabelStack: "app", LabelService: service,
			LabelDeployment: dep, LabelConfigHash: hash, LabelIndex: itoa(idx)}}
}

func TestReconcilePlanText(t *testing.T) {
	web := ServiceSpec{Name: "web", Image: "web:1"}
	h := ConfigHash(web)
	recreate := web
	recreate.HealthCheck = &HealthCheck{Port: 8080, Strategy: "recreate"}
	none := web
	none.HealthCheck = &HealthCheck{Port: 8080, Strategy: "none"}
	tests := []struct {
		name  string
		d     desired
		hosts []HostSnapshot
		want  string
	}{
		{
			name:  "fresh scale 3 spreads",
			d:     desired{Stack: "app", Spec: web, Deployment: "d1", Hash: h, Scale: 3},
			hosts: []HostSnapshot{{Name: "h2"}, {Name: "h1"}},
			want: "create app-web-1 on h1\n" +
				"create app-web-2 on h2\n" +
				"create app-web-3 on h1",
		},
		{
			name: "converged",
			d:    desired{Stack: "app", Spec: web, Deployment: "d1", Hash: h, Scale: 2},
			hosts: []HostSnapshot{{Name: "h1", Containers: []Container{ctr("a", "web", "d1", h, 1, "running")}},
				{Name: "h2", Containers: []Container{ctr("b", "web", "d1", h, 2, "running"), ctr("x", "db", "d9", "zz", 1, "running")}}},
			want: "web: nothing to do",
		},
		{
			name: "scale down removes highest index, stale deployment removed",
			d:    desired{Stack: "app", Spec: web, Deployment: "d1", Hash: h, Scale: 1},
			hosts: []HostSnapshot{{Name: "h1", Containers: []Container{
				ctr("a", "web", "d1", h, 1, "running"), ctr("b", "web", "d1", h, 2, "running"), ctr("c", "web", "d0", h, 3, "exited")}}},
			want: "remove app-web-3 on h1 (stale deployment d0)\n" +
				"remove app-web-2 on h1 (scale down)",
		},
		{
			name: "held old deployment is kept, new batch placed beside it",
			d:    desired{Stack: "app", Spec: web, Deployment: "d2", Hash: h, Scale: 2, Keep: "d1"},
			hosts: []HostSnapshot{{Name: "h1", Containers: []Container{ctr("a", "web", "d1", h, 1, "exited")}},
				{Name: "h2", Containers: []Container{ctr("b", "web", "d1", h, 2, "running"), ctr("c", "web", "d2", h, 3, "running")}}},
			want: "create app-web-4 on h1",
		},
		{
			name:  "crashed container restarted by default",
			d:     desired{Stack: "app", Spec: web, Deployment: "d1", Hash: h, Scale: 1},
			hosts: []HostSnapshot{{Name: "h1", Containers: []Container{ctr("a", "web", "d1", h, 1, "exited")}}},
			want:  "start app-web-1 on h1 (restart, exited, exit 137)",
		},
		{
			name:  "crashed container replaced under recreate",
			d:     desired{Stack: "app", Spec: recreate, Deployment: "d1", Hash: h, Scale: 1},
			hosts: []HostSnapshot{{Name: "h1", Containers: []Container{ctr("a", "web", "d1", h, 1, "exited")}}},
			want: "remove app-web-1 on h1 (exited, exit 137)\n" +
				"create app-web-2 on h1",
		},
		{
			name:  "crashed container left under none",
			d:     desired{Stack: "app", Spec: none, Deployment: "d1", Hash: h, Scale: 1},
			hosts: []HostSnapshot{{Name: "h1", Containers: []Container{ctr("a", "web", "d1", h, 1, "exited")}}},
			want:  "web: nothing to do",
		},
		{
			name:  "changed hash in the same deployment is replaced",
			d:     desired{Stack: "app", Spec: web, Deployment: "d1", Hash: h, Scale: 1},
			hosts: []HostSnapshot{{Name: "h1", Containers: []Container{ctr("a", "web", "d1", "old", 1, "running")}}},
			want: "remove app-web-1 on h1 (stale deployment d1)\n" +
				"create app-web-2 on h1",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := reconcile(tt.d, tt.hosts, Spread{})
			if err != nil {
				t.Fatal(err)
			}
			if got := p.String(); got != tt.want {
				t.Errorf("plan:\n%s\nwant:\n%s", got, tt.want)
			}
		})
	}
}

func TestSpreadRejectsWithReasons(t *testing.T) {
	svc := ServiceSpec{Name: "web", Ports: []PortSpec{{HostPort: 80, ContainerPort: 8080, Protocol: "tcp"}}}
	other := Container{Name: "other-1", Running: true, Ports: []PortSpec{{HostPort: 80, Protocol: "tcp"}}}
	hosts := []HostSnapshot{
		{Name: "h1", Containers: []Container{other}},
		{Name: "h2", Err: errors.New("connection refused")},
		{Name: "h3"},
	}
	got, err := Spread{}.Place(hosts, "app", svc, 1)
	if err != nil || len(got) != 1 || got[0] != "h3" {
		t.Fatalf("Place = %v, %v; want [h3]", got, err)
	}
	_, err = Spread{}.Place(hosts, "app", svc, 2)
	var pe *PlacementError
	if !errors.As(err, &pe) || !errors.Is(err, ErrNoHost) {
		t.Fatalf("err = %v, want *PlacementError", err)
	}
	for _, want := range []string{"h1: host port 80/tcp in use by other-1", "h2: unreachable: connection refused", "h3: host port already taken"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}
