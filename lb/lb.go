package lb

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Options configure an LB.
type Options struct {
	// Listen opens the listener of a source port (default: all addresses,
	// that port). Tests map ports to 127.0.0.1:0.
	Listen func(port uint16) (net.Listener, error)
	// DownFor is how long a backend that refused or reset a connection is
	// skipped while others remain (default 2s). The next config from
	// dockmaster usually removes it sooner.
	DownFor time.Duration
	// DialTimeout bounds a backend connect (default 2s).
	DialTimeout time.Duration
	Log         *slog.Logger
}

// LB is a running load balancer: one listener per source port, routing
// tables swapped atomically by Apply. Safe for concurrent use.
type LB struct {
	o         Options
	transport *http.Transport
	buffers   bufferPool
	mu        sync.Mutex // guards ports
	ports     map[uint16]*port
	down      sync.Map // backend address -> time.Time it may be retried
}

// port is one listening source port.
type port struct {
	proto string
	ln    net.Listener
	srv   *http.Server // http
	rules atomic.Pointer[ruleSet]
	wg    sync.WaitGroup // tcp connections
}

// ruleSet is one config's routes for a port. changed is closed when a
// newer config replaces it, so a request whose every backend failed can
// wait for the backends that replace them (the window in a rolling
// upgrade between old containers stopping and the LB hearing of new ones).
type ruleSet struct {
	routes  []*route
	changed chan struct{}
}

// newerRoute waits, at most DownFor, for a config newer than set and
// returns it with the route sel chooses in it; a nil route when none came,
// ctx ended or sel found none.
func (l *LB) newerRoute(ctx context.Context, pt *port, set *ruleSet, sel func([]*route) *route) (*ruleSet, *route) {
	t := time.NewTimer(l.o.DownFor)
	defer t.Stop()
	select {
	case <-set.changed:
		if set = pt.rules.Load(); set != nil {
			return set, sel(set.routes)
		}
	case <-t.C:
	case <-ctx.Done():
	}
	return nil, nil
}

// firstRoute is a tcp port's one route.
func firstRoute(rs []*route) *route {
	if len(rs) == 0 {
		return nil
	}
	return rs[0]
}

// route is a rule with its round-robin counter.
type route struct {
	Rule
	next atomic.Uint64
}

// New returns an LB with no ports open.
func New(o Options) *LB {
	if o.Listen == nil {
		o.Listen = func(p uint16) (net.Listener, error) { return net.Listen("tcp", ":"+strconv.Itoa(int(p))) }
	}
	if o.DownFor <= 0 {
		o.DownFor = 2 * time.Second
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = 2 * time.Second
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	l := &LB{o: o, ports: map[uint16]*port{}}
	l.buffers = newBufferPool()
	l.transport = &http.Transport{
		DialContext:         (&net.Dialer{Timeout: o.DialTimeout, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        1024,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     90 * time.Second,
	}
	return l
}

// Addr is where source port p listens, or nil.
func (l *LB) Addr(p uint16) net.Addr {
	l.mu.Lock()
	defer l.mu.Unlock()
	if pt := l.ports[p]; pt != nil {
		return pt.ln.Addr()
	}
	return nil
}

// Apply makes c the routing: new ports are opened, ports no longer in c
// are closed (their in-flight requests finish), and the rules of the
// others are swapped without a restart. On a listen error the ports
// opened so far stay and the error names the port.
func (l *LB) Apply(c Config) error {
	if err := c.Validate(); err != nil {
		return err
	}
	byPort := map[uint16][]*route{}
	proto := map[uint16]string{}
	for _, r := range c.Rules {
		byPort[r.SourcePort] = append(byPort[r.SourcePort], &route{Rule: r})
		proto[r.SourcePort] = r.Proto()
	}
	for _, rs := range byPort {
		sortRoutes(rs)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for p, pt := range l.ports {
		if _, keep := byPort[p]; !keep || proto[p] != pt.proto {
			l.closePort(pt)
			delete(l.ports, p)
		}
	}
	var errs []error
	for p, rs := range byPort {
		pt := l.ports[p]
		if pt == nil {
			var err error
			if pt, err = l.openPort(p, proto[p]); err != nil {
				errs = append(errs, err)
				continue
			}
			l.ports[p] = pt
		}
		// Keep round-robin position of unchanged rules: no burst on one
		// backend after every config.
		old := pt.rules.Load()
		if old != nil {
			for _, r := range rs {
				for _, o := range old.routes {
					if o.Hostname == r.Hostname && o.Path == r.Path {
						r.next.Store(o.next.Load())
					}
				}
			}
		}
		pt.rules.Store(&ruleSet{routes: rs, changed: make(chan struct{})})
		if old != nil {
			close(old.changed) // under l.mu: each set is replaced once
		}
	}
	return errors.Join(errs...)
}

// sortRoutes orders a port's http rules: by priority (0 last), then the
// more specific first (with hostname, longer path).
func sortRoutes(rs []*route) {
	sort.SliceStable(rs, func(i, j int) bool {
		a, b := rs[i], rs[j]
		pa, pb := a.Priority, b.Priority
		if pa == 0 {
			pa = int(^uint(0) >> 1)
		}
		if pb == 0 {
			pb = int(^uint(0) >> 1)
		}
		if pa != pb {
			return pa < pb
		}
		if (a.Hostname != "") != (b.Hostname != "") {
			return a.Hostname != ""
		}
		return len(a.Path) > len(b.Path)
	})
}

func (l *LB) openPort(p uint16, proto string) (*port, error) {
	ln, err := l.o.Listen(p)
	if err != nil {
		return nil, fmt.Errorf("lb: listen on source port %d: %w", p, err)
	}
	pt := &port{proto: proto, ln: ln}
	if proto == "tcp" {
		go l.serveTCP(pt)
	} else {
		pt.srv = &http.Server{Handler: l.httpHandler(pt), ReadHeaderTimeout: 30 * time.Second}
		go func() { _ = pt.srv.Serve(ln) }()
	}
	l.o.Log.Info("lb: listening", "port", p, "protocol", proto, "addr", ln.Addr().String())
	return pt, nil
}

func (l *LB) closePort(pt *port) {
	if pt.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		go func() { defer cancel(); _ = pt.srv.Shutdown(ctx) }()
		return
	}
	_ = pt.ln.Close()
}

// Close closes every port, waiting up to ctx for in-flight requests.
func (l *LB) Close(ctx context.Context) error {
	l.mu.Lock()
	ports := l.ports
	l.ports = map[uint16]*port{}
	l.mu.Unlock()
	var errs []error
	for _, pt := range ports {
		if pt.srv != nil {
			errs = append(errs, pt.srv.Shutdown(ctx))
			continue
		}
		errs = append(errs, pt.ln.Close())
		pt.wg.Wait()
	}
	l.transport.CloseIdleConnections()
	return errors.Join(errs...)
}

// isDown reports whether addr failed recently.
func (l *LB) isDown(addr string, now time.Time) bool {
	v, ok := l.down.Load(addr)
	if !ok {
		return false
	}
	if now.After(v.(time.Time)) {
		l.down.Delete(addr)
		return false
	}
	return true
}

func (l *LB) markDown(addr string) { l.down.Store(addr, time.Now().Add(l.o.DownFor)) }

// pick chooses the next backend of r round-robin, skipping those in
// tried and, while others remain, those marked down.
func (l *LB) pick(r *route, tried map[string]bool) (string, bool) {
	n := len(r.Backends)
	if n == 0 {
		return "", false
	}
	now := time.Now()
	fallback := ""
	for range n {
		b := r.Backends[int(r.next.Add(1)-1)%n]
		if tried[b] {
			continue
		}
		if l.isDown(b, now) {
			if fallback == "" {
				fallback = b
			}
			continue
		}
		return b, true
	}
	return fallback, fallback != ""
}

// match finds the rule of a request: hostname (exact, or "*.suffix"), then
// path prefix.
func match(rs []*route, host, path string) *route {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.ToLower(host)
	for _, r := range rs {
		if r.Hostname != "" && r.Hostname != "*" {
			want := strings.ToLower(r.Hostname)
			if strings.HasPrefix(want, "*.") {
				if !strings.HasSuffix(host, want[1:]) {
					continue
				}
			} else if host != want {
				continue
			}
		}
		if r.Path != "" && !strings.HasPrefix(path, r.Path) {
			continue
		}
		return r
	}
	return nil
}

type ctxKey struct{}

// pinned carries the route and an optional sticky backend to the
// transport.
type pinned struct {
	r      *route
	pt     *port
	set    *ruleSet // the config r came from
	sticky string
	chosen string // backend that answered, for the sticky cookie
}

// bufferPool lends the 32 KiB copy buffers ReverseProxy would otherwise
// allocate per response: most of the proxy's garbage.
type bufferPool struct{ p *sync.Pool }

func newBufferPool() bufferPool {
	return bufferPool{&sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}}
}

func (b bufferPool) Get() []byte    { return *b.p.Get().(*[]byte) }
func (b bufferPool) Put(buf []byte) { b.p.Put(&buf) }

func stickyValue(addr string) string {
	h := fnv.New64a()
	_, _ = h.Write([]byte(addr))
	return strconv.FormatUint(h.Sum64(), 36)
}

func (l *LB) httpHandler(pt *port) http.Handler {
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme = "http"
			pr.Out.URL.Host = "backend" // the transport picks the backend
			pr.Out.Host = pr.In.Host
			pr.SetXForwarded()
		},
		Transport:  retrier{l},
		BufferPool: l.buffers,
		ModifyResponse: func(resp *http.Response) error {
			p, _ := resp.Request.Context().Value(ctxKey{}).(*pinned)
			if p != nil && p.r.StickyCookie != "" && p.chosen != "" && p.sticky != p.chosen {
				resp.Header.Add("Set-Cookie", (&http.Cookie{Name: p.r.StickyCookie, Value: stickyValue(p.chosen), Path: "/", HttpOnly: true}).String())
			}
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			l.o.Log.Warn("lb: backend error", "host", r.Host, "path", r.URL.Path, "err", err)
			if errors.Is(err, errNoBackend) {
				http.Error(w, "no healthy backend", http.StatusServiceUnavailable)
				return
			}
			http.Error(w, "bad gateway", http.StatusBadGateway)
		},
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		set := pt.rules.Load()
		if set == nil {
			http.Error(w, "no rules yet", http.StatusServiceUnavailable)
			return
		}
		rt := match(set.routes, r.Host, r.URL.Path)
		if rt == nil {
			http.Error(w, "no rule matches this host and path", http.StatusNotFound)
			return
		}
		p := &pinned{r: rt, pt: pt, set: set}
		if rt.StickyCookie != "" {
			if c, err := r.Cookie(rt.StickyCookie); err == nil {
				for _, b := range rt.Backends {
					if stickyValue(b) == c.Value {
						p.sticky = b
					}
				}
			}
		}
		rp.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, p)))
	})
}

var errNoBackend = errors.New("no healthy backend")

// retrier sends a request to a backend of its route and, when that
// backend fails before answering, marks it down and tries another: any
// request whose connection could not be made, and idempotent requests
// without a body after any transport error (a backend stopped mid-request
// during a rolling upgrade). When every backend of the route has failed
// it waits for the next config and tries the route's new backends.
type retrier struct{ l *LB }

func (t retrier) RoundTrip(req *http.Request) (*http.Response, error) {
	p, _ := req.Context().Value(ctxKey{}).(*pinned)
	if p == nil {
		return nil, errNoBackend
	}
	tried := map[string]bool{}
	waited := false
	var lastErr error
	for attempt := 0; attempt < 6; attempt++ {
		b := ""
		if attempt == 0 && p.sticky != "" && !t.l.isDown(p.sticky, time.Now()) {
			b = p.sticky
		} else {
			var ok bool
			b, ok = t.l.pick(p.r, tried)
			if !ok && !waited && (lastErr == nil || retryable(req, lastErr)) {
				waited = true
				sel := func(rs []*route) *route { return match(rs, req.Host, req.URL.Path) }
				if set, r := t.l.newerRoute(req.Context(), p.pt, p.set, sel); r != nil {
					p.r, p.set = r, set
					b, ok = t.l.pick(r, tried)
				}
			}
			if !ok {
				break
			}
		}
		tried[b] = true
		out := req
		if attempt > 0 {
			out = req.Clone(req.Context())
		}
		out.URL.Host = b
		resp, err := t.l.transport.RoundTrip(out)
		if err == nil && idempotent(req) {
			err = readSmallBody(resp)
		}
		if err == nil {
			p.chosen = b
			return resp, nil
		}
		lastErr = err
		if req.Context().Err() != nil {
			return nil, err
		}
		t.l.markDown(b)
		if !retryable(req, err) {
			return nil, err
		}
	}
	if lastErr == nil {
		return nil, errNoBackend
	}
	return nil, lastErr
}

func retryable(req *http.Request, err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true // nothing was sent
	}
	return idempotent(req)
}

// idempotent requests without a body may be sent again after any failure.
func idempotent(req *http.Request) bool {
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return req.Body == nil || req.Body == http.NoBody
	}
	return false
}

// maxReadAhead bounds the responses readSmallBody reads whole.
const maxReadAhead = 64 << 10

// readSmallBody reads a response of known length up to maxReadAhead before
// it is passed on, so that a backend dying between its headers and its body
// (a container stopped mid-response) fails the round trip, which is then
// retried, instead of cutting the client's response. Larger and streamed
// responses pass through as they come.
func readSmallBody(resp *http.Response) error {
	if resp.ContentLength <= 0 || resp.ContentLength > maxReadAhead || resp.Request.Method == http.MethodHead {
		return nil
	}
	body, err := io.ReadAll(resp.Body) // to EOF, so the connection is reused
	resp.Body.Close()
	if err != nil {
		return err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	return nil
}

func (l *LB) serveTCP(pt *port) {
	for {
		c, err := pt.ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return // closed
		}
		pt.wg.Add(1)
		go func() {
			defer pt.wg.Done()
			l.forward(pt, c)
		}()
	}
}

// forward connects c to a backend of the port's rule (trying others when
// a connect fails) and copies both ways, passing half-closes on.
func (l *LB) forward(pt *port, c net.Conn) {
	defer c.Close()
	set := pt.rules.Load()
	if set == nil || len(set.routes) == 0 {
		return
	}
	r := firstRoute(set.routes)
	tried := map[string]bool{}
	waited := false
	var up net.Conn
	for range 6 {
		b, ok := l.pick(r, tried)
		if !ok && !waited {
			waited = true // every backend refused: wait for the next config
			if _, nr := l.newerRoute(context.Background(), pt, set, firstRoute); nr != nil {
				r = nr
				b, ok = l.pick(r, tried)
			}
		}
		if !ok {
			break
		}
		tried[b] = true
		conn, err := net.DialTimeout("tcp", b, l.o.DialTimeout)
		if err == nil {
			up = conn
			break
		}
		l.markDown(b)
		l.o.Log.Warn("lb: tcp backend", "backend", b, "err", err)
	}
	if up == nil {
		return
	}
	defer up.Close()
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
		done <- struct{}{}
	}
	go pipe(up, c)
	go pipe(c, up)
	<-done
	<-done
}
