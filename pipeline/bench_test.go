package pipeline_test

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/dockmaster/dockmaster/internal/store/storetest"
	"github.com/dockmaster/dockmaster/pipeline"
	"github.com/dockmaster/dockmaster/pipeline/jenkins"
	"github.com/dockmaster/dockmaster/test/jenkinsemu"
)

// BenchmarkPushesToTickets carries 1,000 pushes across 50 apps to tickets
// with Jenkins emulated (results by Notification-plugin webhook) and the
// Docker build skipped. It reports the engine's own time per stage
// transition (store writes and logic, not waiting on Jenkins); the goal is
// a median at or under 2 ms. Run: go test -run '^$' -bench PushesToTickets -benchtime 1x ./pipeline/
func BenchmarkPushesToTickets(b *testing.B) {
	const pushes, apps = 1000, 50
	for i := 0; i < b.N; i++ {
		db := storetest.Open(b)
		var (
			mu  sync.Mutex
			obs []time.Duration
			e   *pipeline.Engine
		)
		notify := notifyToEvents(b, db, func() {
			if e != nil {
				e.Wake()
			}
		})
		emu := jenkinsemu.New(b, jenkinsemu.Options{NotifyURL: notify})
		var list []pipeline.App
		for a := 0; a < apps; a++ {
			name := fmt.Sprintf("app%02d", a)
			emu.AddJob(name+"-test", jenkinsemu.Job{Parameters: []string{"BRANCH", pipeline.RunParam}})
			list = append(list, pipeline.App{Name: name, Repo: pipeline.Repo{FullName: "acme/" + name},
				Rules: []pipeline.BranchRule{{Branch: "*"}}, Environments: []string{"dev"},
				Test: pipeline.StageConfig{Executor: "jenkins", Job: name + "-test"}, Build: pipeline.StageConfig{Executor: "none"}})
		}
		jc, err := jenkins.New(emu.URL(), "", "")
		if err != nil {
			b.Fatal(err)
		}
		e, err = pipeline.NewEngine(pipeline.Options{Store: db.Pipeline(), Apps: list, Jenkins: jc, Tick: 50 * time.Millisecond,
			PollAfter: time.Hour, Workers: 16, OnTransition: func(_ string, d time.Duration) {
				mu.Lock()
				obs = append(obs, d)
				mu.Unlock()
			}})
		if err != nil {
			b.Fatal(err)
		}
		for p := 0; p < pushes; p++ {
			app := fmt.Sprintf("app%02d", p%apps)
			addEvent(b, db, push("acme/"+app, fmt.Sprintf("feature-%d", p), fmt.Sprintf("%040x", p+1)))
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		start := time.Now()
		go func() { e.Run(ctx); close(done) }()
		deadline := time.Now().Add(5 * time.Minute)
		for {
			tks, err := db.Pipeline().Tickets(ctx, pipeline.TicketFilter{Limit: pushes + 10})
			if err != nil {
				b.Fatal(err)
			}
			if len(tks) >= pushes {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("only %d of %d tickets after 5 minutes", len(tks), pushes)
			}
			time.Sleep(50 * time.Millisecond)
		}
		wall := time.Since(start)
		cancel()
		<-done

		runs, _ := db.Pipeline().Runs(context.Background(), pipeline.RunFilter{Limit: pushes + 10})
		tks, _ := db.Pipeline().Tickets(context.Background(), pipeline.TicketFilter{Limit: pushes + 10})
		perRun := map[int64]int{}
		for _, t := range tks {
			perRun[t.RunID]++
		}
		if len(runs) != pushes || len(tks) != pushes || len(perRun) != pushes {
			b.Fatalf("%d runs, %d tickets over %d runs; want %d of each (lost or duplicated)", len(runs), len(tks), len(perRun), pushes)
		}
		for _, r := range runs {
			if r.State != pipeline.RunTicketed {
				b.Fatalf("run %d is %s", r.ID, r.State)
			}
		}
		sort.Slice(obs, func(i, j int) bool { return obs[i] < obs[j] })
		median, p99 := obs[len(obs)/2], obs[len(obs)*99/100]
		b.ReportMetric(float64(median.Microseconds())/1000, "ms/transition-median")
		b.ReportMetric(float64(p99.Microseconds())/1000, "ms/transition-p99")
		b.ReportMetric(float64(pushes)/wall.Seconds(), "pushes/s")
		b.Logf("%d pushes across %d apps -> %d tickets in %s; %d transitions, engine overhead median %s, p99 %s (goal: median <= 2ms); no run lost or duplicated",
			pushes, apps, len(tks), wall.Round(time.Millisecond), len(obs), median, p99)
	}
}
