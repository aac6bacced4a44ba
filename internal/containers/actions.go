package containers

import (
	"context"
	"fmt"
	"sort"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
)

// Actions people may take on a container.
const (
	ActionStart   = "start"
	ActionStop    = "stop"
	ActionRestart = "restart"
	ActionRemove  = "remove"
)

// ParseAction validates an action name.
func ParseAction(s string) (string, error) {
	switch s {
	case ActionStart, ActionStop, ActionRestart, ActionRemove:
		return s, nil
	}
	return "", fmt.Errorf("action %q: %w", s, ErrBadAction)
}

// ActOptions qualify an action.
type ActOptions struct {
	// ForceStandalone allows removing a container dockmaster did not
	// create. Start, stop and restart of standalone containers need no
	// flag: they lose nothing.
	ForceStandalone bool
	// StopTimeout is the grace before a kill (Docker's default when 0).
	StopTimeout time.Duration
}

// ActResult says what happened, and whether the reconciler ran because
// the action changed what a managed service should be running.
type ActResult struct {
	Container  Container `json:"container"`
	Action     string    `json:"action"`
	Removed    bool      `json:"removed,omitempty"`
	Reconciled bool      `json:"reconciled"`
	// Note explains the reconcile (or why none ran) to people.
	Note           string `json:"note,omitempty"`
	ReconcileError string `json:"reconcile_error,omitempty"`
}

// Act runs action on c. A stop or remove of a managed container is
// followed by one reconciler pass of c's environment (the deployer brings
// the service back to its desired scale); the result says so.
func (s *Service) Act(ctx context.Context, c Container, action string, o ActOptions) (ActResult, error) {
	if _, err := ParseAction(action); err != nil {
		return ActResult{}, err
	}
	if action == ActionRemove && !c.Managed && !o.ForceStandalone {
		return ActResult{}, fmt.Errorf("remove %s: %w", c.Ref(), ErrStandalone)
	}
	w, err := s.client(c)
	if err != nil {
		return ActResult{}, fmt.Errorf("%s %s: %w", action, c.Ref(), err)
	}
	var stop container.StopOptions
	if o.StopTimeout > 0 {
		secs := int(o.StopTimeout.Seconds())
		stop.Timeout = &secs
	}
	// Stopping may take the grace period plus the kill.
	cctx, cancel := context.WithTimeout(ctx, s.o.Timeout+o.StopTimeout+15*time.Second)
	defer cancel()
	switch action {
	case ActionStart:
		err = w.cli.ContainerStart(cctx, c.ID, container.StartOptions{})
	case ActionStop:
		err = w.cli.ContainerStop(cctx, c.ID, stop)
	case ActionRestart:
		err = w.cli.ContainerRestart(cctx, c.ID, stop)
	case ActionRemove:
		err = w.cli.ContainerRemove(cctx, c.ID, container.RemoveOptions{Force: true})
	}
	if err != nil {
		return ActResult{}, fmt.Errorf("%s %s: %w", action, c.Ref(), wrapDocker(err))
	}
	res := ActResult{Container: c, Action: action, Removed: action == ActionRemove}
	if rerr := s.refreshOne(ctx, w, c.ID, res.Removed); rerr == nil && !res.Removed {
		if nc, ok := w.get(c.ID); ok {
			res.Container = nc
		}
	}
	if c.Managed && (action == ActionStop || action == ActionRemove) {
		if s.o.Reconcile == nil {
			res.Note = "managed container: no reconciler is configured, the service stays short of its scale"
			return res, nil
		}
		if rerr := s.o.Reconcile(ctx, c.Env); rerr != nil {
			res.ReconcileError = rerr.Error()
			res.Note = "managed container: the reconciler ran and failed; the service may be short of its scale"
			return res, nil
		}
		res.Reconciled = true
		res.Note = fmt.Sprintf("managed container of %s/%s: the reconciler restored the service to its desired state", c.Stack, c.Service)
		if nc, ok := w.get(c.ID); ok && !res.Removed {
			res.Container = nc
		}
	}
	return res, nil
}

func (w *hostWatch) get(id string) (Container, bool) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	c, ok := w.byID[id]
	return c, ok
}

// Inspect returns c's details, read from its host now. withEnv false
// hides the environment variables (callers without view-secrets).
func (s *Service) Inspect(ctx context.Context, c Container, withEnv bool) (Detail, error) {
	w, err := s.client(c)
	if err != nil {
		return Detail{}, err
	}
	cctx, cancel := context.WithTimeout(ctx, s.o.Timeout)
	defer cancel()
	ins, err := w.cli.ContainerInspect(cctx, c.ID)
	if err != nil {
		return Detail{}, fmt.Errorf("inspect %s: %w", c.Ref(), wrapDocker(err))
	}
	d := Detail{Container: c, ImageDigests: []string{}, Entrypoint: []string{}, Cmd: []string{}, Env: []string{},
		Mounts: []Mount{}, NetworkList: []Network{}, PortBindings: []Port{}}
	if img, err := w.cli.ImageInspect(cctx, ins.Image); err == nil {
		d.ImageDigests = append(d.ImageDigests, img.RepoDigests...)
	}
	d.ImageID = ins.Image
	if ins.Config != nil {
		d.Image = ins.Config.Image
		d.Entrypoint = append(d.Entrypoint, ins.Config.Entrypoint...)
		d.Cmd = append(d.Cmd, ins.Config.Cmd...)
		d.Tty, d.User, d.WorkingDir = ins.Config.Tty, ins.Config.User, ins.Config.WorkingDir
		if withEnv {
			d.Env = append(d.Env, ins.Config.Env...)
		} else {
			d.Env, d.EnvHidden = nil, true
		}
		d.Labels = ins.Config.Labels
	}
	if ins.State != nil {
		d.State, d.ExitCode, d.OOMKilled, d.Error = string(ins.State.Status), ins.State.ExitCode, ins.State.OOMKilled, ins.State.Error
		d.StartedAt, d.FinishedAt = parseDockerTime(ins.State.StartedAt), parseDockerTime(ins.State.FinishedAt)
		if ins.State.Health != nil {
			d.Health = string(ins.State.Health.Status)
		}
	}
	d.RestartCount = ins.RestartCount
	if ins.HostConfig != nil {
		rp := string(ins.HostConfig.RestartPolicy.Name)
		if rp == "" {
			rp = "no"
		}
		if ins.HostConfig.RestartPolicy.MaximumRetryCount > 0 {
			rp += fmt.Sprintf(":%d", ins.HostConfig.RestartPolicy.MaximumRetryCount)
		}
		d.RestartPolicy = rp
		d.Privileged = ins.HostConfig.Privileged
		for port, bs := range ins.HostConfig.PortBindings {
			for _, b := range bs {
				pub := 0
				fmt.Sscan(b.HostPort, &pub)
				d.PortBindings = append(d.PortBindings, Port{IP: b.HostIP, PrivatePort: uint16(port.Int()), PublicPort: uint16(pub), Type: port.Proto()})
			}
		}
		sort.Slice(d.PortBindings, func(i, j int) bool { return d.PortBindings[i].PrivatePort < d.PortBindings[j].PrivatePort })
	}
	for _, m := range ins.Mounts {
		d.Mounts = append(d.Mounts, Mount{Type: string(m.Type), Source: m.Source, Destination: m.Destination, Mode: m.Mode, RW: m.RW})
	}
	if ins.NetworkSettings != nil {
		d.NetworkList = networksOf(ins.NetworkSettings.Networks)
	}
	if st := s.ContainerStats(c); st.Latest != nil {
		d.Latest = st.Latest
	}
	return d, nil
}

func networksOf(m map[string]*network.EndpointSettings) []Network {
	out := []Network{}
	for name, n := range m {
		if n == nil {
			continue
		}
		out = append(out, Network{Name: name, IPAddress: n.IPAddress, Aliases: n.Aliases})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// wrapDocker maps Docker's not-found to ErrNotFound, keeping the text.
func wrapDocker(err error) error {
	if err == nil {
		return nil
	}
	if cerrdefs.IsNotFound(err) {
		return fmt.Errorf("%w: %v", ErrNotFound, err)
	}
	return err
}
