// Package ingest commits received webhook deliveries in groups: request
// handlers submit, one goroutine writes whatever is waiting in a single
// transaction (one fsync), then answers every waiter. A delivery is durable
// before Submit returns, so a handler may acknowledge it.
package ingest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dockmaster/dockmaster/internal/store"
)

// ErrStopped is returned by Submit once the committer has stopped.
var ErrStopped = errors.New("ingest: committer stopped")

// BatchWriter records a batch atomically: all results, or an error and
// nothing stored. *store.DeliveryWriter (the fast path) and *store.DB
// implement it. Only the committer goroutine calls it; its owner closes it
// after Run returns.
type BatchWriter interface {
	InsertDeliveries(ctx context.Context, ds []store.NewDelivery) ([]store.InsertResult, error)
}

// Options tune a Committer.
type Options struct {
	// MaxBatch caps deliveries per transaction; 1 means one transaction per
	// delivery (the baseline). Default 256.
	MaxBatch int
	// Linger, when positive, waits that long for more deliveries before
	// committing a batch that is not full, but only when more than one
	// delivery was already waiting (a lone delivery never waits).
	Linger time.Duration
	// OnCommit runs on the committer goroutine after each successful commit
	// that stored at least one events row (to wake the pipeline engine),
	// before the batch's senders are answered. It must not block.
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

	batches, committed, failures atomic.Int64
	busy                         atomic.Int64 // nanoseconds inside the writer
}

// Stats reports how many transactions were committed and how many
// deliveries they held (their ratio is the mean batch size).
func (c *Committer) Stats() (batches, deliveries int64) {
	return c.batches.Load(), c.committed.Load()
}

// Busy is the time spent inside the writer (inserting, committing, syncing).
// Over an interval, its growth divided by the interval is the committer's
// utilization: near 1, deliveries wait for the committer rather than for
// the handlers.
func (c *Committer) Busy() time.Duration { return time.Duration(c.busy.Load()) }

// Collectors export Stats, Busy and the failures to Prometheus.
func (c *Committer) Collectors() []prometheus.Collector {
	return []prometheus.Collector{
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "dockmaster_webhook_commits_total",
			Help: "Transactions the webhook committer committed (one fsync each)."},
			func() float64 { return float64(c.batches.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "dockmaster_webhook_deliveries_committed_total",
			Help: "Webhook deliveries made durable (new and duplicate)."},
			func() float64 { return float64(c.committed.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "dockmaster_webhook_commit_seconds_total",
			Help: "Time the webhook committer spent writing batches; its rate is the committer's utilization (1: saturated)."},
			func() float64 { return c.Busy().Seconds() }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "dockmaster_webhook_commit_failures_total",
			Help: "Batches whose transaction failed; each of their deliveries was answered 503."},
			func() float64 { return float64(c.failures.Load()) }),
	}
}

// New returns a Committer writing through w.
func New(w BatchWriter, opts Options) *Committer {
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 256
	}
	return &Committer{w: w, opts: opts, wake: make(chan struct{}, 1)}
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
// returns. Writes use a context that is not canceled with ctx, so that the
// drain can finish.
func (c *Committer) Run(ctx context.Context) {
	writeCtx := context.WithoutCancel(ctx)
	batch := make([]*request, 0, c.opts.MaxBatch)
	recs := make([]store.NewDelivery, 0, c.opts.MaxBatch)
	for {
		select {
		case <-c.wake:
		case <-ctx.Done():
			c.mu.Lock()
			c.stopped = true
			c.mu.Unlock()
			for c.pending() > 0 {
				batch = c.take(c.opts.MaxBatch, batch[:0])
				recs = c.commit(writeCtx, batch, recs[:0])
			}
			return
		}
		for {
			batch = c.take(c.opts.MaxBatch, batch[:0])
			if len(batch) == 0 {
				break
			}
			if c.opts.Linger > 0 && len(batch) > 1 && len(batch) < c.opts.MaxBatch {
				// Others are arriving: give them a moment to share this fsync.
				time.Sleep(c.opts.Linger)
				batch = c.take(c.opts.MaxBatch-len(batch), batch)
			}
			recs = c.commit(writeCtx, batch, recs[:0])
		}
	}
}

// commit writes one batch and answers its waiters; recs is scratch space.
func (c *Committer) commit(ctx context.Context, batch []*request, recs []store.NewDelivery) []store.NewDelivery {
	for _, r := range batch {
		recs = append(recs, r.d)
	}
	start := time.Now()
	res, err := c.w.InsertDeliveries(ctx, recs)
	c.busy.Add(int64(time.Since(start)))
	if err == nil && len(res) != len(batch) {
		err = fmt.Errorf("ingest: writer returned %d results for %d deliveries", len(res), len(batch))
	}
	if err == nil {
		c.batches.Add(1)
		c.committed.Add(int64(len(batch)))
	} else {
		c.failures.Add(1)
	}
	// OnCommit before the answers: once a sender has its answer, the
	// engine has been woken for its event.
	if err == nil && c.opts.OnCommit != nil && slices.ContainsFunc(res, func(r store.InsertResult) bool { return r.EventID != 0 }) {
		c.opts.OnCommit()
	}
	for i, r := range batch {
		if err != nil {
			r.done <- result{err: err}
			continue
		}
		r.done <- result{r: res[i]}
	}
	clear(recs) // drop bodies for the collector
	return recs
}
