package main

// The container commands: ps, container start|stop|restart|rm, logs of
// one container (logs -s STACK is the stack form, in up.go), exec and
// stats. They talk to /api/v1/environments/ENV/containers.

import (
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
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/coder/websocket"
	"github.com/moby/term"

	"github.com/dockmaster/dockmaster/internal/containers"
	"github.com/dockmaster/dockmaster/internal/server"
)

func containerPath(env, ref string) string {
	return "/api/v1/environments/" + url.PathEscape(env) + "/containers/" + url.PathEscape(ref)
}

// containerFlags are -e and --host of the container commands.
func containerFlags(fs *flag.FlagSet) (env, host *string) {
	return envFlag(fs),
		fs.String("host", "", "the container's host, when its name exists on several")
}

func hostQuery(host string) url.Values {
	q := url.Values{}
	if host != "" {
		q.Set("host", host)
	}
	return q
}

func runPS(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("ps", "ps [-e ENV] [--host H] [--kind managed|standalone] [-s STACK] [--service S] [--running] [-o json]", stderr)
	cf := addClientFlags(fs)
	env, host := containerFlags(fs)
	kind := fs.String("kind", "", "managed or standalone (default both)")
	stack := fs.String("s", "", "only this stack's containers")
	service := fs.String("service", "", "only this service's containers")
	running := fs.Bool("running", false, "only running containers")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	ctx := context.Background()
	c, e, err := cf.clientIn(ctx, *env, "")
	if err != nil {
		return err
	}
	q := hostQuery(*host)
	for k, v := range map[string]string{"kind": *kind, "stack": *stack, "service": *service} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if *running {
		q.Set("running", "1")
	}
	var l containers.Listing
	if err := c.get(ctx, "/api/v1/environments/"+url.PathEscape(e)+"/containers", q, &l); err != nil {
		return err
	}
	if cf.wantJSON() {
		return writeJSON(stdout, l)
	}
	for _, h := range l.Hosts {
		if h.State != "active" {
			fmt.Fprintf(stderr, "host %s is %s (%s): showing its last known containers\n", h.Name, h.State, h.LastError)
		}
	}
	tw := newTable(stdout)
	fmt.Fprintln(tw, "HOST\tNAME\tID\tKIND\tSTATE\tIMAGE\tCOMMAND\tPORTS")
	for _, ct := range l.Containers {
		ports := make([]string, len(ct.Ports))
		for i, p := range ct.Ports {
			ports[i] = p.String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", ct.Host, ct.Name, shortContainerID(ct.ID), ct.Kind(), ct.State,
			ct.Image, truncate(ct.Command, 40), strings.Join(ports, ", "))
	}
	return tw.Flush()
}

func shortContainerID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}

func runContainer(args []string, stdout, stderr io.Writer) error {
	synopsis := "container start|stop|restart|rm [-e ENV] [--host H] [--standalone] CONTAINER"
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		fmt.Fprintf(stderr, "Usage: dockmaster %s\n", synopsis)
		return usagef("container: want start, stop, restart or rm")
	}
	action := args[0]
	if action == "rm" {
		action = containers.ActionRemove
	}
	if _, err := containers.ParseAction(action); err != nil {
		return usagef("container %s: want start, stop, restart or rm", args[0])
	}
	fs := newFlags("container "+args[0], synopsis, stderr)
	cf := addClientFlags(fs)
	env, host := containerFlags(fs)
	standalone := fs.Bool("standalone", false, "rm: yes, remove a container dockmaster did not create")
	pos, err := parseArgs(fs, args[1:])
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("container %s: want one CONTAINER (name, id or id prefix)", args[0])
	}
	ctx := context.Background()
	c, e, err := cf.clientIn(ctx, *env, "")
	if err != nil {
		return err
	}
	q := hostQuery(*host)
	if *standalone {
		q.Set("force_standalone", "1")
	}
	var res containers.ActResult
	if err := c.do(ctx, http.MethodPost, containerPath(e, pos[0])+"/"+action, q, nil, &res); err != nil {
		return err
	}
	if cf.wantJSON() {
		return writeJSON(stdout, res)
	}
	fmt.Fprintf(stdout, "%s %s: %s done\n", res.Container.Ref(), res.Container.Kind(), args[0])
	if res.Note != "" {
		fmt.Fprintln(stdout, res.Note)
	}
	if res.ReconcileError != "" {
		fmt.Fprintln(stderr, "reconcile:", res.ReconcileError)
	}
	return nil
}

// hasStackFlag reports whether logs arguments name a stack (-s), which
// makes them the stack form of logs.
func hasStackFlag(args []string) bool {
	for _, a := range args {
		if a == "--" {
			return false
		}
		if a == "-s" || a == "--s" || strings.HasPrefix(a, "-s=") || strings.HasPrefix(a, "--s=") {
			return true
		}
	}
	return false
}

func runContainerLogs(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("logs", "logs [-e ENV] [--host H] [-f] [--tail N] [-t] CONTAINER  |  logs -e ENV -s STACK ...", stderr)
	cf := addClientFlags(fs)
	env, host := containerFlags(fs)
	follow := fs.Bool("f", false, "follow: keep printing new lines")
	tail := fs.Int("tail", 100, "last N lines (0: all)")
	stamps := fs.Bool("t", false, "print each line's timestamp")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("logs: want one CONTAINER, or -s STACK")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	c, e, err := cf.clientIn(ctx, *env, "")
	if err != nil {
		return err
	}
	q := hostQuery(*host)
	q.Set("tail", strconv.Itoa(*tail))
	if *follow {
		q.Set("follow", "1")
	}
	err = c.stream(ctx, http.MethodGet, containerPath(e, pos[0])+"/logs", q, nil, func(b []byte) error {
		var l server.LogLineJSON
		if err := json.Unmarshal(b, &l); err != nil {
			return fmt.Errorf("log line %q: %w", b, err)
		}
		w := stdout
		if l.Stream == "stderr" || l.Stream == "error" {
			w = stderr
		}
		if *stamps {
			_, err := fmt.Fprintf(w, "%s %s\n", l.Time.UTC().Format(time.RFC3339Nano), l.Text)
			return err
		}
		_, err := fmt.Fprintln(w, l.Text)
		return err
	})
	if ctx.Err() != nil {
		return nil // Ctrl-C ends a follow
	}
	return err
}

// exitStatusError carries the exit code of an exec'd process; runExec's
// caller exits with it.
type exitStatusError struct{ code int }

func (e exitStatusError) Error() string { return fmt.Sprintf("process exited with code %d", e.code) }

func runExec(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("exec", "exec [-e ENV] [--host H] [-i] [-t] CONTAINER COMMAND [ARG...]", stderr)
	cf := addClientFlags(fs)
	env, host := containerFlags(fs)
	interactive := fs.Bool("i", false, "keep stdin open and send it to the process")
	tty := fs.Bool("t", false, "allocate a terminal (local terminal in raw mode)")
	// -it is what people type (docker exec -it): accept it as both.
	for i, a := range args {
		if a == "-it" || a == "-ti" {
			args = append(append(append([]string{}, args[:i]...), "-i", "-t"), args[i+1:]...)
			break
		}
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() < 2 {
		return usagef("exec: want CONTAINER COMMAND [ARG...]")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	c, e, err := cf.clientIn(ctx, *env, "")
	if err != nil {
		return err
	}
	q := hostQuery(*host)
	q["cmd"] = fs.Args()[1:]
	q.Set("tty", map[bool]string{true: "1", false: "0"}[*tty])
	q.Set("stdin", map[bool]string{true: "1", false: "0"}[*interactive])
	inFd, inTerm := term.GetFdInfo(os.Stdin)
	if *tty && inTerm {
		if ws, err := term.GetWinsize(inFd); err == nil {
			q.Set("rows", strconv.Itoa(int(ws.Height)))
			q.Set("cols", strconv.Itoa(int(ws.Width)))
		}
	}
	u, err := url.Parse(c.base + containerPath(e, fs.Arg(0)) + "/exec?" + q.Encode())
	if err != nil {
		return err
	}
	u.Scheme = map[string]string{"http": "ws", "https": "wss"}[u.Scheme]
	hdr := http.Header{}
	if c.access != "" {
		req, _ := http.NewRequest(http.MethodGet, "/", nil)
		req.SetBasicAuth(c.access, c.secret)
		hdr.Set("Authorization", req.Header.Get("Authorization"))
	}
	conn, resp, err := websocket.Dial(ctx, u.String(), &websocket.DialOptions{HTTPHeader: hdr})
	if err != nil {
		if resp != nil && resp.StatusCode/100 != 2 {
			return execDialError(resp, u.String())
		}
		return fmt.Errorf("exec: %w", err)
	}
	defer conn.CloseNow()
	conn.SetReadLimit(4 << 20)
	if *tty && inTerm {
		st, err := term.SetRawTerminal(inFd)
		if err == nil {
			defer term.RestoreTerminal(inFd, st)
		}
		go resizeOnWinch(ctx, conn, inFd)
	}
	if *interactive {
		go func() {
			buf := make([]byte, 32<<10)
			for {
				n, err := os.Stdin.Read(buf)
				if n > 0 {
					if conn.Write(ctx, websocket.MessageBinary, buf[:n]) != nil {
						return
					}
				}
				if err != nil {
					b, _ := json.Marshal(server.ExecControl{Type: "eof"})
					conn.Write(ctx, websocket.MessageText, b)
					return
				}
			}
		}()
	}
	for {
		typ, data, err := conn.Read(ctx)
		if err != nil {
			if websocket.CloseStatus(err) == websocket.StatusNormalClosure {
				return errors.New("exec: the server closed the session without an exit code")
			}
			return fmt.Errorf("exec: %w", err)
		}
		if typ == websocket.MessageBinary && len(data) > 0 {
			w := stdout
			if data[0] == server.ExecStderr {
				w = stderr
			}
			w.Write(data[1:])
			continue
		}
		var m server.ExecControl
		if json.Unmarshal(data, &m) == nil && m.Type == "exit" {
			conn.Close(websocket.StatusNormalClosure, "")
			if m.Code != 0 {
				return exitStatusError{m.Code}
			}
			return nil
		}
	}
}

func execDialError(resp *http.Response, target string) error {
	e := &apiError{Method: http.MethodGet, URL: target, Status: resp.StatusCode, Message: http.StatusText(resp.StatusCode)}
	if resp.Body != nil {
		var msg struct {
			Error string `json:"error"`
		}
		if json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&msg) == nil && msg.Error != "" {
			e.Message = msg.Error
		}
	}
	return e
}

// resizeOnWinch sends the local terminal's size whenever it changes.
func resizeOnWinch(ctx context.Context, conn *websocket.Conn, fd uintptr) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGWINCH)
	defer signal.Stop(ch)
	for {
		select {
		case <-ctx.Done():
			return
		case <-ch:
			ws, err := term.GetWinsize(fd)
			if err != nil {
				continue
			}
			b, _ := json.Marshal(server.ExecControl{Type: "resize", Rows: uint(ws.Height), Cols: uint(ws.Width)})
			if conn.Write(ctx, websocket.MessageText, b) != nil {
				return
			}
		}
	}
}

// runExecCmd exits with the process's own exit code, as docker exec does.
func runExecCmd(args []string, stdout, stderr io.Writer) error {
	err := runExec(args, stdout, stderr)
	var es exitStatusError
	if errors.As(err, &es) {
		os.Exit(es.code)
	}
	return err
}

func runStats(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("stats", "stats [-e ENV] [-o json]: CPU, memory, network and disk use per host and container", stderr)
	cf := addClientFlags(fs)
	env, _ := containerFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	ctx := context.Background()
	c, e, err := cf.clientIn(ctx, *env, "")
	if err != nil {
		return err
	}
	var out struct {
		Hosts      []containers.HostSeries `json:"hosts"`
		Containers []struct {
			containers.Container
			Usage *containers.Sample `json:"usage"`
		} `json:"containers"`
	}
	if err := c.get(ctx, "/api/v1/environments/"+url.PathEscape(e)+"/stats", url.Values{"samples": {"0"}}, &out); err != nil {
		return err
	}
	if cf.wantJSON() {
		return writeJSON(stdout, out)
	}
	tw := newTable(stdout)
	fmt.Fprintln(tw, "HOST\tCONTAINER\tCPU %\tMEMORY\tNET RX/s\tNET TX/s\tDISK R/s\tDISK W/s")
	row := func(host, name string, s *containers.Sample) {
		if s == nil {
			fmt.Fprintf(tw, "%s\t%s\t-\t-\t-\t-\t-\t-\n", host, name)
			return
		}
		fmt.Fprintf(tw, "%s\t%s\t%.1f\t%s\t%s\t%s\t%s\t%s\n", host, name, s.CPUPercent, containers.Bytes(float64(s.MemBytes)),
			containers.Bytes(s.NetRxBps), containers.Bytes(s.NetTxBps), containers.Bytes(s.BlkReadBps), containers.Bytes(s.BlkWriteBps))
	}
	for _, h := range out.Hosts {
		name := "(all)"
		if h.Host.State != "active" {
			name += " " + h.Host.State
		}
		row(h.Host.Name, name, h.Latest)
	}
	for _, ct := range out.Containers {
		row(ct.Host, ct.Name, ct.Usage)
	}
	return tw.Flush()
}

// envDuration reads a duration from an environment variable (e.g. the
// resource sampling period DOCKMASTER_STATS_INTERVAL=5s); unset gives def.
func envDuration(name string, def time.Duration) (time.Duration, error) {
	v := os.Getenv(name)
	if v == "" {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, usagef("%s=%q: want a positive duration such as 10s", name, v)
	}
	return d, nil
}
