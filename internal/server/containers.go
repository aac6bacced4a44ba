package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/coder/websocket"
	"github.com/gin-gonic/gin"

	"github.com/dockmaster/dockmaster/internal/auth"
	"github.com/dockmaster/dockmaster/internal/containers"
	"github.com/dockmaster/dockmaster/templates"
)

// ContainerAPI serves every container of every registered host: listing,
// details, actions, logs, exec terminals and resource use, as JSON under
// /api/v1 and as pages.
//
// A container is named in paths by :ref (id, id prefix, name); ?host=
// narrows it to one host when a name exists on several.
type ContainerAPI struct {
	Containers *containers.Service
	Authz      *auth.Authorizer
	Pages      *templates.Pages
}

// Register mounts the API routes under api (the /api/v1 group).
//
// Logs need view-secrets, as on the service page: output often carries
// what environment variables hold.
func (a *ContainerAPI) Register(api *auth.Routes) {
	env := auth.Param("env")
	api.Handle(http.MethodGet, "/environments/:env/containers", auth.PermView, env, a.list)
	api.Handle(http.MethodGet, "/environments/:env/containers/:ref", auth.PermView, env, a.detail)
	for _, act := range []string{containers.ActionStart, containers.ActionStop, containers.ActionRestart, containers.ActionRemove} {
		api.Handle(http.MethodPost, "/environments/:env/containers/:ref/"+act, auth.PermContainerAct, env, a.actAPI(act))
	}
	api.Handle(http.MethodGet, "/environments/:env/containers/:ref/logs", auth.PermViewSecrets, env, a.containerLogs)
	api.Handle(http.MethodGet, "/environments/:env/containers/:ref/stats", auth.PermView, env, a.containerStats)
	api.Handle(http.MethodGet, "/environments/:env/containers/:ref/exec", auth.PermExec, env, a.exec)
	api.Handle(http.MethodGet, "/environments/:env/stats", auth.PermView, env, a.envStats)
	api.Handle(http.MethodGet, "/environments/:env/service-logs", auth.PermViewSecrets, env, a.serviceLogs)
}

// RegisterPages mounts the HTML pages on the root group.
func (a *ContainerAPI) RegisterPages(root *auth.Routes) {
	env := auth.Param("env")
	root.Handle(http.MethodGet, "/environments/:env/containers", auth.PermView, env, a.listPage)
	root.Handle(http.MethodGet, "/environments/:env/containers/:ref", auth.PermView, env, a.detailPage)
	root.Handle(http.MethodPost, "/environments/:env/containers/:ref/action", auth.PermContainerAct, env, a.actPage)
	root.Handle(http.MethodGet, "/environments/:env/containers/:ref/terminal", auth.PermExec, env, a.terminalPage)
}

// containerStatus maps the service's errors to statuses in one place.
func containerStatus(err error) int {
	switch {
	case errors.Is(err, containers.ErrNotFound), errors.Is(err, containers.ErrUnknownHost):
		return http.StatusNotFound
	case errors.Is(err, containers.ErrAmbiguous), errors.Is(err, containers.ErrStandalone):
		return http.StatusConflict
	case errors.Is(err, containers.ErrBadAction):
		return http.StatusBadRequest
	case errors.Is(err, containers.ErrUnreachable):
		return http.StatusServiceUnavailable
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout
	}
	return http.StatusBadGateway // the host's Docker said no: its words help
}

func containerError(c *gin.Context, err error) {
	c.AbortWithStatusJSON(containerStatus(err), gin.H{"error": err.Error()})
}

func (a *ContainerAPI) resolve(c *gin.Context) (containers.Container, bool) {
	ct, err := a.Containers.Resolve(c.Request.Context(), c.Param("env"), c.Query("host"), c.Param("ref"))
	if err != nil {
		containerError(c, err)
		return ct, false
	}
	return ct, true
}

func filterOf(c *gin.Context) (containers.Filter, bool) {
	f := containers.Filter{Host: c.Query("host"), Stack: c.Query("stack"), Service: c.Query("service"),
		Kind: c.Query("kind"), Running: c.Query("running") == "1"}
	if f.Kind != "" && f.Kind != "managed" && f.Kind != "standalone" {
		badRequest(c, "query kind: want managed or standalone, got %q", f.Kind)
		return f, false
	}
	return f, true
}

func (a *ContainerAPI) list(c *gin.Context) {
	f, ok := filterOf(c)
	if !ok {
		return
	}
	c.JSON(http.StatusOK, a.Containers.List(c.Request.Context(), c.Param("env"), f))
}

func (a *ContainerAPI) detail(c *gin.Context) {
	ct, ok := a.resolve(c)
	if !ok {
		return
	}
	d, err := a.Containers.Inspect(c.Request.Context(), ct, a.Authz.Can(auth.PrincipalFrom(c), ct.Env, auth.PermViewSecrets))
	if err != nil {
		containerError(c, err)
		return
	}
	c.JSON(http.StatusOK, d)
}

// act runs and audits one action; the audit target is host/name.
func (a *ContainerAPI) act(c *gin.Context, action string, force bool) (containers.ActResult, error) {
	ct, err := a.Containers.Resolve(c.Request.Context(), c.Param("env"), c.Query("host"), c.Param("ref"))
	if err != nil {
		return containers.ActResult{}, err
	}
	res, err := a.Containers.Act(c.Request.Context(), ct, action, containers.ActOptions{ForceStandalone: force})
	target := ct.Ref() + " (" + ct.Kind() + ")"
	if res.Reconciled {
		target += ", reconciled"
	}
	auth.Audit(c, "container."+action, ct.Env, target, err)
	return res, err
}

func (a *ContainerAPI) actAPI(action string) gin.HandlerFunc {
	return func(c *gin.Context) {
		force, err := boolQuery(c, "force_standalone")
		if err != nil {
			badRequest(c, "%v", err)
			return
		}
		res, err := a.act(c, action, force)
		if err != nil {
			containerError(c, err)
			return
		}
		c.JSON(http.StatusOK, res)
	}
}

func boolQuery(c *gin.Context, name string) (bool, error) {
	switch v := c.Query(name); v {
	case "", "0", "false":
		return false, nil
	case "1", "true":
		return true, nil
	default:
		return false, fmt.Errorf("query %s: want 1 or 0, got %q", name, v)
	}
}

func logOptions(c *gin.Context) (containers.LogOptions, bool) {
	o := containers.LogOptions{Tail: 100, Follow: c.Query("follow") == "1"}
	if s := c.Query("tail"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			badRequest(c, "query tail: want a number of lines (0: all), got %q", s)
			return o, false
		}
		o.Tail = n
	}
	if s := c.Query("since"); s != "" {
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			badRequest(c, "query since: want an RFC 3339 time, got %q", s)
			return o, false
		}
		o.Since = t
	}
	return o, true
}

func (a *ContainerAPI) containerLogs(c *gin.Context) {
	o, ok := logOptions(c)
	if !ok {
		return
	}
	ct, ok := a.resolve(c)
	if !ok {
		return
	}
	a.streamLogs(c, []containers.Container{ct}, o)
}

// serviceLogs merges the logs of every container of ?stack= and
// ?service= across hosts.
func (a *ContainerAPI) serviceLogs(c *gin.Context) {
	o, ok := logOptions(c)
	if !ok {
		return
	}
	stack, service := c.Query("stack"), c.Query("service")
	if stack == "" || service == "" {
		badRequest(c, "query stack and service: both required")
		return
	}
	l := a.Containers.List(c.Request.Context(), c.Param("env"), containers.Filter{Stack: stack, Service: service})
	a.streamLogs(c, l.Containers, o)
}

// streamLogs answers NDJSON (LogLineJSON per line), or server-sent events
// ("line" events with the same JSON) when the client asks for
// text/event-stream, as the container page's EventSource does.
func (a *ContainerAPI) streamLogs(c *gin.Context, cs []containers.Container, o containers.LogOptions) {
	sse := strings.Contains(c.GetHeader("Accept"), "text/event-stream")
	if sse {
		o.Follow = true
	}
	lines, err := a.Containers.Logs(c.Request.Context(), cs, o)
	if err != nil {
		containerError(c, err)
		return
	}
	if sse {
		c.Header("Content-Type", "text/event-stream")
		c.Header("Cache-Control", "no-cache")
	} else {
		c.Header("Content-Type", "application/x-ndjson")
	}
	c.Status(http.StatusOK)
	c.Writer.Flush()
	for l := range lines {
		b, _ := json.Marshal(LogLineJSON{Host: l.Host, Container: l.Container, Stream: l.Stream, Time: l.Time, Text: l.Text})
		var err error
		if sse {
			_, err = fmt.Fprintf(c.Writer, "event: line\ndata: %s\n\n", b)
		} else {
			_, err = c.Writer.Write(append(b, '\n'))
		}
		if err != nil {
			for range lines { // the client left: producers end with ctx
			}
			return
		}
		c.Writer.Flush()
	}
}

func (a *ContainerAPI) containerStats(c *gin.Context) {
	ct, ok := a.resolve(c)
	if !ok {
		return
	}
	c.JSON(http.StatusOK, a.Containers.ContainerStats(ct))
}

// envStats gives each host's series and the latest sample of each
// container (?samples=0 leaves the host series out).
func (a *ContainerAPI) envStats(c *gin.Context) {
	env := c.Param("env")
	hosts := a.Containers.HostStats(env)
	if c.Query("samples") == "0" {
		for i := range hosts {
			hosts[i].Samples = []containers.Sample{}
		}
	}
	type row struct {
		containers.Container
		Usage *containers.Sample `json:"usage"`
	}
	rows := []row{}
	for _, ct := range a.Containers.List(c.Request.Context(), env, containers.Filter{Running: true}).Containers {
		rows = append(rows, row{Container: ct, Usage: a.Containers.ContainerStats(ct).Latest})
	}
	if hosts == nil {
		hosts = []containers.HostSeries{}
	}
	c.JSON(http.StatusOK, gin.H{"hosts": hosts, "containers": rows})
}

// --- exec

// ExecControl is a text message of the exec websocket. From the client:
// {"type":"resize","rows":R,"cols":C} or {"type":"eof"}; from the server,
// last: {"type":"exit","code":N}.
type ExecControl struct {
	Type string `json:"type"`
	Rows uint   `json:"rows,omitempty"`
	Cols uint   `json:"cols,omitempty"`
	Code int    `json:"code"`
}

// Exec stream bytes: binary messages from the server start with one byte
// naming the stream, then the output; binary messages from the client
// are input.
const (
	ExecStdout byte = 1
	ExecStderr byte = 2
)

// exec attaches a Docker exec to a websocket: ?cmd= (repeated; default
// sh), ?tty=0 for no terminal, ?rows= and ?cols= for its first size. The
// websocket library refuses cross-origin browser handshakes, so a page of
// another site cannot open a shell with the visitor's cookie.
func (a *ContainerAPI) exec(c *gin.Context) {
	o := containers.ExecOptions{Cmd: c.QueryArray("cmd"), Tty: c.Query("tty") != "0", Stdin: c.Query("stdin") != "0"}
	if len(o.Cmd) == 0 {
		o.Cmd = []string{"sh"}
	}
	for name, p := range map[string]*uint{"rows": &o.Rows, "cols": &o.Cols} {
		if s := c.Query(name); s != "" {
			n, err := strconv.ParseUint(s, 10, 16)
			if err != nil {
				badRequest(c, "query %s: want a terminal size, got %q", name, s)
				return
			}
			*p = uint(n)
		}
	}
	ct, ok := a.resolve(c)
	if !ok {
		return
	}
	ctx := c.Request.Context()
	sess, err := a.Containers.Exec(ctx, ct, o)
	if err != nil {
		auth.Audit(c, "container.exec", ct.Env, ct.Ref()+": "+strings.Join(o.Cmd, " "), err)
		containerError(c, err)
		return
	}
	defer sess.Close()
	conn, err := websocket.Accept(c.Writer, c.Request, nil)
	if err != nil {
		return // Accept has answered the client
	}
	defer conn.CloseNow()
	target := ct.Ref() + ": " + strings.Join(o.Cmd, " ")
	auth.Audit(c, "container.exec.start", ct.Env, target, nil)
	start := time.Now()

	go func() { // input
		for {
			typ, data, err := conn.Read(ctx)
			if err != nil {
				sess.Close() // the client left: end the attachment
				return
			}
			if typ == websocket.MessageBinary {
				if _, err := sess.Write(data); err != nil {
					return
				}
				continue
			}
			var m ExecControl
			if json.Unmarshal(data, &m) != nil {
				continue
			}
			switch m.Type {
			case "resize":
				sess.Resize(ctx, m.Rows, m.Cols)
			case "eof":
				sess.CloseInput()
			}
		}
	}()
	outErr := sess.Output(&wsStream{ctx: ctx, conn: conn, id: ExecStdout}, &wsStream{ctx: ctx, conn: conn, id: ExecStderr})
	code, codeErr := sess.ExitCode(ctx)
	if outErr == nil {
		outErr = codeErr
	}
	b, _ := json.Marshal(ExecControl{Type: "exit", Code: code})
	conn.Write(ctx, websocket.MessageText, b)
	conn.Close(websocket.StatusNormalClosure, "")
	// Who, where and when are the entry's own fields; how long and how it
	// ended go in the target.
	auth.Audit(c, "container.exec", ct.Env, fmt.Sprintf("%s (%s, exit %d)", target, time.Since(start).Round(time.Millisecond), code), ignoreEOF(outErr))
}

func ignoreEOF(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// wsStream writes output as binary messages tagged with the stream.
type wsStream struct {
	ctx  context.Context
	conn *websocket.Conn
	id   byte
}

func (w *wsStream) Write(p []byte) (int, error) {
	msg := make([]byte, 0, len(p)+1)
	msg = append(append(msg, w.id), p...)
	if err := w.conn.Write(w.ctx, websocket.MessageBinary, msg); err != nil {
		return 0, err
	}
	return len(p), nil
}

// --- pages

type containerPage struct {
	Title string
	CSRF  string
	Env   string
	Data  any
}

func (a *ContainerAPI) render(c *gin.Context, status int, name, title string, data any) {
	var buf bytes.Buffer
	p := containerPage{Title: title, CSRF: auth.CSRFToken(c), Env: c.Param("env"), Data: data}
	if err := a.Pages.Render(&buf, name, p); err != nil {
		internalError(c, fmt.Errorf("page %s: %w", name, err))
		return
	}
	c.Data(status, "text/html; charset=utf-8", buf.Bytes())
}

// pageError shows the error page with the status the API would answer.
func (a *ContainerAPI) pageError(c *gin.Context, err error) {
	a.render(c, containerStatus(err), "error", "Container", err.Error())
	c.Abort()
}

type listPageData struct {
	Filter     containers.Filter
	Containers []containers.Container
	Hosts      []containers.HostInfo
	// Charts of the host (?host=) or service (?stack=&service=) shown.
	ChartsTitle string
	Charts      []template.HTML
	HostCharts  []hostCharts
}

type hostCharts struct {
	Host   containers.HostInfo
	Charts []template.HTML
}

func (a *ContainerAPI) listPage(c *gin.Context) {
	f, ok := filterOf(c)
	if !ok {
		return
	}
	env := c.Param("env")
	l := a.Containers.List(c.Request.Context(), env, f)
	d := listPageData{Filter: f, Containers: l.Containers, Hosts: l.Hosts}
	switch {
	case f.Service != "":
		d.ChartsTitle = "Service " + f.Stack + "/" + f.Service
		d.Charts = containers.Charts(a.Containers.GroupStats(f.Service, l.Containers))
	default:
		for _, hs := range a.Containers.HostStats(env) {
			if f.Host == "" || hs.Host.Name == f.Host {
				d.HostCharts = append(d.HostCharts, hostCharts{Host: hs.Host, Charts: containers.Charts(hs.Series)})
			}
		}
	}
	a.render(c, http.StatusOK, "containers", "Containers of "+env, d)
}

type detailPageData struct {
	Detail   containers.Detail
	Charts   []template.HTML
	CanAct   bool
	CanExec  bool
	CanLogs  bool
	LogsURL  string
	Notice   string
	HostArg  string // "?host=h" for links, so a name on two hosts stays one
	Terminal string
	Actions  []string // the buttons besides remove
}

func (a *ContainerAPI) detailPage(c *gin.Context) {
	ct, err := a.Containers.Resolve(c.Request.Context(), c.Param("env"), c.Query("host"), c.Param("ref"))
	if err != nil {
		a.pageError(c, err)
		return
	}
	p := auth.PrincipalFrom(c)
	d, err := a.Containers.Inspect(c.Request.Context(), ct, a.Authz.Can(p, ct.Env, auth.PermViewSecrets))
	if err != nil {
		a.pageError(c, err)
		return
	}
	base := "/environments/" + url.PathEscape(ct.Env) + "/containers/" + url.PathEscape(ct.ID)
	hostArg := "?host=" + url.QueryEscape(ct.Host)
	data := detailPageData{Detail: d, Charts: containers.Charts(a.Containers.ContainerStats(ct)),
		CanAct: a.Authz.Can(p, ct.Env, auth.PermContainerAct), CanExec: a.Authz.Can(p, ct.Env, auth.PermExec),
		CanLogs: a.Authz.Can(p, ct.Env, auth.PermViewSecrets), LogsURL: "/api/v1" + base + "/logs" + hostArg + "&tail=200",
		HostArg: hostArg, Terminal: base + "/terminal" + hostArg,
		Actions: []string{containers.ActionStart, containers.ActionStop, containers.ActionRestart}}
	if done := c.Query("done"); done != "" {
		data.Notice = done
	}
	a.render(c, http.StatusOK, "container", ct.Name+" on "+ct.Host, data)
}

// actPage is the page's form post: action=start|stop|restart|remove,
// force_standalone=1 to remove a standalone container.
func (a *ContainerAPI) actPage(c *gin.Context) {
	action, err := containers.ParseAction(c.PostForm("action"))
	if err != nil {
		badRequest(c, "form field action: %v", err)
		return
	}
	res, err := a.act(c, action, c.PostForm("force_standalone") == "1")
	if err != nil {
		a.pageError(c, err)
		return
	}
	env := url.PathEscape(c.Param("env"))
	if res.Removed {
		c.Redirect(http.StatusSeeOther, "/environments/"+env+"/containers")
		return
	}
	notice := action + " done"
	if res.Note != "" {
		notice += ": " + res.Note
	}
	c.Redirect(http.StatusSeeOther, "/environments/"+env+"/containers/"+url.PathEscape(res.Container.ID)+
		"?host="+url.QueryEscape(res.Container.Host)+"&done="+url.QueryEscape(notice))
}

type terminalPageData struct {
	Container containers.Container
	Socket    string // path of the exec websocket
	Back      string
}

func (a *ContainerAPI) terminalPage(c *gin.Context) {
	ct, err := a.Containers.Resolve(c.Request.Context(), c.Param("env"), c.Query("host"), c.Param("ref"))
	if err != nil {
		a.pageError(c, err)
		return
	}
	base := "/environments/" + url.PathEscape(ct.Env) + "/containers/" + url.PathEscape(ct.ID)
	q := url.Values{"host": {ct.Host}, "cmd": {"sh"}}
	a.render(c, http.StatusOK, "terminal", "Shell in "+ct.Name, terminalPageData{Container: ct,
		Socket: "/api/v1" + base + "/exec?" + q.Encode(), Back: base + "?host=" + url.QueryEscape(ct.Host)})
}
