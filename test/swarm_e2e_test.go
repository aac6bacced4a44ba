package test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/docker/docker/api/types/swarm"

	"github.com/dockmaster/dockmaster/internal/testenv"
)

const swarmCompose = `services:
  web:
    image: dockmaster-test/web:${VERSION}
    labels:
      io.rancher.scheduler.affinity:host_label: zone=a
`

const swarmRancher = `services:
  web:
    scale: 2
    health_check:
      port: 8080
      request_line: GET /healthz HTTP/1.0
      interval: 500
      healthy_threshold: 1
      unhealthy_threshold: 2
    upgrade_strategy:
      start_first: true
      batch_size: 2
`

// TestSwarmEnvironmentE2E runs the real binary against a single-node swarm
// declared as environments[].swarm.manager: up, held upgrade, finish,
// upgrade again, rollback through the stacks API, checking the stack
// status the API shows.
func TestSwarmEnvironmentE2E(t *testing.T) {
	h := testenv.StartHost(t, "swarm-e2e")
	ctx := context.Background()
	for _, v := range []string{"v1", "v2", "v3"} {
		testenv.HTTPServerImage(t, h.Client, v)
	}
	testenv.InitSwarm(t, h)
	nodes, err := h.Client.NodeList(ctx, swarm.NodeListOptions{})
	if err != nil || len(nodes) != 1 {
		t.Fatalf("nodes: %v, %v", nodes, err)
	}
	n := nodes[0]
	n.Spec.Labels = map[string]string{"zone": "a"}
	if err := h.Client.NodeUpdate(ctx, n.ID, n.Version, n.Spec); err != nil {
		t.Fatal(err)
	}

	srv := testenv.StartServer(t, "environments:\n  - name: prod\n    swarm:\n      manager: "+h.Endpoint+"\n")
	admin := srv.Admin()

	run := func(op string, body map[string]any) {
		t.Helper()
		body["detach"] = true
		var acc struct {
			Job string `json:"job"`
		}
		if st := admin.Do("POST", "/api/v1/environments/prod/stacks/shop/"+op, body, &acc); st != http.StatusAccepted {
			t.Fatalf("%s: status %d", op, st)
		}
		deadline := time.Now().Add(3 * time.Minute)
		for {
			var job struct {
				State  string `json:"state"`
				Result *struct {
					Error string `json:"error"`
				} `json:"result"`
			}
			admin.Do("GET", "/api/v1/jobs/"+acc.Job, nil, &job)
			if job.State != "running" && job.State != "" {
				if job.State != "succeeded" {
					t.Fatalf("%s: job %s: %+v", op, job.State, job.Result)
				}
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: job still running after 3m", op)
			}
			time.Sleep(300 * time.Millisecond)
		}
	}
	type service struct {
		Name       string `json:"name"`
		State      string `json:"state"`
		Running    int    `json:"running"`
		Healthy    int    `json:"healthy"`
		Version    string `json:"version"`
		OldVersion string `json:"old_version"`
	}
	status := func() service {
		t.Helper()
		var st struct {
			Services []service `json:"services"`
		}
		if code := admin.Do("GET", "/api/v1/environments/prod/stacks/shop", nil, &st); code != http.StatusOK || len(st.Services) != 1 {
			t.Fatalf("status: %d %+v", code, st)
		}
		return st.Services[0]
	}
	up := func(version string, upgrade bool) {
		t.Helper()
		run("up", map[string]any{"compose": swarmCompose, "rancher": swarmRancher,
			"variables": map[string]string{"VERSION": version}, "upgrade": upgrade})
	}

	up("v1", false)
	if s := status(); s.State != "active" || s.Running != 2 || s.Healthy != 2 || s.Version != "v1" {
		t.Fatalf("after up: %+v", s)
	}
	up("v2", true)
	if s := status(); s.State != "upgraded" || s.Running != 2 || s.Version != "v2" || s.OldVersion != "v1" {
		t.Fatalf("after upgrade: %+v", s)
	}
	run("finish", map[string]any{})
	if s := status(); s.State != "active" || s.Version != "v2" || s.OldVersion != "" {
		t.Fatalf("after finish: %+v", s)
	}
	up("v3", true)
	run("rollback", map[string]any{})
	if s := status(); s.State != "active" || s.Version != "v2" || s.Running != 2 || s.Healthy != 2 {
		t.Fatalf("after rollback: %+v", s)
	}
	svc, _, err := h.Client.ServiceInspectWithRaw(ctx, "shop_web", swarm.ServiceInspectOptions{})
	if err != nil || svc.Spec.TaskTemplate.ContainerSpec.Image != "dockmaster-test/web:v2" {
		t.Fatalf("swarm service after rollback: %q, %v", svc.Spec.TaskTemplate.ContainerSpec.Image, err)
	}
}
