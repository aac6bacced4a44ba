package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
)

// rancher-compose drop-in: the binary invoked as `rancher-compose` (or
// `dockmaster rancher-compose ...`) takes rancher-compose's global and up
// flags, so the deploy scripts of Jenkins jobs keep working unchanged:
//
//	rancher-compose --verbose -f docker/docker-compose.yml -r docker/rancher-compose.yml up -d --upgrade
//
// Variables come from the process environment, as rancher-compose took
// them: every variable the files reference that is set (after --env-file).
// The environment: --env, DOCKMASTER_ENV, the API key's environment, else
// "local". Flags without a meaning here are accepted with a warning.

// rancherSubcommands names rancher-compose commands dockmaster does not
// carry, with what to use instead.
var rancherSubcommands = map[string]string{
	"create": "dockmaster up", "start": "dockmaster up", "restart": "dockmaster revisions --redeploy",
	"stop": "the environment page", "rm": "the environment page", "scale": "scale: in rancher-compose.yml, then up",
	"logs": "dockmaster logs", "ps": "dockmaster status", "pull": "up --pull", "upgrade": "up --upgrade",
	"secret": "the environment's variables", "build": "the pipeline's build stage",
}

func runRancherCompose(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("rancher-compose", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: rancher-compose [global flags] up [up flags]\n\ndockmaster's drop-in for rancher-compose (see docs/migrating-from-rancher-compose.md).\n\nGlobal flags:\n")
		fs.PrintDefaults()
	}
	var files multiFlag
	verbose := fs.Bool("verbose", false, "print every step")
	debug := fs.Bool("debug", false, "same as --verbose")
	fs.Var(&files, "f", "compose file (env COMPOSE_FILE; default docker-compose.yml)")
	fs.Var(&files, "file", "same as -f")
	rfile := fs.String("r", "", "rancher-compose file (default rancher-compose.yml beside the compose file)")
	fs.StringVar(rfile, "rancher-file", "", "same as -r")
	project := fs.String("p", "", "stack name (env COMPOSE_PROJECT_NAME; default the compose file's directory name)")
	fs.StringVar(project, "project-name", "", "same as -p")
	envFile := fs.String("e", "", "file of KEY=VALUE lines read as variables (the process environment wins)")
	fs.StringVar(envFile, "env-file", "", "same as -e")
	env := fs.String("env", "", "dockmaster environment (env DOCKMASTER_ENV; default the API key's, else local)")
	rurl := fs.String("url", "", "dockmaster URL (env DOCKMASTER_URL, RANCHER_URL)")
	access := fs.String("access-key", "", "API access key (env DOCKMASTER_ACCESS_KEY, RANCHER_ACCESS_KEY)")
	secret := fs.String("secret-key", "", "API secret key (env DOCKMASTER_SECRET_KEY, RANCHER_SECRET_KEY)")
	bindings := fs.String("b", "", "ignored: bindings files have no meaning in dockmaster")
	fs.StringVar(bindings, "bindings-file", "", "same as -b")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *bindings != "" {
		fmt.Fprintf(stderr, "warning: --bindings-file %s ignored: dockmaster has no bindings\n", *bindings)
	}
	rest := fs.Args()
	if len(rest) == 0 {
		fs.Usage()
		return usagef("rancher-compose: a command is required (dockmaster carries: up)")
	}
	if rest[0] != "up" {
		if alt, ok := rancherSubcommands[rest[0]]; ok {
			return usagef("rancher-compose %s: not carried by dockmaster; use %s", rest[0], alt)
		}
		return usagef("rancher-compose %s: unknown command (dockmaster carries: up)", rest[0])
	}

	ufs := flag.NewFlagSet("rancher-compose up", flag.ContinueOnError)
	ufs.SetOutput(stderr)
	p := upParams{CommandLabel: "rancher-compose"}
	ufs.BoolVar(&p.Req.Detach, "d", false, "return once the work is accepted")
	for _, n := range []string{"upgrade", "u", "recreate"} {
		ufs.BoolVar(&p.Req.Upgrade, n, false, "upgrade changed services (held in upgraded)")
	}
	for _, n := range []string{"force-upgrade", "force-recreate"} {
		ufs.BoolVar(&p.Req.ForceUpgrade, n, false, "upgrade even unchanged services")
	}
	for _, n := range []string{"pull", "p"} {
		ufs.BoolVar(&p.Req.Pull, n, false, "pull images before starting")
	}
	for _, n := range []string{"confirm-upgrade", "c"} {
		ufs.BoolVar(&p.Req.ConfirmUpgrade, n, false, "confirm a held upgrade (old containers removed)")
	}
	for _, n := range []string{"rollback", "r"} {
		ufs.BoolVar(&p.Rollback, n, false, "roll a held upgrade back")
	}
	ufs.IntVar(&p.Req.BatchSize, "batch-size", 0, "containers upgraded at once (default: upgrade_strategy, else 1)")
	ufs.IntVar(&p.Req.IntervalMS, "interval", 0, "milliseconds between batches (default: upgrade_strategy)")
	if err := parseFlags(ufs, rest[1:]); err != nil {
		return err
	}
	if ufs.NArg() > 0 {
		return usagef("rancher-compose up %s: dockmaster deploys the whole stack; drop the service names", strings.Join(ufs.Args(), " "))
	}
	p.Verbose = *verbose || *debug
	if err := p.setMode(); err != nil {
		return err
	}

	if len(files) == 0 {
		if v := os.Getenv("COMPOSE_FILE"); v != "" {
			files = strings.Split(v, string(os.PathListSeparator))
		} else {
			files = multiFlag{"docker-compose.yml"}
		}
	}
	if len(files) > 1 {
		return usagef("-f given %d times: dockmaster takes one compose file per stack (merge them first)", len(files))
	}
	if err := p.readFiles(files[0], *rfile); err != nil {
		return err
	}
	vars, err := rancherVariables(*envFile, p.Req.Compose+"\n"+p.Req.Rancher)
	if err != nil {
		return err
	}
	p.Req.Variables = vars
	p.Stack = *project
	if p.Stack == "" {
		p.Stack = envOr("", "COMPOSE_PROJECT_NAME")
	}
	if p.Stack == "" {
		p.Stack = stackFromFile(files[0])
	}

	cf := &clientFlags{url: rurl, output: new(string)}
	*cf.output = "table"
	c, err := cf.client()
	if err != nil {
		return err
	}
	if *access != "" || *secret != "" {
		c.access, c.secret = *access, *secret
	}
	if base, stripped := stripRancherPath(c.base); stripped != "" {
		fmt.Fprintf(stderr, "warning: URL path %s is Rancher's API path; using %s\n", stripped, base)
		c.base = base
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if p.Env, err = resolveEnv(ctx, c, *env, "local"); err != nil {
		return err
	}
	if p.Verbose {
		names := make([]string, 0, len(vars))
		for k := range vars {
			names = append(names, k)
		}
		sort.Strings(names)
		fmt.Fprintf(stderr, "dockmaster: %s stack %s in environment %s at %s (variables: %s)\n",
			map[bool]string{true: "upgrading", false: "bringing up"}[p.Req.Upgrade], p.Stack, p.Env, c.base, strings.Join(names, " "))
	}
	return doUp(ctx, c, p, stdout, stderr)
}

// multiFlag collects a repeated flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// varRef finds $VAR and ${VAR...} references; $$ is an escaped dollar.
var varRef = regexp.MustCompile(`\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)|\$([A-Za-z_][A-Za-z0-9_]*)`)

// rancherVariables is what rancher-compose interpolated with: the env file
// (if any), overridden by the process environment, for every variable the
// files reference.
func rancherVariables(envFile, text string) (map[string]string, error) {
	fileVars := map[string]string{}
	if envFile != "" {
		var err error
		if fileVars, err = readEnvFile(envFile); err != nil {
			return nil, err
		}
	}
	vars := map[string]string{}
	for _, m := range varRef.FindAllStringSubmatch(text, -1) {
		name := m[1] + m[2]
		if name == "" {
			continue
		}
		if v, ok := os.LookupEnv(name); ok {
			vars[name] = v
		} else if v, ok := fileVars[name]; ok {
			vars[name] = v
		}
	}
	return vars, nil
}

// readEnvFile reads KEY=VALUE lines; # comments and blank lines are
// skipped, surrounding quotes removed. A bad line is an error naming it.
func readEnvFile(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--env-file: %w", err)
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(strings.TrimPrefix(line, "export "), "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, fmt.Errorf("%s:%d: want KEY=VALUE, got %q", path, n, line)
		}
		v = strings.TrimSpace(v)
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			v = v[1 : len(v)-1]
		}
		out[k] = v
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return out, nil
}

// rancherPath matches Rancher API paths left in RANCHER_URL
// (/v1, /v2-beta, /v1/projects/1a5, ...).
var rancherPath = regexp.MustCompile(`^/v[0-9][^/]*(/.*)?$`)

// stripRancherPath removes a Rancher API path from base; it returns the
// new base and what it removed ("" when nothing).
func stripRancherPath(base string) (string, string) {
	u, err := url.Parse(base)
	if err != nil || !rancherPath.MatchString(u.Path) {
		return base, ""
	}
	removed := u.Path
	u.Path = ""
	return strings.TrimRight(u.String(), "/"), removed
}

// invokedAs is the program name argv[0] names.
func invokedAs(argv0 string) string {
	return strings.TrimSuffix(filepath.Base(argv0), ".exe")
}
