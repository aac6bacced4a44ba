// Package lb is the load balancer that rancher-compose lb_config services
// become: `dockmaster lb`, a mode of the dockmaster binary, run from the
// dockmaster image (FROM scratch) on the environment's hosts and scheduled
// like any service (deployer/lb.go turns the service into these
// containers).
//
// # How it gets its rules
//
// A Poller long-polls dockmaster (GET /api/v1/environments/:env/stacks/
// :stack/lb/:service?host=H&wait=VERSION, bearer token from the deployer)
// for a Config: the port rules, each with the addresses of the target's
// HEALTHY containers, as internal/discovery sees them (refreshed every
// 250ms). Apply swaps each port's routing table atomically: listeners stay
// open, so reconfiguring drops nothing. While dockmaster is unreachable
// the last config stays in force.
//
// Backend addresses: a container on the balancer's own host is reached by
// its IP on the stack network; one on another host by its published host
// port, else by its container IP (which works where the hosts' bridges are
// routed to each other). So cross-host targets should publish their port,
// or the LB runs global (one per host). See deployer.Endpoint.Port.
//
// # Drain during rolling upgrades
//
// The deployer stops an old container at once; the view drops it within
// one refresh. In between, the LB loses nothing: a backend that refuses or
// resets a connection is marked down for DownFor, and the request is sent
// to another backend — any request whose connection could not be made,
// and idempotent requests without a body (GET, HEAD, OPTIONS, TRACE) after
// any transport error, including a body cut short after the headers (a
// response of known length up to 64 KiB is read whole before it is passed
// on). When every backend of the route has failed (the
// old containers stopped before the view showed the new ones healthy),
// such a request waits up to DownFor for the next config and goes to its
// backends. A POST cut mid-flight is answered 502, never
// replayed. The e2e test (test/lb_e2e_test.go) loops requests through a
// start_first upgrade and a rollback and counts zero errors.
//
// # Why net/http/httputil and not Caddy
//
// The issue suggests Caddy's reverse proxy as a library. Measured on this
// 2-core machine (load average ~10 from the other builds, `nice -n 10`,
// CGO_ENABLED=0, empty GOCACHE, a main that imports only the proxy):
//
//	github.com/caddyserver/caddy/v2 v2.11.9 + modules/caddyhttp/reverseproxy:
//	    6m03s wall, 2m29s user CPU (+5s link), binary 69 MB
//	net/http/httputil (standard library):
//	    1m50s wall, 32s user CPU, binary 5 MB
//
// Caddy's proxy drags in ACME, TLS automation, OpenTelemetry, gRPC, CEL
// and cloud SDKs: about 4 extra minutes of CI build per cold cache and
// +64 MB in every LB image, for features dockmaster does not use. So http
// rules use httputil.ReverseProxy (well kept, in the standard library),
// with a RoundTripper that picks the backend and retries as above; tcp
// rules use a small io.Copy forwarder with half-close.
//
// # Throughput
//
// go test ./test -run TestLBRollingUpgradeAndRollback -v prints requests
// per second through the LB against one container asked directly, in the
// same run (goal: at least 70%; measured 77% here, busybox httpd backends).
// go test ./lb -run '^$' -bench LBVersusDirect -benchtime 1x does the same
// against an in-process Go backend; there client, LB and backend share the
// two cores, so the ratio (~45%) measures the machine more than the LB.
package lb
