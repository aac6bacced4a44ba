package server

import (
	"errors"
	"net/http"
	"net/url"

	"github.com/gin-gonic/gin"

	"github.com/dockmaster/dockmaster/internal/auth"
	"github.com/dockmaster/dockmaster/pipeline"
	"github.com/dockmaster/dockmaster/templates"
)

// ApprovalPages serve approval links. GET only shows; only POST acts.
//
//	GET  /links/:token      public: the page (verifies the signature itself)
//	POST /links/:token      public: acts only where the environment allows link-only approval
//	GET  /approvals/:token  signed in (view on the link's environment): the page with the buttons
//	POST /approvals/:token  approve permission on the link's environment: acts
type ApprovalPages struct {
	Deploys *pipeline.Deploys
	Signer  *pipeline.Signer
	Pages   *templates.Pages
}

type approvalView struct {
	Page    pipeline.LinkPage
	Problem string
	Done    string
	Action  string // form target, "" for no buttons
	SignIn  string
	CSRF    string
}

// Register mounts the routes on the root group.
func (a *ApprovalPages) Register(rt *auth.Routes) {
	linkEnv := func(c *gin.Context) string {
		l, err := a.Signer.Parse(c.Param("token"))
		if err != nil {
			return "" // the handler shows the invalid link page
		}
		return l.Env
	}
	rt.Public(http.MethodGet, "/links/:token", "approval link page: verifies its HMAC signature, never acts", a.page(false))
	rt.Public(http.MethodPost, "/links/:token", "link-only approval: verifies its HMAC signature; acts only where the environment allows link-only approval", a.act(false))
	rt.Handle(http.MethodGet, "/approvals/:token", auth.PermView, linkEnv, a.page(true))
	rt.Handle(http.MethodPost, "/approvals/:token", auth.PermApprove, linkEnv, a.act(true))
}

func (a *ApprovalPages) render(c *gin.Context, status int, v approvalView) {
	c.Header("Cache-Control", "no-store")
	c.Status(status)
	c.Header("Content-Type", "text/html; charset=utf-8")
	if err := a.Pages.Render(c.Writer, "approval", v); err != nil {
		_ = c.Error(err)
	}
}

func linkStatus(err error) int {
	switch {
	case errors.Is(err, pipeline.ErrLinkInvalid):
		return http.StatusBadRequest
	case errors.Is(err, pipeline.ErrLinkExpired), errors.Is(err, pipeline.ErrLinkUsed):
		return http.StatusGone
	case errors.Is(err, pipeline.ErrNotEligible), errors.Is(err, pipeline.ErrSelfApprove):
		return http.StatusForbidden
	case errors.Is(err, pipeline.ErrAlreadyVoted), errors.Is(err, pipeline.ErrWrongState), errors.Is(err, pipeline.ErrConflict):
		return http.StatusConflict
	}
	return http.StatusInternalServerError
}

func problemText(err error) string {
	switch {
	case errors.Is(err, pipeline.ErrLinkInvalid):
		return "This link is not valid: it was changed or is not from this dockmaster."
	case errors.Is(err, pipeline.ErrLinkExpired):
		return "This link has expired. Open the ticket to finish or roll back."
	}
	return err.Error()
}

func (a *ApprovalPages) page(signedIn bool) gin.HandlerFunc {
	return func(c *gin.Context) {
		tok := c.Param("token")
		p, err := a.Deploys.OpenLink(c.Request.Context(), tok)
		if err != nil {
			a.render(c, linkStatus(err), approvalView{Page: p, Problem: problemText(err)})
			return
		}
		v := approvalView{Page: p}
		switch {
		case signedIn:
			v.Action, v.CSRF = "/approvals/"+url.PathEscape(tok), auth.CSRFToken(c)
		case p.LinkOnly:
			v.Action = "/links/" + url.PathEscape(tok)
		default:
			v.SignIn = "/approvals/" + url.PathEscape(tok)
		}
		a.render(c, http.StatusOK, v)
	}
}

func (a *ApprovalPages) act(signedIn bool) gin.HandlerFunc {
	return func(c *gin.Context) {
		tok := c.Param("token")
		who := pipeline.Actor{Source: c.ClientIP()}
		if signedIn {
			who.Name = auth.PrincipalFrom(c).Name
		}
		action := c.PostForm("action")
		st, err := a.Deploys.ActOnLink(c.Request.Context(), tok, action, who)
		p, _ := a.Deploys.OpenLink(c.Request.Context(), tok)
		if err != nil {
			a.render(c, linkStatus(err), approvalView{Page: p, Problem: problemText(err)})
			return
		}
		done := "Rolled back. The old version runs again; this version is blocked on " + p.Ticket.Environment + "."
		if action == pipeline.ActionFinish {
			done = "Upgrade finished."
			if !st.Approved {
				done = "Your approval is recorded (" + st.String() + "). The upgrade stays held until enough approvers agree."
			}
		}
		a.render(c, http.StatusOK, approvalView{Page: p, Done: done})
	}
}
