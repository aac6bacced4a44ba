package leader

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dockmaster/dockmaster/internal/store/pgtest"
	"github.com/jackc/pgx/v5"
)

// contender runs one elector and records its terms.
type contender struct {
	e      *Postgres
	terms  atomic.Int32
	active atomic.Bool
}

// TestPostgresOneLeaderAndHandover: of two contenders exactly one leads;
// killing its session hands over to the other within a few seconds, and
// the two terms never overlap.
func TestPostgresOneLeaderAndHandover(t *testing.T) {
	url := pgtest.URL(t)
	ctx, cancel := context.WithCancel(context.Background())
	var overlap atomic.Int32 // contenders leading at once, max seen below
	var maxOverlap atomic.Int32
	var wg sync.WaitGroup
	cs := map[string]*contender{}
	for _, name := range []string{"a", "b"} {
		c := &contender{}
		c.e = NewPostgres(Options{URL: url, Name: name, Every: 200 * time.Millisecond})
		cs[name] = c
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.e.Run(ctx, func(ctx context.Context) {
				c.terms.Add(1)
				c.active.Store(true)
				n := overlap.Add(1)
				for m := maxOverlap.Load(); n > m && !maxOverlap.CompareAndSwap(m, n); m = maxOverlap.Load() {
				}
				<-ctx.Done()
				overlap.Add(-1)
				c.active.Store(false)
			})
		}()
	}
	defer func() { cancel(); wg.Wait() }()

	leader := func() *contender {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			var leading []*contender
			for _, c := range cs {
				if c.active.Load() {
					leading = append(leading, c)
				}
			}
			if len(leading) == 1 && leading[0].e.Leader() {
				return leading[0]
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatal("no single leader within 5s")
		return nil
	}
	first := leader()
	time.Sleep(time.Second) // the follower keeps trying and keeps failing
	if got := leader(); got != first || maxOverlap.Load() != 1 {
		t.Fatalf("leadership moved or overlapped without a failure (max %d at once)", maxOverlap.Load())
	}

	// Kill the leader's session from outside, as a dead replica's would end.
	admin, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	killed := time.Now()
	var n int
	if err := admin.QueryRow(ctx, `SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1`,
		first.e.ApplicationName()).Scan(&n); err != nil || n != 1 {
		t.Fatalf("terminated %d sessions (%v), want 1", n, err)
	}
	var second *contender
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		for _, c := range cs {
			if c != first && c.active.Load() {
				second = c
			}
		}
		if second != nil {
			break
		}
	}
	if second == nil {
		t.Fatal("no handover within 5s of killing the leader's session")
	}
	t.Logf("handover after %v", time.Since(killed).Round(10*time.Millisecond))
	if first.active.Load() || first.e.Leader() {
		t.Fatal("the old leader still runs its loops")
	}
	if maxOverlap.Load() != 1 {
		t.Fatalf("%d contenders led at once", maxOverlap.Load())
	}
	// The old leader reconnects and becomes a follower.
	time.Sleep(time.Second)
	if first.terms.Load() != 1 || second.terms.Load() != 1 || !second.active.Load() {
		t.Fatalf("terms: old %d, new %d (active %v); want 1 and 1, new still leading",
			first.terms.Load(), second.terms.Load(), second.active.Load())
	}
}

// TestPostgresReleasesOnShutdown: a leader that stops hands over at once,
// not when its socket times out.
func TestPostgresReleasesOnShutdown(t *testing.T) {
	url := pgtest.URL(t)
	ctxA, stopA := context.WithCancel(context.Background())
	a := NewPostgres(Options{URL: url, Name: "a", Every: 200 * time.Millisecond})
	doneA := make(chan struct{})
	go func() { defer close(doneA); a.Run(ctxA, func(ctx context.Context) { <-ctx.Done() }) }()
	for deadline := time.Now().Add(5 * time.Second); !a.Leader(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("a never led")
		}
	}
	ctxB, stopB := context.WithCancel(context.Background())
	defer stopB()
	b := NewPostgres(Options{URL: url, Name: "b", Every: 200 * time.Millisecond})
	go b.Run(ctxB, func(ctx context.Context) { <-ctx.Done() })
	time.Sleep(600 * time.Millisecond)
	if b.Leader() {
		t.Fatal("b leads while a does")
	}
	stopA()
	<-doneA
	for deadline := time.Now().Add(3 * time.Second); !b.Leader(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("b did not take over within 3s of a's shutdown")
		}
	}
}

func TestSingleAlwaysLeads(t *testing.T) {
	var s Single
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan struct{})
	done := make(chan struct{})
	go func() { defer close(done); s.Run(ctx, func(context.Context) { close(started) }) }()
	<-started
	if !s.Leader() {
		t.Fatal("Single must lead while Run runs")
	}
	cancel()
	<-done
	if s.Leader() {
		t.Fatal("Single leads after Run returned")
	}
}
