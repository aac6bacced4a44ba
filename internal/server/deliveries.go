package server

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"

	"github.com/dockmaster/dockmaster/internal/auth"
	"github.com/dockmaster/dockmaster/internal/store"
)

// DeliveryStore is what the deliveries API needs; *store.DB implements it.
type DeliveryStore interface {
	Deliveries(ctx context.Context, f store.DeliveryFilter) ([]store.DeliverySummary, error)
	Delivery(ctx context.Context, id int64) (store.Delivery, error)
	ReplayDelivery(ctx context.Context, id int64, actor string) (int64, error)
}

// DeliveryAPI lets people inspect received webhooks and replay them.
type DeliveryAPI struct {
	Store DeliveryStore
	// OnReplay runs after a replay is committed (to wake the pipeline engine).
	OnReplay func()
}

// Register mounts, under r (normally /api/v1):
//
//	GET  /deliveries               ?provider= &verdict= &repository= &limit= &before=
//	GET  /deliveries/:id
//	POST /deliveries/:id/replay
func (a *DeliveryAPI) Register(r gin.IRouter) {
	r.GET("/deliveries", a.list)
	r.GET("/deliveries/:id", a.get)
	r.POST("/deliveries/:id/replay", a.replay)
}

// DeliveryJSON is GET /deliveries/:id: the stored delivery with its body
// (as JSON when it is JSON, else as a string).
type DeliveryJSON struct {
	store.Delivery
	Body any `json:"body"`
}

func (a *DeliveryAPI) list(c *gin.Context) {
	f := store.DeliveryFilter{Provider: c.Query("provider"), Verdict: store.Verdict(c.Query("verdict")), Repository: c.Query("repository")}
	var err error
	if f.Limit, err = intQuery(c, "limit", 1000); err != nil {
		return
	}
	if f.Limit == 0 {
		f.Limit = 50
	}
	before, err := intQuery(c, "before", -1)
	if err != nil {
		return
	}
	f.Before = int64(before)
	switch f.Verdict {
	case "", store.VerdictAccepted, store.VerdictIgnored, store.VerdictPing:
	default:
		c.JSON(http.StatusBadRequest, gin.H{"error": "query verdict: want accepted, ignored or ping, got " + strconv.Quote(string(f.Verdict))})
		return
	}
	ds, err := a.Store.Deliveries(c.Request.Context(), f)
	if err != nil {
		internalError(c, err)
		return
	}
	resp := gin.H{"deliveries": ds}
	// A full page may have more behind it: hand out the cursor.
	if len(ds) > 0 && len(ds) == f.Limit {
		resp["next_before"] = ds[len(ds)-1].ID
	}
	c.JSON(http.StatusOK, resp)
}

// intQuery reads a non-negative integer query parameter (0 when absent),
// answering 400 itself on a bad value. max < 0 means no upper bound.
func intQuery(c *gin.Context, name string, max int) (int, error) {
	s := c.Query(name)
	if s == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || (max >= 0 && n > max) {
		msg := "query " + name + ": want a non-negative integer"
		if max >= 0 {
			msg += " up to " + strconv.Itoa(max)
		}
		err = errors.New(msg + ", got " + strconv.Quote(s))
		c.JSON(http.StatusBadRequest, gin.H{"error": err.Error()})
		return 0, err
	}
	return n, nil
}

func (a *DeliveryAPI) id(c *gin.Context) (int64, bool) {
	id, err := strconv.ParseInt(c.Param("id"), 10, 64)
	if err != nil || id <= 0 {
		c.JSON(http.StatusBadRequest, gin.H{"error": "delivery id: want a positive integer, got " + strconv.Quote(c.Param("id"))})
		return 0, false
	}
	return id, true
}

func (a *DeliveryAPI) get(c *gin.Context) {
	id, ok := a.id(c)
	if !ok {
		return
	}
	d, err := a.Store.Delivery(c.Request.Context(), id)
	if err != nil {
		storeError(c, err)
		return
	}
	out := DeliveryJSON{Delivery: d, Body: string(d.Body)}
	if json.Valid(d.Body) {
		out.Body = json.RawMessage(d.Body)
	}
	c.JSON(http.StatusOK, out)
}

func (a *DeliveryAPI) replay(c *gin.Context) {
	id, ok := a.id(c)
	if !ok {
		return
	}
	ev, err := a.Store.ReplayDelivery(c.Request.Context(), id, auth.PrincipalFrom(c).ActorName())
	if errors.Is(err, store.ErrNotActionable) {
		c.JSON(http.StatusConflict, gin.H{"error": err.Error()})
		return
	}
	if err != nil {
		storeError(c, err)
		return
	}
	if a.OnReplay != nil {
		a.OnReplay()
	}
	c.JSON(http.StatusCreated, gin.H{"delivery": id, "event": ev, "status": "replayed"})
}
