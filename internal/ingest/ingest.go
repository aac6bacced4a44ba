// Package ingest commits received webhook deliveries in groups: request
// handlers submit, one goroutine writes whatever is waiting in a single
// transaction, a second makes the written transactions durable with one
// fsync, then answers their waiters. Writing the next batch overlaps that
// fsync. A delivery is durable before Submit returns, so a handler may
// acknowledge it.
package ingest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dockmaster/dockmaster/internal/store"
)

// ErrStopped is returned by Submit once the committer has stopped.
var ErrStopped = errors.New("ingest: committer stopped")

// BatchWriter records a batch atomically: all results, or an error and
// nothing stored. *store.DeliveryWriter implements it. Only the committer's
// goroutines call it; its owner closes it after Run returns.
type BatchWriter interface {
	InsertDeliveries(ctx context.Context, ds []store.NewDelivery) ([]store.InsertResult, error)
	// Sync makes every batch InsertDeliveries has returned durable. It runs
	// concurrently with the next InsertDeliveries.
	Sync() error
}

// Options tune a Committer.
type Options struct {
	// MaxBatch caps deliveries per transaction. Default 256.
	MaxBatch int
	// SyncEachCommit syncs every transaction before writing the next: with
	// MaxBatch 1, one transaction and one fsync per delivery, the baseline
	// group commit is measured against.
	SyncEachCommit bool
	// Linger, when positive, waits that long for more deliveries before
	// committing a batch that is not full, but only when more than one
	// delivery was already waiting (a lone delivery never waits).
	Linger time.Duration
	// OnCommit runs after each successful sync that made at least one new
	// events row durable (to wake the pipeline engine). It must not block.
	OnCommit func()
}

type request struct {
	d    store.NewDelivery
	done chan result // buffered 1
}

type result struct {
	r   store.InsertResult
	err error
}

// written is one committed batch waiting for its sync.
type written struct {
	batch []*request
	res   []store.InsertResult
}

// Committer is the single writer of deliveries.
//
// Call Run once, in its own goroutine; Submit from any goroutine. After Run's
// context is canceled, Run commits what was already submitted, answers those
// waiters and returns; later Submits fail with ErrStopped.
type Committer struct {
	w    BatchWriter
	opts Options

	mu      sync.Mutex
	queue   []*request
	stopped bool
	wake    chan struct{} // buffered 1: "the queue is not empty"

	written     []written     // committed, waiting for the next Sync; under mu
	writtenWake chan struct{} // buffered 1: "written is not empty"
	// unsynced holds a token per committed batch not yet synced. Its
	// capacity of 2 lets one batch be written while the previous one syncs,
	// but no further: a writer racing ahead would commit ever smaller
	// batches, and each commit costs as much CPU as several deliveries.
	unsynced chan struct{}

	batches, committed, failures atomic.Int64
}

// Stats reports how many transactions were committed and made durable,
// and how many deliveries they held (their ratio is the mean batch size).
func (c *Committer) Stats() (batches, deliveries int64) {
	return c.batches.Load(), c.committed.Load()
}

// Collectors export Stats and the failures to Prometheus.
func (c *Committer) Collectors() []prometheus.Collector {
	return []prometheus.Collector{
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "dockmaster_webhook_commits_total",
			Help: "Transactions of webhook deliveries committed and synced (one fsync may cover several)."},
			func() float64 { return float64(c.batches.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "dockmaster_webhook_deliveries_committed_total",
			Help: "Webhook deliveries made durable (new and duplicate)."},
			func() float64 { return float64(c.committed.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "dockmaster_webhook_commit_failures_total",
			Help: "Batches whose transaction or fsync failed; each of their deliveries was answered 503."},
			func() float64 { return float64(c.failures.Load()) }),
	}
}

// New returns a Committer writing through w.
func New(w BatchWriter, opts Options) *Committer {
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 256
	}
	return &Committer{w: w, opts: opts, wake: make(chan struct{}, 1),
		writtenWake: make(chan struct{}, 1), unsynced: make(chan struct{}, 2)}
}

// Submit queues d and waits until its batch is committed. The result says
// whether it was new or a duplicate; an error means it is not known to be
// stored and must not be acknowledged. If ctx ends first Submit returns
// ctx's error, and d may still be committed.
func (c *Committer) Submit(ctx context.Context, d store.NewDelivery) (store.InsertResult, error) {
	// Serialize on the caller's goroutine, not the single committer's.
	if err := d.Encode(); err != nil {
		return store.InsertResult{}, err
	}
	req := &request{d: d, done: make(chan result, 1)}
	c.mu.Lock()
	if c.stopped {
		c.mu.Unlock()
		return store.InsertResult{}, ErrStopped
	}
	c.queue = append(c.queue, req)
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default: // a wake-up is already pending
	}
	select {
	case res := <-req.done:
		return res.r, res.err
	case <-ctx.Done():
		return store.InsertResult{}, ctx.Err()
	}
}

// take removes up to max queued requests.
func (c *Committer) take(max int, into []*request) []*request {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := min(max, len(c.queue))
	into = append(into, c.queue[:n]...)
	// Shift rather than reslice so the backing array does not grow forever.
	rest := copy(c.queue, c.queue[n:])
	clear(c.queue[rest:])
	c.queue = c.queue[:rest]
	return into
}

func (c *Committer) pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.queue)
}

// Run commits batches until ctx is canceled, then drains the queue and
// returns once every waiter is answered. Writes use a context that is not
// canceled with ctx, so that the drain can finish.
func (c *Committer) Run(ctx context.Context) {
	syncerDone := make(chan struct{})
	writerDone := make(chan struct{})
	go func() { c.syncer(writerDone); close(syncerDone) }()
	c.write(ctx)
	close(writerDone)
	<-syncerDone
}

// write takes batches off the queue and commits them until ctx is canceled
// and the queue is empty.
func (c *Committer) write(ctx context.Context) {
	writeCtx := context.WithoutCancel(ctx)
	recs := make([]store.NewDelivery, 0, c.opts.MaxBatch)
	for {
		select {
		case <-c.wake:
		case <-ctx.Done():
			c.mu.Lock()
			c.stopped = true
			c.mu.Unlock()
			for batch := c.nextBatch(); batch != nil; batch = c.nextBatch() {
				recs = c.commit(writeCtx, batch, recs[:0])
			}
			return
		}
		for batch := c.nextBatch(); batch != nil; batch = c.nextBatch() {
			recs = c.commit(writeCtx, batch, recs[:0])
		}
	}
}

// nextBatch waits until at most one batch is unsynced, then takes up to
// MaxBatch queued requests. Waiting before taking, not after, lets the batch
// grow by everything that arrives while the previous one syncs. It returns
// nil, and holds no unsynced token, when the queue is empty.
func (c *Committer) nextBatch() []*request {
	c.unsynced <- struct{}{}
	batch := c.take(c.opts.MaxBatch, nil)
	if len(batch) == 0 {
		<-c.unsynced
		return nil
	}
	if c.opts.Linger > 0 && len(batch) > 1 && len(batch) < c.opts.MaxBatch {
		// Others are arriving: give them a moment to share this commit.
		time.Sleep(c.opts.Linger)
		batch = c.take(c.opts.MaxBatch-len(batch), batch)
	}
	return batch
}

// commit writes one batch, taken with its unsynced token by nextBatch, and
// hands it to the syncer (or, with SyncEachCommit, syncs it here); a failed
// batch is answered at once. recs is scratch space.
func (c *Committer) commit(ctx context.Context, batch []*request, recs []store.NewDelivery) []store.NewDelivery {
	for _, r := range batch {
		recs = append(recs, r.d)
	}
	res, err := c.w.InsertDeliveries(ctx, recs)
	clear(recs) // drop bodies for the collector
	if err == nil && len(res) != len(batch) {
		err = fmt.Errorf("ingest: writer returned %d results for %d deliveries", len(res), len(batch))
	}
	if err != nil {
		<-c.unsynced
		c.failures.Add(1)
		reply(batch, nil, err)
		return recs
	}
	done := written{batch: batch, res: res}
	if c.opts.SyncEachCommit {
		c.sync([]written{done})
		return recs
	}
	c.mu.Lock()
	c.written = append(c.written, done)
	c.mu.Unlock()
	select {
	case c.writtenWake <- struct{}{}:
	default:
	}
	return recs
}

// syncer makes committed batches durable, as many per Sync as have been
// written meanwhile, until writerDone is closed and nothing is left.
func (c *Committer) syncer(writerDone <-chan struct{}) {
	for {
		last := false
		select {
		case <-c.writtenWake:
		case <-writerDone: // nothing is written after this: one more round
			last = true
		}
		c.mu.Lock()
		ws := c.written
		c.written = nil
		c.mu.Unlock()
		if len(ws) > 0 {
			c.sync(ws)
		}
		if last {
			return
		}
	}
}

// sync makes ws durable and answers their waiters.
func (c *Committer) sync(ws []written) {
	err := c.w.Sync()
	events := false
	for _, w := range ws {
		<-c.unsynced
		if err != nil {
			// Committed but not known to be durable: not acknowledged, so the
			// sender retries and the retry is answered as a duplicate.
			c.failures.Add(1)
			reply(w.batch, nil, fmt.Errorf("ingest: sync: %w", err))
			continue
		}
		c.batches.Add(1)
		c.committed.Add(int64(len(w.batch)))
		reply(w.batch, w.res, nil)
		for _, r := range w.res {
			events = events || r.EventID != 0
		}
	}
	if events && c.opts.OnCommit != nil {
		c.opts.OnCommit()
	}
}

// reply sends each waiter of batch its result, or err to all.
func reply(batch []*request, res []store.InsertResult, err error) {
	for i, r := range batch {
		if err != nil {
			r.done <- result{err: err}
			continue
		}
		r.done <- result{r: res[i]}
	}
}
