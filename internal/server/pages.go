package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/dockmaster/dockmaster/deployer"
	"github.com/dockmaster/dockmaster/internal/auth"
	"github.com/dockmaster/dockmaster/internal/store"
	"github.com/dockmaster/dockmaster/pipeline"
)

// refreshSeconds is how often static/refresh.js re-fetches a live page.
const refreshSeconds = 5

// logTail is how many log lines the service page shows.
const logTail = 50

// RegisterPages mounts the HTML pages on the root group. The dashboard,
// lists and audit show only what the caller may view; the other pages
// need view on their environment. Anonymous visitors are sent to /login
// by the middleware.
func (v *Views) RegisterPages(root *auth.Routes) {
	env := auth.Param("env")
	root.Handle(http.MethodGet, "/", auth.PermView, auth.NoEnv, v.dashboard)
	root.Handle(http.MethodGet, "/environments/:env", auth.PermView, env, v.environment)
	root.Handle(http.MethodGet, "/environments/:env/stacks/:stack/services/:service", auth.PermView, env, v.service)
	root.Handle(http.MethodGet, "/tickets", auth.PermView, auth.NoEnv, v.tickets)
	root.Handle(http.MethodGet, "/tickets/:key", auth.PermView, v.ticketEnv, v.ticket)
	if v.Actions != nil {
		root.Handle(http.MethodPost, "/tickets/:key/confirm", auth.PermApprove, v.ticketEnv, v.ticketAction("confirm"))
		root.Handle(http.MethodPost, "/tickets/:key/rollback", auth.PermApprove, v.ticketEnv, v.ticketAction("rollback"))
	}
	root.Handle(http.MethodGet, "/deliveries", auth.PermView, auth.NoEnv, v.deliveries)
	root.Handle(http.MethodGet, "/audit", auth.PermView, auth.Query("env"), v.audit)
}

// page is what every template receives; Data is the page's own model.
type page struct {
	Title   string
	User    string
	CSRF    string
	Refresh int // seconds between live refreshes; 0: none
	Data    any
}

// render executes the page into a buffer first, so a template error
// becomes a clean 500 instead of half a page.
func (v *Views) render(c *gin.Context, status int, name, title string, refresh bool, data any) {
	p := page{Title: title, CSRF: auth.CSRFToken(c), Data: data}
	if pr := auth.PrincipalFrom(c); pr != nil {
		p.User = pr.Name
	}
	if refresh {
		p.Refresh = refreshSeconds
	}
	var buf bytes.Buffer
	if err := v.Pages.Render(&buf, name, p); err != nil {
		internalError(c, fmt.Errorf("page %s: %w", name, err))
		return
	}
	c.Data(status, "text/html; charset=utf-8", buf.Bytes())
}

// pageError answers with the error page: 404 for missing things, else 500
// without details (the request log has them).
func (v *Views) pageError(c *gin.Context, err error) {
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, deployer.ErrNotFound) {
		v.render(c, http.StatusNotFound, "error", "Not found", false, err.Error())
		return
	}
	_ = c.Error(err)
	v.render(c, http.StatusInternalServerError, "error", "Error", false, "internal error")
}

func (v *Views) can(c *gin.Context, env string, perm auth.Permission) bool {
	return v.Authz.Can(auth.PrincipalFrom(c), env, perm)
}

// --- dashboard

func (v *Views) dashboard(c *gin.Context) {
	m, err := v.Matrix(c.Request.Context(), auth.PrincipalFrom(c), "")
	if err != nil {
		v.pageError(c, err)
		return
	}
	v.render(c, http.StatusOK, "dashboard", "Dashboard", true, m)
}

// --- environment

type hostRow struct {
	Name, State, LastError, Labels string
	CPUs                           int
	Memory                         string // total, from the inventory
	CPU, MemUsed, Disk, Net        string // sums over dockmaster's running containers
	Containers                     int
	Err                            string
	Charts                         []template.HTML // last hour's use
}

type serviceRow struct {
	Stack, Service, State, Version, OldVersion, Failed string
	Scale, Running, Healthy                            int
	Hosts                                              string
	Link                                               string
}

type environmentData struct {
	Name, Description string
	Hosts             []hostRow
	Services          []serviceRow
	Errors            []string
}

func (v *Views) environment(c *gin.Context) {
	ctx := c.Request.Context()
	e, err := v.Store.Environment(ctx, c.Param("env"))
	if err != nil {
		v.pageError(c, err)
		return
	}
	data := environmentData{Name: e.Name, Description: e.Description}
	rows := map[string]*hostRow{}
	var order []string
	addHost := func(name string) *hostRow {
		if r, ok := rows[name]; ok {
			return r
		}
		rows[name] = &hostRow{Name: name}
		order = append(order, name)
		return rows[name]
	}
	if v.Inventory != nil {
		for _, h := range v.Inventory.Status(e.Name) {
			r := addHost(h.Name)
			r.State, r.LastError, r.Labels, r.CPUs = h.State, h.LastError, labelList(h.Labels), h.NCPU
			if h.MemTotal > 0 {
				r.Memory = humanBytes(uint64(h.MemTotal))
			}
		}
	}
	stacks, err := v.envStacks(ctx, e.Name)
	if err != nil {
		v.pageError(c, err)
		return
	}
	// Each status samples docker stats (about a second): all at once.
	statuses, errs := make([]deployer.StackStatus, len(stacks)), make([]error, len(stacks))
	fills := make([]func() error, len(stacks))
	for i, stack := range stacks {
		fills[i] = func() error {
			statuses[i], errs[i] = v.stackStatus(ctx, e.Name, stack, true)
			return nil
		}
	}
	_ = fillAll(fills) // the fills report through errs
	usage := map[string]*deployer.Usage{}
	for i, stack := range stacks {
		st, err := statuses[i], errs[i]
		if err != nil {
			data.Errors = append(data.Errors, fmt.Sprintf("stack %s: %v", stack, err))
			continue
		}
		for _, hs := range st.Hosts {
			r := addHost(hs.Name)
			if hs.Err != "" {
				r.Err = hs.Err
			}
			u := usage[hs.Name]
			if u == nil {
				u = &deployer.Usage{}
				usage[hs.Name] = u
			}
			addUsage(u, hs.Usage)
		}
		for _, s := range st.Services {
			hosts := map[string]bool{}
			for _, ct := range s.Containers {
				hosts[ct.Host] = true
				if ct.State == "running" {
					addHost(ct.Host).Containers++
				}
			}
			data.Services = append(data.Services, serviceRow{Stack: stack, Service: s.Name, State: string(s.State),
				Version: s.Version, OldVersion: s.OldVersion, Failed: s.Failed, Scale: s.Scale, Running: s.Running,
				Healthy: s.Healthy, Hosts: strings.Join(sortedKeys(hosts), ", "),
				Link: "/environments/" + e.Name + "/stacks/" + stack + "/services/" + s.Name})
		}
	}
	var charts map[string][]template.HTML
	if v.Charts != nil {
		charts = v.Charts.HostCharts(e.Name)
		for _, name := range sortedKeys(charts) {
			addHost(name)
		}
	}
	for _, name := range order {
		r := rows[name]
		r.Charts = charts[name]
		if u := usage[name]; u != nil {
			r.CPU = fmt.Sprintf("%.1f%%", u.CPUPercent)
			r.MemUsed = humanBytes(u.MemUsage)
			r.Disk = humanBytes(u.DiskRead) + " read, " + humanBytes(u.DiskWrite) + " written"
			r.Net = humanBytes(u.NetRx) + " in, " + humanBytes(u.NetTx) + " out"
		}
		data.Hosts = append(data.Hosts, *r)
	}
	v.render(c, http.StatusOK, "environment", "Environment "+e.Name, true, data)
}

func addUsage(u *deployer.Usage, o deployer.Usage) {
	u.CPUPercent += o.CPUPercent
	u.MemUsage += o.MemUsage
	u.MemLimit = max(u.MemLimit, o.MemLimit)
	u.DiskRead += o.DiskRead
	u.DiskWrite += o.DiskWrite
	u.NetRx += o.NetRx
	u.NetTx += o.NetTx
}

// --- service

type containerRow struct {
	Host, Name, ID, Version, Image, State, Health, Ports, Started string
	Old                                                           bool // of the previous deployment, kept while held
}

type revisionRow struct {
	Number  int
	Version string
	Created string
	By      string // empty for callers without view-secrets, as on the dashboard
	Current bool
}

type envVar struct{ Name, Value string }

type serviceData struct {
	Env, Stack, Service                string
	State, Version, OldVersion, Failed string
	Scale, Running, Healthy            int
	Image, Command, Entrypoint, Ports  string
	// ShowSecrets: environment variables and logs are shown (view-secrets).
	ShowSecrets bool
	EnvVars     []envVar
	Containers  []containerRow
	Logs        []deployer.LogLine
	LogsError   string
	Revisions   []revisionRow
	StatusError string
	LB          []LBRuleJSON    // load balancer rules and healthy backends (discovery.go)
	Charts      []template.HTML // last hour's use, summed over the containers
}

func (v *Views) service(c *gin.Context) {
	ctx := c.Request.Context()
	env, stack, name := c.Param("env"), c.Param("stack"), c.Param("service")
	rec, err := v.Store.Service(ctx, env, stack, name)
	if err != nil {
		v.pageError(c, err)
		return
	}
	data := serviceData{Env: env, Stack: stack, Service: name, State: string(rec.State), Version: rec.Version,
		OldVersion: rec.OldVersion, Failed: rec.Failed, Scale: scaleOf(rec.Spec), Image: rec.Spec.Image,
		Command: strings.Join(rec.Spec.Command, " "), Entrypoint: strings.Join(rec.Spec.Entrypoint, " "),
		Ports: portList(rec.Spec.Ports), ShowSecrets: v.can(c, env, auth.PermViewSecrets)}
	if data.ShowSecrets {
		for _, k := range sortedKeys(rec.Spec.Environment) {
			data.EnvVars = append(data.EnvVars, envVar{k, rec.Spec.Environment[k]})
		}
	}
	st, err := v.stackStatus(ctx, env, stack, false)
	if err != nil {
		data.StatusError = err.Error()
	}
	for _, s := range st.Services {
		if s.Name != name {
			continue
		}
		data.Running, data.Healthy = s.Running, s.Healthy
		data.LB = lbRulesJSON(s.LB)
		for _, ct := range s.Containers {
			img := rec.Spec.Image
			old := rec.OldDeployment != "" && ct.Deployment == rec.OldDeployment
			if old && rec.Old != nil {
				img = rec.Old.Image
			}
			data.Containers = append(data.Containers, containerRow{Host: ct.Host, Name: ct.Name, ID: shortID(ct.ID),
				Version: ct.Version, Image: img, State: ct.State, Health: ct.Health, Ports: portList(ct.Ports),
				Started: when(ct.StartedAt), Old: old})
		}
	}
	if v.Charts != nil {
		data.Charts = v.Charts.ServiceCharts(ctx, env, stack, name)
	}
	// Logs can carry what environment variables hold: same permission.
	if data.ShowSecrets && len(data.Containers) > 0 {
		data.Logs, err = v.logs(ctx, env, stack, name)
		if err != nil {
			data.LogsError = err.Error()
		}
	}
	d, err := v.Deployers.Target(ctx, env)
	if err == nil {
		var revs []deployer.Revision
		revs, err = d.Revisions(ctx, stack)
		for i := len(revs) - 1; i >= 0; i-- {
			r := revs[i]
			row := revisionRow{Number: r.Number, Version: r.Version, Created: when(r.CreatedAt), Current: r.Number == rec.Revision}
			if data.ShowSecrets {
				row.By = r.CreatedBy
			}
			data.Revisions = append(data.Revisions, row)
		}
	}
	if err != nil {
		v.pageError(c, err)
		return
	}
	v.render(c, http.StatusOK, "service", name+" in "+env, true, data)
}

// logs collects the last lines of every container of the service, oldest
// first, within the probe timeout.
func (v *Views) logs(ctx context.Context, env, stack, service string) ([]deployer.LogLine, error) {
	d, err := v.Deployers.Target(ctx, env)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, v.probeTimeout())
	defer cancel()
	ch, err := d.Logs(ctx, stack, service, "", deployer.LogOptions{Tail: logTail})
	if err != nil {
		return nil, err
	}
	var out []deployer.LogLine
	for l := range ch {
		out = append(out, l)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Time.Before(out[j].Time) })
	if len(out) > logTail {
		out = out[len(out)-logTail:]
	}
	return out, ctx.Err()
}

func scaleOf(s deployer.ServiceSpec) int {
	if s.Scale <= 0 {
		return 1
	}
	return s.Scale
}

// --- tickets

type ticketRow struct {
	pipeline.Ticket
	Created string
}

type ticketsData struct {
	State   string
	Tickets []ticketRow
}

func (v *Views) tickets(c *gin.Context) {
	f := pipeline.TicketFilter{App: c.Query("app"), Environment: c.Query("env"), Limit: 200}
	if s := c.Query("state"); s != "" {
		f.States = []pipeline.TicketState{pipeline.TicketState(s)}
	}
	ts, err := v.Pipeline.Tickets(c.Request.Context(), f)
	if err != nil {
		v.pageError(c, err)
		return
	}
	data := ticketsData{State: c.Query("state")}
	for _, t := range ts {
		if v.can(c, t.Environment, auth.PermView) {
			data.Tickets = append(data.Tickets, ticketRow{Ticket: t, Created: when(t.CreatedAt)})
		}
	}
	v.render(c, http.StatusOK, "tickets", "Tickets", true, data)
}

// ticketEnv is the environment of the ticket in the path; an unknown
// ticket checks against any environment and then answers 404.
func (v *Views) ticketEnv(c *gin.Context) string {
	t, err := v.Pipeline.Ticket(c.Request.Context(), c.Param("key"))
	if err != nil {
		return ""
	}
	return t.Environment
}

type stageRow struct {
	Name, State, Executor, Reason, Started, Duration string
	Attempt                                          int
	Links                                            []link
}

type link struct{ Name, URL string }

type voteRow struct {
	Voter, Stage, Comment, At string
	Approve                   bool
}

type ticketData struct {
	Ticket  pipeline.Ticket
	Created string
	Updated string
	Run     *pipeline.Run
	Stages  []stageRow
	Votes   []voteRow
	// CanAct shows the finish and roll back buttons.
	CanAct      bool
	Links       []link
	VotesError  string
	ServiceLink string
}

func (v *Views) ticket(c *gin.Context) {
	ctx := c.Request.Context()
	t, err := v.Pipeline.Ticket(ctx, c.Param("key"))
	if err != nil {
		v.pageError(c, err)
		return
	}
	data := ticketData{Ticket: t, Created: when(t.CreatedAt), Updated: when(t.UpdatedAt), Links: linkList(t.Links),
		CanAct: v.Actions != nil && t.State == pipeline.TicketAwaitingConfirmation &&
			v.can(c, t.Environment, auth.PermApprove),
		ServiceLink: "/environments/" + t.Environment}
	if t.RunID > 0 {
		r, err := v.Pipeline.Run(ctx, t.RunID)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			v.pageError(c, err)
			return
		}
		if err == nil {
			data.Run = &r
			now := time.Now()
			for _, s := range r.Stages {
				row := stageRow{Name: s.Name, State: string(s.State), Executor: s.Executor, Reason: s.Reason,
					Attempt: s.Attempt, Links: linkList(s.Links)}
				if s.StartedAt != nil {
					row.Started = when(*s.StartedAt)
					row.Duration = s.Duration(now).Round(time.Second).String()
				}
				data.Stages = append(data.Stages, row)
			}
		}
	}
	if v.Votes != nil {
		var votes []pipeline.Vote
		for _, stage := range []string{pipeline.ApprovalDeploy, pipeline.ApprovalFinish} {
			vs, err := v.Votes.Votes(ctx, t.Key, stage)
			if err != nil {
				data.VotesError = err.Error()
			}
			votes = append(votes, vs...)
		}
		for _, vt := range votes {
			data.Votes = append(data.Votes, voteRow{Voter: vt.Voter, Stage: vt.Stage, Comment: vt.Comment,
				At: when(vt.At), Approve: vt.Approve})
		}
	}
	live := t.State != pipeline.TicketDone && t.State != pipeline.TicketRolledBack && t.State != pipeline.TicketFailed &&
		t.State != pipeline.TicketCanceled && t.State != pipeline.TicketExpired
	v.render(c, http.StatusOK, "ticket", t.Key, live, data)
}

// ticketAction is the no-JavaScript side of the ticket page's buttons:
// act as the session's user (never a form field), then go back to the
// ticket (303, so a reload does not post again).
func (v *Views) ticketAction(op string) gin.HandlerFunc {
	return func(c *gin.Context) {
		key := c.Param("key")
		who := pipeline.Actor{Name: auth.PrincipalFrom(c).Name, Source: c.ClientIP()}
		var err error
		if op == "confirm" {
			_, err = v.Actions.Confirm(c.Request.Context(), key, who)
		} else {
			err = v.Actions.Rollback(c.Request.Context(), key, who)
		}
		if err != nil {
			status := http.StatusInternalServerError
			switch {
			case errors.Is(err, store.ErrNotFound):
				status = http.StatusNotFound
			case errors.Is(err, pipeline.ErrNotEligible), errors.Is(err, pipeline.ErrSelfApprove):
				status = http.StatusForbidden
			case errors.Is(err, pipeline.ErrWrongState), errors.Is(err, pipeline.ErrAlreadyVoted), errors.Is(err, pipeline.ErrConflict):
				status = http.StatusConflict
			}
			if status == http.StatusInternalServerError {
				v.pageError(c, err)
				return
			}
			v.render(c, status, "error", "Cannot "+op+" "+key, false, err.Error())
			return
		}
		c.Redirect(http.StatusSeeOther, "/tickets/"+url.PathEscape(key))
	}
}

// --- deliveries and audit

type deliveryRow struct {
	store.DeliverySummary
	Received string
}

func (v *Views) deliveries(c *gin.Context) {
	ds, err := v.Store.Deliveries(c.Request.Context(), store.DeliveryFilter{Provider: c.Query("provider"),
		Verdict: store.Verdict(c.Query("verdict")), Repository: c.Query("repo"), Limit: 200})
	if err != nil {
		v.pageError(c, err)
		return
	}
	rows := make([]deliveryRow, 0, len(ds))
	for _, d := range ds {
		rows = append(rows, deliveryRow{DeliverySummary: d, Received: when(d.ReceivedAt)})
	}
	v.render(c, http.StatusOK, "deliveries", "Webhook deliveries", true, rows)
}

type auditRow struct {
	store.AuditEntry
	When string
}

// audit shows the log as GET /api/v1/audit does: a non-admin without
// ?env= sees only the environments they may view.
func (v *Views) audit(c *gin.Context) {
	q := store.AuditQuery{Environment: c.Query("env"), Actor: c.Query("actor"), Action: c.Query("action"), Limit: 300}
	if q.Environment == "" {
		q.Envs = v.Authz.Environments(auth.PrincipalFrom(c), auth.PermView)
	}
	es, err := v.Store.AuditLog(c.Request.Context(), q)
	if err != nil {
		v.pageError(c, err)
		return
	}
	rows := make([]auditRow, 0, len(es))
	for _, e := range es {
		rows = append(rows, auditRow{AuditEntry: e, When: when(e.At)})
	}
	v.render(c, http.StatusOK, "audit", "Audit log", false, rows)
}

// --- formatting (done here so templates stay free of logic)

func when(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

func humanBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

func portList(ps []deployer.PortSpec) string {
	var out []string
	for _, p := range ps {
		s := fmt.Sprintf("%d/%s", p.ContainerPort, p.Protocol)
		if p.HostPort != 0 {
			host := p.HostIP
			if host != "" {
				host += ":"
			}
			s = fmt.Sprintf("%s%d→%s", host, p.HostPort, s)
		}
		out = append(out, s)
	}
	return strings.Join(out, ", ")
}

func labelList(m map[string]string) string {
	var out []string
	for _, k := range sortedKeys(m) {
		out = append(out, k+"="+m[k])
	}
	return strings.Join(out, ", ")
}

func linkList(m map[string]string) []link {
	var out []link
	for _, k := range sortedKeys(m) {
		out = append(out, link{k, m[k]})
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
