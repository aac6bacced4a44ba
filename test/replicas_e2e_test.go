package test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dockmaster/dockmaster/internal/ingest/loadgen"
	"github.com/dockmaster/dockmaster/internal/store"
	"github.com/dockmaster/dockmaster/internal/store/pgtest"
	"github.com/dockmaster/dockmaster/internal/testenv"
	"github.com/dockmaster/dockmaster/test/jenkinsemu"
)

// logHas reports whether a server's log contains s.
func logHas(srv *testenv.Server, s string) bool {
	b, _ := os.ReadFile(filepath.Join(srv.Dir, "serve.log"))
	return strings.Contains(string(b), s)
}

const leadingMsg = "leader election: leading"

// TestReplicasHandOverMidPipeline: two replicas share one PostgreSQL
// database. The follower takes the push and the Jenkins notification; the
// leader runs the pipeline until it is killed (SIGKILL) while the test
// stage waits in Jenkins. The follower takes over and finishes the run
// exactly once: one Jenkins trigger, one run, one ticket.
func TestReplicasHandOverMidPipeline(t *testing.T) {
	url := pgtest.URL(t)
	emu := jenkinsemu.New(t, jenkinsemu.Options{User: "ci", Token: "tok", RequireCrumb: true,
		QueueDelay: 50 * time.Millisecond, ManualFinish: true})
	emu.AddJob(testJob, jenkinsemu.Job{Parameters: []string{"GIT_URL", "BRANCH", "GIT_COMMIT", "VERSION", "DOCKMASTER_RUN"}})
	cloneURL, sha := "https://git.example/acme/java-service-1.git", strings.Repeat("ab", 20)
	config := fmt.Sprintf(`webhooks:
  secrets:
    github: %s
    jenkins: %s
pipeline:
  jenkins_poll_after: 2s
  jenkins: {url: %s, user: ci, token: tok}
  apps:
    - name: JavaService1
      repo: {url: "%s", full_name: acme/java-service-1}
      rules:
        - {branch: "release/*", environment: prod}
      environments: [prod]
      stages:
        test: {executor: jenkins, job: %s}
        build: {executor: none}
environments:
  - name: prod
`, githubSecret, jenkinsSecret, emu.URL(), cloneURL, testJob)

	a := testenv.StartReplica(t, url, config)
	waitFor(t, "replica a to lead", 15*time.Second, func() bool { return logHas(a, leadingMsg) })
	b := testenv.StartReplica(t, url, config)
	time.Sleep(2 * time.Second) // several election rounds: b must stay a follower
	if logHas(b, leadingMsg) {
		t.Fatal("b leads while a does")
	}

	// Everything enters through the follower.
	emu.SetNotify(b.URL+"/webhooks/jenkins?token="+jenkinsSecret, nil)
	admin := b.Admin()
	signedPush(t, b.URL, cloneURL, "release/1.0.1", sha)
	waitFor(t, "the leader to trigger the test job", 30*time.Second, func() bool {
		runs := listRuns(admin)
		return len(runs) == 1 && runs[0].State == "testing" && len(emu.Builds(testJob)) == 1
	})

	a.Kill()
	killed := time.Now()
	if err := emu.Complete(testJob, 1, "SUCCESS"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "b to take over", 15*time.Second, func() bool { return logHas(b, leadingMsg) })
	t.Logf("b leads %v after the kill", time.Since(killed).Round(100*time.Millisecond))

	var run e2eRun
	waitFor(t, "the run to reach ticketed on b", 60*time.Second, func() bool {
		runs := listRuns(admin)
		if len(runs) == 1 {
			run = runs[0]
		}
		if run.State == "failed" {
			t.Fatalf("run failed: %s", run.Reason)
		}
		return run.State == "ticketed"
	})
	time.Sleep(2 * time.Second) // anything run twice would show by now
	if n := len(listRuns(admin)); n != 1 {
		t.Fatalf("%d runs, want 1", n)
	}
	if n := emu.TriggerCount(testJob); n != 1 {
		t.Fatalf("%d Jenkins triggers, want 1", n)
	}
	var tickets []struct{ Key, Version, Environment string }
	if st := admin.Do("GET", "/api/v1/tickets", nil, &tickets); st != http.StatusOK {
		t.Fatalf("tickets: status %d", st)
	}
	if len(tickets) != 1 || tickets[0].Key != "DEPLOY-1" || tickets[0].Version != "1.0.1" {
		t.Fatalf("tickets %+v, want DEPLOY-1 for 1.0.1 only", tickets)
	}
}

// BenchmarkWebhooksReplicas compares webhook acceptance (each hook stored
// durably before its 202) of two replicas sharing one PostgreSQL database,
// the load spread evenly over both, with one replica on SQLite, in the
// same run. The same comparison against running servers:
// dockmaster bench webhooks --url http://a,http://b --secret S --store postgres://...
func BenchmarkWebhooksReplicas(b *testing.B) {
	const secret, hooksPerRun, conns = "bench-secret", 2000, 64
	pgURL := pgtest.URL(b)
	config := "webhooks:\n  secrets:\n    github: " + secret + "\n"
	single := testenv.StartServer(b, config)
	r1 := testenv.StartReplica(b, pgURL, config)
	r2 := testenv.StartReplica(b, pgURL, config)

	// fire spreads n hooks round-robin over servers, conns connections in all.
	fire := func(name string, n int, servers ...*testenv.Server) loadgen.Stats {
		b.Helper()
		hooks := make([][]loadgen.Hook, len(servers))
		for i := range n {
			id := fmt.Sprintf("%s-%d-%06d", name, time.Now().UnixNano(), i)
			hooks[i%len(servers)] = append(hooks[i%len(servers)], loadgen.GitHubPush(secret, "bench/app", id, i))
		}
		results := make([][]loadgen.Result, len(servers))
		start := time.Now()
		var wg sync.WaitGroup
		for i, s := range servers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c := loadgen.NewClient(conns / len(servers))
				defer c.CloseIdleConnections()
				results[i] = loadgen.Fire(context.Background(), c, s.URL+"/webhooks/github", hooks[i], conns/len(servers))
			}()
		}
		wg.Wait()
		var all []loadgen.Result
		for _, r := range results {
			all = append(all, r...)
		}
		st := loadgen.Summarize(all, time.Since(start))
		if st.Failed > 0 {
			b.Fatalf("%s: %d of %d hooks not acknowledged", name, st.Failed, st.Sent)
		}
		return st
	}
	fire("warm-sqlite", 4*conns, single)
	fire("warm-pg", 4*conns, r1, r2)

	var sq, pg loadgen.Stats
	b.ResetTimer()
	for i := range b.N {
		sq = fire(fmt.Sprintf("sqlite%d", i), hooksPerRun, single)
		pg = fire(fmt.Sprintf("pg%d", i), hooksPerRun, r1, r2)
	}
	b.StopTimer()

	// Every acknowledged hook is in the shared database exactly once.
	db, err := store.Open(context.Background(), pgURL)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	var stored, distinct int
	if err := db.QueryRowContext(context.Background(), `SELECT COUNT(*), COUNT(DISTINCT delivery_id) FROM deliveries`).Scan(&stored, &distinct); err != nil {
		b.Fatal(err)
	}
	if want := 4*conns + b.N*hooksPerRun; stored != want || distinct != want {
		b.Fatalf("postgres holds %d deliveries (%d distinct), want %d acknowledged", stored, distinct, want)
	}
	fmt.Printf("webhook acceptance, %d signed pushes, %d connections:\n", hooksPerRun, conns)
	fmt.Printf("  1 replica,  SQLite:     %6.0f accepted/s  p50 %-8v p99 %v\n", sq.PerSecond, sq.P50.Round(10*time.Microsecond), sq.P99.Round(10*time.Microsecond))
	fmt.Printf("  2 replicas, PostgreSQL: %6.0f accepted/s  p50 %-8v p99 %v\n", pg.PerSecond, pg.P50.Round(10*time.Microsecond), pg.P99.Round(10*time.Microsecond))
	fmt.Printf("  PostgreSQL pair / SQLite single: %.2f\n", pg.PerSecond/sq.PerSecond)
	b.ReportMetric(sq.PerSecond, "sqlite-1-hooks/s")
	b.ReportMetric(pg.PerSecond, "postgres-2-hooks/s")
	b.ReportMetric(0, "ns/op")
}
