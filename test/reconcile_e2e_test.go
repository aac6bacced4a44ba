package test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"

	"github.com/dockmaster/dockmaster/internal/testenv"
)

// The running service replaces a crashed container by itself (the
// reconciler loop), with no operation in flight.
func TestServiceReplacesACrashedContainer(t *testing.T) {
	h := testenv.StartHost(t, "rec1")
	img := testenv.HTTPServerImage(t, h.Client, "1.0.0")
	removeOwned(t, h) // after the server stops, before the host does
	srv := testenv.StartServer(t, fmt.Sprintf(`reconcile_interval: 500ms
environments:
  - name: prod
    hosts:
      - {name: rec1, endpoint: %q, address: %q}
`, h.Endpoint, h.IP))
	admin := srv.Admin()
	ctx := context.Background()
	compose := "services:\n  web:\n    image: " + img + "\n"
	rancher := "services:\n  web:\n    scale: 2\n    health_check:\n      port: 8080\n      request_line: GET /healthz HTTP/1.0\n      interval: 500\n      healthy_threshold: 1\n      unhealthy_threshold: 2\n      response_timeout: 1000\n      strategy: recreate\n"
	if st := admin.Do("POST", "/api/v1/environments/prod/stacks/shop/up", map[string]any{"compose": compose, "rancher": rancher}, nil); st != http.StatusOK {
		t.Fatalf("up: status %d", st)
	}
	running := func() []string {
		cs, err := h.Client.ContainerList(ctx, container.ListOptions{Filters: filters.NewArgs(filters.Arg("label", "io.dockmaster.stack=shop"))})
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, c := range cs {
			ids = append(ids, c.ID)
		}
		return ids
	}
	before := running()
	if len(before) != 2 {
		t.Fatalf("%d containers running after up, want 2", len(before))
	}
	if err := h.Client.ContainerKill(ctx, before[0], "KILL"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the killed container to be replaced", 30*time.Second, func() bool { return len(running()) == 2 })
}
