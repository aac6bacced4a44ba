package server

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/dockmaster/dockmaster/internal/auth"
	"github.com/dockmaster/dockmaster/pipeline"
)

// RunAPI serves pipeline runs.
type RunAPI struct {
	Engine *pipeline.Engine
	Store  pipeline.Store
}

// Register mounts the routes under api (the /api/v1 group). Acting on a
// run needs deploy on the environment its ticket goes to.
func (a *RunAPI) Register(api *auth.Routes) {
	api.Handle(http.MethodGet, "/runs", auth.PermView, auth.NoEnv, a.list)
	api.Handle(http.MethodGet, "/runs/:id", auth.PermView, a.runEnv, a.get)
	api.Handle(http.MethodPost, "/runs/:id/rerun", auth.PermDeploy, a.runEnv, a.rerun)
	api.Handle(http.MethodPost, "/runs/:id/cancel", auth.PermDeploy, a.runEnv, a.cancel)
}

// runEnv is the environment of the run in the path; an unknown run checks
// against any environment and then answers 404.
func (a *RunAPI) runEnv(c *gin.Context) string {
	id, err := strconv.ParseInt(c.Param("id"), 10, 64)
	if err != nil {
		return ""
	}
	r, err := a.Store.Run(c.Request.Context(), id)
	if err != nil {
		return ""
	}
	return r.Environment
}

// stageJSON adds the duration people want to read.
type stageJSON struct {
	pipeline.Stage
	DurationSeconds float64 `json:"duration_seconds"`
}

type runJSON struct {
	pipeline.Run
	Stages []stageJSON `json:"stages"`
}

func toRunJSON(r pipeline.Run) runJSON {
	out := runJSON{Run: r, Stages: []stageJSON{}}
	now := time.Now()
	for _, s := range r.Stages {
		out.Stages = append(out.Stages, stageJSON{Stage: s, DurationSeconds: s.Duration(now).Seconds()})
	}
	out.Run.Stages = nil
	return out
}

func (a *RunAPI) list(c *gin.Context) {
	f := pipeline.RunFilter{App: c.Query("app"), Branch: c.Query("branch")}
	if s := c.Query("state"); s != "" {
		for _, st := range strings.Split(s, ",") {
			f.States = append(f.States, pipeline.RunState(st))
		}
	}
	var err error
	if f.Limit, err = queryInt(c, "limit", 50); err != nil {
		return
	}
	if f.Before, err = queryInt64(c, "before"); err != nil {
		return
	}
	runs, err := a.Store.Runs(c.Request.Context(), f)
	if err != nil {
		internalError(c, err)
		return
	}
	out := make([]runJSON, 0, len(runs))
	for _, r := range runs {
		out = append(out, toRunJSON(r))
	}
	c.JSON(http.StatusOK, gin.H{"runs": out})
}

func (a *RunAPI) id(c *gin.Context) (int64, bool) {
	id, err := strconv.ParseInt(c.Param("id"), 10, 64)
	if err != nil || id <= 0 {
		c.AbortWithStatusJSON(http.StatusBadRequest, gin.H{"error": "run id: want a positive number, got " + strconv.Quote(c.Param("id"))})
		return 0, false
	}
	return id, true
}

func (a *RunAPI) get(c *gin.Context) {
	id, ok := a.id(c)
	if !ok {
		return
	}
	r, err := a.Store.Run(c.Request.Context(), id)
	if err != nil {
		storeError(c, err)
		return
	}
	c.JSON(http.StatusOK, toRunJSON(r))
}

func (a *RunAPI) rerun(c *gin.Context) {
	id, ok := a.id(c)
	if !ok {
		return
	}
	r, err := a.Engine.Rerun(c.Request.Context(), id)
	a.reply(c, r, err)
}

func (a *RunAPI) cancel(c *gin.Context) {
	id, ok := a.id(c)
	if !ok {
		return
	}
	r, err := a.Engine.Cancel(c.Request.Context(), id, "canceled through the API")
	a.reply(c, r, err)
}

func (a *RunAPI) reply(c *gin.Context, r pipeline.Run, err error) {
	if errors.Is(err, pipeline.ErrConflict) {
		c.AbortWithStatusJSON(http.StatusConflict, gin.H{"error": err.Error()})
		return
	}
	if err != nil {
		storeError(c, err)
		return
	}
	c.JSON(http.StatusOK, toRunJSON(r))
}

// queryInt reads an optional positive integer query parameter; a bad one
// answers 400 naming it.
func queryInt(c *gin.Context, name string, def int) (int, error) {
	s := c.Query(name)
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		c.AbortWithStatusJSON(http.StatusBadRequest, gin.H{"error": "query " + name + ": want a positive number, got " + strconv.Quote(s)})
		return 0, errors.New("bad query")
	}
	return n, nil
}

func queryInt64(c *gin.Context, name string) (int64, error) {
	s := c.Query(name)
	if s == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		c.AbortWithStatusJSON(http.StatusBadRequest, gin.H{"error": "query " + name + ": want a positive number, got " + strconv.Quote(s)})
		return 0, errors.New("bad query")
	}
	return n, nil
}
