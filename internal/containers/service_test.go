package containers

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/go-connections/nat"

	"github.com/dockmaster/dockmaster/deployer"
	"github.com/dockmaster/dockmaster/internal/store"
	"github.com/dockmaster/dockmaster/internal/testenv"
)

type hostList []store.Host

func (h hostList) Hosts(_ context.Context, env string) ([]store.Host, error) {
	var out []store.Host
	for _, x := range h {
		if env == "" || x.Environment == env {
			out = append(out, x)
		}
	}
	return out, nil
}

// waitFor polls the listing until ok holds, failing after 10s.
func waitFor(t *testing.T, s *Service, env string, what string, ok func(Listing) bool) Listing {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		l := s.List(context.Background(), env, Filter{})
		if ok(l) {
			return l
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; listing: %+v", what, l)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func find(l Listing, name string) (Container, bool) {
	for _, c := range l.Containers {
		if c.Name == name {
			return c, true
		}
	}
	return Container{}, false
}

// TestOnRealHost drives the service against one harness dockerd, plus a
// registered host whose daemon does not exist.
func TestOnRealHost(t *testing.T) {
	h := testenv.StartHost(t, "c1")
	img := testenv.BusyboxImage(t, h.Client)
	ctx := context.Background()
	var reconciles atomic.Int32
	s := New(Options{
		Hosts: hostList{
			{Environment: "prod", Name: "c1", Endpoint: h.Endpoint},
			{Environment: "prod", Name: "dead", Endpoint: "unix:///nonexistent/docker.sock"},
		},
		Reconcile:     func(context.Context, string) error { reconciles.Add(1); return nil },
		StatsInterval: 200 * time.Millisecond,
		Resync:        time.Hour, // events alone must keep the cache fresh
	})
	t.Cleanup(s.Close)
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}

	run := func(name string, cfg *container.Config, hc *container.HostConfig) string {
		t.Helper()
		cfg.Image = img
		if hc == nil {
			hc = &container.HostConfig{}
		}
		r, err := h.Client.ContainerCreate(ctx, cfg, hc, &network.NetworkingConfig{}, nil, name)
		if err != nil {
			t.Fatal(err)
		}
		if err := h.Client.ContainerStart(ctx, r.ID, container.StartOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { h.Client.ContainerRemove(context.Background(), r.ID, container.RemoveOptions{Force: true}) })
		return r.ID
	}

	// Started by hand, after the listing began: only the event stream can
	// bring it in (Resync is an hour).
	start := time.Now()
	l := s.List(ctx, "prod", Filter{})
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("first listing with a dead host took %v", d)
	}
	webID := run("web-by-hand", &container.Config{Cmd: []string{"httpd", "-f", "-p", "8080"}, Env: []string{"FOO=bar", "SECRET=s3"},
		ExposedPorts: nat.PortSet{"8080/tcp": {}}, Labels: map[string]string{"team": "ops"}},
		&container.HostConfig{PortBindings: nat.PortMap{"8080/tcp": {{HostIP: h.IP, HostPort: "18080"}}},
			RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyUnlessStopped}})
	l = waitFor(t, s, "prod", "web-by-hand running", func(l Listing) bool { c, _ := find(l, "web-by-hand"); return c.Running() })
	web, _ := find(l, "web-by-hand")
	if web.Managed || web.Kind() != "standalone" || web.Host != "c1" || web.ID != webID {
		t.Errorf("web-by-hand = %+v, want standalone on c1", web)
	}
	if web.Command != "httpd -f -p 8080" {
		t.Errorf("command %q", web.Command)
	}
	if len(web.Ports) != 1 || web.Ports[0].String() != h.IP+":18080->8080/tcp" {
		t.Errorf("ports %v", web.Ports)
	}
	var dead HostInfo
	for _, hi := range l.Hosts {
		if hi.Name == "dead" {
			dead = hi
		}
	}
	if dead.State != "unreachable" || dead.LastError == "" {
		t.Errorf("dead host = %+v, want unreachable with its error", dead)
	}

	t.Run("details", func(t *testing.T) {
		d, err := s.Inspect(ctx, web, true)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Join(d.Cmd, " ") != "httpd -f -p 8080" || d.RestartPolicy != "unless-stopped" || d.State != "running" ||
			d.StartedAt.IsZero() || d.Labels["team"] != "ops" || len(d.NetworkList) != 1 || d.Image != img {
			t.Errorf("detail = %+v", d)
		}
		if !strings.Contains(strings.Join(d.Env, "\n"), "FOO=bar") {
			t.Errorf("env %v lacks FOO=bar", d.Env)
		}
		hidden, err := s.Inspect(ctx, web, false)
		if err != nil {
			t.Fatal(err)
		}
		if !hidden.EnvHidden || len(hidden.Env) != 0 {
			t.Errorf("env shown without view-secrets: %v", hidden.Env)
		}
	})

	t.Run("resolve", func(t *testing.T) {
		for _, ref := range []string{"web-by-hand", "c1/web-by-hand", webID, webID[:8]} {
			c, err := s.Resolve(ctx, "prod", "", ref)
			if err != nil || c.ID != webID {
				t.Errorf("Resolve(%q) = %s, %v", ref, c.ID, err)
			}
		}
		if _, err := s.Resolve(ctx, "prod", "", "nope"); !errors.Is(err, ErrNotFound) {
			t.Errorf("Resolve(nope) = %v, want ErrNotFound", err)
		}
		if _, err := s.Resolve(ctx, "staging", "", "web-by-hand"); !errors.Is(err, ErrNotFound) {
			t.Errorf("other environment: %v, want ErrNotFound", err)
		}
	})

	t.Run("restart", func(t *testing.T) {
		before, _ := s.Inspect(ctx, web, false)
		res, err := s.Act(ctx, web, ActionRestart, ActOptions{StopTimeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		after, _ := s.Inspect(ctx, web, false)
		if !after.StartedAt.After(before.StartedAt) || res.Reconciled {
			t.Errorf("restart: started %v then %v, result %+v", before.StartedAt, after.StartedAt, res)
		}
	})

	t.Run("exec", func(t *testing.T) {
		e, err := s.Exec(ctx, web, ExecOptions{Cmd: []string{"echo", "hi"}})
		if err != nil {
			t.Fatal(err)
		}
		defer e.Close()
		var out, errb bytes.Buffer
		if err := e.Output(&out, &errb); err != nil {
			t.Fatal(err)
		}
		code, err := e.ExitCode(ctx)
		if out.String() != "hi\n" || code != 0 || err != nil {
			t.Errorf("echo hi: %q, exit %d, %v", out.String(), code, err)
		}
		e2, err := s.Exec(ctx, web, ExecOptions{Cmd: []string{"sh", "-c", "echo oops >&2; exit 3"}})
		if err != nil {
			t.Fatal(err)
		}
		defer e2.Close()
		out.Reset()
		errb.Reset()
		e2.Output(&out, &errb)
		if code, _ := e2.ExitCode(ctx); code != 3 || errb.String() != "oops\n" {
			t.Errorf("exit 3: code %d, stderr %q", code, errb.String())
		}
		// A terminal with input, as the browser and `exec -it` use it.
		tty, err := s.Exec(ctx, web, ExecOptions{Cmd: []string{"sh"}, Tty: true, Stdin: true, Rows: 24, Cols: 80})
		if err != nil {
			t.Fatal(err)
		}
		defer tty.Close()
		if err := tty.Resize(ctx, 30, 100); err != nil {
			t.Errorf("resize: %v", err)
		}
		tty.Write([]byte("stty size; echo $((6*7)); exit 5\n"))
		out.Reset()
		tty.Output(&out, &out)
		if !strings.Contains(out.String(), "42") || !strings.Contains(out.String(), "30 100") {
			t.Errorf("tty output %q, want 42 and the new size 30 100", out.String())
		}
		if code, _ := tty.ExitCode(ctx); code != 5 {
			t.Errorf("tty exit %d, want 5", code)
		}
	})

	t.Run("logs", func(t *testing.T) {
		run("chatty", &container.Config{Cmd: []string{"sh", "-c", "echo to-stderr >&2; i=0; while true; do echo line$i; i=$((i+1)); sleep 0.1; done"}}, nil)
		c, err := s.Resolve(ctx, "prod", "c1", "chatty")
		if err != nil {
			t.Fatal(err)
		}
		lctx, cancel := context.WithCancel(ctx)
		defer cancel()
		ch, err := s.Logs(lctx, []Container{c}, LogOptions{Follow: true})
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]LogLine{}
		timeout := time.After(10 * time.Second)
		for len(seen) < 2 || seen["line5"].Text == "" {
			select {
			case l, ok := <-ch:
				if !ok {
					t.Fatal("stream closed early")
				}
				if l.Stream == "stderr" {
					seen["stderr"] = l
				}
				seen[l.Text] = l
			case <-timeout:
				t.Fatalf("followed lines so far: %v", seen)
			}
		}
		if e := seen["stderr"]; e.Text != "to-stderr" || e.Time.IsZero() || e.Container != "chatty" || e.Host != "c1" {
			t.Errorf("stderr line = %+v", e)
		}
		if l := seen["line5"]; l.Stream != "stdout" || l.Time.IsZero() {
			t.Errorf("stdout line = %+v", l)
		}
		cancel()
		for range ch { // closed once ctx ends
		}
	})

	t.Run("stats", func(t *testing.T) {
		deadline := time.Now().Add(10 * time.Second)
		for {
			st := s.ContainerStats(web)
			hs := s.HostStats("prod")
			if st.Latest != nil && st.Latest.MemBytes > 0 && len(hs) == 2 && hs[0].Latest != nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no samples: %+v %+v", st, hs)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})

	t.Run("remove standalone needs asking", func(t *testing.T) {
		run("victim", &container.Config{Cmd: []string{"sleep", "600"}}, nil)
		c, err := s.Resolve(ctx, "prod", "", "victim")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Act(ctx, c, ActionRemove, ActOptions{}); !errors.Is(err, ErrStandalone) {
			t.Fatalf("remove without asking: %v, want ErrStandalone", err)
		}
		if _, err := s.Act(ctx, c, ActionRemove, ActOptions{ForceStandalone: true}); err != nil {
			t.Fatal(err)
		}
		if _, ok := find(s.List(ctx, "prod", Filter{}), "victim"); ok {
			t.Error("removed container still listed")
		}
		if _, err := s.Act(ctx, c, "explode", ActOptions{}); !errors.Is(err, ErrBadAction) {
			t.Errorf("bad action: %v", err)
		}
	})

	t.Run("managed stop reconciles", func(t *testing.T) {
		run("app-web-1", &container.Config{Cmd: []string{"sleep", "600"}, Labels: map[string]string{
			deployer.LabelEnv: "prod", deployer.LabelStack: "app", deployer.LabelService: "web"}}, nil)
		c, err := s.Resolve(ctx, "prod", "", "app-web-1")
		if err != nil {
			t.Fatal(err)
		}
		if !c.Managed || c.Stack != "app" || c.Service != "web" {
			t.Fatalf("app-web-1 = %+v, want managed app/web", c)
		}
		n := reconciles.Load()
		res, err := s.Act(ctx, c, ActionStop, ActOptions{StopTimeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		if !res.Reconciled || reconciles.Load() != n+1 || res.Note == "" {
			t.Errorf("stop of a managed container: %+v, reconciles %d", res, reconciles.Load()-n)
		}
		if l := s.List(ctx, "prod", Filter{Kind: "managed"}); len(l.Containers) != 1 || l.Containers[0].Name != "app-web-1" {
			t.Errorf("managed filter: %+v", l.Containers)
		}
	})
}
