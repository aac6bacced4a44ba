package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"gopkg.in/yaml.v3"

	"github.com/dockmaster/dockmaster/deployer"
	"github.com/dockmaster/dockmaster/deployer/compose"
	"github.com/dockmaster/dockmaster/internal/auth"
	"github.com/dockmaster/dockmaster/internal/store"
)

// StackAPI serves the stacks of an environment: up/upgrade, finish,
// rollback, redeploy of a revision, status, revisions and logs. Operations
// run as background jobs (see Jobs) so a client that goes away, or asked to
// detach, does not cancel a half-done upgrade.
type StackAPI struct {
	// Fleet is internal/fleet.Fleet (same shape as status.go's Deployers,
	// declared here so this file stands alone).
	Fleet interface {
		Target(ctx context.Context, env string) (deployer.Target, error)
	}
	// Store is read for the stored service states (cheap listings and the
	// pre-checks that answer 409 before a job starts).
	Store deployer.Store
	Jobs  *Jobs
	// Base is the context jobs run in (the server's lifetime); default
	// context.Background.
	Base context.Context
}

// maxStackBody bounds the up request: two compose files and variables.
const maxStackBody = 4 << 20

// forceLabel is set on every service by force_upgrade: a new value changes
// the config hash, so unchanged services are recreated too.
const forceLabel = "io.dockmaster.force-upgrade"

// Register mounts the routes under api (the /api/v1 group): view for
// reads, deploy for changes.
func (a *StackAPI) Register(api *auth.Routes) {
	if a.Jobs == nil {
		a.Jobs = NewJobs()
	}
	env := auth.Param("env")
	api.Handle(http.MethodGet, "/environments/:env/stacks", auth.PermView, env, a.list)
	api.Handle(http.MethodGet, "/environments/:env/stacks/:stack", auth.PermView, env, a.status)
	api.Handle(http.MethodPost, "/environments/:env/stacks/:stack/up", auth.PermDeploy, env, a.up)
	api.Handle(http.MethodPost, "/environments/:env/stacks/:stack/finish", auth.PermDeploy, env, a.heldUpgradeOp("finish", deployer.Target.Finish))
	api.Handle(http.MethodPost, "/environments/:env/stacks/:stack/rollback", auth.PermDeploy, env, a.heldUpgradeOp("rollback", deployer.Target.Rollback))
	api.Handle(http.MethodGet, "/environments/:env/stacks/:stack/revisions", auth.PermView, env, a.revisions)
	api.Handle(http.MethodPost, "/environments/:env/stacks/:stack/revisions/:n/redeploy", auth.PermDeploy, env, a.redeploy)
	api.Handle(http.MethodGet, "/environments/:env/stacks/:stack/logs", auth.PermViewSecrets, env, a.logs) // logs may carry secrets: hidden from restricted
	api.Handle(http.MethodGet, "/jobs/:id", auth.PermView, a.Jobs.envOf, a.job)
}

// UpRequest is the body of POST .../stacks/:stack/up.
type UpRequest struct {
	StackFiles
	// Upgrade runs an in-service upgrade held in upgraded; without it the
	// stack is created or its scale converged.
	Upgrade      bool `json:"upgrade"`
	ForceUpgrade bool `json:"force_upgrade"`
	Pull         bool `json:"pull"`
	// BatchSize and IntervalMS override every service's upgrade_strategy.
	BatchSize  int `json:"batch_size"`
	IntervalMS int `json:"interval_ms"`
	// ConfirmUpgrade finishes a held upgrade first.
	ConfirmUpgrade bool `json:"confirm_upgrade"`
	Detach         bool `json:"detach"`
}

// EventJSON is one progress event of a job.
type EventJSON struct {
	Time        time.Time `json:"time"`
	Stack       string    `json:"stack,omitempty"`
	Service     string    `json:"service,omitempty"`
	Host        string    `json:"host,omitempty"`
	Container   string    `json:"container,omitempty"`
	Step        string    `json:"step"`
	HostStarted int       `json:"host_started,omitempty"`
	HostHealthy int       `json:"host_healthy,omitempty"`
	Started     int       `json:"started,omitempty"`
	Healthy     int       `json:"healthy,omitempty"`
	Scale       int       `json:"scale,omitempty"`
	Message     string    `json:"message,omitempty"`
}

// JobResult ends a job.
type JobResult struct {
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
	// Status is the HTTP status the error maps to (200 when OK).
	Status int `json:"status"`
	// Services are the stack's service states after the operation.
	Services []ServiceStateJSON `json:"services,omitempty"`
}

// ServiceStateJSON is a stored service state.
type ServiceStateJSON struct {
	Name       string `json:"name"`
	State      string `json:"state"`
	Version    string `json:"version"`
	OldVersion string `json:"old_version,omitempty"`
	Failed     string `json:"failed,omitempty"`
}

// StreamLine is one line of an operation's NDJSON answer: first the job id,
// then events, last the result.
type StreamLine struct {
	Job    string     `json:"job,omitempty"`
	Event  *EventJSON `json:"event,omitempty"`
	Result *JobResult `json:"result,omitempty"`
}

func (a *StackAPI) base() context.Context {
	if a.Base != nil {
		return a.Base
	}
	return context.Background()
}

func (a *StackAPI) deployerFor(c *gin.Context) (deployer.Target, bool) {
	d, err := a.Fleet.Target(c.Request.Context(), c.Param("env"))
	if err != nil {
		deployError(c, err)
		return nil, false
	}
	return d, true
}

// statusOf maps operation errors to HTTP statuses, in one place.
func statusOf(err error) (int, string) {
	var he *deployer.HealthError
	var ce *compose.Error
	switch {
	case err == nil:
		return http.StatusOK, ""
	case errors.Is(err, deployer.ErrUpgradeHeld):
		return http.StatusConflict, err.Error() + ": finish or roll back first, or pass --confirm-upgrade"
	case errors.Is(err, deployer.ErrBusy), errors.Is(err, deployer.ErrForeignContainer),
		errors.Is(err, deployer.ErrConflict), errors.Is(err, deployer.ErrConfigChanged), errors.Is(err, store.ErrConflict):
		return http.StatusConflict, err.Error()
	case errors.Is(err, deployer.ErrHostUnreachable):
		return http.StatusServiceUnavailable, err.Error()
	case errors.As(err, &he):
		return http.StatusUnprocessableEntity, err.Error()
	case errors.As(err, &ce):
		return http.StatusBadRequest, err.Error()
	case errors.Is(err, deployer.ErrNotFound), errors.Is(err, store.ErrNotFound), errors.Is(err, deployer.ErrNoSuchContainer):
		return http.StatusNotFound, err.Error()
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable, err.Error()
	}
	return http.StatusInternalServerError, err.Error()
}

func deployError(c *gin.Context, err error) {
	status, msg := statusOf(err)
	if status == http.StatusInternalServerError {
		internalError(c, err)
		return
	}
	c.AbortWithStatusJSON(status, gin.H{"error": msg})
}

// readStackBody decodes a bounded JSON body strictly; an empty body is {}.
func readStackBody(c *gin.Context, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(c.Writer, c.Request.Body, maxStackBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		badRequest(c, "request body: %v", err)
		return false
	}
	return true
}

func (a *StackAPI) up(c *gin.Context) {
	env, stack := c.Param("env"), c.Param("stack")
	var in UpRequest
	if !readStackBody(c, &in) {
		return
	}
	if in.BatchSize < 0 || in.IntervalMS < 0 {
		badRequest(c, "batch_size and interval_ms: want zero or more")
		return
	}
	spec, err := in.Load(c.Request.Context(), stack)
	var bad badFilesError
	if errors.As(err, &bad) {
		badRequest(c, "%v", err)
		return
	}
	if err != nil {
		auth.Audit(c, "stack.up", env, stack, err)
		deployError(c, err)
		return
	}
	d, ok := a.deployerFor(c)
	if !ok {
		return
	}
	applyOverrides(spec, in)
	if err := a.precheck(c.Request.Context(), env, stack, in.Upgrade, in.ConfirmUpgrade); err != nil {
		auth.Audit(c, "stack.up", env, stack, err)
		deployError(c, err)
		return
	}
	op := "up"
	if in.Upgrade {
		op = "upgrade"
	}
	do := DeployOptionsFor(in)
	do.By = auth.PrincipalFrom(c).ActorName()
	a.start(c, env, stack, op, in.Detach, func(ctx context.Context, progress func(deployer.Event)) error {
		do.Progress = progress
		for _, w := range spec.Warnings {
			progress(deployer.Event{Stack: stack, Step: "warning", Message: w})
		}
		if in.Upgrade {
			return d.Upgrade(ctx, *spec, do)
		}
		return d.Up(ctx, *spec, do)
	})
}

// DeployOptionsFor turns the request into the deployer's options.
func DeployOptionsFor(in UpRequest) deployer.DeployOptions {
	return deployer.DeployOptions{Version: in.Variables["VERSION"], Compose: in.Compose, Rancher: in.Rancher,
		Variables: in.Variables, FinishHeld: in.ConfirmUpgrade}
}

// applyOverrides applies the request's flags to every service, as
// rancher-compose's up flags did.
func applyOverrides(spec *deployer.StackSpec, in UpRequest) {
	force := ""
	if in.ForceUpgrade {
		force = strconv.FormatInt(time.Now().UnixNano(), 36)
	}
	for i := range spec.Services {
		s := &spec.Services[i]
		if in.Pull {
			s.PullAlways = true
		}
		if in.BatchSize > 0 {
			s.Upgrade.BatchSize = in.BatchSize
		}
		if in.IntervalMS > 0 {
			s.Upgrade.Interval = time.Duration(in.IntervalMS) * time.Millisecond
		}
		if force != "" {
			labels := make(map[string]string, len(s.Labels)+1)
			for k, v := range s.Labels {
				labels[k] = v
			}
			labels[forceLabel] = force
			s.Labels = labels
		}
	}
}

// refuseServerFiles rejects env_file: compose.Load would read it from the
// server's disk, which a client must not be able to make it do. The CLI
// sends file texts only.
// StackFiles are a stack's compose files as the CLI sends them: their
// text, read on the client's disk, and their names for error messages.
type StackFiles struct {
	Compose     string            `json:"compose"`
	Rancher     string            `json:"rancher"`
	ComposeFile string            `json:"compose_file"` // name used in error messages
	RancherFile string            `json:"rancher_file"`
	Variables   map[string]string `json:"variables"`
}

// badFilesError is a StackFiles problem found before parsing (400).
type badFilesError struct{ error }

// Load checks the files and reads them into a stack spec. Problems found
// before parsing are badFilesError; the rest are compose.Load's errors,
// which name file:line.
func (f StackFiles) Load(ctx context.Context, stack string) (*deployer.StackSpec, error) {
	if strings.TrimSpace(f.Compose) == "" {
		return nil, badFilesError{errors.New("compose: the docker-compose.yml text is required")}
	}
	if f.ComposeFile == "" {
		f.ComposeFile = "docker-compose.yml"
	}
	if f.RancherFile == "" {
		f.RancherFile = "rancher-compose.yml"
	}
	if err := refuseServerFiles(f.ComposeFile, f.Compose); err != nil {
		return nil, badFilesError{err}
	}
	opts := compose.Options{StackName: stack, ComposeFile: f.ComposeFile, ComposeBytes: []byte(f.Compose), Variables: f.Variables}
	if strings.TrimSpace(f.Rancher) != "" {
		opts.RancherFile, opts.RancherBytes = f.RancherFile, []byte(f.Rancher)
	}
	return compose.Load(ctx, opts)
}

func refuseServerFiles(name, text string) error {
	var root yaml.Node
	if err := yaml.Unmarshal([]byte(text), &root); err != nil || len(root.Content) == 0 {
		return nil // compose.Load reports syntax errors with their line
	}
	var walk func(n *yaml.Node) error
	walk = func(n *yaml.Node) error {
		if n.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == "env_file" {
					return fmt.Errorf("%s:%d: env_file is not supported over the API (it would be read on the server); put the variables under environment:",
						name, n.Content[i].Line)
				}
			}
		}
		for _, ch := range n.Content {
			if err := walk(ch); err != nil {
				return err
			}
		}
		return nil
	}
	return walk(&root)
}

// precheck refuses, before any job starts, what the deployer would refuse
// at once: a new upgrade (or up) while one is held, or any operation while
// a service is mid-operation. The deployer checks again under its lock.
func (a *StackAPI) precheck(ctx context.Context, env, stack string, upgrade, confirm bool) error {
	recs, err := a.Store.Services(ctx, env, stack)
	if err != nil {
		return err
	}
	for _, r := range recs {
		switch {
		case r.State == deployer.StateUpgraded && (!upgrade || !confirm):
			return fmt.Errorf("%s/%s: %w (version %s is running, %s kept stopped)", stack, r.Service, deployer.ErrUpgradeHeld, r.Version, r.OldVersion)
		case r.State != deployer.StateActive && r.State != deployer.StateUpgraded:
			return fmt.Errorf("%s/%s: %w (%s)", stack, r.Service, deployer.ErrBusy, r.State)
		}
	}
	return nil
}

// opBody is the optional body of finish, rollback and redeploy.
type opBody struct {
	Detach         bool `json:"detach"`
	ConfirmUpgrade bool `json:"confirm_upgrade"`
}

// opTarget reads the optional body of finish, rollback and redeploy
// (?detach=1 also detaches) and finds the environment's deployer. When ok
// is false it has answered.
func (a *StackAPI) opTarget(c *gin.Context) (in opBody, d deployer.Target, ok bool) {
	if !readStackBody(c, &in) {
		return in, nil, false
	}
	in.Detach = in.Detach || c.Query("detach") == "1"
	d, ok = a.deployerFor(c)
	return in, d, ok
}

// heldUpgradeOp serves finish and rollback (deployer.Target.Finish or
// .Rollback): an operation on the stack's held upgrade, run as a stack job.
func (a *StackAPI) heldUpgradeOp(name string, op func(deployer.Target, context.Context, string, func(deployer.Event)) error) gin.HandlerFunc {
	return func(c *gin.Context) {
		in, d, ok := a.opTarget(c)
		if !ok {
			return
		}
		stack := c.Param("stack")
		a.start(c, c.Param("env"), stack, name, in.Detach, func(ctx context.Context, progress func(deployer.Event)) error {
			return op(d, ctx, stack, progress)
		})
	}
}

func (a *StackAPI) redeploy(c *gin.Context) {
	env, stack := c.Param("env"), c.Param("stack")
	n, err := strconv.Atoi(c.Param("n"))
	if err != nil || n <= 0 {
		badRequest(c, "revision: want a positive number, got %q", c.Param("n"))
		return
	}
	in, d, ok := a.opTarget(c)
	if !ok {
		return
	}
	if _, err := d.Revisions(c.Request.Context(), stack); err != nil {
		deployError(c, err)
		return
	}
	if err := a.precheck(c.Request.Context(), env, stack, true, in.ConfirmUpgrade); err != nil {
		auth.Audit(c, "stack.redeploy", env, stack, err)
		deployError(c, err)
		return
	}
	by := auth.PrincipalFrom(c).ActorName()
	a.start(c, env, stack, "redeploy", in.Detach, func(ctx context.Context, progress func(deployer.Event)) error {
		return d.Redeploy(ctx, stack, n, deployer.DeployOptions{Progress: progress, FinishHeld: in.ConfirmUpgrade, By: by})
	})
}

// start runs op as a job. Detached, it answers 202 with the job id;
// otherwise it streams the job as NDJSON until it ends (the job goes on if
// the client leaves). The change is audited when it is accepted (detached)
// or when it ends.
func (a *StackAPI) start(c *gin.Context, env, stack, op string, detach bool, run func(context.Context, func(deployer.Event)) error) {
	j := a.Jobs.add(env, stack, op)
	go func() {
		err := run(a.base(), j.emit)
		res := JobResult{OK: err == nil}
		res.Status, res.Error = statusOf(err)
		if recs, serr := a.Store.Services(a.base(), env, stack); serr == nil {
			res.Services = serviceStates(recs)
		}
		j.finish(res)
	}()
	action := "stack." + op
	if detach {
		auth.Audit(c, action, env, stack+" (job "+j.ID+")", nil)
		c.JSON(http.StatusAccepted, gin.H{"job": j.ID, "url": "/api/v1/jobs/" + j.ID})
		return
	}
	res := streamJob(c, j)
	var err error
	if res != nil && !res.OK {
		err = errors.New(res.Error)
	} else if res == nil {
		err = fmt.Errorf("client left; job %s continues", j.ID)
	}
	auth.Audit(c, action, env, stack+" (job "+j.ID+")", err)
}

func serviceStates(recs []deployer.ServiceRecord) []ServiceStateJSON {
	out := make([]ServiceStateJSON, 0, len(recs))
	for _, r := range recs {
		out = append(out, ServiceStateJSON{Name: r.Service, State: string(r.State), Version: r.Version, OldVersion: r.OldVersion, Failed: r.Failed})
	}
	return out
}

// streamJob writes the job's events as NDJSON until it ends or the client
// leaves; it returns the result, or nil if the client left first.
func streamJob(c *gin.Context, j *Job) *JobResult {
	c.Header("Content-Type", "application/x-ndjson")
	c.Header("Cache-Control", "no-store")
	c.Status(http.StatusOK)
	enc := json.NewEncoder(c.Writer)
	_ = enc.Encode(StreamLine{Job: j.ID})
	c.Writer.Flush()
	next := 0
	for {
		evs, res, changed := j.since(next)
		next += len(evs)
		for i := range evs {
			if err := enc.Encode(StreamLine{Event: &evs[i]}); err != nil {
				return nil
			}
		}
		if res != nil {
			_ = enc.Encode(StreamLine{Result: res})
			c.Writer.Flush()
			return res
		}
		c.Writer.Flush()
		select {
		case <-changed:
		case <-c.Request.Context().Done():
			return nil
		}
	}
}

func (a *StackAPI) job(c *gin.Context) {
	j := a.Jobs.get(c.Param("id"))
	if j == nil {
		c.AbortWithStatusJSON(http.StatusNotFound, gin.H{"error": "job " + strconv.Quote(c.Param("id")) + ": not found (jobs are kept in memory for an hour)"})
		return
	}
	if c.Query("follow") == "1" {
		streamJob(c, j)
		return
	}
	c.JSON(http.StatusOK, j.snapshot())
}

// StackSummary is one stack in a listing, from the stored states only.
type StackSummary struct {
	Name     string             `json:"name"`
	State    string             `json:"state"`
	Services []ServiceStateJSON `json:"services"`
}

func (a *StackAPI) list(c *gin.Context) {
	env := c.Param("env")
	if _, ok := a.deployerFor(c); !ok { // 404 for an unknown environment
		return
	}
	recs, err := a.Store.Services(c.Request.Context(), env, "")
	if err != nil {
		deployError(c, err)
		return
	}
	byStack := map[string][]deployer.ServiceRecord{}
	for _, r := range recs {
		byStack[r.Stack] = append(byStack[r.Stack], r)
	}
	out := make([]StackSummary, 0, len(byStack))
	for name, rs := range byStack {
		states := make([]deployer.ServiceState, len(rs))
		for i, r := range rs {
			states[i] = r.State
		}
		out = append(out, StackSummary{Name: name, State: string(stackState(states)), Services: serviceStates(rs)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	c.JSON(http.StatusOK, gin.H{"stacks": out})
}

// stackState is the state of the stack: its least settled service's.
func stackState(states []deployer.ServiceState) deployer.ServiceState {
	rank := map[deployer.ServiceState]int{deployer.StateRollingBack: 5, deployer.StateFinishingUpgrade: 4,
		deployer.StateUpgrading: 3, deployer.StateUpgraded: 2, deployer.StateActive: 1}
	best := deployer.StateActive
	for _, s := range states {
		if rank[s] > rank[best] {
			best = s
		}
	}
	return best
}

// StackStatusJSON is GET .../stacks/:stack.
type StackStatusJSON struct {
	Stack    string              `json:"stack"`
	State    string              `json:"state"`
	Services []ServiceStatusJSON `json:"services"`
	Hosts    []HostStatusJSON    `json:"hosts"`
}

// ServiceStatusJSON is one service's observed state.
type ServiceStatusJSON struct {
	Name       string `json:"name"`
	State      string `json:"state"`
	Failed     string `json:"failed,omitempty"`
	Scale      int    `json:"scale"`
	Running    int    `json:"running"`
	Healthy    int    `json:"healthy"`
	Version    string `json:"version"`
	Image      string `json:"image"`
	Digest     string `json:"digest,omitempty"`
	OldVersion string `json:"old_version,omitempty"`
	// PerHost counts the current deployment's containers per host.
	PerHost    map[string]HostCount  `json:"per_host"`
	Containers []ContainerStatusJSON `json:"containers"`
	// LB: a load balancer's rules and healthy backends (discovery.go).
	LB []LBRuleJSON `json:"lb,omitempty"`
}

// HostCount counts a service's containers on one host.
type HostCount struct {
	Running int `json:"running"`
	Healthy int `json:"healthy"`
}

// ContainerStatusJSON is one container.
type ContainerStatusJSON struct {
	Host       string    `json:"host"`
	Name       string    `json:"name"`
	ID         string    `json:"id"`
	Deployment string    `json:"deployment"`
	Version    string    `json:"version"`
	State      string    `json:"state"`
	Health     string    `json:"health"`
	Ports      []string  `json:"ports,omitempty"`
	StartedAt  time.Time `json:"started_at"`
	Current    bool      `json:"current"` // of the service's current deployment (not the kept old one)
}

// HostStatusJSON is a host of the stack, with its resource use when the
// status was asked with ?usage=1.
type HostStatusJSON struct {
	Name  string         `json:"name"`
	Error string         `json:"error,omitempty"`
	Usage deployer.Usage `json:"usage"`
}

func (a *StackAPI) status(c *gin.Context) {
	env, stack := c.Param("env"), c.Param("stack")
	d, ok := a.deployerFor(c)
	if !ok {
		return
	}
	recs, err := a.Store.Services(c.Request.Context(), env, stack)
	if err != nil {
		deployError(c, err)
		return
	}
	if len(recs) == 0 {
		c.AbortWithStatusJSON(http.StatusNotFound, gin.H{"error": fmt.Sprintf("stack %s in environment %s: not found", stack, env)})
		return
	}
	current := map[string]string{}
	for _, r := range recs {
		current[r.Service] = r.Deployment
	}
	st, err := d.Status(c.Request.Context(), stack)
	if err != nil {
		deployError(c, err)
		return
	}
	if c.Query("usage") == "1" { // docker stats: about a second
		sampleUsage(c.Request.Context(), d, &st)
	}
	c.JSON(http.StatusOK, toStatusJSON(st, current))
}

func toStatusJSON(st deployer.StackStatus, current map[string]string) StackStatusJSON {
	out := StackStatusJSON{Stack: st.Stack, Services: []ServiceStatusJSON{}, Hosts: []HostStatusJSON{}}
	var states []deployer.ServiceState
	for _, s := range st.Services {
		states = append(states, s.State)
		ss := ServiceStatusJSON{Name: s.Name, State: string(s.State), Failed: s.Failed, Scale: s.Scale, Running: s.Running,
			Healthy: s.Healthy, Version: s.Version, Image: s.Image, Digest: s.ImageID, OldVersion: s.OldVersion,
			PerHost: map[string]HostCount{}, Containers: []ContainerStatusJSON{}, LB: lbRulesJSON(s.LB)}
		for _, ct := range s.Containers {
			cur := ct.Deployment == current[s.Name]
			cj := ContainerStatusJSON{Host: ct.Host, Name: ct.Name, ID: ct.ID, Deployment: ct.Deployment, Version: ct.Version,
				State: ct.State, Health: ct.Health, StartedAt: ct.StartedAt, Current: cur}
			for _, p := range ct.Ports {
				cj.Ports = append(cj.Ports, portString(p))
			}
			ss.Containers = append(ss.Containers, cj)
			if !cur {
				continue
			}
			hc := ss.PerHost[ct.Host]
			if ct.State == "running" {
				hc.Running++
			}
			if ct.Health == "healthy" || ct.Health == "running" {
				hc.Healthy++
			}
			ss.PerHost[ct.Host] = hc
		}
		out.Services = append(out.Services, ss)
	}
	out.State = string(stackState(states))
	for _, h := range st.Hosts {
		out.Hosts = append(out.Hosts, HostStatusJSON{Name: h.Name, Error: h.Err, Usage: h.Usage})
	}
	return out
}

func portString(p deployer.PortSpec) string {
	s := fmt.Sprintf("%d/%s", p.ContainerPort, p.Protocol)
	if p.HostPort != 0 {
		s = fmt.Sprintf("%d:%s", p.HostPort, s)
		if p.HostIP != "" {
			s = p.HostIP + ":" + s
		}
	}
	return s
}

// RevisionJSON is one stored revision (without its files and variables).
type RevisionJSON struct {
	Number    int       `json:"number"`
	Version   string    `json:"version"`
	Services  []string  `json:"services"`
	CreatedAt time.Time `json:"created_at"`
	CreatedBy string    `json:"created_by,omitempty"`
}

func (a *StackAPI) revisions(c *gin.Context) {
	d, ok := a.deployerFor(c)
	if !ok {
		return
	}
	revs, err := d.Revisions(c.Request.Context(), c.Param("stack"))
	if err != nil {
		deployError(c, err)
		return
	}
	out := make([]RevisionJSON, 0, len(revs))
	for _, r := range revs {
		rj := RevisionJSON{Number: r.Number, Version: r.Version, CreatedAt: r.CreatedAt, CreatedBy: r.CreatedBy, Services: []string{}}
		for _, s := range r.Spec.Services {
			rj.Services = append(rj.Services, s.Name)
		}
		out = append(out, rj)
	}
	c.JSON(http.StatusOK, gin.H{"revisions": out})
}

// LogLineJSON is one line of GET .../logs (NDJSON).
type LogLineJSON struct {
	Host      string    `json:"host"`
	Container string    `json:"container"`
	Stream    string    `json:"stream"`
	Time      time.Time `json:"time,omitzero"`
	Text      string    `json:"text"`
}

func (a *StackAPI) logs(c *gin.Context) {
	stack, service := c.Param("stack"), c.Query("service")
	tail := 0
	if s := c.Query("tail"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			badRequest(c, "query tail: want a number of lines, got %q", s)
			return
		}
		tail = n
	}
	d, ok := a.deployerFor(c)
	if !ok {
		return
	}
	if service == "" {
		recs, err := a.Store.Services(c.Request.Context(), c.Param("env"), stack)
		if err != nil {
			deployError(c, err)
			return
		}
		if len(recs) != 1 {
			names := make([]string, len(recs))
			for i, r := range recs {
				names[i] = r.Service
			}
			badRequest(c, "query service: required, one of %v", names)
			return
		}
		service = recs[0].Service
	}
	lines, err := d.Logs(c.Request.Context(), stack, service, c.Query("container"),
		deployer.LogOptions{Tail: tail, Follow: c.Query("follow") == "1"})
	if err != nil {
		deployError(c, err)
		return
	}
	c.Header("Content-Type", "application/x-ndjson")
	c.Status(http.StatusOK)
	enc := json.NewEncoder(c.Writer)
	for l := range lines {
		if err := enc.Encode(LogLineJSON{Host: l.Host, Container: l.Container, Stream: l.Stream, Time: l.Time, Text: l.Text}); err != nil {
			// The client left: drain so the producers end with ctx.
			for range lines {
			}
			return
		}
		c.Writer.Flush()
	}
}

// Jobs keeps operations and their progress in memory, for an hour after
// they end (at most maxJobs). Safe for concurrent use.
type Jobs struct {
	mu   sync.Mutex
	m    map[string]*Job
	keep time.Duration
}

const maxJobs = 1000

// NewJobs returns an empty registry.
func NewJobs() *Jobs { return &Jobs{m: map[string]*Job{}, keep: time.Hour} }

// Job is one operation on a stack.
type Job struct {
	ID, Env, Stack, Op string
	Started            time.Time

	mu       sync.Mutex
	events   []EventJSON
	result   *JobResult
	ended    time.Time
	changed  chan struct{} // closed and replaced on every change
	maxEvent int
}

// JobJSON is GET /api/v1/jobs/:id.
type JobJSON struct {
	ID         string      `json:"id"`
	Env        string      `json:"env"`
	Stack      string      `json:"stack"`
	Op         string      `json:"op"`
	State      string      `json:"state"` // running, succeeded, failed
	StartedAt  time.Time   `json:"started_at"`
	FinishedAt time.Time   `json:"finished_at,omitzero"`
	Events     []EventJSON `json:"events"`
	Result     *JobResult  `json:"result,omitempty"`
}

func (js *Jobs) add(env, stack, op string) *Job {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	j := &Job{ID: hex.EncodeToString(b), Env: env, Stack: stack, Op: op, Started: time.Now(),
		changed: make(chan struct{}), maxEvent: 10000}
	js.mu.Lock()
	defer js.mu.Unlock()
	now := time.Now()
	for id, o := range js.m {
		if end := o.endedAt(); !end.IsZero() && (now.Sub(end) > js.keep || len(js.m) >= maxJobs) {
			delete(js.m, id)
		}
	}
	js.m[j.ID] = j
	return j
}

func (js *Jobs) get(id string) *Job {
	js.mu.Lock()
	defer js.mu.Unlock()
	return js.m[id]
}

// envOf is the environment of the job in the path, for the permission
// check; an unknown job checks against any environment, then answers 404.
func (js *Jobs) envOf(c *gin.Context) string {
	if j := js.get(c.Param("id")); j != nil {
		return j.Env
	}
	return ""
}

func (j *Job) endedAt() time.Time {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.ended
}

func (j *Job) emit(e deployer.Event) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if len(j.events) >= j.maxEvent {
		return // a runaway job must not eat the memory; the result still comes
	}
	j.events = append(j.events, EventJSON{Time: time.Now(), Stack: e.Stack, Service: e.Service, Host: e.Host,
		Container: e.Container, Step: e.Step, HostStarted: e.HostStarted, HostHealthy: e.HostHealthy,
		Started: e.Started, Healthy: e.Healthy, Scale: e.Scale, Message: e.Message})
	close(j.changed)
	j.changed = make(chan struct{})
}

func (j *Job) finish(r JobResult) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.result, j.ended = &r, time.Now()
	close(j.changed)
	j.changed = make(chan struct{})
}

// since returns the events from index i on, the result if the job ended,
// and a channel closed at the next change.
func (j *Job) since(i int) ([]EventJSON, *JobResult, <-chan struct{}) {
	j.mu.Lock()
	defer j.mu.Unlock()
	evs := append([]EventJSON(nil), j.events[min(i, len(j.events)):]...)
	return evs, j.result, j.changed
}

func (j *Job) snapshot() JobJSON {
	j.mu.Lock()
	defer j.mu.Unlock()
	out := JobJSON{ID: j.ID, Env: j.Env, Stack: j.Stack, Op: j.Op, State: "running", StartedAt: j.Started,
		FinishedAt: j.ended, Events: append([]EventJSON{}, j.events...), Result: j.result}
	if j.result != nil {
		out.State = "failed"
		if j.result.OK {
			out.State = "succeeded"
		}
	}
	return out
}
