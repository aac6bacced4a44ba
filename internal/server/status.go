package server

import (
	"context"
	"errors"
	"html/template"
	"log/slog"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"golang.org/x/sync/errgroup"

	"github.com/dockmaster/dockmaster/deployer"
	"github.com/dockmaster/dockmaster/internal/auth"
	"github.com/dockmaster/dockmaster/internal/inventory"
	"github.com/dockmaster/dockmaster/internal/store"
	"github.com/dockmaster/dockmaster/pipeline"
	"github.com/dockmaster/dockmaster/templates"
)

// Deployers hands out an environment's deployer (internal/fleet.Fleet).
type Deployers interface {
	Deployer(ctx context.Context, env string) (*deployer.Deployer, error)
	// Target is what deploys env: its Deployer, or a Swarm cluster's
	// target (status, logs, revisions, plans look the same).
	Target(ctx context.Context, env string) (deployer.Target, error)
}

// VoteLister lists the votes of one approval stage of a ticket.
type VoteLister interface {
	Votes(ctx context.Context, ticket, stage string) ([]pipeline.Vote, error)
}

// TicketActions finish or roll back a held upgrade (*pipeline.Deploys).
type TicketActions interface {
	Confirm(ctx context.Context, key string, who pipeline.Actor) (pipeline.ApprovalStatus, error)
	Rollback(ctx context.Context, key string, who pipeline.Actor) error
}

// Views serves the status of every app in every environment: the JSON at
// /api/v1/status, the `dockmaster status` matrix, and the HTML pages
// (dashboard, environment, service, tickets, deliveries, audit). All of it
// is read-only; the pages' buttons post to the ticket action endpoints.
type Views struct {
	Store     *store.DB
	Pipeline  pipeline.Store
	Apps      func() []*pipeline.App
	Deployers Deployers
	Inventory *inventory.Monitor
	Authz     *auth.Authorizer
	Pages     *templates.Pages
	Log       *slog.Logger
	// StackName maps an app to its stack; default the lower-cased app name.
	StackName func(app string) string
	// Votes lists a ticket's approval votes (store.DB.Deploys()); nil
	// shows none.
	Votes VoteLister
	// Actions backs the ticket page's finish and roll back forms; nil
	// leaves the forms out.
	Actions TicketActions
	// ProbeTimeout bounds each stack status (Docker calls, health probes)
	// so one unreachable host cannot hang a page; default 5s.
	ProbeTimeout time.Duration
	// Charts draws the last hour's resource use (inline SVG) of hosts and
	// services; nil draws none.
	Charts ChartSource
}

// ChartSource draws resource charts (*containers.Service is one).
type ChartSource interface {
	HostCharts(env string) map[string][]template.HTML
	ServiceCharts(ctx context.Context, env, stack, service string) []template.HTML
}

// RegisterAPI mounts GET /status under api (the /api/v1 group). It lists
// only environments the caller may view, so it is declared NoEnv; ?env=
// narrows it and then needs view on that environment.
func (v *Views) RegisterAPI(api *auth.Routes) {
	api.Handle(http.MethodGet, "/status", auth.PermView, auth.Query("env"), v.statusJSON)
}

// StatusMatrix is every visible app × environment.
type StatusMatrix struct {
	Environments []string    `json:"environments"`
	Apps         []AppStatus `json:"apps"`
}

// AppStatus is one app's row, or (App empty) the row of a stack deployed
// outside the pipeline: by `dockmaster up` or rancher-compose in a Jenkins
// job. Those run all the same, and the matrix answers what runs where.
type AppStatus struct {
	App   string       `json:"app"`
	Stack string       `json:"stack"`
	Cells []CellStatus `json:"environments"`
}

// CellStatus is one app in one environment. Fields after Compare are
// left empty for callers without view-secrets on the environment
// (restricted users see apps and versions only).
type CellStatus struct {
	Environment string `json:"environment"`
	// InPipeline: the environment is in the app's promotion order.
	InPipeline bool `json:"in_pipeline"`
	// Version runs now (from the deployer; else the newest done ticket,
	// VersionFrom says which).
	Version     string `json:"version,omitempty"`
	VersionFrom string `json:"version_from,omitempty"` // deployer | ticket
	// Compare is same, ahead, behind or differs against the previous
	// environment of the promotion order ("" when there is none or
	// either side runs nothing).
	Compare         string `json:"compare,omitempty"`
	Previous        string `json:"previous_environment,omitempty"`
	PreviousVersion string `json:"previous_version,omitempty"`

	// State is the least settled service state (upgraded while a held
	// upgrade waits), or not-deployed.
	State      string          `json:"state,omitempty"`
	OldVersion string          `json:"old_version,omitempty"` // kept while an upgrade is held
	Health     *Health         `json:"health,omitempty"`
	Ticket     string          `json:"ticket,omitempty"` // the newest done ticket
	DeployedBy string          `json:"deployed_by,omitempty"`
	DeployedAt time.Time       `json:"deployed_at,omitzero"`
	Pending    []PendingTicket `json:"pending,omitempty"`
	Error      string          `json:"error,omitempty"`
}

// Health sums the stack's services: current-deployment containers running
// and healthy against the desired scale.
type Health struct {
	Scale   int    `json:"scale"`
	Running int    `json:"running"`
	Healthy int    `json:"healthy"`
	Summary string `json:"summary"` // healthy, degraded, down
}

// PendingTicket is a ticket not yet settled.
type PendingTicket struct {
	Key     string `json:"key"`
	Version string `json:"version"`
	State   string `json:"state"`
}

// pendingStates are the ticket states that still lead to a deploy.
var pendingStates = []pipeline.TicketState{pipeline.TicketOpen, pipeline.TicketScheduled,
	pipeline.TicketDeploying, pipeline.TicketAwaitingConfirmation}

func (v *Views) statusJSON(c *gin.Context) {
	m, err := v.Matrix(c.Request.Context(), auth.PrincipalFrom(c), c.Query("env"))
	if err != nil {
		storeError(c, err)
		return
	}
	c.JSON(http.StatusOK, m)
}

func (v *Views) stackName(app string) string {
	if v.StackName != nil {
		return v.StackName(app)
	}
	return strings.ToLower(app)
}

func (v *Views) probeTimeout() time.Duration {
	if v.ProbeTimeout > 0 {
		return v.ProbeTimeout
	}
	return 5 * time.Second
}

// visibleEnvs lists the environments p may view, in store order; only
// names it when set (and then it must exist).
func (v *Views) visibleEnvs(ctx context.Context, p *auth.Principal, only string) ([]string, error) {
	if only != "" {
		if _, err := v.Store.Environment(ctx, only); err != nil {
			return nil, err
		}
		return []string{only}, nil
	}
	envs, err := v.Store.Environments(ctx)
	if err != nil {
		return nil, err
	}
	out := []string{}
	for _, e := range envs {
		if v.Authz.Can(p, e.Name, auth.PermView) {
			out = append(out, e.Name)
		}
	}
	return out, nil
}

// Matrix builds the status of every app in every environment p may view
// (only env when set). Stack statuses are read concurrently, each bounded
// by ProbeTimeout; a failure lands in that cell's Error.
func (v *Views) Matrix(ctx context.Context, p *auth.Principal, env string) (StatusMatrix, error) {
	envs, err := v.visibleEnvs(ctx, p, env)
	if err != nil {
		return StatusMatrix{}, err
	}
	m := StatusMatrix{Environments: envs, Apps: []AppStatus{}}
	apps := v.Apps()
	// Every cell of the promotion order is needed for ahead/behind, also
	// of environments the caller may not see; those are dropped at the end.
	type key struct{ app, env string }
	cells := map[key]*CellStatus{}
	var fills []func() error
	for _, a := range apps {
		need := append([]string{}, envs...)
		for _, e := range a.Environments {
			if !contains(need, e) {
				need = append(need, e)
			}
		}
		for _, e := range need {
			cell := &CellStatus{Environment: e, InPipeline: contains(a.Environments, e)}
			cells[key{a.Name, e}] = cell
			fills = append(fills, func() error { return v.fillCell(ctx, a, cell) })
		}
	}
	others, err := v.stacksWithoutApp(ctx, envs, apps)
	if err != nil {
		return StatusMatrix{}, err
	}
	otherRows := make([]AppStatus, len(others))
	for i, o := range others {
		otherRows[i] = AppStatus{Stack: o.name, Cells: make([]CellStatus, len(envs))}
		for j, e := range envs {
			cell := &otherRows[i].Cells[j]
			cell.Environment = e
			if o.revision[e] == 0 {
				cell.State = "not-deployed"
				continue
			}
			fills = append(fills, func() error { return v.fillStackCell(ctx, o.name, o.revision[e], cell) })
		}
	}
	if err := fillAll(fills); err != nil {
		return StatusMatrix{}, err
	}
	for _, a := range apps {
		times, err := v.versionTimes(ctx, a.Name)
		if err != nil {
			return StatusMatrix{}, err
		}
		row := AppStatus{App: a.Name, Stack: v.stackName(a.Name), Cells: []CellStatus{}}
		for _, e := range envs {
			cell := *cells[key{a.Name, e}]
			if prev := previousEnv(a.Environments, e); prev != "" {
				pc := cells[key{a.Name, prev}]
				cell.Previous = prev
				cell.Compare = compareVersions(cell.Version, pc.Version, times)
				if v.Authz.Can(p, prev, auth.PermView) {
					cell.PreviousVersion = pc.Version
				}
			}
			row.Cells = append(row.Cells, v.visibleCell(p, cell))
		}
		m.Apps = append(m.Apps, row)
	}
	for _, row := range otherRows {
		for i := range row.Cells {
			row.Cells[i] = v.visibleCell(p, row.Cells[i])
		}
		m.Apps = append(m.Apps, row)
	}
	return m, nil
}

// visibleCell is cell as p may see it: without view-secrets on its
// environment, the app and version only.
func (v *Views) visibleCell(p *auth.Principal, cell CellStatus) CellStatus {
	if v.Authz.Can(p, cell.Environment, auth.PermViewSecrets) {
		return cell
	}
	return CellStatus{Environment: cell.Environment, InPipeline: cell.InPipeline, Version: cell.Version,
		VersionFrom: cell.VersionFrom, Compare: cell.Compare, Previous: cell.Previous, PreviousVersion: cell.PreviousVersion}
}

// fillAll runs fills, at most 8 at a time (each probes hosts), and returns
// the first error.
func fillAll(fills []func() error) error {
	var g errgroup.Group
	g.SetLimit(8)
	for _, fill := range fills {
		g.Go(fill)
	}
	return g.Wait()
}

// otherStack is a stack no app deploys, and the newest revision its
// services run in each environment that has it.
type otherStack struct {
	name     string
	revision map[string]int
}

// stacksWithoutApp lists, sorted, the stacks in envs that are no app's.
func (v *Views) stacksWithoutApp(ctx context.Context, envs []string, apps []*pipeline.App) ([]otherStack, error) {
	ofApp := map[string]bool{}
	for _, a := range apps {
		ofApp[v.stackName(a.Name)] = true
	}
	byName := map[string]*otherStack{}
	for _, e := range envs {
		recs, err := v.Store.Services(ctx, e, "")
		if err != nil {
			return nil, err
		}
		for _, r := range recs {
			if ofApp[r.Stack] {
				continue
			}
			o := byName[r.Stack]
			if o == nil {
				o = &otherStack{name: r.Stack, revision: map[string]int{}}
				byName[r.Stack] = o
			}
			o.revision[e] = max(o.revision[e], r.Revision, 1)
		}
	}
	out := make([]otherStack, 0, len(byName))
	for _, o := range byName {
		out = append(out, *o)
	}
	slices.SortFunc(out, func(a, b otherStack) int { return strings.Compare(a.name, b.name) })
	return out, nil
}

// fillStackCell is fillCell for a stack without an app: no tickets, so
// who deployed it and when are the revision its services run.
func (v *Views) fillStackCell(ctx context.Context, stack string, revision int, cell *CellStatus) error {
	rev, err := v.Store.Revision(ctx, cell.Environment, stack, revision)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	cell.DeployedBy, cell.DeployedAt = rev.CreatedBy, rev.CreatedAt
	st, err := v.stackStatus(ctx, cell.Environment, stack, false)
	if err != nil {
		cell.Error = err.Error()
	}
	summarize(cell, st)
	return nil
}

// fillCell reads the stack status and the tickets of one cell. Store
// errors are returned; a deployer or Docker failure is the cell's Error.
func (v *Views) fillCell(ctx context.Context, a *pipeline.App, cell *CellStatus) error {
	done, err := v.Pipeline.Tickets(ctx, pipeline.TicketFilter{App: a.Name, Environment: cell.Environment,
		States: []pipeline.TicketState{pipeline.TicketDone}, Limit: 1})
	if err != nil {
		return err
	}
	pending, err := v.Pipeline.Tickets(ctx, pipeline.TicketFilter{App: a.Name, Environment: cell.Environment,
		States: pendingStates, Limit: 20})
	if err != nil {
		return err
	}
	for _, t := range pending {
		cell.Pending = append(cell.Pending, PendingTicket{Key: t.Key, Version: t.Version, State: string(t.State)})
	}
	if len(done) > 0 {
		t := done[0]
		cell.Ticket, cell.DeployedBy, cell.DeployedAt = t.Key, firstNonEmpty(t.Pusher, t.CreatedBy), t.UpdatedAt
	}
	st, err := v.stackStatus(ctx, cell.Environment, v.stackName(a.Name), false)
	if err != nil {
		cell.Error = err.Error()
	}
	summarize(cell, st)
	if cell.Version == "" && len(done) > 0 && err != nil {
		// The hosts did not answer: the last confirmed deploy is the best guess.
		cell.Version, cell.VersionFrom = done[0].Version, "ticket"
	}
	return nil
}

// stackStatus is the stack's status; with usage, also its hosts' resource
// use, which costs a docker stats call (about a second) per container.
func (v *Views) stackStatus(ctx context.Context, env, stack string, usage bool) (deployer.StackStatus, error) {
	d, err := v.Deployers.Target(ctx, env)
	if err != nil {
		return deployer.StackStatus{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, v.probeTimeout())
	defer cancel()
	st, err := d.Status(ctx, stack)
	if err == nil && usage {
		sampleUsage(ctx, d, &st)
	}
	return st, err
}

// sampleUsage samples st's resource use where the target can (a Swarm
// target reports none).
func sampleUsage(ctx context.Context, d deployer.Target, st *deployer.StackStatus) {
	if u, ok := d.(interface {
		AddUsage(context.Context, *deployer.StackStatus)
	}); ok {
		u.AddUsage(ctx, st)
	}
}

// stateRank orders service states from settled to most in need of a human.
var stateRank = map[deployer.ServiceState]int{deployer.StateActive: 0, deployer.StateFinishingUpgrade: 1,
	deployer.StateRollingBack: 2, deployer.StateUpgrading: 3, deployer.StateUpgraded: 4}

// summarize folds a stack's services into the cell: the version most
// services run, the least settled state, summed health.
func summarize(cell *CellStatus, st deployer.StackStatus) {
	if len(st.Services) == 0 {
		if cell.Error == "" {
			cell.State = "not-deployed"
		}
		return
	}
	h := &Health{}
	votes := map[string]int{}
	var state deployer.ServiceState = deployer.StateActive
	for _, s := range st.Services {
		h.Scale += s.Scale
		h.Running += s.Running
		h.Healthy += s.Healthy
		votes[s.Version]++
		if stateRank[s.State] > stateRank[state] {
			state = s.State
		}
		if s.OldVersion != "" {
			cell.OldVersion = s.OldVersion
		}
	}
	best := ""
	for ver, n := range votes {
		if n > votes[best] || n == votes[best] && ver < best {
			best = ver
		}
	}
	switch {
	case h.Scale > 0 && h.Healthy >= h.Scale:
		h.Summary = "healthy"
	case h.Healthy > 0:
		h.Summary = "degraded"
	default:
		h.Summary = "down"
	}
	cell.Version, cell.VersionFrom, cell.State, cell.Health = best, "deployer", string(state), h
}

// versionTimes maps each version of app to when its first ticket was
// made, to order versions that are not numbers.
func (v *Views) versionTimes(ctx context.Context, app string) (map[string]time.Time, error) {
	ts, err := v.Pipeline.Tickets(ctx, pipeline.TicketFilter{App: app, Limit: 500})
	if err != nil {
		return nil, err
	}
	out := map[string]time.Time{}
	for _, t := range ts {
		if old, ok := out[t.Version]; !ok || t.CreatedAt.Before(old) {
			out[t.Version] = t.CreatedAt
		}
	}
	return out, nil
}

func previousEnv(order []string, env string) string {
	for i, e := range order {
		if e == env && i > 0 {
			return order[i-1]
		}
	}
	return ""
}

var numericVersion = regexp.MustCompile(`^v?(\d+(?:\.\d+)*)(?:[-+].*)?$`)

// compareVersions says whether cur is ahead of, behind or the same as
// prev. Dotted numbers (1.2.10, v2.0.1-rc1) compare numerically; other
// versions (branch-sha) by when their first ticket was made; without
// either they only "differ".
func compareVersions(cur, prev string, firstSeen map[string]time.Time) string {
	if cur == "" || prev == "" {
		return ""
	}
	if cur == prev {
		return "same"
	}
	a, b := numericVersion.FindStringSubmatch(cur), numericVersion.FindStringSubmatch(prev)
	if a != nil && b != nil {
		if c := compareDotted(a[1], b[1]); c != 0 {
			return map[int]string{1: "ahead", -1: "behind"}[c]
		}
		return "differs"
	}
	ta, okA := firstSeen[cur]
	tb, okB := firstSeen[prev]
	switch {
	case okA && okB && ta.After(tb):
		return "ahead"
	case okA && okB && ta.Before(tb):
		return "behind"
	}
	return "differs"
}

func compareDotted(a, b string) int {
	pa, pb := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < max(len(pa), len(pb)); i++ {
		var x, y int
		if i < len(pa) {
			x, _ = strconv.Atoi(pa[i])
		}
		if i < len(pb) {
			y, _ = strconv.Atoi(pb[i])
		}
		if x != y {
			if x > y {
				return 1
			}
			return -1
		}
	}
	return 0
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

// envStacks lists the stacks that have services in env, sorted.
func (v *Views) envStacks(ctx context.Context, env string) ([]string, error) {
	recs, err := v.Store.Services(ctx, env, "")
	if err != nil {
		return nil, err
	}
	return deployer.StackNames(recs), nil
}
