package testenv

import (
	"context"
	"testing"

	"github.com/docker/docker/api/types/swarm"
)

// InitSwarm makes h a single-node swarm manager and leaves the swarm on
// cleanup (registered after StartHost's, so it runs first: services, tasks
// and overlay networks go before the daemon stops). Each swarm gets its own
// VXLAN port: two swarms on one machine (test processes in parallel) would
// otherwise both bind 4789, and the second fails to create its overlay's
// vxlan interface.
func InitSwarm(t testing.TB, h *Host) {
	t.Helper()
	req := swarm.InitRequest{ListenAddr: h.IP + ":2377", AdvertiseAddr: h.IP, DataPathPort: uint32(4800 + h.Index)}
	if _, err := h.Client.SwarmInit(context.Background(), req); err != nil {
		t.Fatalf("swarm init on %s: %v", h.Name, err)
	}
	t.Cleanup(func() {
		if err := h.Client.SwarmLeave(context.Background(), true); err != nil {
			t.Errorf("swarm leave on %s: %v", h.Name, err)
		}
	})
}
