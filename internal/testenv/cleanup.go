package testenv

import (
	"context"
	"errors"
	"fmt"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"
)

// RemoveLabeled force-removes the containers, then the networks, that carry
// label (a key, or key=value) on cli: what a test's deploys made, which must
// go before the harness stops the host (leaked bridges exhaust the subnets).
// It returns how many it found and what it could not remove, rather than
// failing the test, so that a cleanup may sweep again.
func RemoveLabeled(ctx context.Context, cli *client.Client, label string) (found int, err error) {
	f := filters.NewArgs(filters.Arg("label", label))
	cs, err := cli.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
	if err != nil {
		return 0, fmt.Errorf("list containers labeled %s: %w", label, err)
	}
	var errs []error
	for _, c := range cs {
		if err := cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true}); err != nil {
			errs = append(errs, fmt.Errorf("remove container %s: %w", c.ID[:12], err))
		}
	}
	ns, err := cli.NetworkList(ctx, network.ListOptions{Filters: f})
	if err != nil {
		return len(cs), errors.Join(append(errs, fmt.Errorf("list networks labeled %s: %w", label, err))...)
	}
	for _, n := range ns {
		if err := cli.NetworkRemove(ctx, n.ID); err != nil {
			errs = append(errs, fmt.Errorf("remove network %s: %w", n.Name, err))
		}
	}
	return len(cs) + len(ns), errors.Join(errs...)
}
