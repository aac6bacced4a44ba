package main

import (
	"context"
	"flag"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/dockmaster/dockmaster/deployer"
	"github.com/dockmaster/dockmaster/internal/auth"
	"github.com/dockmaster/dockmaster/internal/config"
	"github.com/dockmaster/dockmaster/internal/discovery"
	"github.com/dockmaster/dockmaster/internal/fleet"
	"github.com/dockmaster/dockmaster/internal/server"
	"github.com/dockmaster/dockmaster/internal/store"
	"github.com/dockmaster/dockmaster/lb"
)

// runLB is `dockmaster lb`: the load balancer that lb_config services run.
// The deployer starts it with its config URL, token and host in the
// environment (deployer.EnvLB*); flags override them.
func runLB(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("lb", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configURL := fs.String("config-url", os.Getenv(deployer.EnvLBConfigURL), "dockmaster's config URL of this balancer (env "+deployer.EnvLBConfigURL+")")
	host := fs.String("host", os.Getenv(deployer.EnvLBHost), "the Docker host this instance runs on (env "+deployer.EnvLBHost+")")
	wait := fs.Duration("wait", 25*time.Second, "how long dockmaster may hold a config poll")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if *configURL == "" {
		return usagef("lb: --config-url (or %s) is required", deployer.EnvLBConfigURL)
	}
	tuneGC() // a proxy's live heap is tiny and every request allocates: +12-15% req/s
	log := slog.New(slog.NewJSONHandler(stdout, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	l := lb.New(lb.Options{Log: log})
	p := &lb.Poller{URL: *configURL, Token: os.Getenv(deployer.EnvLBToken), Host: *host, Wait: *wait}
	log.Info("lb: starting", "config_url", *configURL, "host", *host)
	_ = p.Run(ctx, l.Apply, func(msg string, args ...any) { log.Info(msg, args...) })
	// SIGTERM: stop accepting, let in-flight requests finish.
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return l.Close(sctx)
}

// discoveryRuntime is what every deployer gets (fleet.Options.Discovery):
// lb_config services run `dockmaster lb` from discovery.lb_image and poll
// this server; containers get discovery's resolver.
func discoveryRuntime(cfg *config.Config, key []byte) deployer.Discovery {
	d := deployer.Discovery{DNSSuffix: cfg.Discovery.DNSSuffix}
	if r := cfg.Discovery.Resolver(); r != "" {
		d.DNS = []string{r}
	}
	base := cfg.Discovery.AdvertiseURL
	if base == "" {
		base = cfg.PublicURL
	}
	if cfg.Discovery.LBImage != "" && base != "" {
		base = strings.TrimSuffix(base, "/") + "/api/v1"
		d.LBImage = cfg.Discovery.LBImage
		d.LBConfigURL = func(env, stack, svc string) string { return base + server.LBConfigPath(env, stack, svc) }
		d.LBToken = func(env, stack, svc string) string { return server.LBToken(key, env, stack, svc) }
	}
	return d
}

// startDiscovery runs the healthy-endpoint view, the DNS server when
// discovery.dns_listen is set, and mounts the discovery API. The returned
// func stops the DNS server.
func startDiscovery(cfg *config.Config, db *store.DB, deployers *fleet.Fleet, key []byte, api *auth.Routes,
	goLoop func(func(context.Context)), log *slog.Logger) (func(), error) {
	disc := discovery.New(discovery.Options{Interval: time.Duration(cfg.Discovery.Interval), Log: log,
		Environments: func(ctx context.Context) ([]string, error) {
			envs, err := db.Environments(ctx)
			if err != nil {
				return nil, err
			}
			var names []string
			for _, e := range envs {
				if e.SwarmManager == "" { // a swarm does its own service discovery
					names = append(names, e.Name)
				}
			}
			return names, nil
		},
		Deployer: func(ctx context.Context, env string) (discovery.Endpointer, error) {
			return deployers.Deployer(ctx, env)
		},
	})
	goLoop(disc.Run)
	(&server.DiscoveryAPI{Discovery: disc, LBKey: key}).Register(api)
	if cfg.Discovery.DNSListen == "" {
		return func() {}, nil
	}
	srv, err := disc.ListenDNS(cfg.Discovery.DNSListen, discovery.DNSOptions{Suffix: cfg.Discovery.DNSSuffix})
	if err != nil {
		return nil, err
	}
	log.Info("discovery: DNS answering", "addr", srv.Addr().String(), "suffix", cfg.Discovery.DNSSuffix)
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			log.Warn("discovery: DNS shutdown", "err", err)
		}
	}, nil
}
