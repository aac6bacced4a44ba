// Package config loads dockmaster.yaml: strict YAML, errors that name
// file:line and the key, secrets from the environment or files.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Config is the whole of dockmaster.yaml. The zero file (no config at all)
// is valid: Default() fills in the embedded defaults.
type Config struct {
	// Listen is the HTTP address, host:port.
	Listen string `yaml:"listen"`
	// Store is the SQLite database file, or a postgres://user:pass@host:5432/db
	// URL: PostgreSQL lets several replicas share the state (see store.go).
	Store string `yaml:"store"`
	// DataDir holds local state files (generated keys, git caches);
	// default: the SQLite file's directory, or ./data with PostgreSQL.
	DataDir string `yaml:"data_dir"`
	// PublicURL is how people reach dockmaster; it prefixes approval links.
	PublicURL string   `yaml:"public_url"`
	Log       Log      `yaml:"log"`
	Webhooks  Webhooks `yaml:"webhooks"`
	// ShutdownTimeout bounds the drain of in-flight requests on SIGTERM.
	ShutdownTimeout Duration `yaml:"shutdown_timeout"`
	// ReconcileInterval is how often crashed containers are looked for and
	// restarted or replaced.
	ReconcileInterval Duration `yaml:"reconcile_interval"`
	// RescheduleAfter is how long a host may stay unreachable before its
	// containers are replaced on other hosts.
	RescheduleAfter Duration      `yaml:"reschedule_after"`
	Environments    []Environment `yaml:"environments"`
	// Auth is the access layer: bootstrap admin, sessions, signing key.
	Auth Auth `yaml:"auth"`
	// Pipeline: apps, Jenkins, the registry and the builder.
	Pipeline Pipeline `yaml:"pipeline"`
	// Deploys: windows, approvals, held upgrades and their notifications.
	Deploys Deploys `yaml:"deploys"`
	// Discovery: DNS for services and load balancer containers.
	Discovery Discovery `yaml:"discovery"`

	file string // where it was loaded from, "" for defaults
}

// Log selects the log format and level.
type Log struct {
	Format string `yaml:"format"` // auto (text on a terminal, JSON otherwise), text, json
	Level  string `yaml:"level"`  // debug, info, warn, error
}

// Webhooks configures the receivers.
type Webhooks struct {
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// CommitLinger: when several deliveries are already waiting to be
	// committed, wait this long for more to share the transaction and its
	// fsync. A lone delivery never waits. 0 disables.
	CommitLinger Duration `yaml:"commit_linger"`
	// AllowUnsigned accepts hooks from providers with no secret configured.
	AllowUnsigned bool `yaml:"allow_unsigned"`
	// AllowSHA1 accepts GitHub's legacy X-Hub-Signature (sha1).
	AllowSHA1 bool `yaml:"allow_sha1"`
	// Secrets per provider (github, gitlab, gitea, gogs, forgejo, bitbucket,
	// jenkins, registry, generic).
	Secrets map[string]Secret `yaml:"secrets"`
	// RepoSecrets override provider secrets for one repository full name.
	RepoSecrets map[string]Secret `yaml:"repo_secrets"`
}

// Environment declares an environment and its Docker hosts.
type Environment struct {
	Name        string `yaml:"name"`
	Description string `yaml:"description"`
	Hosts       []Host `yaml:"hosts"`
	// Swarm makes the environment a Docker Swarm cluster: deploys go to
	// its manager as Swarm services, hosts are not used.
	Swarm *Swarm `yaml:"swarm"`
}

// Swarm is a Swarm cluster reached through one manager.
type Swarm struct {
	Manager string `yaml:"manager"` // unix:///path or tcp://host:port
}

// Host is one Docker engine of an environment.
type Host struct {
	Name     string            `yaml:"name"`
	Endpoint string            `yaml:"endpoint"` // unix:///path or tcp://host:port
	Address  string            `yaml:"address"`  // IP its published ports answer on
	Labels   map[string]string `yaml:"labels"`
}

// File is the path the config came from ("" when defaults only).
func (c *Config) File() string { return c.file }

// Default is the zero-configuration setup: a local SQLite file, loopback,
// and an environment "local" on the local Docker socket.
func Default() *Config {
	return &Config{
		Listen:            "127.0.0.1:8080",
		Store:             "./data/dockmaster.db",
		Log:               Log{Format: "auto", Level: "info"},
		Webhooks:          Webhooks{MaxBodyBytes: 5 << 20, CommitLinger: Duration(500 * time.Microsecond)},
		ShutdownTimeout:   Duration(8 * time.Second),
		ReconcileInterval: Duration(10 * time.Second),
		RescheduleAfter:   Duration(5 * time.Minute),
		// One zone for the DNS server and the search domains containers get.
		Discovery: Discovery{DNSSuffix: "dockmaster"},
	}
}

// DefaultEnvironment is used when the config declares none.
func DefaultEnvironment() Environment {
	return Environment{Name: "local", Description: "this machine's Docker engine",
		Hosts: []Host{{Name: "local", Endpoint: "unix:///var/run/docker.sock", Address: "127.0.0.1"}}}
}

// Error is a config problem at a place in the file.
type Error struct {
	File string
	Line int
	Key  string
	Msg  string
}

func (e *Error) Error() string {
	place := e.File
	if place == "" {
		place = "config"
	}
	if e.Line > 0 {
		place += ":" + strconv.Itoa(e.Line)
	}
	if e.Key != "" {
		return fmt.Sprintf("%s: %s: %s", place, e.Key, e.Msg)
	}
	return place + ": " + e.Msg
}

// Load reads path over the defaults. path "" means defaults only.
func Load(path string) (*Config, error) {
	cfg := Default()
	if path == "" {
		return cfg, cfg.validate(nil)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(path, data)
}

var yamlLineRe = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)
var unknownFieldRe = regexp.MustCompile(`field (\S+) not found in type (\S+)`)

// Parse decodes data (named file in errors) over the defaults, strictly.
func Parse(file string, data []byte) (*Config, error) {
	cfg := Default()
	cfg.file = file
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, yamlError(file, err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) { // io.EOF: empty file
		return nil, yamlError(file, err)
	}
	if err := cfg.validate(&root); err != nil {
		return nil, err
	}
	return cfg, nil
}

func yamlError(file string, err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		return lineError(file, te.Errors[0])
	}
	return lineError(file, err.Error())
}

func lineError(file, msg string) error {
	m := yamlLineRe.FindStringSubmatch(msg)
	if m == nil {
		return &Error{File: file, Msg: msg}
	}
	line, _ := strconv.Atoi(m[1])
	rest := m[2]
	if f := unknownFieldRe.FindStringSubmatch(rest); f != nil {
		return &Error{File: file, Line: line, Key: f[1], Msg: "unknown key"}
	}
	return &Error{File: file, Line: line, Msg: rest}
}

// validate checks values; root (may be nil) locates keys for line numbers.
func (c *Config) validate(root *yaml.Node) error {
	at := func(msg string, path ...string) error {
		return &Error{File: c.file, Line: lineOf(root, path...), Key: strings.Join(path, "."), Msg: msg}
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return at(fmt.Sprintf("want host:port, got %q", c.Listen), "listen")
	}
	if err := c.validateStore(at); err != nil {
		return err
	}
	switch c.Log.Format {
	case "auto", "text", "json":
	default:
		return at(fmt.Sprintf("want auto, text or json, got %q", c.Log.Format), "log", "format")
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		return at(fmt.Sprintf("want debug, info, warn or error, got %q", c.Log.Level), "log", "level")
	}
	if c.Webhooks.MaxBodyBytes <= 0 {
		return at("must be positive", "webhooks", "max_body_bytes")
	}
	if l := time.Duration(c.Webhooks.CommitLinger); l < 0 || l > time.Second {
		return at(fmt.Sprintf("want 0 to 1s, got %s", l), "webhooks", "commit_linger")
	}
	if c.ReconcileInterval <= 0 {
		return at("must be positive", "reconcile_interval")
	}
	if c.RescheduleAfter <= 0 {
		return at("must be positive", "reschedule_after")
	}
	seen := map[string]bool{}
	for i, e := range c.Environments {
		idx := strconv.Itoa(i)
		if !nameRe.MatchString(e.Name) {
			return at(fmt.Sprintf("environment name %q: use letters, digits, - and _", e.Name), "environments", idx, "name")
		}
		if seen[e.Name] {
			return at(fmt.Sprintf("environment %q declared twice", e.Name), "environments", idx, "name")
		}
		seen[e.Name] = true
		for j, h := range e.Hosts {
			hidx := strconv.Itoa(j)
			if !nameRe.MatchString(h.Name) {
				return at(fmt.Sprintf("host name %q: use letters, digits, ., - and _", h.Name), "environments", idx, "hosts", hidx, "name")
			}
			if !strings.HasPrefix(h.Endpoint, "unix://") && !strings.HasPrefix(h.Endpoint, "tcp://") {
				return at(fmt.Sprintf("want unix:///path or tcp://host:port, got %q", h.Endpoint), "environments", idx, "hosts", hidx, "endpoint")
			}
		}
		if e.Swarm != nil {
			if !strings.HasPrefix(e.Swarm.Manager, "unix://") && !strings.HasPrefix(e.Swarm.Manager, "tcp://") {
				return at(fmt.Sprintf("want unix:///path or tcp://host:port, got %q", e.Swarm.Manager), "environments", idx, "swarm", "manager")
			}
			if len(e.Hosts) > 0 {
				return at("a swarm environment has no hosts: dockmaster talks to the manager only", "environments", idx, "hosts")
			}
		}
	}
	for p, s := range c.Webhooks.Secrets {
		if err := s.check(); err != nil {
			return at(err.Error(), "webhooks", "secrets", p)
		}
	}
	for r, s := range c.Webhooks.RepoSecrets {
		if err := s.check(); err != nil {
			return at(err.Error(), "webhooks", "repo_secrets", r)
		}
	}
	if err := c.validatePipeline(at); err != nil {
		return err
	}
	if err := c.validateDiscovery(at); err != nil {
		return err
	}
	return c.validateDeploys(at)
}

var nameRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// lineOf finds the line of a key path (map keys, or sequence indexes as
// decimal strings). It returns the deepest line found, 0 when root is nil.
func lineOf(root *yaml.Node, path ...string) int {
	if root == nil {
		return 0
	}
	n := root
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	line := 0
	for _, p := range path {
		switch n.Kind {
		case yaml.MappingNode:
			found := false
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == p {
					line = n.Content[i].Line
					n = n.Content[i+1]
					found = true
					break
				}
			}
			if !found {
				return line
			}
		case yaml.SequenceNode:
			i, err := strconv.Atoi(p)
			if err != nil || i >= len(n.Content) {
				return line
			}
			n = n.Content[i]
			line = n.Line
		default:
			return line
		}
	}
	return line
}

// Duration is a time.Duration written as "10s" in YAML.
type Duration time.Duration

// UnmarshalYAML parses Go duration syntax.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: want a duration such as 10s, got %q", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML prints Go duration syntax.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }
