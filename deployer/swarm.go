package deployer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/registry"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"
	"github.com/docker/docker/errdefs"

	"github.com/dockmaster/dockmaster/deployer/scheduler"
)

// Target is what the API, the deploys manager and the pages call on an
// environment, whatever runs it: *Deployer (standalone hosts) or *Swarm (a
// Docker Swarm cluster). Methods are safe for concurrent use; the
// operations share the semantics documented on *Deployer (held upgrades,
// ErrUpgradeHeld, ErrBusy, ErrConfigChanged, resumable Finish/Rollback).
type Target interface {
	Up(ctx context.Context, spec StackSpec, o DeployOptions) error
	Upgrade(ctx context.Context, spec StackSpec, o DeployOptions) error
	Redeploy(ctx context.Context, stack string, n int, o DeployOptions) error
	Finish(ctx context.Context, stack string, progress func(Event)) error
	Rollback(ctx context.Context, stack string, progress func(Event)) error
	Status(ctx context.Context, stack string) (StackStatus, error)
	Logs(ctx context.Context, stack, service, container string, o LogOptions) (<-chan LogLine, error)
	Revisions(ctx context.Context, stack string) ([]Revision, error)
	Plan(ctx context.Context, spec StackSpec) (StackPlan, error)
}

var (
	_ Target = (*Deployer)(nil)
	_ Target = (*Swarm)(nil)
)

// ErrSwarmUpdate: Swarm paused or rolled back an update (a task failed or
// never became healthy within the monitor period).
var ErrSwarmUpdate = errors.New("swarm update failed")

// Labels and options specific to Swarm services.
const (
	// LabelSwarmHash is the hash of the Swarm spec dockmaster last wrote: a
	// service whose hash is unchanged is not updated again.
	LabelSwarmHash = labelPrefix + "swarm-hash"
	// LabelPublishMode is the per-service option choosing how ports are
	// published: "ingress" (default: every node answers, Swarm's routing
	// mesh balances) or "host" (only nodes running a task answer).
	LabelPublishMode = labelPrefix + "swarm.publish"
)

// SwarmAPI is the part of the Docker client the Swarm target uses; a
// *client.Client talking to a manager satisfies it.
type SwarmAPI interface {
	ServiceCreate(ctx context.Context, service swarm.ServiceSpec, options swarm.ServiceCreateOptions) (swarm.ServiceCreateResponse, error)
	ServiceInspectWithRaw(ctx context.Context, serviceID string, options swarm.ServiceInspectOptions) (swarm.Service, []byte, error)
	ServiceUpdate(ctx context.Context, serviceID string, version swarm.Version, service swarm.ServiceSpec, options swarm.ServiceUpdateOptions) (swarm.ServiceUpdateResponse, error)
	ServiceLogs(ctx context.Context, serviceID string, options container.LogsOptions) (io.ReadCloser, error)
	TaskLogs(ctx context.Context, taskID string, options container.LogsOptions) (io.ReadCloser, error)
	TaskList(ctx context.Context, options swarm.TaskListOptions) ([]swarm.Task, error)
	NodeList(ctx context.Context, options swarm.NodeListOptions) ([]swarm.Node, error)
	NetworkList(ctx context.Context, options network.ListOptions) ([]network.Summary, error)
	NetworkCreate(ctx context.Context, name string, options network.CreateOptions) (network.CreateResponse, error)
	Close() error
}

// SwarmOptions configure a Swarm target for one environment.
type SwarmOptions struct {
	Env string
	// Manager is the manager's endpoint (unix:///… or tcp://…); ignored
	// when API is set.
	Manager string
	API     SwarmAPI
	Store   Store
	// Auth returns credentials for image, sent to Swarm so nodes can pull.
	Auth func(image string) (registry.AuthConfig, bool)
	// NewID makes deployment ids (default 12 random hex digits).
	NewID func() string
	// Poll is the interval between looks at a rollout (default 500ms).
	Poll time.Duration
	// Monitor is how long Swarm watches each updated task for failure
	// (UpdateConfig.Monitor; default 2s).
	Monitor time.Duration
	// PendingTimeout is how long a task may stay pending with a scheduling
	// error (no node fits) before the operation fails with Swarm's reason
	// (default 30s).
	PendingTimeout time.Duration
	// Timeout bounds each wait for a rollout (default 10m).
	Timeout time.Duration
}

// Swarm deploys stacks as Swarm services through one manager. Each
// service is `<stack>_<service>` with the owner labels; the stack's
// services share the attachable overlay network NetworkName(env, stack),
// where each is reachable by its service name. Held upgrades work as on
// standalone hosts: Swarm rolls the new spec out (old tasks are shut down,
// their containers kept in the task history), dockmaster records the
// service as upgraded, Finish confirms, Rollback asks Swarm for its
// previous spec and checks the old version runs again.
type Swarm struct {
	o     SwarmOptions
	api   SwarmAPI
	owned bool // api made here, closed by Close
	mu    sync.Mutex
	locks map[string]*sync.Mutex
}

// NewSwarm checks o and returns a Swarm target.
func NewSwarm(o SwarmOptions) (*Swarm, error) {
	if o.Env == "" {
		return nil, errors.New("deployer: SwarmOptions.Env is empty")
	}
	if o.Store == nil {
		return nil, errors.New("deployer: SwarmOptions.Store is nil")
	}
	if o.NewID == nil {
		o.NewID = randomID
	}
	if o.Poll <= 0 {
		o.Poll = 500 * time.Millisecond
	}
	if o.Monitor <= 0 {
		o.Monitor = 2 * time.Second
	}
	if o.PendingTimeout <= 0 {
		o.PendingTimeout = 30 * time.Second
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Minute
	}
	s := &Swarm{o: o, api: o.API, locks: map[string]*sync.Mutex{}}
	if s.api == nil {
		if o.Manager == "" {
			return nil, fmt.Errorf("deployer: environment %s: swarm manager endpoint is empty", o.Env)
		}
		cli, err := client.NewClientWithOpts(client.WithHost(o.Manager), client.WithAPIVersionNegotiation())
		if err != nil {
			return nil, fmt.Errorf("environment %s: swarm manager %s: %w", o.Env, o.Manager, err)
		}
		s.api, s.owned = cli, true
	}
	return s, nil
}

// Close releases the manager's client when NewSwarm made it.
func (s *Swarm) Close() error {
	if s.owned {
		return s.api.Close()
	}
	return nil
}

func (s *Swarm) lock(stack string) func() {
	s.mu.Lock()
	l := s.locks[stack]
	if l == nil {
		l = &sync.Mutex{}
		s.locks[stack] = l
	}
	s.mu.Unlock()
	l.Lock()
	return l.Unlock
}

// SwarmServiceName is the Swarm service of a stack's service.
func SwarmServiceName(stack, service string) string { return stack + "_" + service }

// Revisions lists a stack's stored revisions, oldest first.
func (s *Swarm) Revisions(ctx context.Context, stack string) ([]Revision, error) {
	return s.o.Store.Revisions(ctx, s.o.Env, stack)
}

func (s *Swarm) addRevision(ctx context.Context, spec StackSpec, o DeployOptions) (int, error) {
	return s.o.Store.AddRevision(ctx, newRevision(s.o.Env, spec, o))
}

// SwarmSpec translates one service to a Swarm service spec. It returns
// what Swarm cannot enforce as warnings, and an error naming the label or
// rule that cannot be translated. failureAction is Swarm's action when an
// update fails (rollback or pause).
func SwarmSpec(env, stack string, svc ServiceSpec, deployment, version, failureAction string, monitor time.Duration) (swarm.ServiceSpec, []string, error) {
	var warns []string
	warn := func(format string, args ...any) {
		warns = append(warns, fmt.Sprintf("%s/%s: ", stack, svc.Name)+fmt.Sprintf(format, args...))
	}
	owner := ownerLabels(env, stack, svc.Name)
	owner[LabelVersion] = version
	owner[LabelDeployment] = deployment
	owner[LabelConfigHash] = ConfigHash(svc)
	clabels := map[string]string{}
	for k, v := range svc.Labels {
		clabels[k] = v
	}
	for k, v := range owner {
		clabels[k] = v
	}
	env2 := make([]string, 0, len(svc.Environment))
	for k, v := range svc.Environment {
		env2 = append(env2, k+"="+v)
	}
	sort.Strings(env2)
	cs := &swarm.ContainerSpec{
		Image: svc.Image, Command: svc.Entrypoint, Args: svc.Command, Env: env2, Labels: clabels,
		Dir: svc.WorkingDir, User: svc.User,
	}
	for _, h := range svc.ExtraHosts { // compose "name:ip", Swarm "ip name"
		name, ip, ok := strings.Cut(h, ":")
		if !ok {
			return swarm.ServiceSpec{}, nil, fmt.Errorf("%s/%s: extra_hosts %q: want name:ip", stack, svc.Name, h)
		}
		cs.Hosts = append(cs.Hosts, ip+" "+name)
	}
	if len(svc.DNS)+len(svc.DNSSearch) > 0 {
		cs.DNSConfig = &swarm.DNSConfig{Nameservers: svc.DNS, Search: svc.DNSSearch}
	}
	for _, v := range svc.Volumes {
		m, err := swarmMount(v)
		if err != nil {
			return swarm.ServiceSpec{}, nil, fmt.Errorf("%s/%s: volumes %q: %w", stack, svc.Name, v, err)
		}
		cs.Mounts = append(cs.Mounts, m)
	}
	if hc := svc.HealthCheck; hc != nil && hc.Port != 0 {
		cs.Healthcheck = swarmHealth(*hc)
	}
	if svc.NetworkMode != "" && svc.NetworkMode != "default" && svc.NetworkMode != "bridge" {
		warn("network_mode %s is not used on Swarm: the service joins the stack's overlay network", svc.NetworkMode)
	}
	if svc.LB != nil {
		warn("lb_config is not run on Swarm: publish the service's ports (ingress balances between tasks)")
	}
	if svc.Resources.CPUShares != 0 {
		warn("cpu_shares is not enforced on Swarm (use cpus)")
	}
	task := swarm.TaskSpec{
		ContainerSpec: cs,
		Networks:      []swarm.NetworkAttachmentConfig{{Target: NetworkName(env, stack), Aliases: []string{svc.Name}}},
		RestartPolicy: &swarm.RestartPolicy{Condition: swarm.RestartPolicyConditionAny},
	}
	switch svc.Restart {
	case "no":
		task.RestartPolicy.Condition = swarm.RestartPolicyConditionNone
	case "on-failure":
		task.RestartPolicy.Condition = swarm.RestartPolicyConditionOnFailure
	}
	if r := svc.Resources; r.NanoCPUs != 0 || r.MemoryLimit != 0 || r.MemoryReservation != 0 {
		task.Resources = &swarm.ResourceRequirements{}
		if r.NanoCPUs != 0 || r.MemoryLimit != 0 {
			task.Resources.Limits = &swarm.Limit{NanoCPUs: r.NanoCPUs, MemoryBytes: r.MemoryLimit}
		}
		if r.MemoryReservation != 0 {
			task.Resources.Reservations = &swarm.Resources{MemoryBytes: r.MemoryReservation}
		}
	}
	placement, global, pwarns, err := swarmPlacement(stack, svc)
	if err != nil {
		return swarm.ServiceSpec{}, nil, err
	}
	for _, w := range pwarns {
		warn("%s", w)
	}
	task.Placement = placement

	spec := swarm.ServiceSpec{
		Annotations:  swarm.Annotations{Name: SwarmServiceName(stack, svc.Name), Labels: owner},
		TaskTemplate: task,
	}
	if global {
		spec.Mode.Global = &swarm.GlobalService{}
	} else {
		n := uint64(scaleOf(svc))
		spec.Mode.Replicated = &swarm.ReplicatedService{Replicas: &n}
	}
	order := swarm.UpdateOrderStopFirst
	if svc.Upgrade.StartFirst {
		order = swarm.UpdateOrderStartFirst
	}
	spec.UpdateConfig = &swarm.UpdateConfig{Parallelism: uint64(max(svc.Upgrade.BatchSize, 1)), Delay: svc.Upgrade.Interval,
		FailureAction: failureAction, Monitor: monitor, Order: order}
	spec.RollbackConfig = &swarm.UpdateConfig{Parallelism: uint64(max(svc.Upgrade.BatchSize, 1)),
		FailureAction: swarm.UpdateFailureActionPause, Monitor: monitor, Order: order}

	mode := swarm.PortConfigPublishModeIngress
	switch m := svc.Labels[LabelPublishMode]; m {
	case "", "ingress":
	case "host":
		mode = swarm.PortConfigPublishModeHost
	default:
		return swarm.ServiceSpec{}, nil, fmt.Errorf("%s/%s: label %s: %q: want ingress or host", stack, svc.Name, LabelPublishMode, m)
	}
	for _, p := range svc.Ports {
		if p.HostPort == 0 {
			continue // reachable on the overlay network only
		}
		if p.HostIP != "" && p.HostIP != "0.0.0.0" {
			warn("port %s:%d: Swarm publishes on every address; the host IP is ignored", p.HostIP, p.HostPort)
		}
		proto := swarm.PortConfigProtocolTCP
		if p.Protocol == "udp" {
			proto = swarm.PortConfigProtocolUDP
		}
		if spec.EndpointSpec == nil {
			spec.EndpointSpec = &swarm.EndpointSpec{}
		}
		spec.EndpointSpec.Ports = append(spec.EndpointSpec.Ports, swarm.PortConfig{Protocol: proto,
			TargetPort: uint32(p.ContainerPort), PublishedPort: uint32(p.HostPort), PublishMode: mode})
	}
	b, err := json.Marshal(spec)
	if err != nil {
		return spec, nil, err
	}
	sum := sha256.Sum256(b)
	spec.Labels[LabelSwarmHash] = hex.EncodeToString(sum[:8])
	return spec, warns, nil
}

// swarmMount reads compose's "src:dst[:mode]" (or an anonymous "dst").
func swarmMount(v string) (mount.Mount, error) {
	parts := strings.Split(v, ":")
	var m mount.Mount
	switch len(parts) {
	case 1:
		m = mount.Mount{Type: mount.TypeVolume, Target: parts[0]}
	case 2, 3:
		m = mount.Mount{Type: mount.TypeVolume, Source: parts[0], Target: parts[1]}
		if strings.HasPrefix(parts[0], "/") || strings.HasPrefix(parts[0], ".") {
			m.Type = mount.TypeBind
		}
		if len(parts) == 3 {
			for _, o := range strings.Split(parts[2], ",") {
				if o == "ro" {
					m.ReadOnly = true
				}
			}
		}
	default:
		return m, errors.New("want src:dst[:mode]")
	}
	if !strings.HasPrefix(m.Target, "/") {
		return m, fmt.Errorf("target %q is not an absolute path", m.Target)
	}
	return m, nil
}

// swarmHealth is rancher-compose's health_check as a container
// HEALTHCHECK run inside the task (busybox wget or nc). Swarm reports a
// task running only once its check passes, so "running" means healthy.
func swarmHealth(hc HealthCheck) *container.HealthConfig {
	hc = healthDefaults(hc)
	port := strconv.Itoa(int(hc.Port))
	test := []string{"CMD", "nc", "-z", "127.0.0.1", port}
	if hc.RequestLine != "" {
		path := "/"
		if f := strings.Fields(hc.RequestLine); len(f) >= 2 {
			path = f[1]
		}
		u := url.URL{Scheme: "http", Host: "127.0.0.1:" + port, Path: path}
		// No -T: it crashes Debian's busybox wget; Timeout bounds the check.
		test = []string{"CMD", "wget", "-q", "-O", "-", u.String()}
	}
	return &container.HealthConfig{Test: test, Interval: hc.Interval, Timeout: hc.ResponseTimeout,
		Retries: hc.UnhealthyThreshold, StartPeriod: hc.InitializingTimeout, StartInterval: hc.Interval}
}

// swarmPlacement maps the scheduler rules: host labels become node label
// constraints (hard) or spread preferences (soft); anti-affinity with the
// service itself becomes MaxReplicas 1 per node. The rest is reported as
// not enforced.
func swarmPlacement(stack string, svc ServiceSpec) (*swarm.Placement, bool, []string, error) {
	rules, err := scheduler.ParseLabels(svc.Labels, stack, svc.Name)
	if err != nil {
		return nil, false, nil, fmt.Errorf("%s/%s: %w", stack, svc.Name, err)
	}
	if svc.Scheduling != nil {
		native, err := svc.Scheduling.Rules(stack, svc.Name)
		if err != nil {
			return nil, false, nil, fmt.Errorf("%s/%s: %w", stack, svc.Name, err)
		}
		rules = rules.Merge(native)
	}
	var warns []string
	p := &swarm.Placement{}
	for _, kv := range rules.Hard.HostLabel {
		p.Constraints = append(p.Constraints, "node.labels."+kv.Key+"=="+kv.Value)
	}
	for _, kv := range rules.Hard.HostLabelNe {
		p.Constraints = append(p.Constraints, "node.labels."+kv.Key+"!="+kv.Value)
	}
	self := stack + "/" + svc.Name
	for _, kv := range rules.Hard.ContainerLabelNe {
		if kv.Key == "io.rancher.stack_service.name" && kv.Value == self {
			p.MaxReplicas = 1 // one task per node, as Rancher's self anti-affinity
			continue
		}
		warns = append(warns, fmt.Sprintf("container_label_ne %s is not enforced on Swarm", kv))
	}
	for _, kv := range rules.Hard.ContainerLabel {
		warns = append(warns, fmt.Sprintf("container_label %s is not enforced on Swarm", kv))
	}
	for _, n := range append(append([]string{}, rules.Hard.Container...), rules.Hard.ContainerNe...) {
		warns = append(warns, fmt.Sprintf("container affinity %s is not enforced on Swarm", n))
	}
	seen := map[string]bool{}
	for _, kv := range rules.Soft.HostLabel {
		if !seen[kv.Key] {
			seen[kv.Key] = true
			p.Preferences = append(p.Preferences, swarm.PlacementPreference{Spread: &swarm.SpreadOver{SpreadDescriptor: "node.labels." + kv.Key}})
		}
		warns = append(warns, fmt.Sprintf("soft host_label %s: Swarm spreads over node.labels.%s, it does not prefer the value", kv, kv.Key))
	}
	soft := rules.Soft
	for _, kv := range append(append(append([]scheduler.KV{}, soft.HostLabelNe...), soft.ContainerLabel...), soft.ContainerLabelNe...) {
		warns = append(warns, fmt.Sprintf("soft rule %s is not enforced on Swarm", kv))
	}
	for _, n := range append(append([]string{}, soft.Container...), soft.ContainerNe...) {
		warns = append(warns, fmt.Sprintf("soft container affinity %s is not enforced on Swarm", n))
	}
	if svc.Scheduling != nil && svc.Scheduling.Strategy != "" && string(svc.Scheduling.Strategy) != "spread" {
		warns = append(warns, fmt.Sprintf("strategy %s is not available on Swarm (it spreads)", svc.Scheduling.Strategy))
	}
	global := svc.Global || rules.Global
	if len(p.Constraints) == 0 && len(p.Preferences) == 0 && p.MaxReplicas == 0 {
		p = nil
	}
	return p, global, warns, nil
}

// observed is a service as the manager sees it; svc is nil when absent.
type observed struct {
	svc *swarm.Service
}

func (s *Swarm) inspect(ctx context.Context, stack, service string) (observed, error) {
	name := SwarmServiceName(stack, service)
	svc, _, err := s.api.ServiceInspectWithRaw(ctx, name, swarm.ServiceInspectOptions{})
	if errdefs.IsNotFound(err) {
		return observed{}, nil
	}
	if err != nil {
		return observed{}, fmt.Errorf("swarm service %s: %w", name, err)
	}
	if !ownedBy(svc.Spec.Labels, s.o.Env, stack, service) {
		return observed{}, fmt.Errorf("swarm service %s: %w", name, ErrForeignContainer)
	}
	return observed{svc: &svc}, nil
}

func (s *Swarm) ensureNetwork(ctx context.Context, stack string) error {
	name := NetworkName(s.o.Env, stack)
	nets, err := s.api.NetworkList(ctx, network.ListOptions{Filters: filters.NewArgs(filters.Arg("name", name))})
	if err != nil {
		return fmt.Errorf("network %s: %w", name, err)
	}
	for _, n := range nets {
		if n.Name == name {
			return nil
		}
	}
	_, err = s.api.NetworkCreate(ctx, name, network.CreateOptions{Driver: "overlay", Attachable: true,
		Labels: ownerLabels(s.o.Env, stack, "")})
	if err != nil && !errdefs.IsConflict(err) {
		return fmt.Errorf("network %s: %w", name, err)
	}
	return nil
}

func (s *Swarm) auth(image string) (string, error) {
	if s.o.Auth == nil {
		return "", nil
	}
	a, ok := s.o.Auth(image)
	if !ok {
		return "", nil
	}
	return registry.EncodeAuthConfig(a)
}

// apply creates or updates the Swarm service of rec (its Spec, Deployment
// and Version). It reports whether anything was written.
func (s *Swarm) apply(ctx context.Context, rec ServiceRecord, failureAction string, o DeployOptions) (bool, error) {
	spec, warns, err := SwarmSpec(s.o.Env, rec.Stack, rec.Spec, rec.Deployment, rec.Version, failureAction, s.o.Monitor)
	if err != nil {
		return false, err
	}
	for _, w := range warns {
		o.emit(Event{Stack: rec.Stack, Service: rec.Service, Step: "warning", Message: w})
	}
	obs, err := s.inspect(ctx, rec.Stack, rec.Service)
	if err != nil {
		return false, err
	}
	enc, err := s.auth(rec.Spec.Image)
	if err != nil {
		return false, err
	}
	if obs.svc == nil {
		// QueryRegistry false: the image may exist only on the nodes.
		if _, err := s.api.ServiceCreate(ctx, spec, swarm.ServiceCreateOptions{EncodedRegistryAuth: enc}); err != nil {
			return false, fmt.Errorf("create swarm service %s: %w", spec.Name, err)
		}
		o.emit(Event{Stack: rec.Stack, Service: rec.Service, Step: "create", Message: spec.Name})
		return true, nil
	}
	if obs.svc.Spec.Labels[LabelSwarmHash] == spec.Labels[LabelSwarmHash] {
		return false, nil
	}
	if _, err := s.api.ServiceUpdate(ctx, obs.svc.ID, obs.svc.Version, spec, swarm.ServiceUpdateOptions{EncodedRegistryAuth: enc}); err != nil {
		return false, fmt.Errorf("update swarm service %s: %w", spec.Name, err)
	}
	o.emit(Event{Stack: rec.Stack, Service: rec.Service, Step: "update", Message: spec.Name})
	return true, nil
}

// wait polls until the service runs deployment only: every task that
// should run is running (Swarm starts a task with a health check as
// running only once it passed), at the desired count. It fails when Swarm
// reports the update paused or rolled back (ErrSwarmUpdate), when a task
// stays pending with a scheduling error past PendingTimeout (a
// *PlacementError with Swarm's reason), or after Timeout.
func (s *Swarm) wait(ctx context.Context, rec ServiceRecord, deployment string, rollback bool, o DeployOptions) error {
	ctx, cancel := context.WithTimeout(ctx, s.o.Timeout)
	defer cancel()
	name := SwarmServiceName(rec.Stack, rec.Service)
	var pendingSince time.Time
	lastRunning := -1
	for {
		obs, err := s.inspect(ctx, rec.Stack, rec.Service)
		if err != nil {
			return err
		}
		if obs.svc == nil {
			return fmt.Errorf("swarm service %s: %w", name, ErrNotFound)
		}
		svc := obs.svc
		if us := svc.UpdateStatus; us != nil {
			switch us.State {
			case swarm.UpdateStatePaused, swarm.UpdateStateRollbackPaused:
				return fmt.Errorf("%w: %s: %s %s", ErrSwarmUpdate, name, us.State, us.Message)
			case swarm.UpdateStateRollbackStarted, swarm.UpdateStateRollbackCompleted:
				if !rollback {
					return fmt.Errorf("%w: %s: %s: %s", ErrSwarmUpdate, name, us.State, us.Message)
				}
			}
		}
		all, err := s.api.TaskList(ctx, swarm.TaskListOptions{Filters: filters.NewArgs(filters.Arg("service", svc.ID))})
		if err != nil {
			return fmt.Errorf("swarm service %s tasks: %w", name, err)
		}
		var tasks []swarm.Task // those that should run
		stopping := 0          // replaced tasks whose container still runs
		for _, t := range all {
			switch {
			case t.DesiredState == swarm.TaskStateRunning:
				tasks = append(tasks, t)
			case t.Status.State == swarm.TaskStateRunning || t.Status.State == swarm.TaskStateStarting:
				stopping++
			}
		}
		want := len(tasks) // global: one per eligible node
		if r := svc.Spec.Mode.Replicated; r != nil && r.Replicas != nil {
			want = int(*r.Replicas)
		}
		running, pendingErr := 0, ""
		for _, t := range tasks {
			dep := taskLabel(t, LabelDeployment)
			switch {
			case t.Status.State == swarm.TaskStateRunning && dep == deployment:
				running++
			case t.Status.State == swarm.TaskStatePending && t.Status.Err != "":
				pendingErr = t.Status.Err
			}
		}
		if running != lastRunning {
			lastRunning = running
			o.emit(Event{Stack: rec.Stack, Service: rec.Service, Step: "healthy", Started: running, Healthy: running, Scale: want})
		}
		inUpdate := svc.UpdateStatus != nil && (svc.UpdateStatus.State == swarm.UpdateStateUpdating || svc.UpdateStatus.State == swarm.UpdateStateRollbackStarted)
		if svc.Spec.Labels[LabelDeployment] == deployment && !inUpdate && stopping == 0 && running == len(tasks) && running >= want && want > 0 {
			return nil
		}
		if svc.Spec.Mode.Global != nil && len(tasks) == 0 {
			// Swarm makes no task at all when no node is eligible.
			pendingErr = "no node meets the placement constraints"
		}
		if pendingErr != "" {
			if pendingSince.IsZero() {
				pendingSince = time.Now()
			} else if time.Since(pendingSince) > s.o.PendingTimeout {
				return &PlacementError{Service: rec.Service, Reasons: map[string]string{"swarm": pendingErr}}
			}
		} else {
			pendingSince = time.Time{}
		}
		if err := sleep(ctx, s.o.Poll); err != nil {
			return fmt.Errorf("swarm service %s: %d/%d tasks running: %w", name, running, want, err)
		}
	}
}

func taskLabel(t swarm.Task, key string) string {
	if t.Spec.ContainerSpec == nil {
		return ""
	}
	return t.Spec.ContainerSpec.Labels[key]
}

func failureAction(o DeployOptions) string {
	if o.NoAutoRollback {
		return swarm.UpdateFailureActionPause
	}
	return swarm.UpdateFailureActionRollback
}

// Up creates the stack's services (or converges their scale and placement)
// and waits until every task runs. A changed service is refused with
// ErrConfigChanged: that is an Upgrade.
func (s *Swarm) Up(ctx context.Context, spec StackSpec, o DeployOptions) error {
	defer s.lock(spec.Name)()
	recs, fresh, err := upRecords(ctx, s.o.Store, s.o.Env, spec)
	if err != nil {
		return err
	}
	if err := s.check(ctx, spec); err != nil {
		return fmt.Errorf("up %s: %w", spec.Name, err)
	}
	rev, err := s.addRevision(ctx, spec, o)
	if err != nil {
		return err
	}
	if err := recordUp(ctx, s.o.Store, s.o.Env, s.o.NewID, spec, recs, fresh, rev, o); err != nil {
		return err
	}
	return s.converge(ctx, recs, o, "up")
}

// check translates every service and makes sure the stack's names are
// not held by foreign services, before anything changes.
func (s *Swarm) check(ctx context.Context, spec StackSpec) error {
	for _, svc := range spec.Services {
		if _, _, err := SwarmSpec(s.o.Env, spec.Name, svc, "", "", swarm.UpdateFailureActionRollback, s.o.Monitor); err != nil {
			return err
		}
		if _, err := s.inspect(ctx, spec.Name, svc.Name); err != nil {
			return err
		}
	}
	return s.ensureNetwork(ctx, spec.Name)
}

// converge applies every (active) record before waiting for any, so that
// Swarm starts the services' tasks together (Up); convergeService is one
// service, applied then waited for.
func (s *Swarm) converge(ctx context.Context, recs []ServiceRecord, o DeployOptions, op string) error {
	for _, rec := range recs {
		if _, err := s.apply(ctx, rec, failureAction(o), o); err != nil {
			return fmt.Errorf("%s %s/%s: %w", op, rec.Stack, rec.Service, err)
		}
	}
	for _, rec := range recs {
		if err := s.wait(ctx, rec, rec.Deployment, false, o); err != nil {
			return fmt.Errorf("%s %s/%s: %w", op, rec.Stack, rec.Service, err)
		}
	}
	return nil
}

// Upgrade rolls every changed service out to its new spec with Swarm's
// rolling update (UpdateConfig from upgrade_strategy) and holds it in
// upgraded; Swarm keeps the previous spec as the rollback target. Unchanged
// services converge, new ones are created. If any service is held,
// nothing is done and ErrUpgradeHeld is returned, unless o.FinishHeld. A
// failed rollout (Swarm rolls back by itself unless o.NoAutoRollback) is
// recorded and returned, wrapping ErrSwarmUpdate.
func (s *Swarm) Upgrade(ctx context.Context, spec StackSpec, o DeployOptions) error {
	defer s.lock(spec.Name)()
	return upgradeStack(ctx, s, s.o.Store, s.o.Env, s.o.NewID, spec, o)
}

// checkPlan is check: Swarm places the tasks itself.
func (s *Swarm) checkPlan(ctx context.Context, spec StackSpec, _ []*ServiceRecord) error {
	return s.check(ctx, spec)
}

// convergeService applies an active service's spec and waits for it.
func (s *Swarm) convergeService(ctx context.Context, rec ServiceRecord, o DeployOptions) error {
	if _, err := s.apply(ctx, rec, failureAction(o), o); err != nil {
		return err
	}
	return s.wait(ctx, rec, rec.Deployment, false, o)
}

// rollout drives rec (upgrading) to upgraded. Resumable: an update already
// written is not written again (same swarm hash), only waited for.
func (s *Swarm) rollout(ctx context.Context, rec ServiceRecord, o DeployOptions) error {
	if err := s.convergeService(ctx, rec, o); err != nil {
		return err
	}
	rec.State = StateUpgraded
	if err := s.o.Store.UpdateService(ctx, rec, StateUpgrading); err != nil {
		return err
	}
	o.emit(Event{Stack: rec.Stack, Service: rec.Service, Step: "state", Message: string(StateUpgraded)})
	return nil
}

// Finish confirms the stack's held upgrades: each service returns to
// active at its new spec. An interrupted upgrade (upgrading) is first
// completed. Swarm prunes the old tasks' containers itself (task history
// retention). Idempotent.
func (s *Swarm) Finish(ctx context.Context, stack string, progress func(Event)) error {
	defer s.lock(stack)()
	o := DeployOptions{Progress: progress, NoAutoRollback: true}
	return finishServices(ctx, s.o.Store, s.o.Env, stack,
		func(ctx context.Context, rec ServiceRecord) error { return s.rollout(ctx, rec, o) },
		func(ctx context.Context, rec ServiceRecord) error { return s.finishService(ctx, rec, o) })
}

func (s *Swarm) finishService(ctx context.Context, rec ServiceRecord, o DeployOptions) error {
	// Swarm keeps the old tasks in its history and prunes them itself.
	if err := beginFinish(ctx, s.o.Store, &rec, o); err != nil {
		return err
	}
	return endFinish(ctx, s.o.Store, rec, o)
}

// Rollback returns every held or interrupted upgrade of the stack to its
// previous spec with Swarm's rollback (ServiceUpdate Rollback "previous"),
// then checks that the old version's tasks all run (healthy, where the
// service has a health check) before the service is recorded active at the
// old version. When Swarm's previous spec is not dockmaster's old one (the
// service was changed behind its back) the old spec is written instead.
func (s *Swarm) Rollback(ctx context.Context, stack string, progress func(Event)) error {
	defer s.lock(stack)()
	return s.rollback(ctx, stack, DeployOptions{Progress: progress})
}

func (s *Swarm) rollback(ctx context.Context, stack string, o DeployOptions) error {
	return rollbackServices(ctx, s.o.Store, s.o.Env, stack, o, func(ctx context.Context, rec ServiceRecord, back *ServiceRecord) error {
		if err := s.swarmRollback(ctx, rec, *back, o); err != nil {
			return err
		}
		back.Failed = ""
		return nil
	})
}

func (s *Swarm) swarmRollback(ctx context.Context, rec, back ServiceRecord, o DeployOptions) error {
	obs, err := s.inspect(ctx, rec.Stack, rec.Service)
	if err != nil {
		return err
	}
	switch {
	case obs.svc == nil:
		if _, err := s.apply(ctx, back, swarm.UpdateFailureActionPause, o); err != nil {
			return err
		}
	case obs.svc.Spec.Labels[LabelDeployment] == back.Deployment:
		// Already back (Swarm's automatic rollback, or a rerun): verify only.
	case obs.svc.PreviousSpec != nil && obs.svc.PreviousSpec.Labels[LabelDeployment] == back.Deployment:
		if _, err := s.api.ServiceUpdate(ctx, obs.svc.ID, obs.svc.Version, obs.svc.Spec,
			swarm.ServiceUpdateOptions{Rollback: "previous"}); err != nil {
			return fmt.Errorf("swarm rollback of %s: %w", obs.svc.Spec.Name, err)
		}
		o.emit(Event{Stack: rec.Stack, Service: rec.Service, Step: "update", Message: "swarm rollback to previous spec"})
	default:
		if _, err := s.apply(ctx, back, swarm.UpdateFailureActionPause, o); err != nil {
			return err
		}
	}
	if err := s.wait(ctx, back, back.Deployment, true, o); err != nil {
		return err
	}
	return s.verifyVersion(ctx, back)
}

// verifyVersion checks that every running task of rec's service carries
// rec's version and deployment.
func (s *Swarm) verifyVersion(ctx context.Context, rec ServiceRecord) error {
	st, err := s.serviceStatus(ctx, rec, nil)
	if err != nil {
		return err
	}
	if st.Running == 0 {
		return fmt.Errorf("swarm service %s: no task running after rollback", SwarmServiceName(rec.Stack, rec.Service))
	}
	for _, c := range st.Containers {
		if c.State == string(swarm.TaskStateRunning) && c.Version != rec.Version {
			return fmt.Errorf("swarm service %s: task %s runs version %s, want %s", SwarmServiceName(rec.Stack, rec.Service), c.Name, c.Version, rec.Version)
		}
	}
	return nil
}

// Redeploy upgrades the stack to the definition stored in revision n (as a
// new revision).
func (s *Swarm) Redeploy(ctx context.Context, stack string, n int, o DeployOptions) error {
	rev, err := s.o.Store.Revision(ctx, s.o.Env, stack, n)
	if err != nil {
		return err
	}
	if o.Version == "" {
		o.Version = rev.Version
	}
	if o.Compose == "" && o.Rancher == "" && o.Variables == nil {
		o.Compose, o.Rancher, o.Variables = rev.Compose, rev.Rancher, rev.Variables
	}
	return s.Upgrade(ctx, rev.Spec, o)
}

// Plan says, without changing anything, what Up or Upgrade of spec would
// do to each Swarm service. Placement is Swarm's: a constraint no node
// meets shows up as pending tasks when the operation runs.
func (s *Swarm) Plan(ctx context.Context, spec StackSpec) (StackPlan, error) {
	out := StackPlan{Stack: spec.Name}
	for _, svc := range spec.Services {
		sp := ServicePlan{Service: svc.Name}
		rec, err := s.o.Store.Service(ctx, s.o.Env, spec.Name, svc.Name)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return out, err
		}
		obs, ierr := s.inspect(ctx, spec.Name, svc.Name)
		name := SwarmServiceName(spec.Name, svc.Name)
		reason := "replicas " + strconv.Itoa(scaleOf(svc))
		if svc.Global {
			reason = "global"
		}
		_, _, serr := SwarmSpec(s.o.Env, spec.Name, svc, "", "", swarm.UpdateFailureActionRollback, s.o.Monitor)
		switch {
		case ierr != nil:
			sp.Err = ierr
		case serr != nil:
			sp.Err = serr
		case err != nil || obs.svc == nil:
			sp.Change = "create"
			sp.Actions = []Action{{Kind: ActCreate, Host: "swarm", Name: name, Reason: reason}}
		case ConfigHash(rec.Spec) != ConfigHash(svc):
			sp.Change = "upgrade"
			sp.Actions = []Action{{Kind: ActCreate, Host: "swarm", Name: name, Reason: "rolling update, " + reason}}
		default:
			sp.Change = "converge"
			if scaleOf(rec.Spec) != scaleOf(svc) || rec.Spec.Global != svc.Global {
				sp.Actions = []Action{{Kind: ActStart, Host: "swarm", Name: name, Reason: reason}}
			}
		}
		out.Services = append(out.Services, sp)
	}
	return out, nil
}

// Status reports the stack from the manager: per service its stored state
// and its tasks (one ContainerStatus each, on the node that runs it), and
// per node whether it is ready. Resource usage is not sampled on Swarm.
func (s *Swarm) Status(ctx context.Context, stack string) (StackStatus, error) {
	st := StackStatus{Stack: stack}
	recs, err := s.o.Store.Services(ctx, s.o.Env, stack)
	if err != nil {
		return st, err
	}
	nodes, err := s.api.NodeList(ctx, swarm.NodeListOptions{})
	if err != nil {
		return st, fmt.Errorf("%w: swarm manager: %w", ErrHostUnreachable, err)
	}
	names := map[string]string{}
	for _, n := range nodes {
		names[n.ID] = n.Description.Hostname
		hs := HostStatus{Name: n.Description.Hostname}
		if n.Status.State != swarm.NodeStateReady {
			hs.Err = fmt.Sprintf("node %s: %s", n.Status.State, n.Status.Message)
		}
		st.Hosts = append(st.Hosts, hs)
	}
	for _, rec := range recs {
		ss, err := s.serviceStatus(ctx, rec, names)
		if err != nil {
			return st, err
		}
		st.Services = append(st.Services, ss)
	}
	return st, nil
}

func (s *Swarm) serviceStatus(ctx context.Context, rec ServiceRecord, nodes map[string]string) (ServiceStatus, error) {
	ss := ServiceStatus{Name: rec.Service, State: rec.State, Failed: rec.Failed, Scale: scaleOf(rec.Spec),
		Version: rec.Version, Image: rec.Spec.Image, OldVersion: rec.OldVersion}
	tasks, err := s.tasks(ctx, rec.Stack, rec.Service)
	if err != nil {
		return ss, err
	}
	if rec.Spec.Global {
		ss.Scale = 0
	}
	hasCheck := rec.Spec.HealthCheck != nil && rec.Spec.HealthCheck.Port != 0
	for _, t := range tasks {
		dep := taskLabel(t, LabelDeployment)
		running := t.DesiredState == swarm.TaskStateRunning
		// Besides what should run, the old deployment's tasks of a held
		// upgrade: the stopped containers a rollback returns to.
		if !running && (rec.OldDeployment == "" || dep != rec.OldDeployment) {
			continue
		}
		cs := ContainerStatus{Host: nodes[t.NodeID], Name: taskName(rec, t), ID: t.ID, Deployment: dep,
			Version: taskLabel(t, LabelVersion), State: string(t.Status.State)}
		if t.Status.ContainerStatus != nil && t.Status.ContainerStatus.ContainerID != "" {
			cs.ID = t.Status.ContainerStatus.ContainerID
		}
		switch t.Status.State {
		case swarm.TaskStateRunning:
			cs.Health, cs.StartedAt = "running", t.Status.Timestamp
			if hasCheck {
				cs.Health = "healthy"
			}
		case swarm.TaskStateShutdown, swarm.TaskStateComplete:
			cs.Health = "stopped"
		case swarm.TaskStateFailed, swarm.TaskStateRejected:
			cs.Health = "unhealthy: " + t.Status.Err
		default:
			cs.Health = string(t.Status.State)
			if t.Status.Err != "" {
				cs.Health += ": " + t.Status.Err // e.g. no suitable node (constraints)
			}
		}
		if running {
			cs.Ports = append(cs.Ports, rec.Spec.Ports...)
		}
		if dep == rec.Deployment && running {
			if t.Status.State == swarm.TaskStateRunning {
				ss.Running++
				ss.Healthy++
			}
			if t.Status.ContainerStatus != nil && ss.ImageID == "" {
				ss.ImageID = t.Spec.ContainerSpec.Image
			}
		}
		ss.Containers = append(ss.Containers, cs)
	}
	return ss, nil
}

// tasks lists a service's tasks, newest first per slot; none when the
// service does not exist.
func (s *Swarm) tasks(ctx context.Context, stack, service string) ([]swarm.Task, error) {
	obs, err := s.inspect(ctx, stack, service)
	if err != nil || obs.svc == nil {
		return nil, err
	}
	tasks, err := s.api.TaskList(ctx, swarm.TaskListOptions{Filters: filters.NewArgs(filters.Arg("service", obs.svc.ID))})
	if err != nil {
		return nil, fmt.Errorf("swarm service %s tasks: %w", obs.svc.Spec.Name, err)
	}
	sort.SliceStable(tasks, func(i, j int) bool {
		if tasks[i].Slot != tasks[j].Slot {
			return tasks[i].Slot < tasks[j].Slot
		}
		return tasks[i].CreatedAt.After(tasks[j].CreatedAt)
	})
	return tasks, nil
}

// taskName is Swarm's own: <service>.<slot> (replicated) or
// <service>.<node id> (global).
func taskName(rec ServiceRecord, t swarm.Task) string {
	name := SwarmServiceName(rec.Stack, rec.Service)
	if t.Slot > 0 {
		return name + "." + strconv.Itoa(t.Slot)
	}
	return name + "." + t.NodeID
}

// Logs streams the output of one task (container: task name, task id or
// container id prefix) or of the whole service, through the manager.
func (s *Swarm) Logs(ctx context.Context, stack, service, ctr string, o LogOptions) (<-chan LogLine, error) {
	rec, err := s.o.Store.Service(ctx, s.o.Env, stack, service)
	if err != nil {
		return nil, err
	}
	obs, err := s.inspect(ctx, stack, service)
	if err != nil {
		return nil, err
	}
	if obs.svc == nil {
		return nil, fmt.Errorf("logs %s/%s: %w", stack, service, ErrNoSuchContainer)
	}
	lo := container.LogsOptions{ShowStdout: true, ShowStderr: true, Timestamps: true, Follow: o.Follow}
	if o.Tail > 0 {
		lo.Tail = strconv.Itoa(o.Tail)
	}
	src := Container{Host: "swarm", Name: obs.svc.Spec.Name}
	var rc io.ReadCloser
	if ctr == "" {
		rc, err = s.api.ServiceLogs(ctx, obs.svc.ID, lo)
	} else {
		tasks, terr := s.tasks(ctx, stack, service)
		if terr != nil {
			return nil, terr
		}
		var task *swarm.Task
		for i, t := range tasks {
			cid := ""
			if t.Status.ContainerStatus != nil {
				cid = t.Status.ContainerStatus.ContainerID
			}
			if taskName(rec, t) == ctr || strings.HasPrefix(t.ID, ctr) || (cid != "" && strings.HasPrefix(cid, ctr)) {
				task = &tasks[i]
				break
			}
		}
		if task == nil {
			return nil, fmt.Errorf("logs %s/%s %s: %w", stack, service, ctr, ErrNoSuchContainer)
		}
		src.Name = taskName(rec, *task)
		rc, err = s.api.TaskLogs(ctx, task.ID, lo)
	}
	if err != nil {
		return nil, fmt.Errorf("logs %s/%s: %w", stack, service, err)
	}
	out := make(chan LogLine)
	go func() {
		defer close(out)
		defer rc.Close()
		streamLogs(ctx, src, rc, out)
	}()
	return out, nil
}
