package deployer_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/registry"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/jsonmessage"

	"github.com/dockmaster/dockmaster/deployer"
	"github.com/dockmaster/dockmaster/internal/store"
	"github.com/dockmaster/dockmaster/internal/store/storetest"
	"github.com/dockmaster/dockmaster/internal/testenv"
)

// rig is two harness hosts with the test images, shared by the subtests of
// TestOnDocker (each uses its own stack) to pay the dockerd start once.
type rig struct {
	hosts []*testenv.Host
}

const env = "test"

func newRig(t *testing.T) *rig {
	r := &rig{}
	for _, name := range []string{"h1", "h2"} {
		h := testenv.StartHost(t, name)
		// Runs before the harness stops the host (cleanups are LIFO): dockerd
		// leaves the bridges of user-defined networks behind when it stops,
		// and leaked bridges exhaust the slot's address pool for later runs.
		t.Cleanup(func() { removeOwned(t, h.Client) })
		for _, v := range []string{"1.0.0", "1.0.1", "1.0.2"} {
			testenv.HTTPServerImage(t, h.Client, v)
		}
		// Serves / but not /healthz: fails the health check with a 404.
		testenv.BuildImage(t, h.Client, "dockmaster-test/web:bad", map[string]string{
			"Dockerfile":     "FROM " + testenv.BaseImage + "\nCOPY www /www\n" + `CMD ["httpd", "-f", "-p", "8080", "-h", "/www"]` + "\n",
			"www/index.html": "bad\n",
		})
		r.hosts = append(r.hosts, h)
	}
	return r
}

// deployer makes a fresh Deployer (fresh engines) on db, as a restarted
// dockmaster would.
func (r *rig) deployer(t *testing.T, db deployer.Store, opts ...func(*deployer.Options)) *deployer.Deployer {
	t.Helper()
	var hosts []deployer.Host
	for _, h := range r.hosts {
		e, err := deployer.NewDockerEngine(deployer.HostConfig{Name: h.Name, Endpoint: h.Endpoint, Timeout: 20 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { e.Close() })
		hosts = append(hosts, deployer.Host{Name: h.Name, Address: h.IP, Engine: e})
	}
	o := deployer.Options{Env: env, Hosts: hosts, Store: db, StopGrace: time.Second, RunningGrace: 300 * time.Millisecond}
	for _, f := range opts {
		f(&o)
	}
	d, err := deployer.New(o)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

type observed struct {
	container.InspectResponse
	Host string
}

// ctrs lists the stack's containers on all hosts straight from Docker.
func (r *rig) ctrs(t *testing.T, stack string) []observed {
	t.Helper()
	ctx := context.Background()
	var out []observed
	for _, h := range r.hosts {
		list, err := h.Client.ContainerList(ctx, container.ListOptions{All: true,
			Filters: filters.NewArgs(filters.Arg("label", deployer.LabelStack+"="+stack))})
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range list {
			in, err := h.Client.ContainerInspect(ctx, s.ID)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, observed{in, h.Name})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// summary is "name version state@host" per container, sorted, for asserts.
func (r *rig) summary(t *testing.T, stack string) string {
	var lines []string
	for _, c := range r.ctrs(t, stack) {
		lines = append(lines, fmt.Sprintf("%s %s %s@%s", strings.TrimPrefix(c.Name, "/"),
			c.Config.Labels[deployer.LabelVersion], c.State.Status, c.Host))
	}
	return strings.Join(lines, "\n")
}

// versions counts running and stopped containers per version label.
func (r *rig) versions(t *testing.T, stack string) map[string]string {
	counts := map[string][2]int{}
	for _, c := range r.ctrs(t, stack) {
		v := counts[c.Config.Labels[deployer.LabelVersion]]
		if c.State.Running {
			v[0]++
		} else {
			v[1]++
		}
		counts[c.Config.Labels[deployer.LabelVersion]] = v
	}
	out := map[string]string{}
	for k, v := range counts {
		out[k] = fmt.Sprintf("%d running, %d stopped", v[0], v[1])
	}
	return out
}

// served GETs / from every running container of the stack and returns the
// bodies, which the web images set to their version.
func (r *rig) served(t *testing.T, stack string) []string {
	var out []string
	for _, c := range r.ctrs(t, stack) {
		if !c.State.Running {
			continue
		}
		ip := c.NetworkSettings.Networks[deployer.NetworkName(env, stack)].IPAddress
		resp, err := (&http.Client{Timeout: 2 * time.Second}).Get("http://" + ip + ":8080/")
		if err != nil {
			t.Fatalf("GET %s: %v", c.Name, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		out = append(out, strings.TrimSpace(string(b)))
	}
	return out
}

func webStack(stack, version string, scale int) deployer.StackSpec {
	return deployer.StackSpec{Name: stack, Services: []deployer.ServiceSpec{{
		Name:  "web",
		Image: "dockmaster-test/web:" + version,
		Scale: scale,
		HealthCheck: &deployer.HealthCheck{Port: 8080, RequestLine: "GET /healthz HTTP/1.0",
			Interval: 150 * time.Millisecond, ResponseTimeout: time.Second, HealthyThreshold: 2,
			InitializingTimeout: 3 * time.Second, Strategy: "recreate"},
		Upgrade: deployer.UpgradeStrategy{StartFirst: true, BatchSize: 1, Interval: 50 * time.Millisecond},
	}}}
}

func state(t *testing.T, db *store.DB, stack string) deployer.ServiceRecord {
	t.Helper()
	rec, err := db.Service(context.Background(), env, stack, "web")
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

func same(t *testing.T, what string, got, want any) {
	t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("%s:\n%v\nwant:\n%v", what, got, want)
	}
}

func TestOnDocker(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()

	t.Run("UpSpreadsHealthy", func(t *testing.T) {
		db := storetest.Open(t)
		d := r.deployer(t, db)
		var mu sync.Mutex
		perHost := map[string]string{}
		err := d.Up(ctx, webStack("up", "1.0.0", 3), deployer.DeployOptions{Progress: func(e deployer.Event) {
			if e.Step == "healthy" {
				mu.Lock()
				perHost[e.Host] = fmt.Sprintf("%d/%d healthy of %d", e.HostHealthy, e.HostStarted, e.Scale)
				mu.Unlock()
			}
		}})
		if err != nil {
			t.Fatal(err)
		}
		same(t, "containers", r.summary(t, "up"), "up-web-1 1.0.0 running@h1\nup-web-2 1.0.0 running@h2\nup-web-3 1.0.0 running@h1")
		same(t, "progress", perHost, map[string]string{"h1": "2/2 healthy of 3", "h2": "1/1 healthy of 3"})
		same(t, "served", r.served(t, "up"), []string{"1.0.0", "1.0.0", "1.0.0"})
		st, err := d.Status(ctx, "up")
		if err != nil {
			t.Fatal(err)
		}
		s := st.Services[0]
		if s.Running != 3 || s.Healthy != 3 || s.Version != "1.0.0" || s.ImageID == "" || len(s.Containers) != 3 {
			t.Fatalf("status = %+v", s)
		}
		if len(st.Hosts) != 2 || st.Hosts[0].Usage != (deployer.Usage{}) {
			t.Errorf("Status sampled host stats (that is AddUsage's, a second per container): %+v", st.Hosts)
		}
		d.AddUsage(ctx, &st)
		if st.Hosts[0].Usage.MemUsage == 0 || st.Hosts[1].Usage.MemUsage == 0 || st.Hosts[0].Err != "" {
			t.Errorf("host stats = %+v", st.Hosts)
		}
		// Up again is a no-op.
		if err := d.Up(ctx, webStack("up", "1.0.0", 3), deployer.DeployOptions{}); err != nil {
			t.Fatal(err)
		}
		same(t, "after second up", len(r.ctrs(t, "up")), 3)
		if err := d.Up(ctx, webStack("up", "1.0.1", 3), deployer.DeployOptions{}); !errors.Is(err, deployer.ErrConfigChanged) {
			t.Fatalf("Up with a new image: err = %v, want ErrConfigChanged", err)
		}
		lines, err := d.Logs(ctx, "up", "web", "", deployer.LogOptions{Tail: 10})
		if err != nil {
			t.Fatal(err)
		}
		for range lines {
		}
	})

	t.Run("UpgradeHoldFinishRollback", func(t *testing.T) {
		db := storetest.Open(t)
		d := r.deployer(t, db)
		if err := d.Up(ctx, webStack("upg", "1.0.0", 3), deployer.DeployOptions{}); err != nil {
			t.Fatal(err)
		}
		var steps []string
		err := d.Upgrade(ctx, webStack("upg", "1.0.1", 3), deployer.DeployOptions{Progress: func(e deployer.Event) {
			if e.Step == "create" || e.Step == "stop" {
				steps = append(steps, e.Step+" "+e.Container)
			}
		}})
		if err != nil {
			t.Fatal(err)
		}
		// start_first, batch 1: each new container is up before an old one stops.
		same(t, "steps", strings.Join(steps, ", "),
			"create upg-web-4, stop upg-web-3, create upg-web-5, stop upg-web-2, create upg-web-6, stop upg-web-1")
		same(t, "state", state(t, db, "upg").State, deployer.StateUpgraded)
		same(t, "held", r.versions(t, "upg"), map[string]string{"1.0.0": "0 running, 3 stopped", "1.0.1": "3 running, 0 stopped"})
		if err := d.Upgrade(ctx, webStack("upg", "1.0.2", 3), deployer.DeployOptions{}); !errors.Is(err, deployer.ErrUpgradeHeld) {
			t.Fatalf("upgrade while held: err = %v, want ErrUpgradeHeld", err)
		}
		if err := d.Finish(ctx, "upg", nil); err != nil {
			t.Fatal(err)
		}
		if err := d.Finish(ctx, "upg", nil); err != nil { // idempotent
			t.Fatal(err)
		}
		same(t, "finished", r.versions(t, "upg"), map[string]string{"1.0.1": "3 running, 0 stopped"})
		same(t, "state", state(t, db, "upg").State, deployer.StateActive)

		if err := d.Upgrade(ctx, webStack("upg", "1.0.2", 3), deployer.DeployOptions{}); err != nil {
			t.Fatal(err)
		}
		same(t, "held", r.versions(t, "upg"), map[string]string{"1.0.1": "0 running, 3 stopped", "1.0.2": "3 running, 0 stopped"})
		if err := d.Rollback(ctx, "upg", nil); err != nil {
			t.Fatal(err)
		}
		if err := d.Rollback(ctx, "upg", nil); err != nil { // idempotent
			t.Fatal(err)
		}
		same(t, "rolled back", r.versions(t, "upg"), map[string]string{"1.0.1": "3 running, 0 stopped"})
		same(t, "served", r.served(t, "upg"), []string{"1.0.1", "1.0.1", "1.0.1"})
		rec := state(t, db, "upg")
		if rec.State != deployer.StateActive || rec.Version != "1.0.1" || rec.Spec.Image != "dockmaster-test/web:1.0.1" || rec.Old != nil {
			t.Fatalf("record after rollback = %+v", rec)
		}
		// History: redeploy revision 1 (1.0.0) as a new upgrade.
		revs, err := d.Revisions(ctx, "upg")
		if err != nil || len(revs) != 3 {
			t.Fatalf("revisions = %d, %v", len(revs), err)
		}
		if err := d.Redeploy(ctx, "upg", 1, deployer.DeployOptions{FinishHeld: true}); err != nil {
			t.Fatal(err)
		}
		same(t, "redeployed", r.versions(t, "upg"), map[string]string{"1.0.0": "3 running, 0 stopped", "1.0.1": "0 running, 3 stopped"})
	})

	for _, then := range []string{"rollback", "finish"} {
		t.Run("CrashMidUpgradeThen_"+then, func(t *testing.T) {
			db := storetest.Open(t)
			stack := "crash" + then[:1]
			if err := r.deployer(t, db).Up(ctx, webStack(stack, "1.0.0", 3), deployer.DeployOptions{}); err != nil {
				t.Fatal(err)
			}
			// The first dockmaster dies right after the second new container
			// is created, before it is healthy.
			cctx, cancel := context.WithCancel(ctx)
			creates := 0
			err := r.deployer(t, db).Upgrade(cctx, webStack(stack, "1.0.1", 3), deployer.DeployOptions{Progress: func(e deployer.Event) {
				if e.Step == "create" {
					if creates++; creates == 2 {
						cancel()
					}
				}
			}})
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("interrupted upgrade: err = %v", err)
			}
			same(t, "state after crash", state(t, db, stack).State, deployer.StateUpgrading)
			d := r.deployer(t, db) // a fresh dockmaster
			want := map[string]string{"1.0.0": "3 running, 0 stopped"}
			if then == "finish" {
				if err := d.Finish(ctx, stack, nil); err != nil {
					t.Fatal(err)
				}
				want = map[string]string{"1.0.1": "3 running, 0 stopped"}
			} else if err := d.Rollback(ctx, stack, nil); err != nil {
				t.Fatal(err)
			}
			same(t, "after "+then, r.versions(t, stack), want)
			same(t, "state", state(t, db, stack).State, deployer.StateActive)
			seen := map[string]bool{}
			for _, c := range r.ctrs(t, stack) {
				idx := c.Config.Labels[deployer.LabelIndex]
				if seen[idx] {
					t.Fatalf("duplicate index %s:\n%s", idx, r.summary(t, stack))
				}
				seen[idx] = true
			}
		})
	}

	t.Run("FailingHealthCheckRollsBack", func(t *testing.T) {
		db := storetest.Open(t)
		d := r.deployer(t, db)
		if err := d.Up(ctx, webStack("bad", "1.0.0", 2), deployer.DeployOptions{}); err != nil {
			t.Fatal(err)
		}
		err := d.Upgrade(ctx, webStack("bad", "bad", 2), deployer.DeployOptions{})
		var he *deployer.HealthError
		if !errors.As(err, &he) || !errors.Is(err, deployer.ErrUnhealthy) {
			t.Fatalf("err = %v, want a HealthError", err)
		}
		if he.Container != "bad-web-3" || !strings.Contains(err.Error(), "404") || !strings.Contains(err.Error(), "rolled back") {
			t.Errorf("error does not name the container and the failure: %v", err)
		}
		same(t, "after failed upgrade", r.versions(t, "bad"), map[string]string{"1.0.0": "2 running, 0 stopped"})
		rec := state(t, db, "bad")
		if rec.State != deployer.StateActive || rec.Version != "1.0.0" || !strings.Contains(rec.Failed, "bad-web-3") {
			t.Fatalf("record = %+v", rec)
		}
	})

	t.Run("ForeignContainerNeverTouched", func(t *testing.T) {
		db := storetest.Open(t)
		// On every host: the scheduler counts foreign containers when it
		// spreads, so web-1 may go to either.
		type made struct {
			cli    *client.Client
			id     string
			before container.InspectResponse
		}
		var foreigns []made
		for _, h := range r.hosts {
			cli := h.Client
			foreign, err := cli.ContainerCreate(ctx, &container.Config{Image: testenv.BaseImage, Cmd: []string{"sleep", "300"}},
				nil, nil, nil, "foreign-web-1")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { cli.ContainerRemove(ctx, foreign.ID, container.RemoveOptions{Force: true}) })
			if err := cli.ContainerStart(ctx, foreign.ID, container.StartOptions{}); err != nil {
				t.Fatal(err)
			}
			foreigns = append(foreigns, made{cli, foreign.ID, inspect(t, cli, foreign.ID)})
		}
		err := r.deployer(t, db).Up(ctx, webStack("foreign", "1.0.0", 1), deployer.DeployOptions{})
		if !errors.Is(err, deployer.ErrForeignContainer) || !strings.Contains(err.Error(), "foreign-web-1") {
			t.Fatalf("err = %v, want ErrForeignContainer naming foreign-web-1", err)
		}
		for _, f := range foreigns {
			after := inspect(t, f.cli, f.id)
			if !after.State.Running || after.State.StartedAt != f.before.State.StartedAt || after.Config.Image != testenv.BaseImage {
				t.Fatalf("foreign container was touched: %+v", after.State)
			}
		}
	})

	t.Run("PullsWithRegistryAuth", func(t *testing.T) {
		reg := testenv.StartRegistryWithAuth(t, "ci", "s3cret")
		ref := reg.Addr + "/web:1.0.0"
		cred := registry.AuthConfig{Username: reg.User, Password: reg.Pass, ServerAddress: reg.Addr}
		enc, err := registry.EncodeAuthConfig(cred)
		if err != nil {
			t.Fatal(err)
		}
		src := r.hosts[0].Client
		if err := src.ImageTag(ctx, "dockmaster-test/web:1.0.0", ref); err != nil {
			t.Fatal(err)
		}
		rc, err := src.ImagePush(ctx, ref, image.PushOptions{RegistryAuth: enc})
		if err != nil {
			t.Fatal(err)
		}
		if err := jsonmessage.DisplayJSONMessagesStream(rc, io.Discard, 0, false, nil); err != nil {
			t.Fatalf("push %s: %v", ref, err)
		}
		rc.Close()
		if _, err := src.ImageRemove(ctx, ref, image.RemoveOptions{}); err != nil {
			t.Fatal(err)
		}
		spec := webStack("pull", "1.0.0", 2)
		spec.Services[0].Image = ref

		anon := r.deployer(t, storetest.Open(t))
		if err := anon.Up(ctx, spec, deployer.DeployOptions{}); err == nil || !strings.Contains(err.Error(), "pull "+ref) {
			t.Fatalf("pull without credentials: err = %v", err)
		}
		d := r.deployer(t, storetest.Open(t), func(o *deployer.Options) {
			o.Auth = func(img string) (registry.AuthConfig, bool) { return cred, strings.HasPrefix(img, reg.Addr+"/") }
		})
		if err := d.Up(ctx, spec, deployer.DeployOptions{}); err != nil {
			t.Fatal(err)
		}
		same(t, "pulled on both hosts", r.summary(t, "pull"), "pull-web-1 1.0.0 running@h1\npull-web-2 1.0.0 running@h2")
	})

	t.Run("ReconcilerReplacesKilled", func(t *testing.T) {
		db := storetest.Open(t)
		d := r.deployer(t, db)
		if err := d.Up(ctx, webStack("rec", "1.0.0", 2), deployer.DeployOptions{}); err != nil {
			t.Fatal(err)
		}
		kill := func(version string) string {
			for _, c := range r.ctrs(t, "rec") {
				if c.State.Running && c.Config.Labels[deployer.LabelVersion] == version {
					cli := r.host(c.Host).Client
					if err := cli.ContainerKill(ctx, c.ID, "KILL"); err != nil {
						t.Fatal(err)
					}
					return c.ID
				}
			}
			t.Fatalf("no running %s container", version)
			return ""
		}
		killed := kill("1.0.0")
		if err := d.Reconcile(ctx); err != nil {
			t.Fatal(err)
		}
		for _, c := range r.ctrs(t, "rec") {
			if c.ID == killed {
				t.Fatalf("killed container %s still there", c.Name)
			}
		}
		same(t, "after reconcile", r.versions(t, "rec"), map[string]string{"1.0.0": "2 running, 0 stopped"})

		if err := d.Upgrade(ctx, webStack("rec", "1.0.1", 2), deployer.DeployOptions{}); err != nil {
			t.Fatal(err)
		}
		killed = kill("1.0.1")
		rctx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { d.RunReconciler(rctx, 100*time.Millisecond, func(err error) { t.Error(err) }); close(done) }()
		deadline := time.Now().Add(10 * time.Second)
		for r.versions(t, "rec")["1.0.1"] != "2 running, 0 stopped" && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		stop()
		<-done
		same(t, "held and reconciled", r.versions(t, "rec"), map[string]string{"1.0.0": "0 running, 2 stopped", "1.0.1": "2 running, 0 stopped"})
		for _, c := range r.ctrs(t, "rec") {
			if c.ID == killed {
				t.Fatalf("killed container %s still there", c.Name)
			}
		}
		same(t, "state", state(t, db, "rec").State, deployer.StateUpgraded)
	})
}

func (r *rig) host(name string) *testenv.Host {
	for _, h := range r.hosts {
		if h.Name == name {
			return h
		}
	}
	return nil
}

func inspect(t *testing.T, cli *client.Client, id string) container.InspectResponse {
	t.Helper()
	in, err := cli.ContainerInspect(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return in
}

// removeOwned removes the containers and networks the tests made on cli.
func removeOwned(t *testing.T, cli *client.Client) {
	if _, err := testenv.RemoveLabeled(context.Background(), cli, deployer.LabelEnv+"="+env); err != nil {
		t.Errorf("cleanup: %v", err)
	}
}
