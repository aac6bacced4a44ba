package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/dockmaster/dockmaster/internal/server"
)

// The stack commands: up (rancher-compose's replacement), status, finish,
// rollback, logs and revisions. They read files locally and send their
// text; the server loads, schedules and deploys.

// setFlag collects repeated --set KEY=VALUE.
type setFlag map[string]string

func (s setFlag) String() string { return "" }

func (s setFlag) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || k == "" {
		return fmt.Errorf("want KEY=VALUE, got %q", v)
	}
	s[k] = val
	return nil
}

// upParams is one up invocation, from dockmaster up or rancher-compose.
type upParams struct {
	Env, Stack   string
	Req          server.UpRequest
	Rollback     bool
	ConfirmOnly  bool // --confirm-upgrade without --upgrade: finish the held upgrade
	Verbose      bool
	CommandLabel string // how to name the finish/rollback commands in hints
}

func runUp(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("up", "up -f docker-compose.yml [-r rancher-compose.yml] -e ENV [-s STACK] [--set K=V] [-d] [--upgrade] [--confirm-upgrade|--rollback]", stderr)
	cf := addClientFlags(fs)
	sf := addStackFileFlags(fs)
	p := upParams{}
	fs.BoolVar(&p.Req.Detach, "d", false, "return once the work is accepted")
	fs.BoolVar(&p.Req.Upgrade, "upgrade", false, "in-service upgrade, held in upgraded until finish or rollback")
	fs.BoolVar(&p.Req.ForceUpgrade, "force-upgrade", false, "upgrade services even if unchanged")
	fs.BoolVar(&p.Req.Pull, "pull", false, "pull images even if present")
	fs.IntVar(&p.Req.BatchSize, "batch-size", 0, "containers upgraded at once (default: upgrade_strategy)")
	fs.IntVar(&p.Req.IntervalMS, "interval", 0, "pause between batches in milliseconds (default: upgrade_strategy)")
	confirm := fs.Bool("confirm-upgrade", false, "finish a held upgrade (with --upgrade: first, then upgrade)")
	fs.BoolVar(&p.Rollback, "rollback", false, "roll a held upgrade back")
	fs.BoolVar(&p.Verbose, "verbose", false, "print every step")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("up: unexpected arguments %q (flags go before them?)", fs.Args())
	}
	p.Req.ConfirmUpgrade = *confirm
	if err := p.setMode(); err != nil {
		return err
	}
	if err := p.readFiles(*sf.file, *sf.rfile); err != nil {
		return err
	}
	p.Req.Variables = sf.vars
	p.Stack = sf.stack()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	c, e, err := cf.clientIn(ctx, *sf.env, "")
	if err != nil {
		return err
	}
	p.Env = e
	p.CommandLabel = "dockmaster"
	return doUp(ctx, c, p, stdout, stderr)
}

// setMode checks the flag combination.
func (p *upParams) setMode() error {
	if p.Rollback && (p.Req.ConfirmUpgrade || p.Req.Upgrade) {
		return usagef("--rollback goes alone: not with --upgrade or --confirm-upgrade")
	}
	if p.Req.BatchSize < 0 || p.Req.IntervalMS < 0 {
		return usagef("--batch-size and --interval: want zero or more")
	}
	p.ConfirmOnly = p.Req.ConfirmUpgrade && !p.Req.Upgrade
	return nil
}

// readFiles reads the compose file and the rancher-compose file (explicit,
// or the default one beside the compose file when it exists).
func (p *upParams) readFiles(file, rfile string) error {
	if p.Rollback || p.ConfirmOnly {
		return nil // acting on what is deployed; no files needed
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("compose file: %w", err)
	}
	p.Req.Compose, p.Req.ComposeFile = string(b), file
	explicit := rfile != ""
	if !explicit {
		rfile = filepath.Join(filepath.Dir(file), "rancher-compose.yml")
	}
	b, err = os.ReadFile(rfile)
	switch {
	case err == nil:
		p.Req.Rancher, p.Req.RancherFile = string(b), rfile
	case explicit || !errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("rancher-compose file: %w", err)
	}
	return nil
}

// stackFileFlags are the flags of the commands that send a stack's compose
// files: up and plan.
type stackFileFlags struct {
	file, rfile, env, name *string
	vars                   setFlag
}

func addStackFileFlags(fs *flag.FlagSet) *stackFileFlags {
	f := &stackFileFlags{
		file:  fs.String("f", "docker-compose.yml", "docker-compose file"),
		rfile: fs.String("r", "", "rancher-compose file (default: rancher-compose.yml beside the compose file, if present)"),
		env:   envFlag(fs),
		name:  fs.String("s", "", "stack name (default: the compose file's directory name)"),
		vars:  setFlag{},
	}
	fs.Var(f.vars, "set", "variable KEY=VALUE for interpolation, e.g. VERSION=1.0.1 (repeatable)")
	return f
}

// stack is -s, else the compose file's directory name.
func (f *stackFileFlags) stack() string {
	if *f.name != "" {
		return *f.name
	}
	return stackFromFile(*f.file)
}

// stackFromFile is the compose file's directory name, as rancher-compose
// named projects.
func stackFromFile(file string) string {
	abs, err := filepath.Abs(file)
	if err != nil {
		return ""
	}
	return strings.ToLower(filepath.Base(filepath.Dir(abs)))
}

// resolveEnv picks the environment: the flag, DOCKMASTER_ENV, the API
// key's own environment (GET /api/v1/me), else def ("" means required).
func resolveEnv(ctx context.Context, c *apiClient, flagVal, def string) (string, error) {
	if flagVal != "" {
		return flagVal, nil
	}
	if v := envOr("", "DOCKMASTER_ENV"); v != "" {
		return v, nil
	}
	if c.access != "" {
		var me struct {
			Environment string `json:"environment"`
		}
		if err := c.get(ctx, "/api/v1/me", nil, &me); err != nil {
			return "", err
		}
		if me.Environment != "" {
			return me.Environment, nil
		}
	}
	if def == "" {
		return "", usagef("no environment: pass -e ENV or set DOCKMASTER_ENV (or use an environment API key)")
	}
	return def, nil
}

func stackPath(env, stack string) string {
	return "/api/v1/environments/" + url.PathEscape(env) + "/stacks/" + url.PathEscape(stack)
}

// doUp sends the operation and follows it to the end (or returns once it
// is accepted, when detached).
func doUp(ctx context.Context, c *apiClient, p upParams, stdout, stderr io.Writer) error {
	if p.Stack == "" {
		return usagef("no stack name: pass -s STACK")
	}
	path, body, op := stackPath(p.Env, p.Stack)+"/up", any(p.Req), "up"
	switch {
	case p.Rollback:
		path, body, op = stackPath(p.Env, p.Stack)+"/rollback", map[string]bool{"detach": p.Req.Detach}, "rollback"
	case p.ConfirmOnly:
		path, body, op = stackPath(p.Env, p.Stack)+"/finish", map[string]bool{"detach": p.Req.Detach}, "finish"
	case p.Req.Upgrade:
		op = "upgrade"
	}
	if p.Req.Detach {
		var acc struct {
			Job string `json:"job"`
			URL string `json:"url"`
		}
		if err := c.post(ctx, path, body, &acc); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: %s accepted as job %s (%s%s)\n", p.Stack, op, acc.Job, c.base, acc.URL)
		return nil
	}
	pr := newProgress(stdout, p.Verbose)
	var res *server.JobResult
	job := ""
	err := c.stream(ctx, http.MethodPost, path, nil, body, func(line []byte) error {
		var l server.StreamLine
		if err := json.Unmarshal(line, &l); err != nil {
			return fmt.Errorf("progress line %q: %w", line, err)
		}
		switch {
		case l.Job != "":
			job = l.Job
		case l.Event != nil:
			pr.event(*l.Event, stderr)
		case l.Result != nil:
			res = l.Result
		}
		return nil
	})
	if err != nil {
		if ctx.Err() != nil && job != "" {
			return fmt.Errorf("interrupted; the %s goes on on the server (GET /api/v1/jobs/%s)", op, job)
		}
		return err
	}
	if res == nil {
		return fmt.Errorf("%s %s: the server ended the stream without a result (job %s)", op, p.Stack, job)
	}
	held := false
	for _, s := range res.Services {
		line := fmt.Sprintf("%s: %s %s", s.Name, s.State, s.Version)
		if s.OldVersion != "" {
			line += " (previous " + s.OldVersion + " kept stopped)"
		}
		fmt.Fprintln(stdout, line)
		held = held || s.State == "upgraded"
	}
	if !res.OK {
		return fmt.Errorf("%s %s: %s", op, p.Stack, res.Error)
	}
	if held {
		fmt.Fprintf(stdout, "%s is upgraded and held: confirm with `%s` or roll back with `%s`\n", p.Stack,
			holdHint(p, "finish"), holdHint(p, "rollback"))
	}
	return nil
}

func holdHint(p upParams, op string) string {
	if p.CommandLabel == "rancher-compose" {
		flag := map[string]string{"finish": "--confirm-upgrade", "rollback": "--rollback"}[op]
		return "rancher-compose up " + flag
	}
	return fmt.Sprintf("dockmaster %s -e %s -s %s", op, p.Env, p.Stack)
}

// progress prints per-service, per-host counts as events arrive:
//
//	web: h1 started 2/2 healthy 1/2, h2 started 1/1 healthy 1/1 (scale 3)
type progress struct {
	w       io.Writer
	verbose bool
	svc     map[string]*svcProgress
}

type svcProgress struct {
	scale            int
	created          map[string]int
	started, healthy map[string]int
	printed          string // the last line, not repeated while nothing moved
}

func newProgress(w io.Writer, verbose bool) *progress {
	return &progress{w: w, verbose: verbose, svc: map[string]*svcProgress{}}
}

func (p *progress) event(e server.EventJSON, stderr io.Writer) {
	if e.Step == "warning" {
		fmt.Fprintln(stderr, "warning:", e.Message)
		return
	}
	s := p.svc[e.Service]
	if s == nil {
		s = &svcProgress{created: map[string]int{}, started: map[string]int{}, healthy: map[string]int{}}
		p.svc[e.Service] = s
	}
	switch e.Step {
	case "create":
		s.created[e.Host]++
	case "healthy":
		s.started[e.Host], s.healthy[e.Host], s.scale = e.HostStarted, e.HostHealthy, e.Scale
		if line := s.line(e.Service); line != s.printed {
			fmt.Fprintln(p.w, line)
			s.printed = line
		}
		return
	case "state":
		if e.Message == "upgrading" || e.Message == "rolling-back" || e.Message == "finishing-upgrade" {
			// A new phase counts afresh.
			s.created, s.started, s.healthy, s.printed = map[string]int{}, map[string]int{}, map[string]int{}, ""
		}
		fmt.Fprintf(p.w, "%s: %s\n", e.Service, e.Message)
		return
	}
	if p.verbose {
		msg := ""
		if e.Message != "" {
			msg = " (" + e.Message + ")"
		}
		fmt.Fprintf(p.w, "%s: %s %s on %s%s\n", e.Service, e.Step, e.Container, e.Host, msg)
	}
}

func (s *svcProgress) line(name string) string {
	hosts := map[string]bool{}
	for h := range s.created {
		hosts[h] = true
	}
	for h := range s.started {
		hosts[h] = true
	}
	names := make([]string, 0, len(hosts))
	for h := range hosts {
		names = append(names, h)
	}
	sort.Strings(names)
	parts := make([]string, 0, len(names))
	for _, h := range names {
		planned := max(s.started[h], s.created[h])
		parts = append(parts, fmt.Sprintf("%s started %d/%d healthy %d/%d", h, max(s.started[h], s.created[h]), planned, s.healthy[h], planned))
	}
	return fmt.Sprintf("%s: %s (scale %d)", name, strings.Join(parts, ", "), s.scale)
}

// stream sends in as JSON and calls line for every line of a 2xx answer
// (NDJSON). Unlike do it has no overall timeout: upgrades take minutes.
func (c *apiClient) stream(ctx context.Context, method, path string, query url.Values, in any, line func([]byte) error) error {
	req, err := c.request(ctx, method, path, query, in, "application/x-ndjson")
	if err != nil {
		return err
	}
	resp, err := (&http.Client{}).Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, req.URL.String(), err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		e := &apiError{Method: method, URL: req.URL.String(), Status: resp.StatusCode, Message: http.StatusText(resp.StatusCode)}
		var msg struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(data, &msg) == nil && msg.Error != "" {
			e.Message = msg.Error
		}
		return e
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		if err := line(sc.Bytes()); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%s %s: reading answer: %w", method, req.URL.String(), err)
	}
	return nil
}

// stackFlags are -e and -s of the stack commands.
func stackFlags(fs *flag.FlagSet) (env, stack *string) {
	return envFlag(fs),
		fs.String("s", "", "stack")
}

func runStackOp(op string) func(args []string, stdout, stderr io.Writer) error {
	return func(args []string, stdout, stderr io.Writer) error {
		fs := newFlags(op, op+" -e ENV -s STACK [-d]", stderr)
		cf := addClientFlags(fs)
		env, stack := stackFlags(fs)
		p := upParams{CommandLabel: "dockmaster"}
		fs.BoolVar(&p.Req.Detach, "d", false, "return once the work is accepted")
		fs.BoolVar(&p.Verbose, "verbose", false, "print every step")
		if err := parseFlags(fs, args); err != nil {
			return err
		}
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
		defer stop()
		c, e, err := cf.clientIn(ctx, *env, "")
		if err != nil {
			return err
		}
		p.Env = e
		p.Stack = *stack
		p.Rollback, p.ConfirmOnly = op == "rollback", op == "finish"
		return doUp(ctx, c, p, stdout, stderr)
	}
}

func runStackStatus(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("status", "status -e ENV [-s STACK] [--wait STATE [--timeout D]] [-o json]", stderr)
	cf := addClientFlags(fs)
	env, stack := stackFlags(fs)
	wait := fs.String("wait", "", "with -s: poll until the stack is in this state (e.g. upgraded, active); fail if a service failed")
	timeout := fs.Duration("timeout", 10*time.Minute, "how long --wait waits")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	c, e, err := cf.clientIn(ctx, *env, "")
	if err != nil {
		return err
	}
	if *stack == "" {
		if *wait != "" {
			return usagef("--wait needs -s STACK")
		}
		var out struct {
			Stacks []server.StackSummary `json:"stacks"`
		}
		if err := c.get(ctx, "/api/v1/environments/"+url.PathEscape(e)+"/stacks", nil, &out); err != nil {
			return err
		}
		if cf.wantJSON() {
			return writeJSON(stdout, out)
		}
		tw := newTable(stdout)
		fmt.Fprintln(tw, "STACK\tSTATE\tSERVICES")
		for _, s := range out.Stacks {
			var svcs []string
			for _, sv := range s.Services {
				svcs = append(svcs, sv.Name+"="+sv.Version)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\n", s.Name, s.State, strings.Join(svcs, " "))
		}
		return tw.Flush()
	}
	var st server.StackStatusJSON
	deadline := time.Now().Add(*timeout)
	for {
		if err := c.get(ctx, stackPath(e, *stack), nil, &st); err != nil {
			return err
		}
		if *wait == "" || st.State == *wait {
			break
		}
		for _, s := range st.Services {
			if s.Failed != "" {
				printStatus(stdout, st)
				return fmt.Errorf("%s/%s failed: %s", *stack, s.Name, s.Failed)
			}
		}
		if time.Now().After(deadline) {
			printStatus(stdout, st)
			return fmt.Errorf("%s: still %s after %s, want %s", *stack, st.State, *timeout, *wait)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
	if cf.wantJSON() {
		return writeJSON(stdout, st)
	}
	printStatus(stdout, st)
	return nil
}

func printStatus(w io.Writer, st server.StackStatusJSON) {
	fmt.Fprintf(w, "stack %s: %s\n", st.Stack, st.State)
	tw := newTable(w)
	fmt.Fprintln(tw, "SERVICE\tSTATE\tVERSION\tSCALE\tRUNNING\tHEALTHY\tPER HOST\tIMAGE")
	for _, s := range st.Services {
		hosts := make([]string, 0, len(s.PerHost))
		for h, n := range s.PerHost {
			hosts = append(hosts, fmt.Sprintf("%s %d/%d", h, n.Healthy, n.Running))
		}
		sort.Strings(hosts)
		v := s.Version
		if s.OldVersion != "" {
			v += " (was " + s.OldVersion + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\n", s.Name, s.State, v, s.Scale, s.Running, s.Healthy, strings.Join(hosts, ", "), s.Image)
	}
	tw.Flush()
	tw = newTable(w)
	fmt.Fprintln(tw, "\nCONTAINER\tHOST\tVERSION\tSTATE\tHEALTH")
	for _, s := range st.Services {
		for _, ct := range s.Containers {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", ct.Name, ct.Host, ct.Version, ct.State, ct.Health)
		}
	}
	tw.Flush()
	for _, s := range st.Services {
		if s.Failed != "" {
			fmt.Fprintf(w, "%s failed: %s\n", s.Name, s.Failed)
		}
	}
}

func runStackLogs(args []string, stdout, stderr io.Writer) error {
	if !hasStackFlag(args) { // logs [-f] CONTAINER: one container (containers.go)
		return runContainerLogs(args, stdout, stderr)
	}
	fs := newFlags("logs", "logs -e ENV -s STACK [--service S] [--container C] [-f] [--tail N]", stderr)
	cf := addClientFlags(fs)
	env, stack := stackFlags(fs)
	service := fs.String("service", "", "service (default: the stack's only one)")
	ctr := fs.String("container", "", "one container (name or id prefix)")
	follow := fs.Bool("f", false, "follow")
	tail := fs.Int("tail", 0, "last N lines of each container (0: all)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *stack == "" {
		return usagef("logs: -s STACK is required")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	c, e, err := cf.clientIn(ctx, *env, "")
	if err != nil {
		return err
	}
	q := url.Values{}
	for k, v := range map[string]string{"service": *service, "container": *ctr} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if *tail > 0 {
		q.Set("tail", strconv.Itoa(*tail))
	}
	if *follow {
		q.Set("follow", "1")
	}
	err = c.stream(ctx, http.MethodGet, stackPath(e, *stack)+"/logs", q, nil, func(b []byte) error {
		var l server.LogLineJSON
		if err := json.Unmarshal(b, &l); err != nil {
			return fmt.Errorf("log line %q: %w", b, err)
		}
		w := stdout
		if l.Stream == "stderr" || l.Stream == "error" {
			w = stderr
		}
		_, err := fmt.Fprintf(w, "%s | %s\n", l.Container, l.Text)
		return err
	})
	if ctx.Err() != nil {
		return nil // Ctrl-C ends a follow
	}
	return err
}

func runRevisions(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("revisions", "revisions -e ENV -s STACK [--redeploy N [--confirm-upgrade] [-d]] [-o json]", stderr)
	cf := addClientFlags(fs)
	env, stack := stackFlags(fs)
	redeploy := fs.Int("redeploy", 0, "upgrade the stack to revision N (held in upgraded)")
	confirm := fs.Bool("confirm-upgrade", false, "with --redeploy: finish a held upgrade first")
	detach := fs.Bool("d", false, "with --redeploy: return once accepted")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *stack == "" {
		return usagef("revisions: -s STACK is required")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	c, e, err := cf.clientIn(ctx, *env, "")
	if err != nil {
		return err
	}
	if *redeploy > 0 {
		path := fmt.Sprintf("%s/revisions/%d/redeploy", stackPath(e, *stack), *redeploy)
		body := map[string]bool{"detach": *detach, "confirm_upgrade": *confirm}
		if *detach {
			var acc struct{ Job string }
			if err := c.post(ctx, path, body, &acc); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "%s: redeploy of revision %d accepted as job %s\n", *stack, *redeploy, acc.Job)
			return nil
		}
		pr := newProgress(stdout, false)
		var res *server.JobResult
		if err := c.stream(ctx, http.MethodPost, path, nil, body, func(b []byte) error {
			var l server.StreamLine
			if err := json.Unmarshal(b, &l); err != nil {
				return err
			}
			if l.Event != nil {
				pr.event(*l.Event, stderr)
			}
			if l.Result != nil {
				res = l.Result
			}
			return nil
		}); err != nil {
			return err
		}
		if res == nil || !res.OK {
			msg := "no result"
			if res != nil {
				msg = res.Error
			}
			return fmt.Errorf("redeploy %s revision %d: %s", *stack, *redeploy, msg)
		}
		fmt.Fprintf(stdout, "%s: revision %d deployed; confirm with `dockmaster finish -e %s -s %s`\n", *stack, *redeploy, e, *stack)
		return nil
	}
	var out struct {
		Revisions []server.RevisionJSON `json:"revisions"`
	}
	if err := c.get(ctx, stackPath(e, *stack)+"/revisions", nil, &out); err != nil {
		return err
	}
	if cf.wantJSON() {
		return writeJSON(stdout, out)
	}
	tw := newTable(stdout)
	fmt.Fprintln(tw, "REVISION\tVERSION\tCREATED\tBY\tSERVICES")
	for _, r := range out.Revisions {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", r.Number, r.Version, r.CreatedAt.Local().Format(time.DateTime), orDash(r.CreatedBy), strings.Join(r.Services, " "))
	}
	return tw.Flush()
}
