package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/dockmaster/dockmaster/internal/auth"
	"github.com/gin-gonic/gin"

	"github.com/dockmaster/dockmaster/internal/config"
	"github.com/dockmaster/dockmaster/internal/containers"
	"github.com/dockmaster/dockmaster/internal/deploys"
	"github.com/dockmaster/dockmaster/internal/fleet"
	"github.com/dockmaster/dockmaster/internal/ingest"
	"github.com/dockmaster/dockmaster/internal/inventory"
	"github.com/dockmaster/dockmaster/internal/server"
	"github.com/dockmaster/dockmaster/internal/store"
	"github.com/dockmaster/dockmaster/pipeline"
	"github.com/dockmaster/dockmaster/templates"
	"github.com/dockmaster/dockmaster/webhooks"
)

// defaultGCPercent trades memory for CPU. The service's live heap is small
// (tens of MB) while a webhook burst allocates some 20 KB per hook, so at
// Go's default of 100 the collector runs every few hundred hooks. The lb
// mode's heap is smaller still, with garbage from every proxied request.
const defaultGCPercent = 400

// tuneGC applies defaultGCPercent unless GOGC is set.
func tuneGC() {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(defaultGCPercent)
	}
}

func runServe(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("serve", "serve [--config file] [--listen addr] [--store path]", stderr)
	cfgPath := fs.String("config", "", "config file (env DOCKMASTER_CONFIG; none: built-in defaults)")
	listen := fs.String("listen", "", "listen address host:port (env DOCKMASTER_LISTEN; default 127.0.0.1:8080)")
	storePath := fs.String("store", "", "SQLite database file (env DOCKMASTER_STORE; default ./data/dockmaster.db)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *cfgPath == "" {
		*cfgPath = envOr("", "DOCKMASTER_CONFIG")
	}
	cfg, err := loadConfig(*cfgPath, *listen, *storePath)
	if err != nil {
		return err
	}
	tuneGC()
	log := newLogger(cfg.Log, stderr)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	return serve(ctx, cfg, log)
}

func newLogger(c config.Log, w io.Writer) *slog.Logger {
	level := map[string]slog.Level{"debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError}[c.Level]
	opts := &slog.HandlerOptions{Level: level}
	format := c.Format
	if format == "auto" {
		format = "json"
		if f, ok := w.(*os.File); ok {
			if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
				format = "text"
			}
		}
	}
	if format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// serve runs until ctx is canceled, then drains requests, stops the
// background loops and closes the store, in that order.
func serve(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	db, err := store.Open(ctx, cfg.Store)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := syncEnvironments(ctx, db, cfg.Environments); err != nil {
		return err
	}

	loops, stopLoops := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { stopLoops(); wg.Wait() }()
	goLoop := func(f func(context.Context)) {
		wg.Add(1)
		go func() { defer wg.Done(); f(loops) }()
	}

	elector := newElector(cfg, log) // leader: see the deploys block

	srv := server.New(log, map[string]server.ReadyChecker{"store": db})
	// access: before any other group or route, so every route gets it.
	authn, err := auth.New(auth.Options{Store: db, Config: cfg.Auth, PublicURL: cfg.PublicURL,
		StateDir: cfg.StateDir(), Log: log})
	if err != nil {
		return err
	}
	if err := authn.Bootstrap(ctx); errors.Is(err, store.ErrConflict) {
		// leader: a replica starting at the same moment created the admin
		// first; this second look finds it.
		err = authn.Bootstrap(ctx)
		if err != nil {
			return err
		}
	} else if err != nil {
		return err
	}
	if err := srv.UseAccess(authn, db, cfg.Auth.TrustedProxies); err != nil {
		return err
	}
	// end access
	api := srv.Engine.Group("/api/v1")
	secured := authn.Routes(api)
	root := authn.Routes(&srv.Engine.RouterGroup)
	// environments and host registration: tokens and hosts' TLS material
	// are sealed at rest with auth.hosts_tls_key (else derived from the
	// signing key); the fleet opens the material for its clients.
	sealer, err := hostSealer(cfg.Auth, authn)
	if err != nil {
		return err
	}
	// hostTLS is a host's client TLS configuration (nil: plain), for every
	// client of a host that is not the fleet's (which opens it itself).
	sealedTLS := fleet.SealedTLS(db, sealer)
	hostTLS := func(ctx context.Context, h store.Host) (*tls.Config, error) {
		m, err := sealedTLS(ctx, h)
		if err != nil || m.IsZero() {
			return nil, err
		}
		return m.Config("")
	}
	inv := inventory.New(db, log, 10*time.Second, hostTLS)
	goLoop(inv.Run)
	(&server.EnvironmentAPI{Store: db, Inventory: inv, Auth: authn}).Register(secured)
	(&server.RegistrationAPI{Store: db, Sealer: sealer, PublicURL: cfg.PublicURL}).Register(secured)
	if cfg.Auth.OIDC.Enabled() { // single sign-on: /login/oidc and its callback
		sso, err := authn.NewOIDC(auth.OIDCOptions{Config: cfg.Auth.OIDC, Store: db, PublicURL: cfg.PublicURL})
		if err != nil {
			return err
		}
		sso.Register(root)
	}
	// end environments and host registration
	root.Public(http.MethodGet, "/static/*filepath", "stylesheet and scripts of the pages",
		gin.WrapH(http.StripPrefix("/static/", http.FileServer(http.FS(templates.Static())))))

	// pipeline
	engine, err := newPipeline(cfg, db, log)
	if err != nil {
		return err
	}
	// The engine's loop starts once the deploy manager is wired (see deploys).
	(&server.RunAPI{Engine: engine, Store: db.Pipeline()}).Register(secured)
	// end pipeline

	// webhooks ingestion: one committer makes each delivery durable (group
	// commit) before it is acknowledged; it stops after the HTTP drain.
	hookSecrets, err := server.WebhookSecrets(cfg.Webhooks)
	if err != nil {
		return err
	}
	hookWriter := db.DeliveryWriter()
	committer := ingest.New(hookWriter, ingest.Options{OnCommit: engine.Wake, Linger: time.Duration(cfg.Webhooks.CommitLinger)})
	goLoop(func(ctx context.Context) { committer.Run(ctx); hookWriter.Close() })
	srv.Metrics.MustRegister(committer.Collectors()...)
	(&server.WebhookAPI{Receiver: webhooks.New(webhooks.Options{Secrets: hookSecrets,
		AllowUnsigned: cfg.Webhooks.AllowUnsigned, AllowSHA1: cfg.Webhooks.AllowSHA1, RepoScoped: len(cfg.Webhooks.RepoSecrets) > 0}),
		Ingest: committer, MaxBodyBytes: cfg.Webhooks.MaxBodyBytes, Log: log}).Register(srv.Engine)
	(&server.DeliveryAPI{Store: db, OnReplay: engine.Wake}).Register(api)
	// end webhooks ingestion

	// stacks: the one fleet of per-environment deployers (reuse
	// `deployers` for anything that acts on containers); jobs run in the
	// loops' context so a shutdown interrupts them resumably.
	deployers := fleet.New(fleet.Options{Store: db, TLS: sealedTLS,
		Discovery:       discoveryRuntime(cfg, authn.SigningKey()), // discovery: LB containers, resolver (lb.go)
		RescheduleAfter: time.Duration(cfg.RescheduleAfter)})
	defer deployers.Close()
	(&server.StackAPI{Fleet: deployers, Store: db, Base: loops}).Register(secured)
	// end stacks

	// scheduler: placement plans, host drain/activate/rebalance
	(&server.PlanAPI{Deployers: deployers}).Register(secured)
	(&server.HostAPI{Store: db, Deployers: deployers}).Register(secured)
	// end scheduler

	// discovery: the healthy-endpoint view for DNS (discovery.dns_listen),
	// LB config polls and Traefik's HTTP provider (lb.go)
	stopDiscovery, err := startDiscovery(cfg, db, deployers, authn.SigningKey(), secured, goLoop, log)
	if err != nil {
		return err
	}
	defer stopDiscovery()
	// end discovery

	// deploys: windows, approvals, held upgrades and their signed links.
	// New tickets are picked up by the deploys loop's next tick.
	linkKey := authn.SigningKey()
	if !cfg.Deploys.LinkKey.IsZero() {
		k, err := cfg.Deploys.LinkKey.Value()
		if err != nil {
			return fmt.Errorf("deploys.link_key: %w", err)
		}
		linkKey = []byte(k)
	}
	policies, err := deploys.Compile(cfg.Deploys)
	if err != nil {
		return err
	}
	linkSigner, err := pipeline.NewSigner(linkKey, nil)
	if err != nil {
		return fmt.Errorf("deploys.link_key: %w", err)
	}
	targets := &deploys.Targets{Deployers: deployers.Target, Apps: engine.App, Stacks: cfg.Deploys.Stacks, Jobs: policies.JenkinsJob,
		Files: deploys.GitFiles{Cache: pipeline.NewGitCache(filepath.Join(cfg.StateDir(), "git-deploys"))}}
	if targets.Jenkins, err = deployJenkins(cfg); err != nil { // deploy jobs (deployjobs.go)
		return err
	}
	deployManager, err := pipeline.NewDeploys(pipeline.DeploysOptions{Store: db.Deploys(), Policy: policies.For, Target: targets.Target,
		Apps: engine.App, Signer: linkSigner, TicketPrefix: cfg.Pipeline.TicketPrefix, Tick: time.Duration(cfg.Deploys.Tick), Log: log,
		LinkURL: func(tok string) string { return strings.TrimSuffix(cfg.PublicURL, "/") + "/links/" + tok }})
	if err != nil {
		return err
	}
	engine.SetDeployHooks(pipeline.DeployHooks{OnTicket: deployManager.OnTicket, DeployBuildFinished: deployManager.DeployFinished})
	// leader: the pipeline engine, the deploys loop (windows, holds) and the reconciler
	// run only while this replica leads; any replica takes hooks and API calls.
	goLoop(func(ctx context.Context) {
		elector.Run(ctx, leading(deployManager.Run, engine.Run, reconcileEvery(db, deployers, time.Duration(cfg.ReconcileInterval), log)))
	})
	// end leader
	(&server.TicketAPI{Store: db.Deploys(), Deploys: deployManager, Engine: engine, Authz: authn.Authorizer()}).Register(secured)
	(&server.ApprovalPages{Deploys: deployManager, Signer: linkSigner, Pages: templates.NewPages()}).Register(root)
	// end deploys

	// status pages: the app × environment matrix (JSON and dashboard) and
	// the read-only HTML pages.
	views := &server.Views{Store: db, Pipeline: db.Pipeline(), Apps: engine.Apps, Deployers: deployers,
		Inventory: inv, Authz: authn.Authorizer(), Pages: templates.NewPages(), Log: log, Votes: db.Deploys(),
		Actions: deployManager}
	views.StackName = func(app string) string { // as deploys names them
		if s := cfg.Deploys.Stacks[app]; s != "" {
			return s
		}
		return strings.ToLower(app)
	}
	views.RegisterAPI(secured)
	views.RegisterPages(root)
	// end status pages

	// containers: every container of every host (a cache kept fresh by
	// Docker events), actions, logs, exec terminals, resource sampling. A
	// stop or remove of a managed container runs the reconciler.
	statsEvery, err := envDuration("DOCKMASTER_STATS_INTERVAL", 10*time.Second) // containers.go
	if err != nil {
		return err
	}
	ctrs := containers.New(containers.Options{Hosts: db, Log: log, StatsInterval: statsEvery,
		Dial: containers.TLSDialer(hostTLS),
		Reconcile: func(ctx context.Context, env string) error {
			if !elector.Leader() { // leader: one replica reconciles
				return nil
			}
			d, err := deployers.Deployer(ctx, env)
			if err != nil {
				return err
			}
			return d.Reconcile(ctx)
		}})
	goLoop(ctrs.Run)
	views.Charts = ctrs // the status pages draw the samples' charts too
	ctrAPI := &server.ContainerAPI{Containers: ctrs, Authz: authn.Authorizer(), Pages: templates.NewPages()}
	ctrAPI.Register(secured)
	ctrAPI.RegisterPages(root)
	// end containers

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.Listen, err)
	}
	log.Info("dockmaster serving", "addr", ln.Addr().String(), "store", db.Path(), "version", version) // leader: Path hides a PostgreSQL password
	if err := srv.Serve(ctx, ln, time.Duration(cfg.ShutdownTimeout)); err != nil {
		return err
	}
	log.Info("dockmaster stopped")
	return nil
}

func syncEnvironments(ctx context.Context, db *store.DB, envs []config.Environment) error {
	for _, e := range envs {
		if err := db.UpsertEnvironment(ctx, store.Environment{Name: e.Name, Description: e.Description, SwarmManager: swarmManager(e)}); err != nil {
			return err
		}
		for _, h := range e.Hosts {
			if _, err := db.UpsertHost(ctx, store.Host{Environment: e.Name, Name: h.Name, Endpoint: h.Endpoint, Address: h.Address, Labels: h.Labels}); err != nil {
				return err
			}
		}
	}
	return nil
}

// swarmManager is e's Swarm manager endpoint, "" for standalone hosts
// (Swarm environments, issue 9).
func swarmManager(e config.Environment) string {
	if e.Swarm == nil {
		return ""
	}
	return e.Swarm.Manager
}
