package server

import (
	"context"
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"

	"github.com/dockmaster/dockmaster/deployer"
	"github.com/dockmaster/dockmaster/deployer/scheduler"
	"github.com/dockmaster/dockmaster/internal/auth"
	"github.com/dockmaster/dockmaster/internal/store"
)

// HostStates sets a host's stored state (store.DB).
type HostStates interface {
	SetHostState(ctx context.Context, env, name, state string) (changed bool, err error)
}

// HostAPI drains, activates and rebalances an environment's hosts:
//
//	POST /environments/:env/hosts/:host/drain      mark draining, move its containers off
//	POST /environments/:env/hosts/:host/activate   mark active (nothing moves back by itself)
//	POST /environments/:env/hosts/:host/rebalance  move containers of spread services back onto it
//
// drain and rebalance take ?dry_run=true to answer the scheduler's plan
// without changing anything. They run in the request (the CLI waits); a
// service that cannot move is reported and the others still move.
type HostAPI struct {
	Store     HostStates
	Deployers Deployers
}

// Register mounts the routes under api (the /api/v1 group); all need
// manage-hosts and are audited.
func (a *HostAPI) Register(api *auth.Routes) {
	env := auth.Param("env")
	api.Handle(http.MethodPost, "/environments/:env/hosts/:host/drain", auth.PermManageHosts, env, a.drain)
	api.Handle(http.MethodPost, "/environments/:env/hosts/:host/activate", auth.PermManageHosts, env, a.activate)
	api.Handle(http.MethodPost, "/environments/:env/hosts/:host/rebalance", auth.PermManageHosts, env, a.rebalance)
}

// HostActionJSON answers the host routes.
type HostActionJSON struct {
	Host   string `json:"host"`
	State  string `json:"state,omitempty"`
	DryRun bool   `json:"dry_run,omitempty"`
	// Plan is the scheduler's plan, one step per line (dry runs).
	Plan    string           `json:"plan,omitempty"`
	Moved   []MoveJSON       `json:"moved"`
	Left    []string         `json:"left,omitempty"`
	Error   string           `json:"error,omitempty"`
	Reasons []HostReasonJSON `json:"reasons,omitempty"`
}

// MoveJSON is one container moved (or, in a dry run, to move).
type MoveJSON struct {
	Stack   string `json:"stack"`
	Service string `json:"service"`
	From    string `json:"from"`
	Old     string `json:"old"`
	To      string `json:"to"`
	New     string `json:"new"`
}

func dryRun(c *gin.Context) (bool, bool) {
	v := c.Query("dry_run")
	if v == "" {
		return false, true
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		badRequest(c, "dry_run: want true or false, got %q", v)
		return false, false
	}
	return b, true
}

func planMoves(p scheduler.Plan) []MoveJSON {
	out := []MoveJSON{}
	for _, m := range p.Moves {
		out = append(out, MoveJSON{Stack: m.Old.Stack, Service: m.Old.Service, From: m.Old.Host, Old: m.Old.Name, To: m.New.Host, New: m.New.Name()})
	}
	return out
}

func moveJSON(ms []deployer.MoveResult) []MoveJSON {
	out := []MoveJSON{}
	for _, m := range ms {
		out = append(out, MoveJSON(m))
	}
	return out
}

// answer writes out, with err's status and reasons when err is set.
func (a *HostAPI) answer(c *gin.Context, out HostActionJSON, err error) {
	if err == nil {
		c.JSON(http.StatusOK, out)
		return
	}
	out.Error, out.Reasons = err.Error(), hostReasons(err)
	status, _ := statusOf(err)
	switch {
	case len(out.Reasons) > 0, isBadRequest(err):
		status = http.StatusConflict
	case isUnknownHost(err):
		status = http.StatusNotFound
	}
	if status == http.StatusInternalServerError {
		_ = c.Error(err)
	}
	c.AbortWithStatusJSON(status, out)
}

func (a *HostAPI) drain(c *gin.Context) {
	env, host := c.Param("env"), c.Param("host")
	dry, ok := dryRun(c)
	if !ok {
		return
	}
	ctx := c.Request.Context()
	if dry {
		d, err := a.Deployers.Deployer(ctx, env)
		if err != nil {
			placeError(c, err)
			return
		}
		p, err := d.PlanDrain(ctx, host)
		a.answer(c, HostActionJSON{Host: host, DryRun: true, Plan: p.String(), Moved: planMoves(p)}, err)
		return
	}
	// Draining first: from here nothing new is placed on the host, by
	// this drain or by anything else.
	_, err := a.Store.SetHostState(ctx, env, host, store.HostDraining)
	if err != nil {
		auth.Audit(c, "host.drain", env, host, err)
		storeError(c, err)
		return
	}
	d, err := a.Deployers.Deployer(ctx, env)
	if err != nil {
		auth.Audit(c, "host.drain", env, host, err)
		placeError(c, err)
		return
	}
	res, err := d.Drain(ctx, host, nil)
	auth.Audit(c, "host.drain", env, host, err)
	a.answer(c, HostActionJSON{Host: host, State: store.HostDraining, Moved: moveJSON(res.Moved), Left: res.Left}, err)
}

func (a *HostAPI) activate(c *gin.Context) {
	env, host := c.Param("env"), c.Param("host")
	_, err := a.Store.SetHostState(c.Request.Context(), env, host, store.HostActive)
	auth.Audit(c, "host.activate", env, host, err)
	if err != nil {
		storeError(c, err)
		return
	}
	c.JSON(http.StatusOK, HostActionJSON{Host: host, State: store.HostActive, Moved: []MoveJSON{}})
}

func (a *HostAPI) rebalance(c *gin.Context) {
	env, host := c.Param("env"), c.Param("host")
	dry, ok := dryRun(c)
	if !ok {
		return
	}
	ctx := c.Request.Context()
	d, err := a.Deployers.Deployer(ctx, env)
	if err != nil {
		placeError(c, err)
		return
	}
	if dry {
		p, err := d.PlanRebalance(ctx, host)
		a.answer(c, HostActionJSON{Host: host, DryRun: true, Plan: p.String(), Moved: planMoves(p)}, err)
		return
	}
	moved, err := d.Rebalance(ctx, host, nil)
	auth.Audit(c, "host.rebalance", env, host, err)
	a.answer(c, HostActionJSON{Host: host, Moved: moveJSON(moved)}, err)
}
