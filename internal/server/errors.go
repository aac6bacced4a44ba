package server

import (
	"errors"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/dockmaster/dockmaster/internal/store"
)

// storeError maps store errors to statuses in one place.
func storeError(c *gin.Context, err error) {
	switch {
	case errors.Is(err, store.ErrNotFound):
		c.AbortWithStatusJSON(http.StatusNotFound, gin.H{"error": err.Error()})
	case errors.Is(err, store.ErrConflict):
		c.AbortWithStatusJSON(http.StatusConflict, gin.H{"error": err.Error()})
	default:
		internalError(c, err)
	}
}

// internalError hides details from the client; the request log line and
// the error log carry them.
func internalError(c *gin.Context, err error) {
	_ = c.Error(err)
	c.AbortWithStatusJSON(http.StatusInternalServerError, gin.H{"error": "internal error"})
}
