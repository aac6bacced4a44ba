// Package server is dockmaster's HTTP front: routes, request logging,
// metrics, and a graceful shutdown that drains in-flight requests.
package server

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// ReadyChecker reports whether a dependency is ready to serve.
type ReadyChecker interface {
	Ready(ctx context.Context) error
}

// Server owns the gin engine and the metrics registry.
type Server struct {
	Engine  *gin.Engine
	Metrics *prometheus.Registry
	log     *slog.Logger
	ready   map[string]ReadyChecker

	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
}

// New builds the engine with logging, metrics, recovery and the health
// routes. ready names each dependency /readyz checks.
func New(log *slog.Logger, ready map[string]ReadyChecker) *Server {
	gin.SetMode(gin.ReleaseMode)
	s := &Server{Engine: gin.New(), Metrics: prometheus.NewRegistry(), log: log, ready: ready}
	s.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "dockmaster_http_requests_total", Help: "HTTP requests by route, method and status.",
	}, []string{"route", "method", "status"})
	s.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "dockmaster_http_request_duration_seconds", Help: "HTTP request latency by route, method and status.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
	}, []string{"route", "method", "status"})
	s.Metrics.MustRegister(s.requests, s.latency,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	s.Engine.Use(s.observe, gin.CustomRecoveryWithWriter(nil, func(c *gin.Context, rec any) {
		log.Error("panic in handler", "path", c.Request.URL.Path, "panic", rec)
		c.AbortWithStatusJSON(http.StatusInternalServerError, gin.H{"error": "internal error"})
	}))
	s.Engine.GET("/healthz", func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"status": "ok"}) })
	s.Engine.GET("/readyz", s.readyz)
	s.Engine.GET("/metrics", gin.WrapH(promhttp.HandlerFor(s.Metrics, promhttp.HandlerOpts{Registry: s.Metrics})))
	return s
}

// observe logs one line per request and records its metrics. The route
// label is the registered pattern, so ids in paths do not explode series.
func (s *Server) observe(c *gin.Context) {
	start := time.Now()
	c.Next()
	elapsed := time.Since(start)
	route := c.FullPath()
	if route == "" {
		route = "unmatched"
	}
	status := strconv.Itoa(c.Writer.Status())
	s.requests.WithLabelValues(route, c.Request.Method, status).Inc()
	s.latency.WithLabelValues(route, c.Request.Method, status).Observe(elapsed.Seconds())
	level := slog.LevelInfo
	if c.Writer.Status() >= 500 {
		level = slog.LevelError
	}
	s.log.LogAttrs(c.Request.Context(), level, "request",
		slog.String("method", c.Request.Method), slog.String("path", c.Request.URL.Path),
		slog.Int("status", c.Writer.Status()), slog.Duration("latency", elapsed),
		slog.String("remote", c.ClientIP()))
}

func (s *Server) readyz(c *gin.Context) {
	ctx, cancel := context.WithTimeout(c.Request.Context(), 2*time.Second)
	defer cancel()
	checks := gin.H{}
	ok := true
	for name, r := range s.ready {
		if err := r.Ready(ctx); err != nil {
			checks[name] = err.Error()
			ok = false
		} else {
			checks[name] = "ok"
		}
	}
	status := http.StatusOK
	if !ok {
		status = http.StatusServiceUnavailable
	}
	c.JSON(status, gin.H{"ready": ok, "checks": checks})
}

// Serve answers on ln until ctx is done, then stops accepting and waits up
// to drain for in-flight requests.
func (s *Server) Serve(ctx context.Context, ln net.Listener, drain time.Duration) error {
	srv := &http.Server{Handler: s.Engine, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return err
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
