package deployer

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// ErrUnhealthy is wrapped by HealthError.
var ErrUnhealthy = errors.New("health check failed")

// HealthError names the container that failed and why.
type HealthError struct {
	Host, Container string
	Reason          string
}

func (e *HealthError) Error() string {
	return fmt.Sprintf("container %s on host %s: %v: %s", e.Container, e.Host, ErrUnhealthy, e.Reason)
}

func (e *HealthError) Unwrap() error { return ErrUnhealthy }

// healthDefaults fills rancher's defaults for unset fields.
func healthDefaults(hc HealthCheck) HealthCheck {
	if hc.Interval <= 0 {
		hc.Interval = 2 * time.Second
	}
	if hc.ResponseTimeout <= 0 {
		hc.ResponseTimeout = 2 * time.Second
	}
	if hc.InitializingTimeout <= 0 {
		hc.InitializingTimeout = 60 * time.Second
	}
	if hc.HealthyThreshold <= 0 {
		hc.HealthyThreshold = 2
	}
	if hc.UnhealthyThreshold <= 0 {
		hc.UnhealthyThreshold = 3
	}
	return hc
}

// probe performs one check against addr (host:port): a TCP connect, or when
// RequestLine is set an HTTP request expecting a 2xx or 3xx status.
func probe(ctx context.Context, addr string, hc HealthCheck) error {
	ctx, cancel := context.WithTimeout(ctx, hc.ResponseTimeout)
	defer cancel()
	var dialer net.Dialer
	conn, err := dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("tcp connect %s: %w", addr, err)
	}
	defer conn.Close()
	if hc.RequestLine == "" {
		return nil
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	line := strings.TrimSpace(hc.RequestLine)
	if len(strings.Fields(line)) == 2 {
		line += " HTTP/1.0"
	}
	req := line + "\r\n"
	if strings.HasSuffix(line, "HTTP/1.1") {
		req += "Host: " + addr + "\r\nConnection: close\r\n"
	}
	if _, err := conn.Write([]byte(req + "\r\n")); err != nil {
		return fmt.Errorf("%q to %s: %w", line, addr, err)
	}
	status, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return fmt.Errorf("%q to %s: read status: %w", line, addr, err)
	}
	f := strings.Fields(status)
	if len(f) < 2 {
		return fmt.Errorf("%q to %s: malformed status line %q", line, addr, strings.TrimSpace(status))
	}
	code, err := strconv.Atoi(f[1])
	if err != nil || code < 200 || code >= 400 {
		return fmt.Errorf("%q to %s: status %q", line, addr, strings.TrimSpace(status))
	}
	return nil
}

// probeAddr is where dockmaster reaches the health-check port of c: the
// container's IP on the stack network, or, when the host says its container
// IPs are not routable from here, the published host port.
func probeAddr(h *Host, c Container, network string, port uint16) (string, error) {
	if !h.ProbePublished {
		ip := c.IPs[network]
		if ip == "" {
			for _, v := range c.IPs {
				ip = v
				break
			}
		}
		if ip != "" {
			return net.JoinHostPort(ip, strconv.Itoa(int(port))), nil
		}
	}
	for _, p := range c.Ports {
		if p.ContainerPort == port && p.HostPort != 0 && proto(p.Protocol) == "tcp" {
			addr := h.Address
			if addr == "" {
				addr = p.HostIP
			}
			return net.JoinHostPort(addr, strconv.Itoa(int(p.HostPort))), nil
		}
	}
	return "", fmt.Errorf("port %d is neither reachable by container IP nor published", port)
}

// firstProbeInterval is the first pause between failing health probes of
// a starting container (see waitHealthy).
const firstProbeInterval = 100 * time.Millisecond

// waitHealthy waits until container id on h passes its health check: with
// no HealthCheck, running and still running (same start) after
// RunningGrace; otherwise HealthyThreshold consecutive successful probes
// within InitializingTimeout. A container that stops fails at once.
func (d *Deployer) waitHealthy(ctx context.Context, h *Host, id string, spec ServiceSpec, network string) error {
	c, err := h.Engine.Inspect(ctx, id)
	if err != nil {
		return err
	}
	fail := func(reason string) error { return &HealthError{Host: h.Name, Container: c.Name, Reason: reason} }
	if spec.HealthCheck == nil {
		if !c.Running {
			return fail("not running: " + exitReason(c))
		}
		if err := sleep(ctx, d.opts.RunningGrace); err != nil {
			return err
		}
		again, err := h.Engine.Inspect(ctx, id)
		if err != nil {
			return err
		}
		if !again.Running || !again.StartedAt.Equal(c.StartedAt) {
			return fail("did not stay running: " + exitReason(again))
		}
		return nil
	}
	hc := healthDefaults(*spec.HealthCheck)
	deadline := time.Now().Add(hc.InitializingTimeout)
	ok := 0
	var last error
	// Until a probe passes, poll from firstProbeInterval doubling up to the
	// interval: most containers answer well within one interval, and a
	// whole interval of idle waiting per batch is what an upgrade would
	// otherwise spend. After a pass, probes keep the interval, so the
	// healthy threshold still spans that many intervals.
	backoff := min(firstProbeInterval, hc.Interval)
	for first := true; ; first = false {
		if !first {
			if c, err = h.Engine.Inspect(ctx, id); err != nil {
				return err
			}
		}
		if !c.Running {
			return fail("stopped: " + exitReason(c))
		}
		addr, err := probeAddr(h, c, network, hc.Port)
		if err != nil {
			return fail(err.Error())
		}
		if err := probe(ctx, addr, hc); err != nil {
			ok, last = 0, err
		} else {
			ok++
			if ok >= hc.HealthyThreshold {
				return nil
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return fail(fmt.Sprintf("not healthy within %s: %v", hc.InitializingTimeout, last))
		}
		next := hc.Interval
		if ok == 0 {
			next, backoff = backoff, min(backoff*2, hc.Interval)
		}
		if err := sleep(ctx, next); err != nil {
			return err
		}
	}
}

// checkOnce is a single probe for Status; "" when there is no health check.
func checkOnce(ctx context.Context, h *Host, c Container, spec ServiceSpec, network string) string {
	if !c.Running {
		return "stopped"
	}
	if spec.HealthCheck == nil {
		return "running"
	}
	hc := healthDefaults(*spec.HealthCheck)
	addr, err := probeAddr(h, c, network, hc.Port)
	if err == nil {
		err = probe(ctx, addr, hc)
	}
	if err != nil {
		return "unhealthy: " + err.Error()
	}
	return "healthy"
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
