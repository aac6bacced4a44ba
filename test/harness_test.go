package test

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/registry"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/jsonmessage"
	"github.com/docker/docker/pkg/stdcopy"
	"github.com/docker/go-connections/nat"

	"github.com/dockmaster/dockmaster/internal/testenv"
)

// TestHarness checks the harness against real daemons: one extra host shared
// by the subtests, a second one started and torn down to check cleanup.
func TestHarness(t *testing.T) {
	cli := testenv.Docker(t)
	ipt := iptablesDocker0(t)
	host := testenv.StartHost(t, "h1")

	t.Run("same port on default daemon and host", func(t *testing.T) {
		port := testenv.FreePort(t)
		def := testenv.HTTPServerImage(t, cli, "on-default")
		onHost := testenv.HTTPServerImage(t, host.Client, "on-host")
		// The default daemon binds 0.0.0.0 unless told: pin it to 127.0.0.1.
		runPublished(t, cli, def, "127.0.0.1", port)
		// The host's daemon binds its own 127.0.0.X by default (dockerd --ip).
		runPublished(t, host.Client, onHost, "", port)

		if got := httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/healthz", port)); got != "on-default\n" {
			t.Errorf("default daemon served %q, want %q", got, "on-default\n")
		}
		if got := httpGet(t, fmt.Sprintf("http://%s:%d/index.html", host.IP, port)); got != "on-host\n" {
			t.Errorf("host %s served %q, want %q", host.IP, got, "on-host\n")
		}
	})

	t.Run("host containers reach this machine at Gateway", func(t *testing.T) {
		l, err := net.Listen("tcp", "0.0.0.0:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "from-machine\n")
		})}
		go srv.Serve(l)
		t.Cleanup(func() { srv.Close() })
		url := fmt.Sprintf("http://%s:%d/", host.Gateway, l.Addr().(*net.TCPAddr).Port)
		out, errOut, exit := runOnce(t, host.Client, testenv.BaseImage, "wget", "-q", "-O", "-", url)
		if exit != 0 || out != "from-machine\n" {
			t.Errorf("wget %s in a container of the host: exit %d, stdout %q, stderr %q", url, exit, out, errOut)
		}
	})

	t.Run("push from host, pull on default daemon", func(t *testing.T) {
		reg := testenv.StartRegistry(t)
		src := testenv.HTTPServerImage(t, host.Client, "pushed")
		ref := reg.Addr + "/dm/web:pushed"
		ctx := context.Background()
		if err := host.Client.ImageTag(ctx, src, ref); err != nil {
			t.Fatalf("tag %s: %v", ref, err)
		}
		if err := push(ctx, host.Client, ref, ""); err != nil {
			t.Fatalf("push %s over plain HTTP to loopback: %v", ref, err)
		}
		if tags := registryTags(t, reg, "dm/web"); !slices.Contains(tags, "pushed") {
			t.Fatalf("registry tags of dm/web = %v, want pushed", tags)
		}
		rc, err := cli.ImagePull(ctx, ref, image.PullOptions{})
		if err != nil {
			t.Fatalf("pull %s on default daemon: %v", ref, err)
		}
		err = jsonmessage.DisplayJSONMessagesStream(rc, io.Discard, 0, false, nil)
		rc.Close()
		if err != nil {
			t.Fatalf("pull %s on default daemon: %v", ref, err)
		}
		t.Cleanup(func() {
			_, _ = cli.ImageRemove(context.Background(), ref, image.RemoveOptions{Force: true})
		})
		img, err := cli.ImageInspect(ctx, ref)
		if err != nil {
			t.Fatalf("inspect pulled %s: %v", ref, err)
		}
		if v := img.Config.Labels["io.dockmaster.test.version"]; v != "pushed" {
			t.Errorf("pulled image label version = %q, want pushed", v)
		}
	})

	t.Run("auth registry", func(t *testing.T) {
		reg := testenv.StartRegistryWithAuth(t, "ci", "s3cret")
		ref := reg.Addr + "/dm/busybox:auth"
		ctx := context.Background()
		if err := host.Client.ImageTag(ctx, testenv.BaseImage, ref); err != nil {
			t.Fatalf("tag %s: %v", ref, err)
		}
		err := push(ctx, host.Client, ref, "")
		if err == nil {
			t.Fatalf("unauthenticated push of %s succeeded, want refusal", ref)
		}
		t.Logf("unauthenticated push refused: %v", err)
		wrong, err := registry.EncodeAuthConfig(registry.AuthConfig{Username: "ci", Password: "wrong", ServerAddress: reg.Addr})
		if err != nil {
			t.Fatal(err)
		}
		if err := push(ctx, host.Client, ref, wrong); err == nil {
			t.Fatalf("push of %s with a wrong password succeeded, want refusal", ref)
		} else {
			t.Logf("push with wrong password refused: %v", err)
		}
		auth, err := registry.EncodeAuthConfig(registry.AuthConfig{Username: reg.User, Password: reg.Pass, ServerAddress: reg.Addr})
		if err != nil {
			t.Fatal(err)
		}
		if err := push(ctx, host.Client, ref, auth); err != nil {
			t.Fatalf("authenticated push of %s: %v", ref, err)
		}
		if tags := registryTags(t, reg, "dm/busybox"); !slices.Contains(tags, "auth") {
			t.Fatalf("registry tags of dm/busybox = %v, want auth", tags)
		}
	})

	t.Run("cleanup leaves nothing", func(t *testing.T) {
		var h2 *testenv.Host
		t.Run("start", func(t *testing.T) {
			h2 = testenv.StartHost(t, "h2")
			if h2.Index == host.Index || h2.IP == host.IP || h2.Bridge == host.Bridge {
				t.Errorf("second host shares index/IP/bridge with the first: %+v vs %+v", h2, host)
			}
			ids := map[string]string{}
			for name, c := range map[string]*client.Client{"default": cli, "h1": host.Client, "h2": h2.Client} {
				info, err := c.Info(context.Background())
				if err != nil {
					t.Fatalf("info of %s: %v", name, err)
				}
				if other, dup := ids[info.ID]; dup {
					t.Errorf("daemons %s and %s share engine ID %s", other, name, info.ID)
				}
				ids[info.ID] = name
			}
			// A running container with a published port leaves netns, overlay
			// mounts and a docker-proxy to clean.
			runPublished(t, h2.Client, testenv.BaseImage, "", testenv.FreePort(t), "sleep", "600")
			for _, s := range []string{h2.Dir + "/", "-host-ip " + h2.IP + " "} {
				if len(processesMentioning(t, s)) == 0 {
					t.Errorf("no running process mentions %q: the cleanup check below would prove nothing", s)
				}
			}
			if got := iptablesDocker0(t); !slices.Equal(got, ipt) {
				t.Errorf("default daemon's docker0 iptables rules changed while a host runs:\nbefore %q\nnow    %q", ipt, got)
			}
			// The one rule the harness adds on purpose lets containers of
			// harness hosts reach each other; the daemons themselves add none.
			out := strings.ReplaceAll(iptablesSave(t), "-A DOCKER-USER -s 10.250.0.0/15 -d 10.250.0.0/15 -j ACCEPT\n", "")
			if strings.Contains(out, h2.Bridge) || strings.Contains(out, "10.250.") {
				t.Errorf("harness host wrote iptables rules:\n%s", out)
			}
		})
		if h2 == nil {
			t.Fatal("second host did not start")
		}
		if comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", h2.PID)); err == nil {
			t.Errorf("dockerd pid %d still runs after cleanup (%s)", h2.PID, strings.TrimSpace(string(comm)))
		}
		if _, err := os.Stat("/sys/class/net/" + h2.Bridge); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("bridge %s still exists after cleanup (stat: %v)", h2.Bridge, err)
		}
		if _, err := os.Stat(h2.Dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("host dir %s still exists after cleanup (stat: %v)", h2.Dir, err)
		}
		if mounts, err := os.ReadFile("/proc/self/mountinfo"); err != nil {
			t.Error(err)
		} else if strings.Contains(string(mounts), h2.Dir+"/") || strings.Contains(string(mounts), h2.Dir+" ") {
			t.Errorf("mounts under %s remain after cleanup", h2.Dir)
		}
		// dockerd, containerd and shims name the dir; docker-proxy the IP.
		for _, s := range []string{h2.Dir + "/", "-host-ip " + h2.IP + " "} {
			if procs := processesMentioning(t, s); len(procs) > 0 {
				t.Errorf("processes mentioning %q remain after cleanup: %v", s, procs)
			}
		}
		lock, err := os.OpenFile(filepath.Join(testenv.StateRoot, fmt.Sprintf("slot-%d.lock", h2.Index)), os.O_RDWR, 0)
		if err != nil {
			t.Fatalf("slot lock: %v", err)
		}
		defer lock.Close()
		if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			t.Errorf("slot %d still locked after cleanup: %v", h2.Index, err)
		}
		if got := iptablesDocker0(t); !slices.Equal(got, ipt) {
			t.Errorf("default daemon's docker0 iptables rules changed after host cleanup:\nbefore %q\nnow    %q", ipt, got)
		}
	})
}

// runPublished runs img on cli publishing container port 8080 on
// hostIP:port (hostIP "" = the daemon's default), removed on cleanup.
func runPublished(t *testing.T, cli *client.Client, img, hostIP string, port int, cmd ...string) {
	t.Helper()
	ctx := context.Background()
	cfg := &container.Config{Image: img, Cmd: cmd, ExposedPorts: nat.PortSet{"8080/tcp": {}}}
	hc := &container.HostConfig{PortBindings: nat.PortMap{
		"8080/tcp": {{HostIP: hostIP, HostPort: strconv.Itoa(port)}},
	}}
	c, err := cli.ContainerCreate(ctx, cfg, hc, nil, nil, "")
	if err != nil {
		t.Fatalf("create %s on %s: %v", img, cli.DaemonHost(), err)
	}
	t.Cleanup(func() {
		_ = cli.ContainerRemove(context.Background(), c.ID, container.RemoveOptions{Force: true})
	})
	if err := cli.ContainerStart(ctx, c.ID, container.StartOptions{}); err != nil {
		t.Fatalf("start %s on %s: %v", img, cli.DaemonHost(), err)
	}
}

// httpGet returns the body of a 200 answer, retrying for a few seconds while
// the container's server starts.
func httpGet(t *testing.T, url string) string {
	t.Helper()
	hc := &http.Client{Timeout: 2 * time.Second}
	var last error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		resp, err := hc.Get(url)
		if err != nil {
			last = err
			continue
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil && resp.StatusCode == http.StatusOK {
			return string(body)
		}
		last = fmt.Errorf("status %s, read error %v", resp.Status, err)
	}
	t.Fatalf("GET %s: %v", url, last)
	return ""
}

// push pushes ref from cli, with base64 auth if non-empty; the error of the
// stream (e.g. "no basic auth credentials") is returned.
func push(ctx context.Context, cli *client.Client, ref, auth string) error {
	// The daemon wants some RegistryAuth value even when anonymous.
	if auth == "" {
		auth = "e30=" // base64("{}")
	}
	rc, err := cli.ImagePush(ctx, ref, image.PushOptions{RegistryAuth: auth})
	if err != nil {
		return err
	}
	defer rc.Close()
	return jsonmessage.DisplayJSONMessagesStream(rc, io.Discard, 0, false, nil)
}

// registryTags asks the registry's HTTP API which tags repo has.
func registryTags(t *testing.T, reg *testenv.Registry, repo string) []string {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, reg.URL+"/v2/"+repo+"/tags/list", nil)
	if err != nil {
		t.Fatal(err)
	}
	if reg.User != "" {
		req.SetBasicAuth(reg.User, reg.Pass)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("tags of %s: %v", repo, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("tags of %s: %s: %s", repo, resp.Status, body)
	}
	// {"name":"dm/web","tags":["pushed"]}: small enough to not need a struct.
	_, list, ok := strings.Cut(string(body), `"tags":[`)
	if !ok {
		t.Fatalf("tags of %s: unexpected body %s", repo, body)
	}
	list, _, _ = strings.Cut(list, "]")
	var tags []string
	for _, s := range strings.Split(list, ",") {
		if s = strings.Trim(s, `" `); s != "" {
			tags = append(tags, s)
		}
	}
	return tags
}

func iptablesSave(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("iptables-save").CombinedOutput()
	if err != nil {
		t.Fatalf("iptables-save: %v: %s", err, out)
	}
	return string(out)
}

// iptablesDocker0 returns the default daemon's fixed rules (those naming
// docker0, minus per-container port rules that other tests change). A second
// dockerd with iptables on would delete and recreate these chains.
func iptablesDocker0(t *testing.T) []string {
	t.Helper()
	var rules []string
	table := ""
	for _, l := range strings.Split(iptablesSave(t), "\n") {
		if strings.HasPrefix(l, "*") {
			table = l
		}
		if strings.Contains(l, "docker0") && !strings.Contains(l, "--dport") && !strings.Contains(l, "--to-destination") {
			rules = append(rules, table+" "+l)
		}
	}
	if len(rules) == 0 {
		t.Fatal("iptables has no docker0 rules: is the default daemon running with iptables?")
	}
	return rules
}

// processesMentioning lists pids whose command line contains s.
func processesMentioning(t *testing.T, s string) []string {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var pids []string
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		cmdline, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if line := strings.ReplaceAll(string(cmdline), "\x00", " "); err == nil && strings.Contains(line, s) {
			pids = append(pids, e.Name()+": "+line)
		}
	}
	return pids
}

// TestDockerfile builds the static binary and the repo's Dockerfile through
// the Docker API (legacy builder; FROM scratch needs no pull), then runs
// `/dockmaster version` in the image.
func TestDockerfile(t *testing.T) {
	cli := testenv.Docker(t)
	const version = "harness-test"
	ref, bin := dockmasterImage(t, cli, version)
	t.Cleanup(func() {
		_, _ = cli.ImageRemove(context.Background(), ref, image.RemoveOptions{Force: true, PruneChildren: true})
	})
	if f, err := elf.Open(bin); err != nil {
		t.Fatalf("open built binary: %v", err)
	} else {
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				t.Errorf("binary has an ELF interpreter (dynamically linked); FROM scratch cannot run it")
			}
		}
		f.Close()
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	img, err := cli.ImageInspect(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"/dockmaster"}; !slices.Equal(img.Config.Entrypoint, want) {
		t.Errorf("Entrypoint = %q, want %q", img.Config.Entrypoint, want)
	}
	if want := []string{"serve", "--listen", "0.0.0.0:8080"}; !slices.Equal(img.Config.Cmd, want) {
		t.Errorf("Cmd = %q, want %q", img.Config.Cmd, want)
	}
	if len(img.RootFS.Layers) != 1 {
		t.Errorf("image has %d layers, want 1 (the binary alone, FROM scratch)", len(img.RootFS.Layers))
	}

	stdout, stderr, exit := runOnce(t, cli, ref, "version")
	if exit != 0 {
		t.Fatalf("/dockmaster version exited %d; stdout %q, stderr %q", exit, stdout, stderr)
	}
	if got := stdout; !strings.HasPrefix(got, "dockmaster "+version+" ") {
		t.Errorf("/dockmaster version printed %q, want it to start with %q", got, "dockmaster "+version+" ")
	}
}

// runOnce runs img with cmd on cli until it exits and returns its output and
// exit code; the container is removed on cleanup.
func runOnce(t *testing.T, cli *client.Client, img string, cmd ...string) (stdout, stderr string, exit int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := cli.ContainerCreate(ctx, &container.Config{Image: img, Cmd: cmd}, nil, nil, nil, "")
	if err != nil {
		t.Fatalf("create %s on %s: %v", img, cli.DaemonHost(), err)
	}
	t.Cleanup(func() {
		_ = cli.ContainerRemove(context.Background(), c.ID, container.RemoveOptions{Force: true})
	})
	waitC, errC := cli.ContainerWait(ctx, c.ID, container.WaitConditionNextExit)
	if err := cli.ContainerStart(ctx, c.ID, container.StartOptions{}); err != nil {
		t.Fatalf("start %s on %s: %v", img, cli.DaemonHost(), err)
	}
	select {
	case w := <-waitC:
		exit = w.StatusCode
	case err := <-errC:
		t.Fatalf("wait for %s on %s: %v", img, cli.DaemonHost(), err)
	}
	logs, err := cli.ContainerLogs(ctx, c.ID, container.LogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		t.Fatalf("logs of %s: %v", img, err)
	}
	defer logs.Close()
	var o, e bytes.Buffer
	if _, err := stdcopy.StdCopy(&o, &e, logs); err != nil {
		t.Fatalf("logs of %s: %v", img, err)
	}
	return o.String(), e.String(), exit
}

// dockmasterImage builds the static binary (main.version=version) and the
// repo's Dockerfile on cli through the legacy builder (FROM scratch: no
// pull). It returns the image reference, dockmaster-test/dockmaster:version,
// and the binary's path.
func dockmasterImage(t *testing.T, cli *client.Client, version string) (ref, bin string) {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	bin = filepath.Join(t.TempDir(), "dockmaster")
	// No -trimpath: the build shares the cache of `make test`'s CGO_ENABLED=0 run.
	gobuild := exec.Command("go", "build", "-ldflags", "-X main.version="+version, "-o", bin, "./cmd/dockmaster")
	gobuild.Dir = root
	gobuild.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := gobuild.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/dockmaster: %v\n%s", err, out)
	}
	dockerfile, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	binBody, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	var ctxTar bytes.Buffer
	tw := tar.NewWriter(&ctxTar)
	for _, f := range []struct {
		name string
		mode int64
		body []byte
	}{
		{"Dockerfile", 0o644, dockerfile},
		{"bin/dockmaster", 0o755, binBody},
	} {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.body)), ModTime: time.Unix(0, 0)}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(f.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ref = "dockmaster-test/dockmaster:" + version
	resp, err := cli.ImageBuild(ctx, &ctxTar, build.ImageBuildOptions{
		Tags: []string{ref}, Version: build.BuilderV1, Remove: true, ForceRemove: true,
	})
	if err != nil {
		t.Fatalf("build %s: %v", ref, err)
	}
	var buildOut bytes.Buffer
	err = jsonmessage.DisplayJSONMessagesStream(resp.Body, &buildOut, 0, false, nil)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("build %s: %v\n%s", ref, err, buildOut.String())
	}
	return ref, bin
}
