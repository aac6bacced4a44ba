package deployer

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/pkg/stdcopy"
)

// StackStatus is the observed state of a stack.
type StackStatus struct {
	Stack    string
	Services []ServiceStatus
	Hosts    []HostStatus
}

// ServiceStatus is one service: its stored state and what runs.
type ServiceStatus struct {
	Name       string
	State      ServiceState
	Failed     string
	Scale      int
	Running    int
	Healthy    int
	Version    string
	Image      string
	ImageID    string // digest of the image the current containers run
	OldVersion string // set while an upgrade is held
	Containers []ContainerStatus
	// LB is set for load balancer services: rules and healthy backends
	// (lb.go).
	LB *LBStatus `json:",omitempty"`
}

// ContainerStatus is one container of a service.
type ContainerStatus struct {
	Host, Name, ID string
	Deployment     string
	Version        string
	State          string
	Health         string // healthy, unhealthy: <why>, running (no check), stopped
	Ports          []PortSpec
	StartedAt      time.Time
}

// HostStatus is a resource sample of the stack's running containers on a
// host (docker stats), or the error reaching it.
type HostStatus struct {
	Name  string
	Err   string
	Usage Usage
}

// Status reports the stack: per service counts, versions and containers
// (each probed once), and the hosts (AddUsage adds their resource use).
func (d *Deployer) Status(ctx context.Context, stack string) (StackStatus, error) {
	st := StackStatus{Stack: stack}
	recs, err := d.opts.Store.Services(ctx, d.opts.Env, stack)
	if err != nil {
		return st, err
	}
	snaps := d.listHosts(ctx, stack, view{})
	network := NetworkName(d.opts.Env, stack)
	// Probe every container at once: a hanging one costs its response
	// timeout, once, not once per container before it.
	var wg sync.WaitGroup
	st.Services = make([]ServiceStatus, len(recs))
	containers := make([][]Container, len(recs))
	for i, rec := range recs {
		cs := serviceContainers(snaps, rec.Service)
		containers[i] = cs
		ss := &st.Services[i]
		*ss = ServiceStatus{Name: rec.Service, State: rec.State, Failed: rec.Failed, Scale: scaleOf(rec.Spec),
			Version: rec.Version, Image: rec.Spec.Image, OldVersion: rec.OldVersion, Containers: make([]ContainerStatus, len(cs))}
		for j, c := range cs {
			spec := rec.Spec
			if c.Deployment() == rec.OldDeployment && rec.Old != nil {
				spec = *rec.Old
			}
			ss.Containers[j] = ContainerStatus{Host: c.Host, Name: c.Name, ID: c.ID, Deployment: c.Deployment(),
				Version: c.Labels[LabelVersion], State: c.State, Ports: c.Ports, StartedAt: c.StartedAt}
			wg.Add(1)
			go func() {
				defer wg.Done()
				ss.Containers[j].Health = checkOnce(ctx, d.hosts[c.Host], c, spec, network)
			}()
		}
	}
	wg.Wait()
	for i, rec := range recs {
		ss := &st.Services[i]
		for j, c := range containers[i] {
			if c.Deployment() != rec.Deployment {
				continue
			}
			ss.ImageID = c.ImageID
			if c.Running {
				ss.Running++
			}
			if h := ss.Containers[j].Health; h == "healthy" || h == "running" {
				ss.Healthy++
			}
		}
	}
	lbStatus(&st, recs) // discovery: LB rules and their healthy backends
	st.Hosts = make([]HostStatus, len(snaps))
	for i, s := range snaps {
		st.Hosts[i].Name = s.Name
		if s.Err != nil {
			st.Hosts[i].Err = s.Err.Error()
		}
	}
	return st, nil
}

// AddUsage samples the resource use of st's running containers (one docker
// stats each, about a second on dockerd, in parallel) into st.Hosts. It is
// apart from Status, which the dashboard, the pages and the hold checks
// call without needing it.
func (d *Deployer) AddUsage(ctx context.Context, st *StackStatus) {
	hosts := map[string]*HostStatus{}
	for i := range st.Hosts {
		if h := &st.Hosts[i]; h.Err == "" && d.hosts[h.Name] != nil {
			hosts[h.Name] = h
		}
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	for _, ss := range st.Services {
		for _, c := range ss.Containers {
			h := hosts[c.Host]
			if h == nil || c.State != "running" {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				u, err := d.hosts[c.Host].Engine.Stats(ctx, c.ID)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					h.Err = err.Error()
					return
				}
				h.Usage.add(u)
			}()
		}
	}
	wg.Wait()
}

// LogLine is one line of a container's output.
type LogLine struct {
	Host, Container string
	Stream          string // stdout or stderr
	Time            time.Time
	Text            string
}

// LogOptions select logs: Tail lines (0: all), Follow to keep streaming.
type LogOptions struct {
	Tail   int
	Follow bool
}

// Logs streams the output of one container (container set) or of every
// container of service. The channel is closed when all streams end or ctx
// is done; a stream error arrives as a line with Stream "error".
func (d *Deployer) Logs(ctx context.Context, stack, service, container string, o LogOptions) (<-chan LogLine, error) {
	snaps, err := d.snapshot(ctx, stack)
	if err != nil {
		return nil, err
	}
	var cs []Container
	for _, c := range serviceContainers(snaps, service) {
		if container == "" || c.Name == container || strings.HasPrefix(c.ID, container) {
			cs = append(cs, c)
		}
	}
	if len(cs) == 0 {
		return nil, fmt.Errorf("logs %s/%s %s: %w", stack, service, container, ErrNoSuchContainer)
	}
	out := make(chan LogLine)
	var wg sync.WaitGroup
	for _, c := range cs {
		rc, err := d.hosts[c.Host].Engine.Logs(ctx, c.ID, o.Tail, o.Follow)
		if err != nil {
			return nil, err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer rc.Close()
			streamLogs(ctx, c, rc, out)
		}()
	}
	go func() {
		wg.Wait()
		close(out)
	}()
	return out, nil
}

// streamLogs demultiplexes Docker's stdcopy framing into lines.
func streamLogs(ctx context.Context, c Container, rc io.Reader, out chan<- LogLine) {
	stdoutR, stdoutW := io.Pipe()
	stderrR, stderrW := io.Pipe()
	go func() {
		_, err := stdcopy.StdCopy(stdoutW, stderrW, rc)
		stdoutW.CloseWithError(err)
		stderrW.CloseWithError(err)
	}()
	var wg sync.WaitGroup
	for _, p := range []struct {
		name string
		r    *io.PipeReader
	}{{"stdout", stdoutR}, {"stderr", stderrR}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer p.r.Close()
			sc := bufio.NewScanner(p.r)
			sc.Buffer(make([]byte, 64*1024), 1024*1024)
			for sc.Scan() {
				line := LogLine{Host: c.Host, Container: c.Name, Stream: p.name, Text: sc.Text()}
				if ts, rest, ok := strings.Cut(line.Text, " "); ok {
					if t, err := time.Parse(time.RFC3339Nano, ts); err == nil {
						line.Time, line.Text = t, rest
					}
				}
				select {
				case out <- line:
				case <-ctx.Done():
					return
				}
			}
			if err := sc.Err(); err != nil && ctx.Err() == nil {
				select {
				case out <- LogLine{Host: c.Host, Container: c.Name, Stream: "error", Text: err.Error()}:
				case <-ctx.Done():
				}
			}
		}()
	}
	wg.Wait()
}
