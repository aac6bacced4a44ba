// Package testenv is the test harness shared by dockmaster's packages: the
// default Docker daemon, extra dockerd "hosts" with their own bridge and
// loopback IP, a local registry (with or without htpasswd auth), and tiny
// images built FROM the busybox base without any pull.
//
// Every function takes the test's testing.TB, fails it with t.Fatalf on any
// error, and registers with t.Cleanup whatever it started, so a failing test
// still removes its daemons, bridges and temp dirs. None is safe to call from
// a goroutine other than the test's own (t.Fatalf must run there).
//
// Docker-dependent helpers skip the test (t.Skip) under `go test -short` or
// when the default daemon does not answer; set DOCKMASTER_REQUIRE_DOCKER=1 (as
// CI should) to turn that skip into a failure, so a broken daemon cannot pass
// as a green run.
package testenv

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/docker/docker/client"
)

// RequireDockerEnv names the environment variable that, when "1", makes a
// missing Docker daemon fail the test instead of skipping it.
const RequireDockerEnv = "DOCKMASTER_REQUIRE_DOCKER"

// pingTimeout bounds how long a daemon may take to answer one ping.
const pingTimeout = 5 * time.Second

// Docker returns a client for the default daemon (DOCKER_HOST, else
// unix:///var/run/docker.sock) with API version negotiation, closed on
// cleanup. It skips the test with a message saying why under -short or when
// the daemon does not answer a ping (fails instead if RequireDockerEnv=1).
func Docker(t testing.TB) *client.Client {
	t.Helper()
	if testing.Short() {
		t.Skip("needs Docker: skipped in -short mode")
	}
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		needDocker(t, "client for %s: %v", hostOf(), err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), pingTimeout)
	defer cancel()
	if _, err := cli.Ping(ctx); err != nil {
		needDocker(t, "no answer from %s (run scripts/setup.sh): %v", hostOf(), err)
	}
	return cli
}

func needDocker(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv(RequireDockerEnv) == "1" {
		t.Fatalf("needs Docker ("+RequireDockerEnv+"=1): "+format, args...)
	}
	t.Skipf("needs Docker: "+format, args...)
}

func hostOf() string {
	if h := os.Getenv("DOCKER_HOST"); h != "" {
		return h
	}
	return client.DefaultDockerHost
}
