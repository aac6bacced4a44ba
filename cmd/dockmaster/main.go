// Command dockmaster is the one binary: the service (serve) and the CLI
// that Jenkins shell steps and people use against it.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Set by -ldflags "-X main.version=... -X main.commit=... -X main.date=...".
var (
	version = "dev"
	commit  = "none"
	date    = "unknown"
)

// Exit codes, as documented in --help.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// usageError marks errors that exit 2 (bad flags, bad config).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

type command struct {
	name    string
	summary string
	run     func(args []string, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"serve", "run the dockmaster service", runServe},
		{"lb", "lb [--config-url URL] [--host H]: run a load balancer (what lb_config services run)", runLB},
		{"version", "print version, commit and build date", runVersion},
		{"config", "config check [file]: validate a config and print it, secrets redacted", runConfig},
		{"user", "user create NAME [--admin] [--password-stdin]: add a local user", runUser},
		{"key", "key create --env ENV|--account [--user NAME --password-stdin]: make an API key (secret shown once)", runKey},
		{"member", "member add|remove --env ENV --user NAME [--role ROLE]: grant a role", runMember},
		{"env", "env create NAME | env list: environments (create needs an admin key)", runEnv},
		{"host", "host register --token T --endpoint tcp://h:2376 [--tls-*] [--label k=v]: add a Docker host", runHost},
		{"up", "up -f docker-compose.yml [-r rancher-compose.yml] -e ENV -s STACK [--upgrade] [-d]: deploy a stack", runUp},
		{"status", "status -e ENV [-s STACK] [--wait STATE]: stacks and their services, containers per host", runStackStatus},
		{"finish", "finish -e ENV -s STACK: confirm a held upgrade (old containers removed)", runStackOp("finish")},
		{"rollback", "rollback -e ENV -s STACK: roll a held upgrade back", runStackOp("rollback")},
		{"logs", "logs -e ENV -s STACK [--service S] [-f] [--tail N]: container output", runStackLogs},
		{"revisions", "revisions -e ENV -s STACK [--redeploy N]: deployed definitions of a stack", runRevisions},
		{"rancher-compose", "rancher-compose [flags] up [flags]: rancher-compose's CLI (also when invoked as rancher-compose)", runRancherCompose},
		{"jenkins", "jenkins init --app APP [--out DIR]: write the test/build/deploy Jenkinsfiles and their scripts", runJenkins},
		{"overview", "overview [--env ENV] [--app APP]: every app × environment: version, health, who deployed, pending tickets", runOverview},
		{"deliveries", "deliveries [list|show ID|replay ID]: received webhooks; replay one into the pipeline", runDeliveries},
		{"tickets", "tickets [--app A] [--env E] [--state S]: deployment tickets", runTickets},
		{"ticket", "ticket create --app A --branch B --env E | ticket show|reject|rollback|deploy-now KEY: one ticket", runTicket},
		{"approve", "approve DEPLOY-n: approve a ticket's deploy (or, when held, its finish)", ticketAction("approve")},
		{"confirm", "confirm DEPLOY-n: vote to finish a held upgrade", ticketAction("confirm")},
		{"wait", "wait DEPLOY-n --for upgraded|done: follow a ticket; fails on rollback or failure", runWait},
		{"ps", "ps [-e ENV] [--host H] [--kind managed|standalone]: every container on every host", runPS},
		{"container", "container start|stop|restart|rm [--standalone] CONTAINER: act on one container", runContainer},
		{"exec", "exec [-it] CONTAINER COMMAND...: run a command (or a shell) in a container", runExecCmd},
		{"stats", "stats [-e ENV]: CPU, memory, network and disk use per host and container", runStats},
		{"bench", "bench webhooks [-n 5000] [-c 64]: measure webhook ingestion (bare vs durable)", runBench},
		{"plan", "plan -f docker-compose.yml -e ENV [-s STACK] [--set K=V]: where each container would go, or why it fits nowhere", runPlan},
	}
}

func main() {
	os.Exit(run(os.Args, os.Stdout, os.Stderr))
}

func run(argv []string, stdout, stderr io.Writer) int {
	if invokedAs(argv[0]) == "rancher-compose" { // the drop-in, through a symlink
		return exitCode(runRancherCompose(argv[1:], stdout, stderr), stderr)
	}
	args := argv[1:]
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		printHelp(stdout)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	for _, c := range commands() {
		if c.name == args[0] {
			err := c.run(args[1:], stdout, stderr)
			return exitCode(err, stderr)
		}
	}
	fmt.Fprintf(stderr, "dockmaster: unknown command %q (see dockmaster --help)\n", args[0])
	return exitUsage
}

func exitCode(err error, stderr io.Writer) int {
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	fmt.Fprintln(stderr, "dockmaster:", err)
	var ue usageError
	if errors.As(err, &ue) {
		return exitUsage
	}
	return exitFailure
}

func printHelp(w io.Writer) {
	fmt.Fprintf(w, `dockmaster carries a change from git push to a confirmed production upgrade.

Usage:
  %s <command> [flags]

Commands:
`, filepath.Base(os.Args[0]))
	cs := commands()
	sort.Slice(cs, func(i, j int) bool { return cs[i].name < cs[j].name })
	for _, c := range cs {
		fmt.Fprintf(w, "  %-16s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, `
Run "dockmaster <command> --help" for a command's flags.

Exit codes: 0 ok, 1 runtime failure, 2 usage or config error.
`)
}

// newFlags makes a FlagSet whose errors are usage errors and whose help
// prints a one-line synopsis first.
func newFlags(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: dockmaster %s\n\nFlags:\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}

func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	return nil
}

// parseArgs parses flags placed before or after the positional arguments
// (dockmaster wait DEPLOY-7 --for done), which the flag package alone
// stops at, and returns the positional ones.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := parseFlags(fs, args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

func runVersion(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("version", "version", stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "dockmaster %s (commit %s, built %s)\n", version, commit, date)
	return nil
}

// envOr returns the first non-empty environment variable of names, else def.
func envOr(def string, names ...string) string {
	for _, n := range names {
		if v := strings.TrimSpace(os.Getenv(n)); v != "" {
			return v
		}
	}
	return def
}
