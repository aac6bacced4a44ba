package deployer_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"

	"github.com/dockmaster/dockmaster/deployer"
	"github.com/dockmaster/dockmaster/internal/store"
	"github.com/dockmaster/dockmaster/internal/testenv"
)

// Issue 5's speed goals, measured against the same daemon in the same run:
//
//	go test ./deployer -run '^$' -bench 'UpgradeVsScript|UpVsCompose' -benchtime 3x
//
// Each prints dockmaster's and the reference's seconds per operation and
// their ratio (goal: upgrade ratio <= 1.1, up ratio < 1).

// benchCmd makes httpd exit on SIGTERM (as PID 1 it would ignore it and
// every stop would wait for the kill): stops then cost the same on both
// sides and do not drown the difference being measured.
var benchCmd = []string{"sh", "-c", "trap 'exit 0' TERM; httpd -f -p 8080 -h /www & wait"}

type benchRig struct {
	hosts []*testenv.Host
	db    *store.DB
	d     *deployer.Deployer
}

// newBenchRig starts n harness hosts (a host's stack network holds 13
// containers, so scale 10 with start_first needs two) and a deployer on
// them.
func newBenchRig(b testing.TB, n int) *benchRig {
	b.Helper()
	r := &benchRig{}
	var dh []deployer.Host
	for i := 1; i <= n; i++ {
		h := testenv.StartHost(b, fmt.Sprintf("bench%d", i))
		b.Cleanup(func() { removeOwnedTB(b, h.Client) })
		for _, v := range []string{"1.0.0", "1.0.1"} {
			testenv.HTTPServerImage(b, h.Client, v)
		}
		e, err := deployer.NewDockerEngine(deployer.HostConfig{Name: h.Name, Endpoint: h.Endpoint, Timeout: 30 * time.Second})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { e.Close() })
		r.hosts = append(r.hosts, h)
		dh = append(dh, deployer.Host{Name: h.Name, Address: h.IP, Engine: e})
	}
	db, err := store.Open(context.Background(), filepath.Join(b.TempDir(), "dm.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	r.db = db
	r.d, err = deployer.New(deployer.Options{Env: env, Store: db, StopGrace: 5 * time.Second, RunningGrace: 300 * time.Millisecond, Hosts: dh})
	if err != nil {
		b.Fatal(err)
	}
	return r
}

func (r *benchRig) clients() []*client.Client {
	out := make([]*client.Client, len(r.hosts))
	for i, h := range r.hosts {
		out[i] = h.Client
	}
	return out
}

func (r *benchRig) removeAll(b testing.TB) {
	for _, h := range r.hosts {
		removeOwnedTB(b, h.Client)
	}
}

// removeOwnedTB removes every owned container and network (the harness
// host must not stop with user networks left).
func removeOwnedTB(tb testing.TB, cli *client.Client) {
	if _, err := testenv.RemoveLabeled(context.Background(), cli, deployer.LabelEnv); err != nil {
		tb.Error(err)
	}
}

func benchService(name, version string, scale, batch int) deployer.ServiceSpec {
	return deployer.ServiceSpec{Name: name, Image: "dockmaster-test/web:" + version, Command: benchCmd, Scale: scale,
		HealthCheck: &deployer.HealthCheck{Port: 8080, RequestLine: "GET /healthz HTTP/1.0", Interval: 100 * time.Millisecond,
			HealthyThreshold: 1, UnhealthyThreshold: 3, ResponseTimeout: time.Second, InitializingTimeout: 20 * time.Second},
		Upgrade: deployer.UpgradeStrategy{StartFirst: true, BatchSize: batch}}
}

// BenchmarkUpgradeVsScript: an upgrade at scale 10, batch 5, start_first,
// by the deployer and by a script making the same Docker calls directly
// (create+start a batch, wait until each answers /healthz, stop the
// batch's old containers), from the same starting point.
func BenchmarkUpgradeVsScript(b *testing.B) {
	testenv.Docker(b)
	r := newBenchRig(b, 2)
	ctx := context.Background()
	var dmTotal, scriptTotal time.Duration
	for i := 0; i < b.N; i++ {
		stack := fmt.Sprintf("up%d", i)
		if err := r.d.Up(ctx, deployer.StackSpec{Name: stack, Services: []deployer.ServiceSpec{benchService("web", "1.0.0", 10, 5)}}, deployer.DeployOptions{}); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		if err := r.d.Upgrade(ctx, deployer.StackSpec{Name: stack, Services: []deployer.ServiceSpec{benchService("web", "1.0.1", 10, 5)}}, deployer.DeployOptions{}); err != nil {
			b.Fatal(err)
		}
		dmTotal += time.Since(start)
		if err := r.d.Finish(ctx, stack, nil); err != nil {
			b.Fatal(err)
		}

		elapsed, err := scriptUpgrade(ctx, r.clients(), fmt.Sprintf("script%d", i), 10, 5)
		if err != nil {
			b.Fatal(err)
		}
		scriptTotal += elapsed
		r.removeAll(b)
	}
	dm, sc := dmTotal.Seconds()/float64(b.N), scriptTotal.Seconds()/float64(b.N)
	b.ReportMetric(dm, "dockmaster-s/op")
	b.ReportMetric(sc, "script-s/op")
	b.ReportMetric(dm/sc, "ratio")
	b.Logf("upgrade scale 10 batch 5 start_first: dockmaster %.2fs, direct script %.2fs, ratio %.2f (goal <= 1.10)", dm, sc, dm/sc)
}

// scriptUpgrade sets up scale containers of 1.0.0 spread over the hosts
// (untimed), then times the hand-written upgrade to 1.0.1: per batch,
// create and start the new containers one by one, wait until each answers
// /healthz, then stop the batch's old ones.
func scriptUpgrade(ctx context.Context, clis []*client.Client, stack string, scale, batch int) (time.Duration, error) {
	labels := map[string]string{deployer.LabelEnv: env, deployer.LabelStack: stack}
	netName := env + "_" + stack
	for _, cli := range clis {
		if _, err := cli.NetworkCreate(ctx, netName, network.CreateOptions{Labels: labels}); err != nil {
			return 0, err
		}
	}
	type ctr struct {
		cli *client.Client
		id  string
	}
	run := func(version string, idx int) (ctr, error) {
		cli := clis[idx%len(clis)]
		name := fmt.Sprintf("%s-web-%s-%d", stack, strings.ReplaceAll(version, ".", ""), idx)
		c, err := cli.ContainerCreate(ctx, &container.Config{Image: "dockmaster-test/web:" + version, Cmd: benchCmd, Labels: labels},
			&container.HostConfig{}, &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{netName: {}}}, nil, name)
		if err != nil {
			return ctr{}, err
		}
		return ctr{cli, c.ID}, cli.ContainerStart(ctx, c.ID, container.StartOptions{})
	}
	wait := func(cs []ctr) error {
		for _, c := range cs {
			if err := waitHTTP(ctx, c.cli, netName, c.id); err != nil {
				return err
			}
		}
		return nil
	}
	var old []ctr
	for i := 1; i <= scale; i++ {
		c, err := run("1.0.0", i)
		if err != nil {
			return 0, err
		}
		old = append(old, c)
	}
	if err := wait(old); err != nil {
		return 0, err
	}
	start := time.Now()
	for done := 0; done < scale; done += batch {
		var fresh []ctr
		for i := done + 1; i <= min(done+batch, scale); i++ {
			c, err := run("1.0.1", i)
			if err != nil {
				return 0, err
			}
			fresh = append(fresh, c)
		}
		if err := wait(fresh); err != nil {
			return 0, err
		}
		stopTimeout := 5
		for _, c := range old[done:min(done+batch, scale)] {
			if err := c.cli.ContainerStop(ctx, c.id, container.StopOptions{Timeout: &stopTimeout}); err != nil {
				return 0, err
			}
		}
	}
	return time.Since(start), nil
}

// waitHTTP polls the container's /healthz on its network IP every 100ms
// until it answers 200.
func waitHTTP(ctx context.Context, cli *client.Client, netName, id string) error {
	hc := &http.Client{Timeout: time.Second}
	ins, err := cli.ContainerInspect(ctx, id)
	if err != nil {
		return err
	}
	ip := ins.NetworkSettings.Networks[netName].IPAddress
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := hc.Get("http://" + ip + ":8080/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("container %.12s (%s) never healthy: %v", id, ip, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// BenchmarkUpVsCompose: dockmaster's up of a 3-service stack at scale 3
// (waiting until all 9 are running past the grace) against Debian's
// docker-compose up -d --scale on the same daemon (which does not wait).
func BenchmarkUpVsCompose(b *testing.B) {
	testenv.Docker(b)
	composeBin, err := exec.LookPath("docker-compose")
	if err != nil {
		b.Skip("docker-compose not installed (scripts/setup.sh installs it)")
	}
	r := newBenchRig(b, 1)
	ctx := context.Background()
	dir := b.TempDir()
	var yml strings.Builder
	yml.WriteString("version: '2'\nservices:\n")
	var specs []deployer.ServiceSpec
	for _, s := range []string{"a", "b", "c"} {
		fmt.Fprintf(&yml, "  %s:\n    image: dockmaster-test/web:1.0.0\n    command: [\"sh\", \"-c\", \"trap 'exit 0' TERM; httpd -f -p 8080 -h /www & wait\"]\n    labels: {%s: \"%s\"}\n",
			s, deployer.LabelEnv, env)
		spec := benchService(s, "1.0.0", 3, 1)
		spec.HealthCheck = nil // as compose: no check; the deployer still waits the running grace
		specs = append(specs, spec)
	}
	if err := os.WriteFile(filepath.Join(dir, "docker-compose.yml"), []byte(yml.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	var dmTotal, composeTotal time.Duration
	for i := 0; i < b.N; i++ {
		start := time.Now()
		if err := r.d.Up(ctx, deployer.StackSpec{Name: fmt.Sprintf("dm%d", i), Services: specs}, deployer.DeployOptions{}); err != nil {
			b.Fatal(err)
		}
		dmTotal += time.Since(start)

		cmd := exec.CommandContext(ctx, composeBin, "-p", fmt.Sprintf("dc%d", i), "up", "-d", "--scale", "a=3", "--scale", "b=3", "--scale", "c=3")
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "DOCKER_HOST="+r.hosts[0].Endpoint)
		start = time.Now()
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("docker-compose up: %v\n%s", err, out)
		}
		composeTotal += time.Since(start)
		down := exec.CommandContext(ctx, composeBin, "-p", fmt.Sprintf("dc%d", i), "down", "-t", "1")
		down.Dir, down.Env = dir, cmd.Env
		if out, err := down.CombinedOutput(); err != nil {
			b.Fatalf("docker-compose down: %v\n%s", err, out)
		}
		r.removeAll(b)
	}
	dm, dc := dmTotal.Seconds()/float64(b.N), composeTotal.Seconds()/float64(b.N)
	b.ReportMetric(dm, "dockmaster-s/op")
	b.ReportMetric(dc, "compose-s/op")
	b.ReportMetric(dm/dc, "ratio")
	b.Logf("up 3 services x scale 3: dockmaster %.2fs, docker-compose %.2fs, ratio %.2f (goal < 1)", dm, dc, dm/dc)
}
