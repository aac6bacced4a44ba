package server

import (
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"

	"github.com/dockmaster/dockmaster/internal/auth"
	"github.com/dockmaster/dockmaster/internal/store"
)

// auditLog answers GET /api/v1/audit?env=&actor=&action=&limit=. The
// middleware checked view on env when one is named; without env a
// non-admin sees only the environments they may view (so never the
// global entries such as logins and user creation).
func (a *AccessAPI) auditLog(c *gin.Context) {
	q := store.AuditQuery{Environment: c.Query("env"), Actor: c.Query("actor"), Action: c.Query("action")}
	if v := c.Query("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			badRequest(c, "limit: want a number from 1 to 1000, got %q", v)
			return
		}
		q.Limit = n
	}
	if q.Environment == "" {
		q.Envs = a.Auth.Authorizer().Environments(auth.PrincipalFrom(c), auth.PermView)
	}
	entries, err := a.Store.AuditLog(c.Request.Context(), q)
	if err != nil {
		internalError(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"entries": entries})
}
