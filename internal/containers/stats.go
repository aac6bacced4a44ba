package containers

import (
	"context"
	"encoding/json"
	"fmt"
	"html/template"
	"sort"
	"sync"
	"time"

	"github.com/docker/docker/api/types/container"
	"golang.org/x/sync/errgroup"
)

// Sample is one resource reading. Rates are per second over the period
// since the previous reading of the same container.
type Sample struct {
	T           time.Time `json:"t"`
	CPUPercent  float64   `json:"cpu_percent"` // 100 = one core busy
	MemBytes    uint64    `json:"mem_bytes"`
	MemLimit    uint64    `json:"mem_limit,omitempty"`
	NetRxBps    float64   `json:"net_rx_bps"`
	NetTxBps    float64   `json:"net_tx_bps"`
	BlkReadBps  float64   `json:"blk_read_bps"`
	BlkWriteBps float64   `json:"blk_write_bps"`
}

// ring keeps the last len(buf) samples.
type ring struct {
	buf   []Sample
	start int
	n     int
}

func newRing(size int) *ring { return &ring{buf: make([]Sample, size)} }

func (r *ring) add(s Sample) {
	if len(r.buf) == 0 {
		return
	}
	if r.n < len(r.buf) {
		r.buf[(r.start+r.n)%len(r.buf)] = s
		r.n++
		return
	}
	r.buf[r.start] = s
	r.start = (r.start + 1) % len(r.buf)
}

// since returns the samples newer than t, oldest first.
func (r *ring) since(t time.Time) []Sample {
	out := make([]Sample, 0, r.n)
	for i := 0; i < r.n; i++ {
		s := r.buf[(r.start+i)%len(r.buf)]
		if s.T.After(t) {
			out = append(out, s)
		}
	}
	return out
}

func (r *ring) last() (Sample, bool) {
	if r.n == 0 {
		return Sample{}, false
	}
	return r.buf[(r.start+r.n-1)%len(r.buf)], true
}

// raw is the cumulative counters of the previous reading.
type raw struct {
	t              time.Time
	cpu, system    uint64
	rx, tx, rd, wr uint64
}

// hostStats holds one host's rings: one per container and one for the
// host (the sum of its containers at each tick).
type hostStats struct {
	mu     sync.Mutex
	size   int
	window time.Duration
	host   *ring
	byID   map[string]*ring
	prev   map[string]raw
}

func newHostStats(window, interval time.Duration) *hostStats {
	size := 1
	if interval > 0 {
		size = int(window / interval)
	}
	size = max(1, min(size, 3600))
	return &hostStats{size: size, window: window, host: newRing(size), byID: map[string]*ring{}, prev: map[string]raw{}}
}

// ringSize is the bound on samples kept per series.
func (h *hostStats) ringSize() int { return h.size }

// record turns one tick's readings into samples; containers not read this
// tick lose their series (they stopped or were removed).
func (h *hostStats) record(now time.Time, readings map[string]container.StatsResponse) {
	h.mu.Lock()
	defer h.mu.Unlock()
	total := Sample{T: now}
	any := false
	for id, st := range readings {
		cur := rawOf(st)
		if cur.t.IsZero() {
			cur.t = now
		}
		p, ok := h.prev[id]
		h.prev[id] = cur
		if !ok || !cur.t.After(p.t) {
			continue // the first reading only gives a base for rates
		}
		s := sampleOf(st, p, cur)
		s.T = now
		r := h.byID[id]
		if r == nil {
			r = newRing(h.size)
			h.byID[id] = r
		}
		r.add(s)
		total.CPUPercent += s.CPUPercent
		total.MemBytes += s.MemBytes
		total.NetRxBps += s.NetRxBps
		total.NetTxBps += s.NetTxBps
		total.BlkReadBps += s.BlkReadBps
		total.BlkWriteBps += s.BlkWriteBps
		any = true
	}
	for id := range h.prev {
		if _, ok := readings[id]; !ok {
			delete(h.prev, id)
		}
	}
	// Keep a stopped container's history until it ages out of the window.
	for id, r := range h.byID {
		if l, ok := r.last(); !ok || now.Sub(l.T) > h.window {
			delete(h.byID, id)
		}
	}
	if any || len(readings) == 0 {
		h.host.add(total)
	}
}

func rawOf(st container.StatsResponse) raw {
	r := raw{t: st.Read, cpu: st.CPUStats.CPUUsage.TotalUsage, system: st.CPUStats.SystemUsage}
	for _, n := range st.Networks {
		r.rx += n.RxBytes
		r.tx += n.TxBytes
	}
	for _, e := range st.BlkioStats.IoServiceBytesRecursive {
		switch e.Op {
		case "Read", "read":
			r.rd += e.Value
		case "Write", "write":
			r.wr += e.Value
		}
	}
	return r
}

func sampleOf(st container.StatsResponse, p, c raw) Sample {
	secs := c.t.Sub(p.t).Seconds()
	rate := func(a, b uint64) float64 {
		if b < a || secs <= 0 {
			return 0 // counter reset (restart)
		}
		return float64(b-a) / secs
	}
	s := Sample{NetRxBps: rate(p.rx, c.rx), NetTxBps: rate(p.tx, c.tx), BlkReadBps: rate(p.rd, c.rd), BlkWriteBps: rate(p.wr, c.wr)}
	cpus := st.CPUStats.OnlineCPUs
	if cpus == 0 {
		cpus = uint32(len(st.CPUStats.CPUUsage.PercpuUsage))
	}
	if c.system > p.system && c.cpu >= p.cpu && cpus > 0 {
		s.CPUPercent = float64(c.cpu-p.cpu) / float64(c.system-p.system) * float64(cpus) * 100
	}
	// As docker stats does: page cache that can be dropped is not "used".
	s.MemBytes = st.MemoryStats.Usage
	for _, k := range []string{"inactive_file", "total_inactive_file"} {
		if v, ok := st.MemoryStats.Stats[k]; ok && v < s.MemBytes {
			s.MemBytes -= v
			break
		}
	}
	s.MemLimit = st.MemoryStats.Limit
	return s
}

// sampleLoop reads every running container's stats each StatsInterval.
func (s *Service) sampleLoop(ctx context.Context, w *hostWatch) {
	t := time.NewTicker(s.o.StatsInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if w.info().State != "active" {
			continue
		}
		s.sampleOnce(ctx, w)
	}
}

func (s *Service) sampleOnce(ctx context.Context, w *hostWatch) {
	var mu sync.Mutex
	readings := map[string]container.StatsResponse{}
	var g errgroup.Group
	g.SetLimit(s.o.StatsParallel)
	for _, c := range w.snapshot() {
		if !c.Running() {
			continue
		}
		g.Go(func() error {
			st, err := s.readStats(ctx, w, c.ID)
			if err != nil {
				return nil // stopped meanwhile, or the host failed: the watcher reports that
			}
			mu.Lock()
			readings[c.ID] = st
			mu.Unlock()
			return nil
		})
	}
	_ = g.Wait() // every reading returns nil
	w.stats.record(time.Now(), readings)
}

func (s *Service) readStats(ctx context.Context, w *hostWatch, id string) (container.StatsResponse, error) {
	cctx, cancel := context.WithTimeout(ctx, s.o.Timeout)
	defer cancel()
	var st container.StatsResponse
	r, err := w.cli.ContainerStatsOneShot(cctx, id)
	if err != nil {
		return st, err
	}
	defer r.Body.Close()
	if err := json.NewDecoder(r.Body).Decode(&st); err != nil {
		return st, fmt.Errorf("stats %s: %w", id, err)
	}
	return st, nil
}

// Series is the recent samples of one container, service or host.
type Series struct {
	Name    string   `json:"name"`
	Latest  *Sample  `json:"latest,omitempty"`
	Samples []Sample `json:"samples"`
}

func seriesOf(name string, ss []Sample) Series {
	out := Series{Name: name, Samples: ss}
	if len(ss) > 0 {
		l := ss[len(ss)-1]
		out.Latest = &l
	}
	return out
}

// ContainerStats returns c's samples of the last window.
func (s *Service) ContainerStats(c Container) Series {
	w, err := s.watch1(c.Env, c.Host)
	if err != nil {
		return seriesOf(c.Ref(), []Sample{})
	}
	w.stats.mu.Lock()
	defer w.stats.mu.Unlock()
	r := w.stats.byID[c.ID]
	if r == nil {
		return seriesOf(c.Ref(), []Sample{})
	}
	return seriesOf(c.Ref(), r.since(time.Now().Add(-w.stats.window)))
}

// HostStats returns the per-host series of env ("" = all), with the
// host's capacity.
func (s *Service) HostStats(env string) []HostSeries {
	var out []HostSeries
	for _, w := range s.watches(env) {
		w.stats.mu.Lock()
		ss := w.stats.host.since(time.Now().Add(-w.stats.window))
		w.stats.mu.Unlock()
		out = append(out, HostSeries{Host: w.info(), Series: seriesOf(w.host.Name, ss)})
	}
	return out
}

// HostSeries is one host's aggregate usage next to its capacity.
type HostSeries struct {
	Host HostInfo `json:"host"`
	Series
}

// GroupStats sums the series of cs per sampling tick (bucketed to the
// interval), e.g. every container of a service across hosts.
func (s *Service) GroupStats(name string, cs []Container) Series {
	step := s.o.StatsInterval
	if step <= 0 {
		step = time.Second
	}
	sum := map[int64]*Sample{}
	for _, c := range cs {
		for _, x := range s.ContainerStats(c).Samples {
			k := x.T.Truncate(step).Unix()
			t := sum[k]
			if t == nil {
				t = &Sample{T: x.T.Truncate(step)}
				sum[k] = t
			}
			t.CPUPercent += x.CPUPercent
			t.MemBytes += x.MemBytes
			t.MemLimit += x.MemLimit
			t.NetRxBps += x.NetRxBps
			t.NetTxBps += x.NetTxBps
			t.BlkReadBps += x.BlkReadBps
			t.BlkWriteBps += x.BlkWriteBps
		}
	}
	out := make([]Sample, 0, len(sum))
	for _, v := range sum {
		out = append(out, *v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].T.Before(out[j].T) })
	return seriesOf(name, out)
}

// SampleNow takes one stats reading of every running container of env's
// reachable hosts right away (tests and "refresh" buttons).
func (s *Service) SampleNow(ctx context.Context, env string) {
	for _, w := range s.watches(env) {
		if w.cli != nil && w.info().State == "active" {
			s.sampleOnce(ctx, w)
		}
	}
}

// HostCharts are the last hour's charts of every host of env, by host name.
func (s *Service) HostCharts(env string) map[string][]template.HTML {
	out := map[string][]template.HTML{}
	for _, h := range s.HostStats(env) {
		out[h.Host.Name] = Charts(h.Series)
	}
	return out
}

// ServiceCharts are the last hour's charts of a service, summed over its
// containers on every host.
func (s *Service) ServiceCharts(ctx context.Context, env, stack, service string) []template.HTML {
	l := s.List(ctx, env, Filter{Stack: stack, Service: service})
	return Charts(s.GroupStats(stack+"/"+service, l.Containers))
}
