package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/dockmaster/dockmaster/internal/config"
	"github.com/dockmaster/dockmaster/internal/ingest"
	"github.com/dockmaster/dockmaster/internal/ingest/loadgen"
	"github.com/dockmaster/dockmaster/internal/server"
	"github.com/dockmaster/dockmaster/internal/store"
	"github.com/dockmaster/dockmaster/webhooks"
)

const benchSynopsis = "bench webhooks [-n 5000] [-c 64] [--rounds 3] [--batch-max 256] [--linger 500µs] [--url URL[,URL...] --secret S [--store PATH|postgres://...]]"

// Goals printed next to the figures (not asserted).
const (
	goalDurableOverBare = 0.5 // durable throughput >= 50% of bare
	goalGroupOverOneTx  = 5.0 // group commit >= 5x one transaction per request
	goalP99OverBare     = 2.0 // durable p99 <= 2x bare p99
)

type benchOptions struct {
	n, c     int
	rounds   int
	batchMax int
	linger   time.Duration
	url      string
	secret   string
	store    string
}

func runBench(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "webhooks" {
		return usagef("usage: dockmaster %s", benchSynopsis)
	}
	fs := newFlags("bench webhooks", benchSynopsis, stderr)
	var o benchOptions
	fs.IntVar(&o.n, "n", 5000, "hooks per scenario")
	fs.IntVar(&o.c, "c", 64, "concurrent connections")
	fs.IntVar(&o.rounds, "rounds", 3, "in-process: run the scenarios this many times, interleaved, and report the medians")
	fs.IntVar(&o.batchMax, "batch-max", 256, "in-process: most deliveries per transaction in the group-commit scenario")
	fs.DurationVar(&o.linger, "linger", time.Duration(config.Default().Webhooks.CommitLinger), "in-process: wait this long for more deliveries when several are queued (webhooks.commit_linger)")
	fs.StringVar(&o.url, "url", "", "fire at this running dockmaster instead of in-process servers; several comma-separated URLs (replicas of one store) share the hooks and connections evenly")
	fs.StringVar(&o.secret, "secret", "", "with --url: the github webhook secret it is configured with")
	fs.StringVar(&o.store, "store", "", "with --url: its store (SQLite file or postgres:// URL), to verify every acknowledged delivery is stored once")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if o.n <= 0 || o.c <= 0 || o.rounds <= 0 {
		return usagef("-n, -c and --rounds must be positive")
	}
	ctx := context.Background()
	if o.url != "" {
		if o.secret == "" {
			return usagef("--url needs --secret (the server's webhooks.secrets.github)")
		}
		return benchRemote(ctx, o, stdout)
	}
	if o.store != "" || o.secret != "" {
		return usagef("--secret and --store go with --url")
	}
	_, err := benchWebhooks(ctx, o, stdout)
	return err
}

// benchReport holds the figures of one in-process run: one set per way of
// connecting.
type benchReport struct {
	KeepAlive, ConnPerHook connFigures
	// Fsync is the median time to append a page to a file and fsync it:
	// the floor under every one-transaction commit.
	Fsync time.Duration
}

// connFigures are the scenarios under one way of connecting: for
// each, the round with the median throughput, and the goal ratios over the
// rounds (each round's ratio is of runs made one after the other).
type connFigures struct {
	Bare, Group, OneTx                                  benchFigures
	DurableOverBare, GroupOverOneTx, P99DurableOverBare spread
	// NoStore is the durable path with a store that writes nothing; its
	// ratio to Bare bounds DurableOverBare from above.
	NoStore         benchFigures
	NoStoreOverBare spread
}

// spread is a figure's median and range over the rounds.
type spread struct{ Median, Min, Max float64 }

func spreadOf(xs []float64) spread {
	xs = slices.Clone(xs)
	slices.Sort(xs)
	return spread{Median: xs[len(xs)/2], Min: xs[0], Max: xs[len(xs)-1]}
}

// medianRun is the run with the median throughput.
func medianRun(runs []benchFigures) benchFigures {
	runs = slices.Clone(runs)
	slices.SortFunc(runs, func(a, b benchFigures) int { return cmp.Compare(a.PerSecond, b.PerSecond) })
	return runs[len(runs)/2]
}

// benchFigures are one scenario's stats plus the process CPU (client and
// server together) per acknowledged hook: on a shared machine, throughput
// follows whatever else runs, CPU per hook much less.
type benchFigures struct {
	loadgen.Stats
	CPUPerHook time.Duration
	MeanBatch  float64 // deliveries per transaction (durable scenarios)
	// CommitterBusy is the share of the run the committer spent in the
	// writer: near 1, hooks queue for the single writer.
	CommitterBusy float64
}

// benchSecret signs the in-process hooks.
const benchSecret = "bench-secret"

// benchHooks are n pushes whose delivery ids are GUIDs, as GitHub's are:
// in random order, so each batch lands on scattered pages of the
// (provider, delivery_id) index as real traffic does.
func benchHooks(prefix, secret string, n int) []loadgen.Hook {
	hooks := make([]loadgen.Hook, n)
	for i := range hooks {
		hooks[i] = loadgen.GitHubPush(secret, "bench/app", deliveryGUID(prefix, i), i)
	}
	return hooks
}

// deliveryGUID is a GUID unique to (prefix, i): a name-based (SHA-1) UUID.
func deliveryGUID(prefix string, i int) string {
	return uuid.NewSHA1(uuid.NameSpaceURL, fmt.Appendf(nil, "dockmaster-bench:%s/%d", prefix, i)).String()
}

// connMode is a way for the load client to connect.
type connMode struct {
	name      string
	keepAlive bool
}

// connModes: kept-alive connections put the most load on the server's own
// path; a connection per hook is how webhook senders connect.
var connModes = []connMode{
	{"connections kept alive", true},
	{"a new connection per hook, as webhook senders connect", false},
}

func (m connMode) client(conns int) *http.Client {
	if m.keepAlive {
		return loadgen.NewClient(conns)
	}
	return loadgen.NewConnPerRequestClient(conns)
}

// benchWebhooks runs the in-process scenarios under each connMode,
// prints a table and the ratios against the goals for each, and the store
// checks. It fails only if an acknowledged delivery is missing or stored
// twice.
func benchWebhooks(ctx context.Context, o benchOptions, w io.Writer) (benchReport, error) {
	tuneGC() // as serve does
	var rep benchReport
	dir, err := os.MkdirTemp("", "dockmaster-bench-")
	if err != nil {
		return rep, err
	}
	defer os.RemoveAll(dir)
	fmt.Fprintf(w, "webhook ingestion: %d signed GitHub pushes per scenario, %d connections, loopback HTTP\n", o.n, o.c)
	if rep.Fsync, err = fsyncLatency(dir, 200); err != nil {
		return rep, err
	}
	fmt.Fprintf(w, "fsync after a 4 KiB append on this disk: median %s, so one transaction per hook commits at most ~%.0f/s\n",
		roundDur(rep.Fsync), float64(time.Second)/float64(rep.Fsync))
	var problems []string
	for i, mode := range connModes {
		figs := &rep.KeepAlive
		if !mode.keepAlive {
			figs = &rep.ConnPerHook
		}
		fmt.Fprintf(w, "\n== %s\n", mode.name)
		errs, err := benchMode(ctx, o, mode, filepath.Join(dir, fmt.Sprint(i)), figs, w)
		if err != nil {
			return rep, err
		}
		problems = append(problems, errs...)
	}
	if load, err := os.ReadFile("/proc/loadavg"); err == nil {
		fmt.Fprintf(w, "\nload average during the run: %s (%d CPUs)\n", strings.Join(strings.Fields(string(load))[:3], " "), runtime.NumCPU())
	}
	if len(problems) > 0 {
		return rep, errors.New("bench: " + strings.Join(problems, "; "))
	}
	return rep, nil
}

// benchMode runs bare, group commit and one transaction per hook with one
// way of connecting, o.rounds times, and prints their table and goals. It
// returns the store checks that failed; err is for a run that could not
// happen at all.
func benchMode(ctx context.Context, o benchOptions, mode connMode, dir string, figs *connFigures, w io.Writer) (problems []string, err error) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	bare := server.New(log, nil)
	bare.Engine.POST("/webhooks/:provider", func(c *gin.Context) {
		_, _ = io.Copy(io.Discard, c.Request.Body)
		c.JSON(http.StatusAccepted, gin.H{"delivery": 0, "status": "accepted"})
	})
	group := ingest.Options{MaxBatch: o.batchMax, Linger: o.linger}
	scenarios := []struct {
		name string
		opts ingest.Options
		runs []benchFigures
	}{
		{name: "bare"},
		{name: "group", opts: group},
		{name: "onetx", opts: ingest.Options{MaxBatch: 1}},
		{name: "nostore", opts: group},
	}
	var durableOverBare, groupOverOneTx, p99DurableOverBare, noStoreOverBare []float64
	for round := range o.rounds {
		for i := range scenarios {
			sc := &scenarios[i]
			hooks := benchHooks(fmt.Sprintf("%s-%d", sc.name, round), benchSecret, o.n)
			switch sc.name {
			case "bare":
				f, _, err := benchScenario(ctx, bare.Engine, hooks, o.c, mode, nil)
				if err != nil {
					return nil, err
				}
				sc.runs = append(sc.runs, f)
				continue
			case "nostore":
				f, _, err := benchDurable(ctx, &discardWriter{}, sc.opts, hooks, o.c, mode, log)
				if err != nil {
					return nil, err
				}
				sc.runs = append(sc.runs, f)
				continue
			}
			db, err := store.Open(ctx, filepath.Join(dir, fmt.Sprintf("%s-%d.db", sc.name, round)))
			if err != nil {
				return nil, err
			}
			hw := db.DeliveryWriter()
			f, results, err := benchDurable(ctx, hw, sc.opts, hooks, o.c, mode, log)
			hw.Close()
			if err == nil {
				sc.runs = append(sc.runs, f)
				err = verifyStored(ctx, db, results, w, fmt.Sprintf("%s, round %d", sc.name, round+1))
			}
			db.Close()
			if err != nil {
				problems = append(problems, err.Error())
			}
		}
		if len(scenarios[1].runs) <= round || len(scenarios[2].runs) <= round {
			continue // a durable run failed: reported above
		}
		b, g, one, none := scenarios[0].runs[round], scenarios[1].runs[round], scenarios[2].runs[round], scenarios[3].runs[round]
		durableOverBare = append(durableOverBare, ratio(g.PerSecond, b.PerSecond))
		groupOverOneTx = append(groupOverOneTx, ratio(g.PerSecond, one.PerSecond))
		p99DurableOverBare = append(p99DurableOverBare, ratio(float64(g.P99), float64(b.P99)))
		noStoreOverBare = append(noStoreOverBare, ratio(none.PerSecond, b.PerSecond))
	}
	if len(durableOverBare) == 0 {
		return problems, nil
	}
	figs.Bare, figs.Group, figs.OneTx, figs.NoStore = medianRun(scenarios[0].runs), medianRun(scenarios[1].runs), medianRun(scenarios[2].runs), medianRun(scenarios[3].runs)
	figs.DurableOverBare, figs.GroupOverOneTx, figs.P99DurableOverBare = spreadOf(durableOverBare), spreadOf(groupOverOneTx), spreadOf(p99DurableOverBare)
	figs.NoStoreOverBare = spreadOf(noStoreOverBare)

	fmt.Fprintf(w, "median of %d rounds:\n", len(durableOverBare))
	tw := newTable(w)
	fmt.Fprintln(tw, "scenario\taccepted/s\tp50\tp99\tCPU/hook\tper tx\twriter busy\tacknowledged")
	row := func(name string, s benchFigures) {
		batch, busy := "-", "-"
		if s.MeanBatch > 0 {
			batch, busy = fmt.Sprintf("%.1f", s.MeanBatch), fmt.Sprintf("%.0f%%", 100*s.CommitterBusy)
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%s\t%s\t%s\t%s\t%s\t%d/%d\n", name, s.PerSecond, roundDur(s.P50), roundDur(s.P99),
			s.CPUPerHook.Round(time.Microsecond), batch, busy, s.Acknowledged, s.Sent)
	}
	row("bare gin handler (nothing stored)", figs.Bare)
	row(fmt.Sprintf("durable, group commit (batch <= %d)", o.batchMax), figs.Group)
	row("durable, one transaction per hook", figs.OneTx)
	row("received, verified, nothing stored", figs.NoStore)
	tw.Flush()
	fmt.Fprintln(w)
	goal := func(name string, got spread, want float64, atLeast bool) {
		ok := got.Median >= want
		cmp := ">="
		if !atLeast {
			ok, cmp = got.Median <= want, "<="
		}
		verdict := "met"
		if !ok {
			verdict = "NOT met"
		}
		fmt.Fprintf(w, "%-36s %6.2f  (%.2f-%.2f)  goal %s %.2f  %s\n", name, got.Median, got.Min, got.Max, cmp, want, verdict)
	}
	goal("durable/bare throughput", figs.DurableOverBare, goalDurableOverBare, true)
	// Verifying and decoding come before the commit, so durable/bare can
	// only come below this; the store costs the difference in CPU.
	fmt.Fprintf(w, "%-36s %6.2f  (%.2f-%.2f)  (durable/bare's ceiling: storing costs %s of durable's %s CPU per hook)\n",
		"nothing-stored/bare throughput", figs.NoStoreOverBare.Median, figs.NoStoreOverBare.Min, figs.NoStoreOverBare.Max,
		(figs.Group.CPUPerHook - figs.NoStore.CPUPerHook).Round(time.Microsecond), figs.Group.CPUPerHook.Round(time.Microsecond))
	goal("group/one-tx throughput", figs.GroupOverOneTx, goalGroupOverOneTx, true)
	goal(fmt.Sprintf("p99 durable/bare at %d conns", o.c), figs.P99DurableOverBare, goalP99OverBare, false)
	fmt.Fprintf(w, "%-36s %6.2f   (bare/durable CPU per hook: the throughput ratio once CPU-bound)\n", "CPU-bound durable/bare estimate",
		ratio(float64(figs.Bare.CPUPerHook), float64(figs.Group.CPUPerHook)))
	// The two throughput goals meet here: when fsync is fast, 5x one
	// transaction per hook is a large share of what the bare handler does.
	fmt.Fprintf(w, "%-36s %6.2f   (5 x one-tx %.0f/s over bare %.0f/s: the durable/bare ratio the group/one-tx goal needs)\n",
		"5 x one-tx / bare", ratio(goalGroupOverOneTx*figs.OneTx.PerSecond, figs.Bare.PerSecond),
		goalGroupOverOneTx*figs.OneTx.PerSecond, figs.Bare.PerSecond)
	return problems, nil
}

// fsyncLatency appends a 4 KiB page to a new file in dir and fsyncs it, n
// times, as each one-transaction commit does to the WAL, and returns the
// median time.
func fsyncLatency(dir string, n int) (time.Duration, error) {
	f, err := os.CreateTemp(dir, "fsync-")
	if err != nil {
		return 0, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	page := make([]byte, 4096)
	took := make([]time.Duration, n)
	for i := range took {
		start := time.Now()
		if _, err := f.Write(page); err != nil {
			return 0, fmt.Errorf("bench: measure fsync: %w", err)
		}
		if err := f.Sync(); err != nil {
			return 0, fmt.Errorf("bench: measure fsync: %w", err)
		}
		took[i] = time.Since(start)
	}
	slices.Sort(took)
	return took[n/2], nil
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// benchDurable serves the real receive path (webhooks.Parse, then the
// committer writing through w) and fires hooks at it.
func benchDurable(ctx context.Context, w ingest.BatchWriter, opts ingest.Options, hooks []loadgen.Hook, conc int, mode connMode, log *slog.Logger) (benchFigures, []loadgen.Result, error) {
	lookup, err := server.WebhookSecrets(config.Webhooks{Secrets: map[string]config.Secret{"github": config.NewSecret(benchSecret)}})
	if err != nil {
		return benchFigures{}, nil, err
	}
	com := ingest.New(w, opts)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { com.Run(runCtx); close(done) }()
	defer func() { stop(); <-done }()
	srv := server.New(log, nil)
	(&server.WebhookAPI{Receiver: webhooks.New(webhooks.Options{Secrets: lookup}), Ingest: com, Log: log}).Register(srv.Engine)
	var b0, d0 int64
	var busy0 time.Duration
	f, results, err := benchScenario(ctx, srv.Engine, hooks, conc, mode, func() { b0, d0 = com.Stats(); busy0 = com.Busy() })
	if b1, d1 := com.Stats(); b1 > b0 {
		f.MeanBatch = float64(d1-d0) / float64(b1-b0)
	}
	if f.Elapsed > 0 {
		f.CommitterBusy = float64(com.Busy()-busy0) / float64(f.Elapsed)
	}
	return f, results, err
}

// discardWriter is a store that keeps nothing, for the receive path's
// ceiling: what the durable path would do if storing were free.
type discardWriter struct{ lastID int64 }

func (d *discardWriter) InsertDeliveries(_ context.Context, ds []store.NewDelivery) ([]store.InsertResult, error) {
	out := make([]store.InsertResult, len(ds))
	for i := range ds {
		d.lastID++
		out[i] = store.InsertResult{ID: d.lastID, Verdict: ds[i].Verdict}
	}
	return out, nil
}

// benchScenario serves h on a loopback port, warms up, fires hooks and
// returns their stats and results. atStart (if set) runs between the
// warm-up and the measured run.
func benchScenario(ctx context.Context, h http.Handler, hooks []loadgen.Hook, conc int, mode connMode, atStart func()) (benchFigures, []loadgen.Result, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return benchFigures{}, nil, err
	}
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go hs.Serve(ln)
	defer hs.Close()
	target := "http://" + ln.Addr().String() + "/webhooks/github"
	client := mode.client(conc)
	defer client.CloseIdleConnections()
	// Warm-up: open the connections and the code paths (distinct ids).
	warm := benchHooks(fmt.Sprintf("warmup-%p", hooks), benchSecret, min(len(hooks), 4*conc))
	loadgen.Fire(ctx, client, target, warm, conc)
	if atStart != nil {
		atStart()
	}
	cpu0 := processCPU()
	start := time.Now()
	results := loadgen.Fire(ctx, client, target, hooks, conc)
	f := benchFigures{Stats: loadgen.Summarize(results, time.Since(start))}
	if f.Acknowledged > 0 {
		f.CPUPerHook = (processCPU() - cpu0) / time.Duration(f.Acknowledged)
	}
	return f, results, nil
}

// processCPU is the user+system time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// verifyStored checks every acknowledged delivery is in db exactly once.
func verifyStored(ctx context.Context, db *store.DB, results []loadgen.Result, w io.Writer, name string) error {
	stored := map[string]int{}
	rows, err := db.QueryContext(ctx, `SELECT delivery_id, duplicates FROM deliveries WHERE provider = 'github'`)
	if err != nil {
		return fmt.Errorf("%s: verify: %w", name, err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var dups int
		if err := rows.Scan(&id, &dups); err != nil {
			return fmt.Errorf("%s: verify: %w", name, err)
		}
		stored[id]++
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("%s: verify: %w", name, err)
	}
	var acked, missing, twice int
	for _, r := range results {
		if !r.Acknowledged() {
			continue
		}
		acked++
		switch stored[r.DeliveryID] {
		case 0:
			missing++
		case 1:
		default:
			twice++
		}
	}
	fmt.Fprintf(w, "%s: %d acknowledged, %d stored exactly once, %d missing, %d stored more than once\n",
		name, acked, acked-missing-twice, missing, twice)
	if missing > 0 || twice > 0 {
		return fmt.Errorf("%s: %d acknowledged deliveries missing, %d stored more than once", name, missing, twice)
	}
	return nil
}

// benchRemote fires at running dockmasters (replicas share the hooks
// round-robin and the connections evenly) and, given the store, verifies.
func benchRemote(ctx context.Context, o benchOptions, w io.Writer) error {
	var targets []string
	for _, u := range strings.Split(o.url, ",") {
		if u = strings.TrimSpace(u); u != "" {
			targets = append(targets, strings.TrimRight(u, "/")+"/webhooks/github")
		}
	}
	if len(targets) == 0 {
		return usagef("--url: no URL given")
	}
	prefix := fmt.Sprintf("bench-%d", time.Now().UnixNano())
	hooks := benchHooks(prefix, o.secret, o.n)
	shares := make([][]loadgen.Hook, len(targets))
	for i, h := range hooks {
		shares[i%len(targets)] = append(shares[i%len(targets)], h)
	}
	conc := max(o.c/len(targets), 1)
	perTarget := make([][]loadgen.Result, len(targets))
	start := time.Now()
	var wg sync.WaitGroup
	for i, target := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := loadgen.NewClient(conc)
			defer client.CloseIdleConnections()
			perTarget[i] = loadgen.Fire(ctx, client, target, shares[i], conc)
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	var results []loadgen.Result
	for _, r := range perTarget {
		results = append(results, r...)
	}
	s := loadgen.Summarize(results, elapsed)
	fmt.Fprintf(w, "%s: %d hooks, %d connections: %.0f accepted/s, p50 %s, p99 %s, %d/%d acknowledged\n",
		strings.Join(targets, " + "), o.n, conc*len(targets), s.PerSecond, roundDur(s.P50), roundDur(s.P99), s.Acknowledged, s.Sent)
	for _, r := range results {
		if !r.Acknowledged() {
			fmt.Fprintf(w, "first failure: %s: status %d, %v\n", r.DeliveryID, r.Status, r.Err)
			break
		}
	}
	if o.store == "" {
		return nil
	}
	db, err := store.Open(ctx, o.store)
	if err != nil {
		return err
	}
	defer db.Close()
	return verifyStored(ctx, db, results, w, "store "+db.Path())
}

func roundDur(d time.Duration) time.Duration {
	switch {
	case d > 10*time.Millisecond:
		return d.Round(100 * time.Microsecond)
	case d > 10*time.Microsecond:
		return d.Round(time.Microsecond)
	}
	return d
}
