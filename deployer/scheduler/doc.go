// Package scheduler chooses hosts for containers. It is pure: a Snapshot
// of the environment's hosts goes in, a Plan comes out; it makes no Docker
// calls and never mutates its input.
//
// As Nomad composes feasibility checkers and rank iterators, placement is
// a chain of filters (hard rules, in this order: host state, host_label,
// host_label_ne, the host's require_any, container, container_ne,
// container_label, container_label_ne, host ports, CPU, memory) and then
// scorers compared field by field: fewest soft-rule violations, then the
// strategy (spread: fewest containers of the service, then fewest
// containers; binpack: most containers), then the tie-break. The first
// filter that rejects a host records a Verdict naming it, so a
// *NoFitError can say why, host by host.
//
// Choices worth knowing:
//
//   - Resources: the request is booked, not the ceiling (Resources.Reserve).
//     Capacity 0 means unknown and is not enforced.
//   - Ports: a host port+protocol is taken if any live container on the
//     host (ours or foreign, or a replica placed earlier in the same plan)
//     publishes it on an overlapping address; "", 0.0.0.0 and :: overlap all.
//   - Affinity is one-directional, as in Rancher: the new container's rules
//     are checked against what runs; rules of running containers are not
//     checked against the newcomer. Every stack container carries
//     io.rancher.stack.name and io.rancher.stack_service.name implicitly.
//   - Soft rules only rank; they never make a placement fail.
//   - Ties: the Request's Seed (the deployment id) is hashed to a rotation
//     of the host-name order, so a plan is the same for the same inputs and
//     different deployments do not all start on the same host. Empty seed:
//     plain host-name order.
//   - New replica indexes continue after the highest index seen (stopped
//     containers included), so a name is never reused.
//
// For many placements against one inventory build an Index once and
// alternate Index.Place and Index.Apply: each placement then costs about
// the hosts it has to look at (hosts bucketed by container count, per-host
// maps of ports, label pairs and names), not hosts*containers.
package scheduler
