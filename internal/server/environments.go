package server

import (
	"net/http"
	"regexp"
	"slices"

	"github.com/gin-gonic/gin"

	"github.com/dockmaster/dockmaster/internal/auth"
	"github.com/dockmaster/dockmaster/internal/inventory"
	"github.com/dockmaster/dockmaster/internal/store"
)

// EnvironmentAPI serves environments and their hosts' live state, and
// creates environments (admins). Environments also come from the config
// file, synced at start.
type EnvironmentAPI struct {
	Store     *store.DB
	Inventory *inventory.Monitor
	// Auth filters the list to what the caller may view.
	Auth *auth.Authenticator
}

// Register mounts the routes; rt is the /api/v1 group.
func (a *EnvironmentAPI) Register(rt *auth.Routes) {
	env := auth.Param("env")
	rt.Handle(http.MethodGet, "/environments", auth.PermView, auth.NoEnv, a.list)
	rt.Handle(http.MethodPost, "/environments", auth.PermAdmin, auth.NoEnv, a.create)
	rt.Handle(http.MethodGet, "/environments/:env", auth.PermView, env, a.get)
	rt.Handle(http.MethodGet, "/environments/:env/hosts", auth.PermView, env, a.hosts)
}

type environmentJSON struct {
	Name        string                 `json:"name"`
	Description string                 `json:"description"`
	Hosts       []inventory.HostStatus `json:"hosts"`
}

// list answers the environments the caller may view (all for an admin).
func (a *EnvironmentAPI) list(c *gin.Context) {
	envs, err := a.Store.Environments(c.Request.Context())
	if err != nil {
		internalError(c, err)
		return
	}
	visible := a.Auth.Authorizer().Environments(auth.PrincipalFrom(c), auth.PermView) // nil: all
	out := make([]environmentJSON, 0, len(envs))
	for _, e := range envs {
		if visible != nil && !slices.Contains(visible, e.Name) {
			continue
		}
		out = append(out, environmentJSON{Name: e.Name, Description: e.Description, Hosts: orEmpty(a.Inventory.Status(e.Name))})
	}
	c.JSON(http.StatusOK, gin.H{"environments": out})
}

// envNameRe is the config file's rule for environment names.
var envNameRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

func (a *EnvironmentAPI) create(c *gin.Context) {
	var in struct {
		Name        string `json:"name"`
		Description string `json:"description"`
	}
	if !readJSONBody(c, &in) {
		return
	}
	if !envNameRe.MatchString(in.Name) {
		badRequest(c, "name: %q: use letters, digits, ., - and _ (at most 63, starting with a letter or digit)", in.Name)
		return
	}
	if len(in.Description) > 500 {
		badRequest(c, "description: at most 500 characters")
		return
	}
	err := a.Store.CreateEnvironment(c.Request.Context(), store.Environment{Name: in.Name, Description: in.Description})
	auth.Audit(c, "environment.create", in.Name, in.Name, err)
	if err != nil {
		storeError(c, err)
		return
	}
	c.JSON(http.StatusCreated, environmentJSON{Name: in.Name, Description: in.Description, Hosts: []inventory.HostStatus{}})
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
