// Package jenkinsemu is an in-process Jenkins emulator for tests: it follows the
// remote-API contract of a real Jenkins (crumbs, buildWithParameters, the queue,
// build JSON) and posts Notification-plugin callbacks. See README.md for the
// contract and the Jenkins sources each behaviour is taken from.
package jenkinsemu

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// Build results, as Jenkins spells them.
const (
	Success  = "SUCCESS"
	Unstable = "UNSTABLE"
	Failure  = "FAILURE"
	NotBuilt = "NOT_BUILT"
	Aborted  = "ABORTED"
)

// Options configure a Server. The zero value is an unsecured Jenkins whose
// builds start at once and finish at once with SUCCESS.
type Options struct {
	// User and Token enable security: every request needs HTTP Basic user:token.
	User, Token string
	// RequireCrumb makes every POST carry a crumb from /crumbIssuer/api/json
	// together with the session cookie issued with it (as Jenkins does for
	// password or cookie sessions; API-token requests are exempt on real Jenkins).
	RequireCrumb bool
	// QueueDelay is how long a new item waits in the queue before it starts.
	QueueDelay time.Duration
	// BuildDuration is how long a build runs once started.
	BuildDuration time.Duration
	// ManualFinish keeps builds running until Complete is called.
	ManualFinish bool
	// QueueRetention is how long a left queue item stays readable (Jenkins: 5 min).
	QueueRetention time.Duration
	// NotifyURL, when set, receives Notification-plugin JSON at each phase,
	// with NotifyHeaders added to every POST.
	NotifyURL     string
	NotifyHeaders http.Header
	// Results decides a build's result; nil or "" means SUCCESS. SetResult wins over it.
	Results func(job string, params map[string]string) string
	// SCM fills the notification's build.scm; nil omits it.
	SCM func(job string, params map[string]string) *SCM
}

// Job is a job definition. A job with no Parameters is not parameterised.
type Job struct {
	Parameters []string
	Defaults   map[string]string // default values of Parameters; missing ones are ""
	Disabled   bool
}

// SCM is the notification's build.scm object.
type SCM struct {
	URL    string `json:"url,omitempty"`
	Branch string `json:"branch,omitempty"`
	Commit string `json:"commit,omitempty"`
}

// Build is a snapshot of one build for test assertions.
type Build struct {
	Job      string
	Number   int
	QueueID  int
	Params   map[string]string
	Building bool
	Result   string // "" while building
	Started  time.Time
	Finished time.Time
}

// Server is a running emulator. All methods are safe for concurrent use.
type Server struct {
	opts Options
	srv  *httptest.Server
	salt string

	mu       sync.Mutex
	closed   bool
	jobs     map[string]*job
	items    map[int]*queueItem // queued and left (until retention expires)
	nextItem int
	triggers map[string]int
	sessions map[string]string // session id -> user
	timers   map[*time.Timer]struct{}
	timerWG  sync.WaitGroup
	notifier *notifier
}

type job struct {
	name       string
	def        Job
	nextNumber int
	builds     []*build
	holdWhy    string // non-empty: new and queued items stay blocked
	result     string // SetResult override
}

type param struct{ name, value string }

type queueItem struct {
	id        int
	job       *job
	params    []param
	since     time.Time
	blocked   bool
	left      bool
	cancelled bool
	build     *build
}

type build struct {
	job      *job
	number   int
	queueID  int
	params   []param
	start    time.Time
	end      time.Time
	building bool
	result   string
}

// New starts an emulator; it is closed by t.Cleanup.
func New(t testing.TB, opts Options) *Server {
	t.Helper()
	if opts.QueueRetention <= 0 {
		opts.QueueRetention = 5 * time.Minute
	}
	s := &Server{
		opts:     opts,
		salt:     randomHex(16),
		jobs:     map[string]*job{},
		items:    map[int]*queueItem{},
		nextItem: 1,
		triggers: map[string]int{},
		sessions: map[string]string{},
		timers:   map[*time.Timer]struct{}{},
	}
	s.notifier = newNotifier(opts.NotifyURL, opts.NotifyHeaders)
	s.srv = httptest.NewServer(http.HandlerFunc(s.serveHTTP))
	t.Cleanup(s.close)
	return s
}

// URL is the Jenkins root URL, without a trailing slash.
func (s *Server) URL() string { return s.srv.URL }

// AddJob defines (or redefines) a job; fullName may contain folders "a/b".
func (s *Server) AddJob(fullName string, j Job) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.jobs[fullName]; ok {
		old.def = j
		return
	}
	s.jobs[fullName] = &job{name: fullName, def: j, nextNumber: 1}
}

// SetDisabled disables or enables a job.
func (s *Server) SetDisabled(fullName string, disabled bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if j, ok := s.jobs[fullName]; ok {
		j.def.Disabled = disabled
	}
}

// SetResult fixes the result of the job's builds that finish from now on; "" clears it.
func (s *Server) SetResult(fullName, result string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if j, ok := s.jobs[fullName]; ok {
		j.result = result
	}
}

// Hold keeps the job's queue items blocked (Queue$BlockedItem, why=why) until Release.
func (s *Server) Hold(fullName, why string) {
	if why == "" {
		why = "Build is blocked by the emulator"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	j, ok := s.jobs[fullName]
	if !ok {
		return
	}
	j.holdWhy = why
	for _, it := range s.items {
		if it.job == j && !it.left {
			it.blocked = true
		}
	}
}

// Release unblocks the job's held items; they start after QueueDelay.
func (s *Server) Release(fullName string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j, ok := s.jobs[fullName]
	if !ok {
		return
	}
	j.holdWhy = ""
	for _, it := range s.items {
		if it.job == j && !it.left && it.blocked {
			it.blocked = false
			s.scheduleStart(it)
		}
	}
}

// Cancel cancels a queued item, as POST /queue/cancelItem?id=N does.
// It reports whether the item was still queued.
func (s *Server) Cancel(queueID int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	it, ok := s.items[queueID]
	if !ok || it.left {
		return false
	}
	it.left, it.cancelled = true, true
	s.expireLater(it)
	return true
}

// Complete finishes a running build now with result ("" = the usual result).
func (s *Server) Complete(fullName string, number int, result string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	j, ok := s.jobs[fullName]
	if !ok {
		return fmt.Errorf("jenkinsemu: no job %q", fullName)
	}
	for _, b := range j.builds {
		if b.number == number {
			if !b.building {
				return fmt.Errorf("jenkinsemu: %s #%d already finished", fullName, number)
			}
			s.finish(b, result)
			return nil
		}
	}
	return fmt.Errorf("jenkinsemu: no build %s #%d", fullName, number)
}

// Builds returns the job's builds, oldest first.
func (s *Server) Builds(fullName string) []Build {
	s.mu.Lock()
	defer s.mu.Unlock()
	j, ok := s.jobs[fullName]
	if !ok {
		return nil
	}
	out := make([]Build, 0, len(j.builds))
	for _, b := range j.builds {
		out = append(out, Build{
			Job: fullName, Number: b.number, QueueID: b.queueID, Params: paramMap(b.params),
			Building: b.building, Result: b.result, Started: b.start, Finished: b.end,
		})
	}
	return out
}

// TriggerCount is the number of accepted buildWithParameters/build POSTs for the
// job, merged ones (303) included.
func (s *Server) TriggerCount(fullName string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.triggers[fullName]
}

// Queued is the number of the job's items still waiting in the queue.
func (s *Server) Queued(fullName string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, it := range s.items {
		if it.job.name == fullName && !it.left {
			n++
		}
	}
	return n
}

// ExpireSessions forgets every HTTP session, so crumbs issued so far stop
// working (as after a Jenkins restart or session timeout).
func (s *Server) ExpireSessions() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.sessions)
}

// Notifications returns the Notification-plugin POSTs made so far, in order.
func (s *Server) Notifications() []Notification { return s.notifier.sent() }

func (s *Server) close() {
	s.mu.Lock()
	s.closed = true
	for t := range s.timers {
		if t.Stop() {
			s.timerWG.Done()
		}
	}
	clear(s.timers)
	s.mu.Unlock()
	s.timerWG.Wait()
	s.notifier.close()
	s.srv.Close()
}

// after runs f under s.mu after d, unless the server is closed by then.
// Callers hold s.mu.
func (s *Server) after(d time.Duration, f func()) {
	if s.closed {
		return
	}
	s.timerWG.Add(1)
	var t *time.Timer
	t = time.AfterFunc(d, func() {
		defer s.timerWG.Done()
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(s.timers, t)
		if !s.closed {
			f()
		}
	})
	s.timers[t] = struct{}{}
}

// enqueue implements Queue.schedule2: an identical item still in the queue
// (same job, equal parameters) absorbs the request. Callers hold s.mu.
func (s *Server) enqueue(j *job, params []param) (it *queueItem, created bool) {
	for _, id := range slices.Sorted(maps.Keys(s.items)) {
		old := s.items[id]
		if old.job == j && !old.left && slices.Equal(old.params, params) {
			return old, false
		}
	}
	it = &queueItem{id: s.nextItem, job: j, params: params, since: time.Now(), blocked: j.holdWhy != ""}
	s.nextItem++
	s.items[it.id] = it
	if !it.blocked {
		s.scheduleStart(it)
	}
	return it, true
}

func (s *Server) scheduleStart(it *queueItem) {
	s.after(s.opts.QueueDelay, func() { s.start(it) })
}

// start moves an item out of the queue onto an "executor". Callers hold s.mu.
func (s *Server) start(it *queueItem) {
	if it.left || it.blocked {
		return
	}
	j := it.job
	b := &build{job: j, number: j.nextNumber, queueID: it.id, params: it.params, start: time.Now(), building: true}
	j.nextNumber++
	j.builds = append(j.builds, b)
	it.left, it.build = true, b
	s.expireLater(it)
	// JobListener.onStarted emits QUEUED and STARTED back to back.
	s.notify(b, "QUEUED")
	s.notify(b, "STARTED")
	if !s.opts.ManualFinish {
		s.after(s.opts.BuildDuration, func() {
			if b.building {
				s.finish(b, "")
			}
		})
	}
}

// finish completes a build. Callers hold s.mu.
func (s *Server) finish(b *build, result string) {
	if result == "" {
		result = b.job.result
	}
	if result == "" && s.opts.Results != nil {
		result = s.opts.Results(b.job.name, paramMap(b.params))
	}
	if result == "" {
		result = Success
	}
	b.building, b.result, b.end = false, result, time.Now()
	s.notify(b, "COMPLETED")
	s.notify(b, "FINALIZED")
}

func (s *Server) expireLater(it *queueItem) {
	s.after(s.opts.QueueRetention, func() { delete(s.items, it.id) })
}

// resolveParams implements ParametersDefinitionProperty.buildWithParameters:
// defined parameters only, in definition order, defaults for missing ones,
// a parameter given twice is an error.
func resolveParams(def Job, form map[string][]string) ([]param, error) {
	out := make([]param, 0, len(def.Parameters))
	for _, name := range def.Parameters {
		vals := form[name]
		switch len(vals) {
		case 0:
			out = append(out, param{name, def.Defaults[name]})
		case 1:
			out = append(out, param{name, vals[0]})
		default:
			return nil, fmt.Errorf("Illegal number of parameter values for %s: %d", name, len(vals))
		}
	}
	return out, nil
}

func paramMap(ps []param) map[string]string {
	m := make(map[string]string, len(ps))
	for _, p := range ps {
		m[p.name] = p.value
	}
	return m
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return hex.EncodeToString(b)
}

// jobURLPath is "/job/a/job/b/" for "a/b".
func jobURLPath(fullName string) string {
	var sb strings.Builder
	for _, seg := range strings.Split(fullName, "/") {
		sb.WriteString("/job/")
		sb.WriteString(pathEscape(seg))
	}
	sb.WriteString("/")
	return sb.String()
}
