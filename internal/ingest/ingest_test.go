package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dockmaster/dockmaster/internal/store"
	"github.com/dockmaster/dockmaster/internal/store/storetest"
)

func delivery(id string) store.NewDelivery {
	return store.NewDelivery{Provider: "github", DeliveryID: id, Verdict: store.VerdictAccepted, Body: []byte("{}"),
		EventKind: "push", Event: json.RawMessage(`{"Kind":"push"}`), Actionable: true}
}

// recorder wraps a writer and records batch sizes.
type recorder struct {
	BatchWriter
	mu    sync.Mutex
	sizes []int
	fail  error
}

func (r *recorder) InsertDeliveries(ctx context.Context, ds []store.NewDelivery) ([]store.InsertResult, error) {
	r.mu.Lock()
	r.sizes = append(r.sizes, len(ds))
	fail := r.fail
	r.mu.Unlock()
	if fail != nil {
		return nil, fail
	}
	return r.BatchWriter.InsertDeliveries(ctx, ds)
}

func (r *recorder) batches() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]int(nil), r.sizes...)
}

func start(t *testing.T, c *Committer) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	return func() { cancel(); <-done }
}

// waitPending waits until n submissions are queued.
func waitPending(t *testing.T, c *Committer, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for c.pending() < n {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d submissions queued", c.pending(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

type answer struct {
	res store.InsertResult
	err error
}

func submitAll(c *Committer, ids []string) []chan answer {
	out := make([]chan answer, len(ids))
	for i, id := range ids {
		out[i] = make(chan answer, 1)
		go func() {
			r, err := c.Submit(context.Background(), delivery(id))
			out[i] <- answer{r, err}
		}()
	}
	return out
}

func TestGroupCommitOneBatchWithDuplicates(t *testing.T) {
	db := storetest.Open(t)
	rec := &recorder{BatchWriter: db}
	var commits atomic.Int32
	c := New(rec, Options{OnCommit: func() { commits.Add(1) }})
	// Queue everything before the committer runs, so it is one batch.
	answers := submitAll(c, []string{"a", "b", "a", "c"})
	waitPending(t, c, 4)
	stop := start(t, c)
	defer stop()
	var dups, news int
	for _, ch := range answers {
		a := <-ch
		if a.err != nil {
			t.Fatal(a.err)
		}
		if a.res.Duplicate {
			dups++
		} else {
			news++
		}
	}
	if dups != 1 || news != 3 {
		t.Errorf("%d duplicates, %d new; want 1, 3", dups, news)
	}
	if got := rec.batches(); len(got) != 1 || got[0] != 4 {
		t.Errorf("batches %v, want [4]", got)
	}
	if commits.Load() != 1 {
		t.Errorf("OnCommit ran %d times, want 1", commits.Load())
	}
	if b, d := c.Stats(); b != 1 || d != 4 {
		t.Errorf("stats %d batches, %d deliveries; want 1, 4", b, d)
	}
	var n int
	db.QueryRow(`SELECT COUNT(*) FROM deliveries`).Scan(&n)
	if n != 3 {
		t.Errorf("%d rows, want 3", n)
	}
}

func TestMaxBatch(t *testing.T) {
	rec := &recorder{BatchWriter: storetest.Open(t)}
	c := New(rec, Options{MaxBatch: 1})
	answers := submitAll(c, []string{"a", "b", "c"})
	waitPending(t, c, 3)
	stop := start(t, c)
	defer stop()
	for _, ch := range answers {
		if a := <-ch; a.err != nil {
			t.Fatal(a.err)
		}
	}
	if got := rec.batches(); len(got) != 3 || got[0] != 1 || got[1] != 1 || got[2] != 1 {
		t.Errorf("batches %v, want [1 1 1]", got)
	}
}

func TestFailedBatchAnswersEveryWaiter(t *testing.T) {
	boom := errors.New("disk on fire")
	rec := &recorder{BatchWriter: storetest.Open(t), fail: boom}
	var commits atomic.Int32
	c := New(rec, Options{OnCommit: func() { commits.Add(1) }})
	answers := submitAll(c, []string{"a", "b", "c"})
	waitPending(t, c, 3)
	stop := start(t, c)
	defer stop()
	for _, ch := range answers {
		if a := <-ch; !errors.Is(a.err, boom) {
			t.Errorf("answer %+v, want %v", a, boom)
		}
	}
	if commits.Load() != 0 {
		t.Error("OnCommit ran after a failed batch")
	}
	if b, d := c.Stats(); b != 0 || d != 0 || c.failures.Load() != 1 {
		t.Errorf("stats %d batches, %d deliveries, %d failures; want 0, 0, 1", b, d, c.failures.Load())
	}
}

// TestStopDrains: whatever was submitted before the stop is committed and
// answered; submissions after it fail with ErrStopped.
func TestStopDrains(t *testing.T) {
	db := storetest.Open(t)
	c := New(db, Options{MaxBatch: 8})
	ids := make([]string, 50)
	for i := range ids {
		ids[i] = fmt.Sprint(i)
	}
	answers := submitAll(c, ids)
	waitPending(t, c, len(ids))
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // Run sees a canceled context straight away: only the drain runs.
	c.Run(ctx)
	for _, ch := range answers {
		if a := <-ch; a.err != nil || a.res.ID == 0 {
			t.Fatalf("answer %+v", a)
		}
	}
	var n int
	db.QueryRow(`SELECT COUNT(*) FROM deliveries`).Scan(&n)
	if n != len(ids) {
		t.Errorf("%d rows after drain, want %d", n, len(ids))
	}
	if _, err := c.Submit(context.Background(), delivery("late")); !errors.Is(err, ErrStopped) {
		t.Errorf("late submit: %v, want ErrStopped", err)
	}
}

func TestConcurrentSubmitters(t *testing.T) {
	db := storetest.Open(t)
	w := db.DeliveryWriter()
	defer w.Close()
	rec := &recorder{BatchWriter: w}
	c := New(rec, Options{Linger: 200 * time.Microsecond})
	stop := start(t, c)
	defer stop()
	const n = 200
	var wg sync.WaitGroup
	var failed atomic.Int32
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := c.Submit(context.Background(), delivery(fmt.Sprint(i%150))); err != nil {
				failed.Add(1)
			}
		}()
	}
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d submits failed", failed.Load())
	}
	var rows, dups int
	db.QueryRow(`SELECT COUNT(*), SUM(duplicates) FROM deliveries`).Scan(&rows, &dups)
	if rows != 150 || dups != 50 {
		t.Errorf("%d rows, %d duplicates; want 150, 50", rows, dups)
	}
	total := 0
	for _, s := range rec.batches() {
		total += s
	}
	if total != n {
		t.Errorf("batches hold %d deliveries, want %d", total, n)
	}
}

// TestLingerGathersLateArrivals: with two deliveries taken, the committer
// waits Linger for more, so a third that arrives meanwhile shares the batch.
func TestLingerGathersLateArrivals(t *testing.T) {
	rec := &recorder{BatchWriter: storetest.Open(t)}
	c := New(rec, Options{Linger: time.Second})
	first := submitAll(c, []string{"a", "b"})
	waitPending(t, c, 2)
	stop := start(t, c)
	defer stop()
	for c.pending() > 0 { // taken: the committer is lingering
		time.Sleep(time.Millisecond)
	}
	late := submitAll(c, []string{"c"})
	for _, ch := range append(first, late...) {
		if a := <-ch; a.err != nil {
			t.Fatal(a.err)
		}
	}
	if got := rec.batches(); len(got) != 1 || got[0] != 3 {
		t.Errorf("batches %v, want [3]", got)
	}
}

// TestLoneDeliveryNeverLingers: one delivery with nothing else waiting is
// committed at once, however long Linger is.
func TestLoneDeliveryNeverLingers(t *testing.T) {
	rec := &recorder{BatchWriter: storetest.Open(t)}
	c := New(rec, Options{Linger: time.Hour})
	stop := start(t, c)
	select {
	case a := <-submitAll(c, []string{"a"})[0]:
		if a.err != nil {
			t.Error(a.err)
		}
		stop()
	case <-time.After(30 * time.Second):
		t.Error("a lone delivery waited for the linger") // and so would stop: leave the committer
	}
}

// slowWriter takes a fixed time per batch.
type slowWriter struct {
	BatchWriter
	took time.Duration
}

func (s slowWriter) InsertDeliveries(ctx context.Context, ds []store.NewDelivery) ([]store.InsertResult, error) {
	time.Sleep(s.took)
	return s.BatchWriter.InsertDeliveries(ctx, ds)
}

// TestBusyCountsTimeInTheWriter: Busy (and its metric) grows by the time
// batches spend in the writer, so its rate shows the committer's load.
func TestBusyCountsTimeInTheWriter(t *testing.T) {
	c := New(slowWriter{BatchWriter: storetest.Open(t), took: 30 * time.Millisecond}, Options{MaxBatch: 1})
	answers := submitAll(c, []string{"a", "b"})
	waitPending(t, c, 2)
	stop := start(t, c)
	defer stop()
	for _, ch := range answers {
		if a := <-ch; a.err != nil {
			t.Fatal(a.err)
		}
	}
	if got := c.Busy(); got < 60*time.Millisecond {
		t.Errorf("Busy %v after two 30ms batches", got)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(c.Collectors()...)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var seconds float64
	for _, mf := range mfs {
		if mf.GetName() == "dockmaster_webhook_commit_seconds_total" {
			seconds = mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	if seconds < 0.06 {
		t.Errorf("dockmaster_webhook_commit_seconds_total = %v, want >= 0.06", seconds)
	}
}
