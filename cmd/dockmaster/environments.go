package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/dockmaster/dockmaster/internal/auth"
	"github.com/dockmaster/dockmaster/internal/config"
	"github.com/dockmaster/dockmaster/internal/inventory"
	"github.com/dockmaster/dockmaster/internal/seal"
	"github.com/dockmaster/dockmaster/internal/server"
)

// hostSealer seals hosts' TLS material and registration tokens:
// auth.hosts_tls_key when set, else a key derived from the signing key.
func hostSealer(c config.Auth, a *auth.Authenticator) (*seal.Sealer, error) {
	key := a.SigningKey()
	if !c.HostsTLSKey.IsZero() {
		v, err := c.HostsTLSKey.Value()
		if err != nil {
			return nil, fmt.Errorf("auth.hosts_tls_key: %w", err)
		}
		key = []byte(v)
	}
	s, err := seal.FromSecret(key, "hosts")
	if err != nil {
		return nil, fmt.Errorf("auth.hosts_tls_key: %w", err)
	}
	return s, nil
}

const envSynopsis = "env create NAME [--description TEXT] | env list  [--url URL] [-o table|json]"

// runEnv creates and lists environments.
func runEnv(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("env", envSynopsis, stderr)
	cf := addClientFlags(fs)
	desc := fs.String("description", "", "create: what the environment is for")
	rest, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(rest) == 0 {
		return usagef("env: want create or list (%s)", envSynopsis)
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	ctx := context.Background()
	switch rest[0] {
	case "create":
		if len(rest) != 2 {
			return usagef("env create takes one NAME, got %q", rest[1:])
		}
		var out struct {
			Name        string `json:"name"`
			Description string `json:"description"`
		}
		if err := c.post(ctx, "/api/v1/environments", map[string]string{"name": rest[1], "description": *desc}, &out); err != nil {
			return err
		}
		if cf.wantJSON() {
			return writeJSON(stdout, out)
		}
		fmt.Fprintf(stdout, "created environment %s\n", out.Name)
		return nil
	case "list", "ls":
		if len(rest) != 1 {
			return usagef("env list takes no arguments, got %q", rest[1:])
		}
		var out struct {
			Environments []struct {
				Name        string                 `json:"name"`
				Description string                 `json:"description"`
				Hosts       []inventory.HostStatus `json:"hosts"`
			} `json:"environments"`
		}
		if err := c.get(ctx, "/api/v1/environments", nil, &out); err != nil {
			return err
		}
		if cf.wantJSON() {
			return writeJSON(stdout, out)
		}
		tw := newTable(stdout)
		fmt.Fprintln(tw, "NAME\tHOSTS\tDESCRIPTION")
		for _, e := range out.Environments {
			fmt.Fprintf(tw, "%s\t%d\t%s\n", e.Name, len(e.Hosts), e.Description)
		}
		return tw.Flush()
	}
	return usagef("env: unknown subcommand %q (want create or list)", rest[0])
}

const hostSynopsis = "host register --token TOKEN --endpoint tcp://host:2376|unix:///path [--name NAME] [--address IP] [--tls-ca FILE --tls-cert FILE --tls-key FILE] [--label k=v]... [--url URL] [-o table|json]"

// labelFlags collects repeated --label k=v.
type labelFlags map[string]string

func (l labelFlags) String() string {
	var kv []string
	for k, v := range l {
		kv = append(kv, k+"="+v)
	}
	sort.Strings(kv)
	return strings.Join(kv, ",")
}

func (l labelFlags) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("want key=value, got %q", s)
	}
	l[k] = v
	return nil
}

// runHost registers this (or any) Docker host into the environment the
// token belongs to. It authenticates with the registration token only.
// Exit 0 whether or not anything changed; the answer says which.
func runHost(args []string, stdout, stderr io.Writer) error {
	if hostAction(args) { // drain, activate, rebalance: hosts.go
		return runHostAction(args, stdout, stderr)
	}
	fs := newFlags("host", hostSynopsis, stderr)
	cf := addClientFlags(fs)
	token := fs.String("token", "", "registration token (env DOCKMASTER_REGISTRATION_TOKEN)")
	endpoint := fs.String("endpoint", "", "how dockmaster reaches this host's Docker: tcp://host:2376 or unix:///var/run/docker.sock")
	name := fs.String("name", "", "host name in dockmaster (default: this machine's hostname)")
	address := fs.String("address", "", "IP the host's published ports answer on (default: the endpoint's IP)")
	ca := fs.String("tls-ca", "", "CA certificate (PEM file) that signed the daemon's certificate")
	cert := fs.String("tls-cert", "", "client certificate (PEM file)")
	key := fs.String("tls-key", "", "client key (PEM file)")
	labels := labelFlags{}
	fs.Var(labels, "label", "host label key=value (repeatable)")
	rest, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(rest) != 1 || rest[0] != "register" {
		return usagef("host: want register (%s)", hostSynopsis)
	}
	if *token == "" {
		*token = os.Getenv("DOCKMASTER_REGISTRATION_TOKEN")
	}
	if *token == "" {
		return usagef("host register: --token is required")
	}
	if *endpoint == "" {
		return usagef("host register: --endpoint is required")
	}
	if *name == "" {
		h, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("host register: --name not given and no hostname: %w", err)
		}
		*name = h
	}
	req := server.RegisterRequest{Token: *token, Name: *name, Endpoint: *endpoint, Address: *address, Labels: labels}
	for _, f := range []struct {
		flag, path string
		dst        *string
	}{{"--tls-ca", *ca, &req.TLS.CA}, {"--tls-cert", *cert, &req.TLS.Cert}, {"--tls-key", *key, &req.TLS.Key}} {
		if f.path == "" {
			continue
		}
		b, err := os.ReadFile(f.path)
		if err != nil {
			return usagef("host register: %s: %v", f.flag, err)
		}
		*f.dst = string(b)
	}
	if err := req.TLS.Validate(); err != nil {
		return usagef("host register: %v", err)
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	c.access, c.secret = "", "" // the token is the credential
	var out server.RegisterResponse
	if err := c.post(context.Background(), server.RegisterPath, req, &out); err != nil {
		return err
	}
	if cf.wantJSON() {
		return writeJSON(stdout, out)
	}
	verb := "registered"
	if !out.Changed {
		verb = "already registered, unchanged:"
	}
	fmt.Fprintf(stdout, "%s host %s (%s) in environment %s\n", verb, out.Name, out.Endpoint, out.Environment)
	return nil
}
