package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/dockmaster/dockmaster/internal/config"
	"github.com/dockmaster/dockmaster/internal/ingest"
	"github.com/dockmaster/dockmaster/internal/ingest/loadgen"
	"github.com/dockmaster/dockmaster/internal/server"
	"github.com/dockmaster/dockmaster/internal/store/storetest"
	"github.com/dockmaster/dockmaster/webhooks"
)

// hookAPI serves the webhook and deliveries routes on a real store.
func hookAPI(t *testing.T) string {
	t.Helper()
	db := storetest.Open(t)
	lookup, err := server.WebhookSecrets(config.Webhooks{Secrets: map[string]config.Secret{"github": config.NewSecret("s")}})
	if err != nil {
		t.Fatal(err)
	}
	w := db.DeliveryWriter()
	com := ingest.New(w, ingest.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { com.Run(ctx); w.Close(); close(done) }()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv := server.New(log, nil)
	(&server.WebhookAPI{Receiver: webhooks.New(webhooks.Options{Secrets: lookup}), Ingest: com, Log: log}).Register(srv.Engine)
	(&server.DeliveryAPI{Store: db}).Register(srv.Engine.Group("/api/v1"))
	hs := httptest.NewServer(srv.Engine)
	t.Cleanup(func() { hs.Close(); cancel(); <-done })

	hooks := []loadgen.Hook{loadgen.GitHubPush("s", "team/app", "d-1", 1), loadgen.GitHubPush("s", "team/other", "d-2", 2)}
	for _, r := range loadgen.Fire(context.Background(), loadgen.NewClient(1), hs.URL+"/webhooks/github", hooks, 1) {
		if r.Status != 202 {
			t.Fatalf("hook %s: %d %v", r.DeliveryID, r.Status, r.Err)
		}
	}
	return hs.URL
}

func dm(args ...string) (code int, stdout, stderr string) {
	var o, e bytes.Buffer
	code = run(append([]string{"dockmaster"}, args...), &o, &e)
	return code, o.String(), e.String()
}

func TestDeliveriesCLI(t *testing.T) {
	url := hookAPI(t)
	t.Setenv("DOCKMASTER_ACCESS_KEY", "")
	t.Setenv("DOCKMASTER_SECRET_KEY", "")

	code, out, errs := dm("deliveries", "--url", url)
	if code != 0 || !strings.Contains(out, "team/app") || !strings.Contains(out, "team/other") || !strings.HasPrefix(out, "ID") {
		t.Fatalf("list: %d\n%s%s", code, out, errs)
	}
	// Flags after the subcommand, a filter, and a full page hands out the cursor.
	code, out, errs = dm("deliveries", "list", "--repository", "team/other", "--limit", "1", "--url", url)
	if code != 0 || strings.Contains(out, "team/app") || !strings.Contains(out, "more: --before 2") {
		t.Fatalf("filtered list: %d\n%s%s", code, out, errs)
	}
	code, out, _ = dm("deliveries", "show", "1", "-o", "json", "--url", url)
	var shown map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &shown) != nil || shown["delivery_id"] != "d-1" {
		t.Fatalf("show -o json: %d\n%s", code, out)
	}
	code, out, _ = dm("deliveries", "show", "1", "--url", url)
	if code != 0 || !strings.Contains(out, "X-Hub-Signature-256") || !strings.Contains(out, `"ref": "refs/heads/main"`) {
		t.Fatalf("show: %d\n%s", code, out)
	}
	code, out, _ = dm("deliveries", "replay", "2", "--url", url)
	if code != 0 || !strings.Contains(out, "delivery 2 replayed as event 3") {
		t.Fatalf("replay: %d\n%s", code, out)
	}

	// The server's error field is printed, exit 1.
	code, _, errs = dm("deliveries", "show", "99", "--url", url)
	if code != 1 || !strings.Contains(errs, "delivery 99: not found") {
		t.Fatalf("show missing: %d %s", code, errs)
	}
	for _, bad := range [][]string{{"show"}, {"show", "x"}, {"frob"}, {"-o", "yaml"}, {"list", "extra"}} {
		if code, _, errs := dm(append(append([]string{"deliveries"}, bad...), "--url", url)...); code != 2 {
			t.Errorf("deliveries %v: exit %d (%s), want 2", bad, code, errs)
		}
	}
}

func TestClientURLAndKeys(t *testing.T) {
	t.Setenv("DOCKMASTER_URL", "")
	t.Setenv("RANCHER_URL", "http://rancher.example:8080/")
	t.Setenv("DOCKMASTER_ACCESS_KEY", "")
	t.Setenv("DOCKMASTER_SECRET_KEY", "")
	t.Setenv("RANCHER_ACCESS_KEY", "ak")
	t.Setenv("RANCHER_SECRET_KEY", "sk")
	fs := newFlags("x", "x", io.Discard)
	cf := addClientFlags(fs)
	if err := parseFlags(fs, nil); err != nil {
		t.Fatal(err)
	}
	c, err := cf.client()
	if err != nil {
		t.Fatal(err)
	}
	if c.base != "http://rancher.example:8080" || c.access != "ak" || c.secret != "sk" {
		t.Errorf("client %+v, want RANCHER_* fallbacks", c)
	}
	t.Setenv("DOCKMASTER_ACCESS_KEY", "only-access")
	if _, err := cf.client(); err == nil {
		t.Error("an access key without its secret must be refused")
	}
	*cf.url = "ftp://x"
	if _, err := cf.client(); err == nil {
		t.Error("ftp URL accepted")
	}
}

// TestBenchWebhooks runs the in-process bench small: it must verify the
// store and print the scenarios, the goals and the ceiling for both ways of
// connecting.
func TestBenchWebhooks(t *testing.T) {
	if testing.Short() {
		t.Skip("load run")
	}
	var out bytes.Buffer
	rep, err := benchWebhooks(context.Background(), benchOptions{n: 300, c: 8, rounds: 2, batchMax: 256}, &out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	for _, mode := range connModes {
		section := out.String()[strings.Index(out.String(), "== "+mode.name):]
		for _, want := range []string{"group, round 2: 300 acknowledged, 300 stored exactly once, 0 missing", "onetx, round 1: 300 acknowledged", "median of 2 rounds",
			"writer busy", "durable/bare throughput", "nothing-stored/bare throughput", "received, verified, nothing stored", "group/one-tx throughput", "p99 durable/bare at 8 conns", "5 x one-tx / bare"} {
			if !strings.Contains(section, want) {
				t.Errorf("%s: output lacks %q:\n%s", mode.name, want, out.String())
			}
		}
	}
	if !strings.Contains(out.String(), "fsync after a 4 KiB append on this disk: median ") || rep.Fsync <= 0 {
		t.Errorf("no fsync figure (report %v):\n%s", rep.Fsync, out.String())
	}
	for _, f := range []connFigures{rep.KeepAlive, rep.ConnPerHook} {
		if f.Bare.Acknowledged != 300 || f.Group.PerSecond <= 0 || f.OneTx.P99 <= 0 || f.NoStore.Acknowledged != 300 || f.NoStoreOverBare.Median <= 0 {
			t.Errorf("report %+v", f)
		}
	}
}

// Bench delivery ids are GUID-shaped and never repeat across scenarios and
// rounds: a repeated id would be answered as a duplicate and pass the
// exactly-once check unseen.
func TestBenchDeliveryIDsAreDistinctGUIDs(t *testing.T) {
	guid := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
	seen := map[string]bool{}
	for _, prefix := range []string{"group-0", "group-1", "onetx-0"} {
		for i := range 2000 {
			id := deliveryGUID(prefix, i)
			if !guid.MatchString(id) || seen[id] {
				t.Fatalf("%s/%d: %q (seen before: %v)", prefix, i, id, seen[id])
			}
			seen[id] = true
		}
	}
}

// BenchmarkWebhookIngest is `dockmaster bench webhooks -n 1000 -c 64` per
// iteration, reporting, for kept-alive connections (ka-) and a connection
// per hook (cph-), the goal ratios (durable/bare >= 0.5, group/one-tx >= 5,
// p99 durable/bare <= 2), accepted hooks per second, and the disk's fsync
// time.
func BenchmarkWebhookIngest(b *testing.B) {
	var last benchReport
	for range b.N {
		rep, err := benchWebhooks(context.Background(), benchOptions{n: 1000, c: 64, rounds: 3, batchMax: 256, linger: time.Duration(config.Default().Webhooks.CommitLinger)}, io.Discard)
		if err != nil {
			b.Fatal(err)
		}
		last = rep
	}
	b.ReportMetric(float64(last.Fsync.Microseconds()), "fsync-µs")
	for prefix, f := range map[string]connFigures{"ka-": last.KeepAlive, "cph-": last.ConnPerHook} {
		b.ReportMetric(f.Bare.PerSecond, prefix+"bare-hooks/s")
		b.ReportMetric(f.Group.PerSecond, prefix+"durable-hooks/s")
		b.ReportMetric(f.OneTx.PerSecond, prefix+"onetx-hooks/s")
		b.ReportMetric(f.DurableOverBare.Median, prefix+"durable/bare")
		b.ReportMetric(f.GroupOverOneTx.Median, prefix+"group/onetx")
		b.ReportMetric(f.P99DurableOverBare.Median, prefix+"p99-durable/bare")
		b.ReportMetric(f.Group.MeanBatch, prefix+"hooks/tx")
	}
}
