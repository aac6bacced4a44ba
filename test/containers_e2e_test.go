package test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/go-connections/nat"

	"github.com/dockmaster/dockmaster/internal/testenv"
	browsertest "github.com/dockmaster/dockmaster/test/browser"
)

// TestContainersEndToEnd: a container started by hand on a registered
// host is listed as standalone with its command, ports and environment;
// dockmaster restarts it (audited), follows logs, execs in it, shows it
// in a browser terminal and charts; read-only gets 403 on every action
// and on exec, restricted sees no environment variables.
func TestContainersEndToEnd(t *testing.T) {
	h := testenv.StartHost(t, "ct1")
	img := testenv.BusyboxImage(t, h.Client)
	srv := testenv.StartServer(t, fmt.Sprintf("environments:\n  - name: prod\n    hosts:\n      - {name: ct1, endpoint: %q, address: %s}\n",
		h.Endpoint, h.IP), "DOCKMASTER_STATS_INTERVAL=500ms")
	admin := srv.Admin()
	keys := map[string][2]string{}
	for _, role := range []string{"member", "read-only", "restricted"} {
		var k struct {
			AccessKey string `json:"access_key"`
			Secret    string `json:"secret"`
		}
		if st := admin.Do(http.MethodPost, "/api/v1/environments/prod/keys", map[string]string{"role": role, "description": "e2e"}, &k); st/100 != 2 {
			t.Fatalf("key %s: %d", role, st)
		}
		keys[role] = [2]string{k.AccessKey, k.Secret}
	}
	ctx := context.Background()
	run := func(name string, cfg *container.Config, hc *container.HostConfig) {
		t.Helper()
		cfg.Image = img
		r, err := h.Client.ContainerCreate(ctx, cfg, hc, &network.NetworkingConfig{}, nil, name)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { h.Client.ContainerRemove(context.Background(), r.ID, container.RemoveOptions{Force: true}) })
		if err := h.Client.ContainerStart(ctx, r.ID, container.StartOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// As `docker run -d -p IP:18081:8080 -e FOO=bar ... httpd -f -p 8080`.
	run("by-hand", &container.Config{Cmd: []string{"httpd", "-f", "-p", "8080"}, Env: []string{"FOO=bar-planted"},
		ExposedPorts: nat.PortSet{"8080/tcp": {}}},
		&container.HostConfig{PortBindings: nat.PortMap{"8080/tcp": {{HostIP: h.IP, HostPort: "18081"}}}})
	run("chatty", &container.Config{Cmd: []string{"sh", "-c", "i=0; while true; do echo tick$i; i=$((i+1)); sleep 0.2; done"}}, nil)

	cli := func(role string, args ...string) (string, string, int) {
		t.Helper()
		cmd := exec.Command(testenv.Binary(t), args...)
		cmd.Env = append(os.Environ(), "DOCKMASTER_URL="+srv.URL, "DOCKMASTER_ACCESS_KEY="+keys[role][0], "DOCKMASTER_SECRET_KEY="+keys[role][1])
		var out, errb strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return out.String(), errb.String(), code
	}

	t.Run("standalone listed with command, ports, environment", func(t *testing.T) {
		type row struct {
			Name, Kind, State, Command string
			Managed                    bool
			Ports                      []struct {
				PublicPort  int `json:"public_port"`
				PrivatePort int `json:"private_port"`
			}
		}
		deadline := time.Now().Add(15 * time.Second)
		for {
			out, errs, code := cli("member", "ps", "-e", "prod", "-o", "json")
			var l struct{ Containers []row }
			if code != 0 || json.Unmarshal([]byte(out), &l) != nil {
				t.Fatalf("ps: %d %s %s", code, out, errs)
			}
			var got *row
			for i := range l.Containers {
				if l.Containers[i].Name == "by-hand" && l.Containers[i].State == "running" {
					got = &l.Containers[i]
				}
			}
			if got != nil {
				if got.Managed || got.Command != "httpd -f -p 8080" || len(got.Ports) != 1 || got.Ports[0].PublicPort != 18081 {
					t.Errorf("by-hand = %+v", *got)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("by-hand never listed: %s", out)
			}
			time.Sleep(200 * time.Millisecond)
		}
		table, _, _ := cli("member", "ps", "-e", "prod")
		if !strings.Contains(table, "by-hand") || !strings.Contains(table, "standalone") {
			t.Errorf("ps table:\n%s", table)
		}
		var d struct {
			Env       []string `json:"env"`
			EnvHidden bool     `json:"env_hidden"`
		}
		ctrGetJSON(t, srv.URL+"/api/v1/environments/prod/containers/by-hand", keys["member"], &d)
		if !strings.Contains(strings.Join(d.Env, ","), "FOO=bar-planted") {
			t.Errorf("member sees env %v", d.Env)
		}
		d.Env = nil
		body := ctrGetJSON(t, srv.URL+"/api/v1/environments/prod/containers/by-hand", keys["restricted"], &d)
		if !d.EnvHidden || strings.Contains(body, "bar-planted") {
			t.Errorf("restricted sees the environment: %s", body)
		}
	})

	t.Run("read-only gets 403 on every action and exec", func(t *testing.T) {
		for _, act := range []string{"start", "stop", "restart", "remove"} {
			req, _ := http.NewRequest(http.MethodPost, srv.URL+"/api/v1/environments/prod/containers/by-hand/"+act+"?force_standalone=1", nil)
			req.SetBasicAuth(keys["read-only"][0], keys["read-only"][1])
			if st := ctrStatus(t, req); st != http.StatusForbidden {
				t.Errorf("read-only %s: %d, want 403", act, st)
			}
		}
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/api/v1/environments/prod/containers/by-hand/exec?cmd=sh", nil)
		req.SetBasicAuth(keys["read-only"][0], keys["read-only"][1])
		if st := ctrStatus(t, req); st != http.StatusForbidden {
			t.Errorf("read-only exec: %d, want 403", st)
		}
		if _, errs, code := cli("read-only", "exec", "-e", "prod", "by-hand", "echo", "hi"); code != 1 || !strings.Contains(errs, "403") {
			t.Errorf("read-only CLI exec: exit %d, %s", code, errs)
		}
		if _, errs, code := cli("read-only", "container", "restart", "-e", "prod", "by-hand"); code != 1 || !strings.Contains(errs, "missing permission container-act") {
			t.Errorf("read-only CLI restart: exit %d, %s", code, errs)
		}
	})

	t.Run("restart through dockmaster is audited", func(t *testing.T) {
		before := ctrStartedAt(t, h, "by-hand")
		out, errs, code := cli("member", "container", "restart", "-e", "prod", "by-hand")
		if code != 0 || !strings.Contains(out, "restart done") {
			t.Fatalf("restart: %d %s %s", code, out, errs)
		}
		if after := ctrStartedAt(t, h, "by-hand"); !after.After(before) {
			t.Errorf("not restarted: started %v then %v", before, after)
		}
		var a struct {
			Entries []struct{ Actor, Action, Target, Result string }
		}
		admin.Do(http.MethodGet, "/api/v1/audit?action=container.restart", nil, &a)
		if len(a.Entries) != 1 || !strings.Contains(a.Entries[0].Target, "ct1/by-hand") || a.Entries[0].Result != "ok" ||
			!strings.HasPrefix(a.Entries[0].Actor, "key:") {
			t.Errorf("audit = %+v", a.Entries)
		}
		if _, errs, code := cli("member", "container", "rm", "-e", "prod", "by-hand"); code != 1 || !strings.Contains(errs, "standalone") {
			t.Errorf("rm of a standalone without --standalone: %d %s", code, errs)
		}
	})

	t.Run("logs -f streams new lines", func(t *testing.T) {
		cmd := exec.Command(testenv.Binary(t), "logs", "-f", "--tail", "1", "-e", "prod", "chatty")
		cmd.Env = append(os.Environ(), "DOCKMASTER_URL="+srv.URL, "DOCKMASTER_ACCESS_KEY="+keys["member"][0], "DOCKMASTER_SECRET_KEY="+keys["member"][1])
		pipe, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { cmd.Process.Kill(); cmd.Wait() }()
		lines := make(chan string)
		go func() {
			sc := bufio.NewScanner(pipe)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		var got []string
		timeout := time.After(15 * time.Second)
		for len(got) < 4 {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("logs -f ended after %v", got)
				}
				got = append(got, l)
			case <-timeout:
				t.Fatalf("logs -f: only %v", got)
			}
		}
		// tail 1 gives one old line; three more can only come from following.
		if got[0] == got[3] || !strings.HasPrefix(got[3], "tick") {
			t.Errorf("lines %v", got)
		}
	})

	t.Run("exec echo hi", func(t *testing.T) {
		out, errs, code := cli("member", "exec", "-e", "prod", "by-hand", "echo", "hi")
		if out != "hi\n" || code != 0 {
			t.Errorf("exec echo hi: %q exit %d %s", out, code, errs)
		}
		out, _, code = cli("member", "exec", "-e", "prod", "by-hand", "sh", "-c", "echo err >&2; exit 7")
		if code != 7 {
			t.Errorf("exec exit 7: %q exit %d", out, code)
		}
	})

	t.Run("browser terminal and charts", func(t *testing.T) {
		b := browsertest.Start(t)
		s := b.NewSession(t, "admin")
		s.Login(srv.URL, "admin", testenv.AdminPassword)
		// Let the sampler take a few readings (every 500ms here).
		time.Sleep(3 * time.Second)
		s.Open(srv.URL + "/environments/prod/containers/by-hand")
		html := s.HTML()
		if strings.Count(html, `class="chart"`) != 4 || !strings.Contains(html, "<polyline") || !strings.Contains(html, "FOO=bar-planted") {
			t.Errorf("container page lacks charts or env:\n%s", html)
		}
		shot := filepath.Join(browsertest.ArtifactsDir(), "containers-charts.png")
		if err := s.Screenshot(shot); err != nil {
			t.Error(err)
		}
		t.Logf("charts screenshot: %s", shot)
		s.Open(srv.URL + "/environments/prod/containers?host=ct1")
		if html := s.HTML(); !strings.Contains(html, "host-charts") || !strings.Contains(html, "by-hand") {
			t.Errorf("host page lacks host charts")
		}
		if err := s.Screenshot(filepath.Join(browsertest.ArtifactsDir(), "containers-host.png")); err != nil {
			t.Error(err)
		}

		s.Open(srv.URL + "/environments/prod/containers/by-hand/terminal")
		s.Do("wait for the shell", chromedp.WaitVisible(`#terminal[data-state="connected"]`))
		// Input.insertText types as an IME would: one input event per call.
		// (SendKeys' key events reach xterm twice, as keydown and as input.)
		insert := func(text string) chromedp.Action[chromedp.Void] {
			return func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
				return chromedp.Void{}, tg.Call(ctx, "Input.insertText", map[string]string{"text": text}, nil)
			}
		}
		s.Do("type into the terminal", chromedp.Focus(`.xterm-helper-textarea`), insert("echo $((6*7))xyz"),
			chromedp.KeyEvent("\r"))
		deadline := time.Now().Add(10 * time.Second)
		for {
			text := s.HTML()
			if strings.Contains(text, "42xyz") {
				break
			}
			if time.Now().After(deadline) {
				s.SaveArtifacts("terminal")
				t.Fatalf("terminal never showed 42xyz")
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err := s.Screenshot(filepath.Join(browsertest.ArtifactsDir(), "containers-terminal.png")); err != nil {
			t.Error(err)
		}
	})
}

func ctrGetJSON(t *testing.T, u string, key [2]string, out any) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	req.SetBasicAuth(key[0], key[1])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	bufio.NewReader(resp.Body).WriteTo(&b)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", u, resp.StatusCode, b.String())
	}
	if err := json.Unmarshal([]byte(b.String()), out); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func ctrStatus(t *testing.T, req *http.Request) int {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func ctrStartedAt(t *testing.T, h *testenv.Host, name string) time.Time {
	t.Helper()
	ins, err := h.Client.ContainerInspect(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	ts, err := time.Parse(time.RFC3339Nano, ins.State.StartedAt)
	if err != nil {
		t.Fatal(err)
	}
	return ts
}
