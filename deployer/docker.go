package deployer

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/registry"
	"github.com/docker/docker/client"
	"github.com/docker/go-connections/nat"
)

// HostConfig says how to reach one Docker host of an environment.
type HostConfig struct {
	Name     string
	Endpoint string // unix:///var/run/docker.sock or tcp://host:2376
	// TLS holds the client certificate and CA for a tcp endpoint; nil for
	// plain unix sockets.
	TLS *tls.Config
	// Timeout bounds each short API call (default 30s). Pulls get
	// PullTimeout (default 10m); followed logs are bounded by ctx alone.
	Timeout     time.Duration
	PullTimeout time.Duration
}

// DockerEngine is the Engine of one host, on the Docker Engine API.
type DockerEngine struct {
	host        string
	cli         *client.Client
	timeout     time.Duration
	pullTimeout time.Duration
}

var _ Engine = (*DockerEngine)(nil)

// NewDockerEngine makes a client for h. It does not contact the daemon.
func NewDockerEngine(h HostConfig) (*DockerEngine, error) {
	opts := []client.Opt{client.WithHost(h.Endpoint), client.WithAPIVersionNegotiation()}
	if h.TLS != nil {
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: h.TLS}}
		opts = []client.Opt{client.WithHTTPClient(hc), client.WithHost(h.Endpoint), client.WithScheme("https"), client.WithAPIVersionNegotiation()}
	}
	cli, err := client.NewClientWithOpts(opts...)
	if err != nil {
		return nil, fmt.Errorf("host %s: docker client for %s: %w", h.Name, h.Endpoint, err)
	}
	e := &DockerEngine{host: h.Name, cli: cli, timeout: h.Timeout, pullTimeout: h.PullTimeout}
	if e.timeout <= 0 {
		e.timeout = 30 * time.Second
	}
	if e.pullTimeout <= 0 {
		e.pullTimeout = 10 * time.Minute
	}
	return e, nil
}

// Close releases the client's connections.
func (e *DockerEngine) Close() error { return e.cli.Close() }

func (e *DockerEngine) short(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, e.timeout)
}

func (e *DockerEngine) wrap(op, what string, err error) error {
	if cerrdefs.IsNotFound(err) {
		return fmt.Errorf("host %s: %s %s: %w: %w", e.host, op, what, ErrNoSuchContainer, err)
	}
	if cerrdefs.IsConflict(err) && op == "create" {
		return fmt.Errorf("host %s: %s %s: %w: %w", e.host, op, what, ErrNameInUse, err)
	}
	return fmt.Errorf("host %s: %s %s: %w", e.host, op, what, err)
}

// List implements Engine.
func (e *DockerEngine) List(ctx context.Context, labels map[string]string) ([]Container, error) {
	ctx, cancel := e.short(ctx)
	defer cancel()
	f := filters.NewArgs()
	for k, v := range labels {
		f.Add("label", k+"="+v)
	}
	list, err := e.cli.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
	if err != nil {
		return nil, e.wrap("list", "containers", err)
	}
	// Inspect for exit code, OOM, start time and resources, which the
	// summary lacks; concurrently, since a listing is on the path of every
	// operation and a host may hold many containers.
	got := make([]Container, len(list))
	errs := make([]error, len(list))
	slots := make(chan struct{}, listParallelism)
	var wg sync.WaitGroup
	for i, s := range list {
		wg.Add(1)
		slots <- struct{}{}
		go func() {
			defer func() { <-slots; wg.Done() }()
			got[i], errs[i] = e.inspect(ctx, s.ID)
		}()
	}
	wg.Wait()
	out := make([]Container, 0, len(list))
	for i, err := range errs {
		if err != nil {
			if cerrdefs.IsNotFound(err) {
				continue // removed between list and inspect
			}
			return nil, e.wrap("inspect", list[i].ID, err)
		}
		out = append(out, got[i])
	}
	return out, nil
}

// listParallelism bounds the inspects List runs at once.
const listParallelism = 8

// Inspect implements Engine.
func (e *DockerEngine) Inspect(ctx context.Context, idOrName string) (Container, error) {
	ctx, cancel := e.short(ctx)
	defer cancel()
	c, err := e.inspect(ctx, idOrName)
	if err != nil {
		return Container{}, e.wrap("inspect", idOrName, err)
	}
	return c, nil
}

func (e *DockerEngine) inspect(ctx context.Context, id string) (Container, error) {
	in, err := e.cli.ContainerInspect(ctx, id)
	if err != nil {
		return Container{}, err
	}
	c := Container{
		ID:      in.ID,
		Name:    strings.TrimPrefix(in.Name, "/"),
		ImageID: in.Image,
		IPs:     map[string]string{},
	}
	if in.Config != nil {
		c.Image = in.Config.Image
		c.Labels = in.Config.Labels
	}
	if in.State != nil {
		c.State = string(in.State.Status)
		c.Running = in.State.Running
		c.ExitCode = in.State.ExitCode
		c.OOMKilled = in.State.OOMKilled
		c.StartedAt, _ = time.Parse(time.RFC3339Nano, in.State.StartedAt)
	}
	c.Created, _ = time.Parse(time.RFC3339Nano, in.Created)
	if in.HostConfig != nil {
		r := in.HostConfig.Resources
		c.Resources = Resources{NanoCPUs: r.NanoCPUs, CPUShares: r.CPUShares, MemoryLimit: r.Memory, MemoryReservation: r.MemoryReservation}
	}
	if in.NetworkSettings != nil {
		for name, ep := range in.NetworkSettings.Networks {
			if ep != nil && ep.IPAddress != "" {
				c.IPs[name] = ep.IPAddress
			}
		}
		for p, binds := range in.NetworkSettings.Ports {
			for _, b := range binds {
				var hp uint16
				fmt.Sscan(b.HostPort, &hp)
				c.Ports = append(c.Ports, PortSpec{HostIP: b.HostIP, HostPort: hp, ContainerPort: uint16(p.Int()), Protocol: p.Proto()})
			}
		}
	}
	return c, nil
}

// EnsureImage implements Engine.
func (e *DockerEngine) EnsureImage(ctx context.Context, ref string, always bool, auth *registry.AuthConfig) error {
	if !always {
		ictx, cancel := e.short(ctx)
		_, err := e.cli.ImageInspect(ictx, ref)
		cancel()
		if err == nil {
			return nil
		}
		if !cerrdefs.IsNotFound(err) {
			return fmt.Errorf("host %s: inspect image %s: %w", e.host, ref, err)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, e.pullTimeout)
	defer cancel()
	var opts image.PullOptions
	if auth != nil {
		enc, err := registry.EncodeAuthConfig(*auth)
		if err != nil {
			return fmt.Errorf("host %s: pull %s: encode auth: %w", e.host, ref, err)
		}
		opts.RegistryAuth = enc
	}
	rc, err := e.cli.ImagePull(ctx, ref, opts)
	if err != nil {
		return fmt.Errorf("host %s: pull %s: %w", e.host, ref, err)
	}
	defer rc.Close()
	// The pull only completes when the progress stream is drained; an error
	// mid-pull arrives as a message in it.
	dec := json.NewDecoder(rc)
	for {
		var m struct {
			Error string `json:"error"`
		}
		if err := dec.Decode(&m); err == io.EOF {
			return nil
		} else if err != nil {
			return fmt.Errorf("host %s: pull %s: %w", e.host, ref, err)
		}
		if m.Error != "" {
			return fmt.Errorf("host %s: pull %s: %s", e.host, ref, m.Error)
		}
	}
}

// EnsureNetwork implements Engine.
func (e *DockerEngine) EnsureNetwork(ctx context.Context, name string, labels map[string]string) error {
	ctx, cancel := e.short(ctx)
	defer cancel()
	_, err := e.cli.NetworkInspect(ctx, name, network.InspectOptions{})
	if err == nil {
		return nil
	}
	if !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("host %s: inspect network %s: %w", e.host, name, err)
	}
	_, err = e.cli.NetworkCreate(ctx, name, network.CreateOptions{Driver: "bridge", Labels: labels})
	if err != nil && !cerrdefs.IsConflict(err) {
		return fmt.Errorf("host %s: create network %s: %w", e.host, name, err)
	}
	return nil
}

// Create implements Engine.
func (e *DockerEngine) Create(ctx context.Context, req CreateRequest) (string, error) {
	ctx, cancel := e.short(ctx)
	defer cancel()
	s := req.Spec
	labels := make(map[string]string, len(s.Labels)+len(req.Labels))
	for k, v := range s.Labels {
		labels[k] = v
	}
	for k, v := range req.Labels {
		labels[k] = v
	}
	cfg := &container.Config{
		Image:        s.Image,
		Cmd:          s.Command,
		Entrypoint:   s.Entrypoint,
		Labels:       labels,
		WorkingDir:   s.WorkingDir,
		User:         s.User,
		ExposedPorts: nat.PortSet{},
		Hostname:     req.Name,
	}
	for k, v := range s.Environment {
		cfg.Env = append(cfg.Env, k+"="+v)
	}
	hc := &container.HostConfig{
		Binds:         s.Volumes,
		DNS:           s.DNS,
		DNSSearch:     s.DNSSearch,
		ExtraHosts:    s.ExtraHosts,
		PortBindings:  nat.PortMap{},
		RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyMode(s.Restart)},
		Resources: container.Resources{
			NanoCPUs:          s.Resources.NanoCPUs,
			CPUShares:         s.Resources.CPUShares,
			Memory:            s.Resources.MemoryLimit,
			MemoryReservation: s.Resources.MemoryReservation,
		},
	}
	for _, p := range s.Ports {
		proto := p.Protocol
		if proto == "" {
			proto = "tcp"
		}
		port, err := nat.NewPort(proto, fmt.Sprint(p.ContainerPort))
		if err != nil {
			return "", fmt.Errorf("host %s: create %s: port %d/%s: %w", e.host, req.Name, p.ContainerPort, proto, err)
		}
		cfg.ExposedPorts[port] = struct{}{}
		if p.HostPort != 0 {
			hc.PortBindings[port] = append(hc.PortBindings[port], nat.PortBinding{HostIP: p.HostIP, HostPort: fmt.Sprint(p.HostPort)})
		}
	}
	var nc *network.NetworkingConfig
	switch {
	case s.NetworkMode != "":
		hc.NetworkMode = container.NetworkMode(s.NetworkMode)
	case req.Network != "":
		hc.NetworkMode = container.NetworkMode(req.Network)
		nc = &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{
			req.Network: {Aliases: []string{s.Name}},
		}}
	}
	resp, err := e.cli.ContainerCreate(ctx, cfg, hc, nc, nil, req.Name)
	if err != nil {
		return "", e.wrap("create", req.Name, err)
	}
	return resp.ID, nil
}

// Start implements Engine.
func (e *DockerEngine) Start(ctx context.Context, id string) error {
	ctx, cancel := e.short(ctx)
	defer cancel()
	if err := e.cli.ContainerStart(ctx, id, container.StartOptions{}); err != nil {
		return e.wrap("start", id, err)
	}
	return nil
}

// Stop implements Engine.
func (e *DockerEngine) Stop(ctx context.Context, id string, grace time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, e.timeout+grace)
	defer cancel()
	secs := int(grace / time.Second)
	if err := e.cli.ContainerStop(ctx, id, container.StopOptions{Timeout: &secs}); err != nil {
		return e.wrap("stop", id, err)
	}
	return nil
}

// Remove implements Engine.
func (e *DockerEngine) Remove(ctx context.Context, id string) error {
	ctx, cancel := e.short(ctx)
	defer cancel()
	if err := e.cli.ContainerRemove(ctx, id, container.RemoveOptions{Force: true, RemoveVolumes: true}); err != nil {
		return e.wrap("remove", id, err)
	}
	return nil
}

// Stats implements Engine.
func (e *DockerEngine) Stats(ctx context.Context, id string) (Usage, error) {
	ctx, cancel := e.short(ctx)
	defer cancel()
	r, err := e.cli.ContainerStats(ctx, id, false)
	if err != nil {
		return Usage{}, e.wrap("stats", id, err)
	}
	defer r.Body.Close()
	var s container.StatsResponse
	if err := json.NewDecoder(r.Body).Decode(&s); err != nil {
		return Usage{}, e.wrap("stats", id, err)
	}
	var u Usage
	cpuDelta := float64(s.CPUStats.CPUUsage.TotalUsage) - float64(s.PreCPUStats.CPUUsage.TotalUsage)
	sysDelta := float64(s.CPUStats.SystemUsage) - float64(s.PreCPUStats.SystemUsage)
	if cpuDelta > 0 && sysDelta > 0 {
		cpus := float64(max(s.CPUStats.OnlineCPUs, 1))
		u.CPUPercent = cpuDelta / sysDelta * cpus * 100
	}
	u.MemUsage, u.MemLimit = s.MemoryStats.Usage, s.MemoryStats.Limit
	for _, b := range s.BlkioStats.IoServiceBytesRecursive {
		switch strings.ToLower(b.Op) {
		case "read":
			u.DiskRead += b.Value
		case "write":
			u.DiskWrite += b.Value
		}
	}
	for _, n := range s.Networks {
		u.NetRx += n.RxBytes
		u.NetTx += n.TxBytes
	}
	return u, nil
}

// Info implements Engine.
func (e *DockerEngine) Info(ctx context.Context) (HostInfo, error) {
	ctx, cancel := e.short(ctx)
	defer cancel()
	in, err := e.cli.Info(ctx)
	if err != nil {
		return HostInfo{}, fmt.Errorf("host %s: info: %w", e.host, err)
	}
	return HostInfo{NCPU: in.NCPU, MemTotal: in.MemTotal}, nil
}

// Logs implements Engine.
func (e *DockerEngine) Logs(ctx context.Context, id string, tail int, follow bool) (io.ReadCloser, error) {
	t := "all"
	if tail > 0 {
		t = fmt.Sprint(tail)
	}
	rc, err := e.cli.ContainerLogs(ctx, id, container.LogsOptions{
		ShowStdout: true, ShowStderr: true, Timestamps: true, Follow: follow, Tail: t,
	})
	if err != nil {
		return nil, e.wrap("logs", id, err)
	}
	return rc, nil
}
