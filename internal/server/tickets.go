package server

import (
	"context"
	"errors"
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"

	"github.com/dockmaster/dockmaster/internal/auth"
	"github.com/dockmaster/dockmaster/internal/store"
	"github.com/dockmaster/dockmaster/pipeline"
)

// TicketCreator opens tickets by hand (*pipeline.Engine implements it).
type TicketCreator interface {
	CreateTicket(ctx context.Context, app, branch, env, by string) (pipeline.Ticket, error)
}

// TicketAPI serves deployment tickets and the actions on them. Actors come
// from the authenticated principal, never from a body.
type TicketAPI struct {
	Store   pipeline.DeployStore
	Deploys *pipeline.Deploys
	Engine  TicketCreator
	Authz   *auth.Authorizer
}

// Register mounts the routes on the /api/v1 group.
func (a *TicketAPI) Register(rt *auth.Routes) {
	tenv := func(c *gin.Context) string {
		t, err := a.Store.Ticket(c.Request.Context(), c.Param("key"))
		if err != nil {
			return "" // the handler answers 404
		}
		return t.Environment
	}
	rt.Handle(http.MethodGet, "/tickets", auth.PermView, auth.NoEnv, a.list)
	rt.Handle(http.MethodPost, "/tickets", auth.PermDeploy, auth.NoEnv, a.create)
	rt.Handle(http.MethodGet, "/tickets/:key", auth.PermView, tenv, a.get)
	rt.Handle(http.MethodPost, "/tickets/:key/schedule", auth.PermDeploy, tenv, a.schedule)
	// Overriding the window is the owner's call (manage-members is the owner's permission).
	rt.Handle(http.MethodPost, "/tickets/:key/deploy-now", auth.PermManageMembers, tenv, a.deployNow)
	rt.Handle(http.MethodPost, "/tickets/:key/approve", auth.PermApprove, tenv, a.approve)
	rt.Handle(http.MethodPost, "/tickets/:key/reject", auth.PermApprove, tenv, a.reject)
	rt.Handle(http.MethodPost, "/tickets/:key/confirm", auth.PermApprove, tenv, a.confirm)
	rt.Handle(http.MethodPost, "/tickets/:key/rollback", auth.PermApprove, tenv, a.rollback)
	rt.Handle(http.MethodGet, "/blocks", auth.PermView, auth.NoEnv, a.blocks)
	rt.Handle(http.MethodDelete, "/environments/:env/blocks/:app/:version", auth.PermApprove, auth.Param("env"), a.unblock)
}

// TicketJSON is a ticket with its schedule, approvals and hold.
type TicketJSON struct {
	pipeline.Ticket
	Schedule *pipeline.Schedule       `json:"schedule,omitempty"`
	Approval *pipeline.ApprovalStatus `json:"approval,omitempty"`
	Finish   *pipeline.ApprovalStatus `json:"finish,omitempty"`
	Hold     *pipeline.Hold           `json:"hold,omitempty"`
	// HoldLinks are the open hold's approval pages (the links the held
	// notification carries), for approvers of the environment: a deploy
	// job prints them. Only GET /tickets/:key fills them.
	HoldLinks *HoldLinks `json:"hold_links,omitempty"`
}

// HoldLinks are the signed finish and rollback page URLs of a hold.
type HoldLinks struct {
	FinishURL   string `json:"finish_url"`
	RollbackURL string `json:"rollback_url"`
}

func (a *TicketAPI) view(ctx context.Context, t pipeline.Ticket) TicketJSON {
	v := TicketJSON{Ticket: t}
	if s, err := a.Store.GetSchedule(ctx, t.Key); err == nil && t.State == pipeline.TicketScheduled {
		v.Schedule = &s
	}
	if st, err := a.Deploys.Status(ctx, t, pipeline.ApprovalDeploy); err == nil && st.Required > 0 {
		v.Approval = &st
	}
	if h, err := a.Store.HoldFor(ctx, t.Key); err == nil {
		v.Hold = &h
		if st, err := a.Deploys.Status(ctx, t, pipeline.ApprovalFinish); err == nil {
			v.Finish = &st
		}
	}
	return v
}

func (a *TicketAPI) actor(c *gin.Context) pipeline.Actor {
	return pipeline.Actor{Name: auth.PrincipalFrom(c).Name, Source: c.ClientIP()}
}

// ticketError maps deploy errors to statuses in one place.
func ticketError(c *gin.Context, err error) {
	switch {
	case errors.Is(err, pipeline.ErrNotEligible), errors.Is(err, pipeline.ErrSelfApprove):
		c.AbortWithStatusJSON(http.StatusForbidden, gin.H{"error": err.Error()})
	case errors.Is(err, pipeline.ErrReasonMissing):
		c.AbortWithStatusJSON(http.StatusBadRequest, gin.H{"error": err.Error()})
	case errors.Is(err, pipeline.ErrWrongState), errors.Is(err, pipeline.ErrAlreadyVoted), errors.Is(err, pipeline.ErrBlocked),
		errors.Is(err, pipeline.ErrConflict):
		c.AbortWithStatusJSON(http.StatusConflict, gin.H{"error": err.Error()})
	default:
		storeError(c, err)
	}
}

func (a *TicketAPI) list(c *gin.Context) {
	f := pipeline.TicketFilter{App: c.Query("app"), Environment: c.Query("env")}
	if s := c.Query("state"); s != "" {
		f.States = []pipeline.TicketState{pipeline.TicketState(s)}
	}
	f.Limit, _ = strconv.Atoi(c.Query("limit"))
	ts, err := a.Store.Tickets(c.Request.Context(), f)
	if err != nil {
		storeError(c, err)
		return
	}
	p := auth.PrincipalFrom(c)
	out := []TicketJSON{}
	for _, t := range ts {
		if a.Authz.Can(p, t.Environment, auth.PermView) {
			out = append(out, a.view(c.Request.Context(), t))
		}
	}
	c.JSON(http.StatusOK, out)
}

func (a *TicketAPI) get(c *gin.Context) {
	t, err := a.Store.Ticket(c.Request.Context(), c.Param("key"))
	if err != nil {
		storeError(c, err)
		return
	}
	v := a.view(c.Request.Context(), t)
	// A link acts for its holder where the environment allows link-only
	// approval: only approvers may have it.
	if v.Hold != nil && v.Hold.State == pipeline.HoldOpen && a.Authz.Can(auth.PrincipalFrom(c), t.Environment, auth.PermApprove) {
		f, r := a.Deploys.LinkURLs(*v.Hold)
		v.HoldLinks = &HoldLinks{FinishURL: f, RollbackURL: r}
	}
	c.JSON(http.StatusOK, v)
}

func (a *TicketAPI) create(c *gin.Context) {
	var req struct {
		App    string `json:"app"`
		Branch string `json:"branch"`
		Env    string `json:"env"`
	}
	if err := c.ShouldBindJSON(&req); err != nil || req.App == "" || req.Branch == "" || req.Env == "" {
		c.AbortWithStatusJSON(http.StatusBadRequest, gin.H{"error": "body: want JSON {\"app\", \"branch\", \"env\"}, all required"})
		return
	}
	if !a.Authz.Can(auth.PrincipalFrom(c), req.Env, auth.PermDeploy) {
		c.AbortWithStatusJSON(http.StatusForbidden, gin.H{"error": "forbidden: missing permission deploy on environment " + req.Env})
		return
	}
	t, err := a.Engine.CreateTicket(c.Request.Context(), req.App, req.Branch, req.Env, auth.PrincipalFrom(c).Name)
	auth.Audit(c, "ticket.create", req.Env, t.Key, err)
	if err != nil {
		c.AbortWithStatusJSON(http.StatusUnprocessableEntity, gin.H{"error": err.Error()})
		return
	}
	if err := a.Deploys.Schedule(c.Request.Context(), t.Key, a.actor(c)); err != nil {
		ticketError(c, err)
		return
	}
	t, _ = a.Store.Ticket(c.Request.Context(), t.Key)
	c.JSON(http.StatusCreated, a.view(c.Request.Context(), t))
}

// act runs fn and answers the ticket as it is afterwards.
func (a *TicketAPI) act(c *gin.Context, fn func(ctx context.Context, key string, who pipeline.Actor) error) {
	key := c.Param("key")
	if err := fn(c.Request.Context(), key, a.actor(c)); err != nil {
		ticketError(c, err)
		return
	}
	t, err := a.Store.Ticket(c.Request.Context(), key)
	if err != nil {
		storeError(c, err)
		return
	}
	c.JSON(http.StatusOK, a.view(c.Request.Context(), t))
}

func (a *TicketAPI) schedule(c *gin.Context) { a.act(c, a.Deploys.Schedule) }

func (a *TicketAPI) approve(c *gin.Context) {
	a.act(c, func(ctx context.Context, key string, who pipeline.Actor) error {
		_, err := a.Deploys.Approve(ctx, key, who)
		return err
	})
}

func (a *TicketAPI) reject(c *gin.Context) { a.act(c, a.Deploys.Reject) }

func (a *TicketAPI) confirm(c *gin.Context) {
	a.act(c, func(ctx context.Context, key string, who pipeline.Actor) error {
		_, err := a.Deploys.Confirm(ctx, key, who)
		return err
	})
}

func (a *TicketAPI) rollback(c *gin.Context) { a.act(c, a.Deploys.Rollback) }

func (a *TicketAPI) deployNow(c *gin.Context) {
	var req struct {
		Reason string `json:"reason"`
	}
	_ = c.ShouldBindJSON(&req)
	a.act(c, func(ctx context.Context, key string, who pipeline.Actor) error {
		return a.Deploys.DeployNow(ctx, key, who, req.Reason)
	})
}

func (a *TicketAPI) blocks(c *gin.Context) {
	bs, err := a.Store.Blocks(c.Request.Context())
	if err != nil {
		storeError(c, err)
		return
	}
	p := auth.PrincipalFrom(c)
	out := []pipeline.Block{}
	for _, b := range bs {
		if a.Authz.Can(p, b.Environment, auth.PermView) {
			out = append(out, b)
		}
	}
	c.JSON(http.StatusOK, out)
}

func (a *TicketAPI) unblock(c *gin.Context) {
	err := a.Deploys.Unblock(c.Request.Context(), c.Param("app"), c.Param("env"), c.Param("version"), a.actor(c))
	if errors.Is(err, store.ErrNotFound) {
		c.AbortWithStatusJSON(http.StatusNotFound, gin.H{"error": err.Error()})
		return
	}
	if err != nil {
		ticketError(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}
