package server

import (
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/dockmaster/dockmaster/internal/inventory"
	"github.com/dockmaster/dockmaster/internal/store"
)

// EnvironmentAPI serves environments and their hosts' live state.
type EnvironmentAPI struct {
	Store     *store.DB
	Inventory *inventory.Monitor
}

// Register mounts the routes under r.
func (a *EnvironmentAPI) Register(r gin.IRouter) {
	r.GET("/environments", a.list)
	r.GET("/environments/:env", a.get)
	r.GET("/environments/:env/hosts", a.hosts)
}

type environmentJSON struct {
	Name        string                 `json:"name"`
	Description string                 `json:"description"`
	Hosts       []inventory.HostStatus `json:"hosts"`
}

func (a *EnvironmentAPI) list(c *gin.Context) {
	envs, err := a.Store.Environments(c.Request.Context())
	if err != nil {
		internalError(c, err)
		return
	}
	out := make([]environmentJSON, 0, len(envs))
	for _, e := range envs {
		out = append(out, environmentJSON{Name: e.Name, Description: e.Description, Hosts: orEmpty(a.Inventory.Status(e.Name))})
	}
	c.JSON(http.StatusOK, gin.H{"environments": out})
}

func (a *EnvironmentAPI) get(c *gin.Context) {
	e, err := a.Store.Environment(c.Request.Context(), c.Param("env"))
	if err != nil {
		storeError(c, err)
		return
	}
	c.JSON(http.StatusOK, environmentJSON{Name: e.Name, Description: e.Description, Hosts: orEmpty(a.Inventory.Status(e.Name))})
}

func (a *EnvironmentAPI) hosts(c *gin.Context) {
	if _, err := a.Store.Environment(c.Request.Context(), c.Param("env")); err != nil {
		storeError(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"hosts": orEmpty(a.Inventory.Status(c.Param("env")))})
}

func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
