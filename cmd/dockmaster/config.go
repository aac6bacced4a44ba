package main

import (
	"fmt"
	"io"

	"gopkg.in/yaml.v3"

	"github.com/dockmaster/dockmaster/internal/config"
)

func runConfig(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "check" {
		return usagef("usage: dockmaster config check [file]")
	}
	fs := newFlags("config check", "config check [file]", stderr)
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	path := envOr("", "DOCKMASTER_CONFIG")
	if fs.NArg() > 0 {
		path = fs.Arg(0)
	}
	cfg, err := config.Load(path)
	if err != nil {
		return usageError{err}
	}
	out, err := yaml.Marshal(cfg)
	if err != nil {
		return err
	}
	src := cfg.File()
	if src == "" {
		src = "built-in defaults"
	}
	fmt.Fprintf(stdout, "# effective config from %s (secrets redacted)\n%s", src, out)
	return nil
}

// loadConfig applies, in order: defaults, the file, environment, flags.
func loadConfig(path, listen, store string) (*config.Config, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return nil, usageError{err}
	}
	if v := envOr("", "DOCKMASTER_LISTEN"); v != "" {
		cfg.Listen = v
	}
	if v := envOr("", "DOCKMASTER_STORE"); v != "" {
		cfg.Store = v
	}
	if listen != "" {
		cfg.Listen = listen
	}
	if store != "" {
		cfg.Store = store
	}
	if len(cfg.Environments) == 0 {
		cfg.Environments = []config.Environment{config.DefaultEnvironment()}
	}
	return cfg, nil
}
