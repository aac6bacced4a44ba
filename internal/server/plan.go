package server

import (
	"errors"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/dockmaster/dockmaster/deployer"
	"github.com/dockmaster/dockmaster/deployer/scheduler"
	"github.com/dockmaster/dockmaster/internal/auth"
)

// PlanAPI answers "where would this stack's containers go?" before any
// container changes: POST /environments/:env/stacks/:stack/plan with the
// compose files, answered with the plan per service and, for a service
// that fits nowhere, each host's reason.
type PlanAPI struct {
	Deployers Deployers
}

// Register mounts the route under api (the /api/v1 group). A plan changes
// nothing, so it needs view.
func (a *PlanAPI) Register(api *auth.Routes) {
	api.Handle(http.MethodPost, "/environments/:env/stacks/:stack/plan", auth.PermView, auth.Param("env"), a.plan)
}

// PlanRequest is the body of the plan route: the compose texts as the CLI
// read them.
type PlanRequest struct {
	StackFiles
}

// PlanJSON is the answer. Fits is false when some service fits nowhere.
type PlanJSON struct {
	Stack    string            `json:"stack"`
	Fits     bool              `json:"fits"`
	Services []ServicePlanJSON `json:"services"`
	Warnings []string          `json:"warnings"`
}

// ServicePlanJSON is one service's plan.
type ServicePlanJSON struct {
	Service string           `json:"service"`
	Change  string           `json:"change"` // create, upgrade or converge
	Actions []PlanActionJSON `json:"actions"`
	// Error and Reasons are set when a container fits nowhere; Reasons are
	// host by host, in host-name order.
	Error   string           `json:"error,omitempty"`
	Reasons []HostReasonJSON `json:"reasons,omitempty"`
}

// PlanActionJSON is one planned container action.
type PlanActionJSON struct {
	Action    string `json:"action"` // create, start, remove
	Container string `json:"container"`
	Host      string `json:"host"`
	Reason    string `json:"reason,omitempty"`
}

// HostReasonJSON is why one host was rejected.
type HostReasonJSON struct {
	Host   string `json:"host"`
	Rule   string `json:"rule,omitempty"`
	Reason string `json:"reason"`
}

func (a *PlanAPI) plan(c *gin.Context) {
	env, stack := c.Param("env"), c.Param("stack")
	var in PlanRequest
	if !readStackBody(c, &in) {
		return
	}
	spec, err := in.Load(c.Request.Context(), stack)
	var bad badFilesError
	if errors.As(err, &bad) {
		badRequest(c, "%v", err)
		return
	}
	if err != nil {
		placeError(c, err)
		return
	}
	d, err := a.Deployers.Target(c.Request.Context(), env)
	if err != nil {
		placeError(c, err)
		return
	}
	p, err := d.Plan(c.Request.Context(), *spec)
	if err != nil {
		placeError(c, err)
		return
	}
	c.JSON(http.StatusOK, planJSON(p, spec.Warnings))
}

func planJSON(p deployer.StackPlan, warnings []string) PlanJSON {
	out := PlanJSON{Stack: p.Stack, Fits: p.Err() == nil, Services: []ServicePlanJSON{}, Warnings: orEmpty(warnings)}
	for _, s := range p.Services {
		sj := ServicePlanJSON{Service: s.Service, Change: s.Change, Actions: []PlanActionJSON{}}
		for _, a := range s.Actions {
			sj.Actions = append(sj.Actions, PlanActionJSON{Action: string(a.Kind), Container: a.Name, Host: a.Host, Reason: a.Reason})
		}
		if s.Err != nil {
			sj.Error, sj.Reasons = s.Err.Error(), hostReasons(s.Err)
		}
		out.Services = append(out.Services, sj)
	}
	return out
}

// hostReasons lists the per-host reasons of a placement error, in host
// order (nil when err carries none).
func hostReasons(err error) []HostReasonJSON {
	var out []HostReasonJSON
	var nf *scheduler.NoFitError
	if errors.As(err, &nf) {
		for _, h := range nf.Hosts {
			out = append(out, HostReasonJSON{Host: h.Host, Rule: string(h.Rule), Reason: h.Reason})
		}
		return out
	}
	var pe *deployer.PlacementError
	if errors.As(err, &pe) {
		for _, h := range sortedKeys(pe.Reasons) {
			out = append(out, HostReasonJSON{Host: h, Reason: pe.Reasons[h]})
		}
	}
	return out
}

// placeError answers placement and host errors (409 for rules that do not
// fit or a host in the wrong state, 404 for an unknown host, with the
// per-host reasons), else as the stack routes do.
func placeError(c *gin.Context, err error) {
	switch {
	case errors.Is(err, deployer.ErrNoHost):
		c.AbortWithStatusJSON(http.StatusConflict, gin.H{"error": err.Error(), "reasons": hostReasons(err)})
	case errors.Is(err, scheduler.ErrUnknownHost):
		c.AbortWithStatusJSON(http.StatusNotFound, gin.H{"error": err.Error()})
	case errors.Is(err, scheduler.ErrBadRequest):
		c.AbortWithStatusJSON(http.StatusConflict, gin.H{"error": err.Error()})
	default:
		deployError(c, err)
	}
}

func isBadRequest(err error) bool  { return errors.Is(err, scheduler.ErrBadRequest) }
func isUnknownHost(err error) bool { return errors.Is(err, scheduler.ErrUnknownHost) }
