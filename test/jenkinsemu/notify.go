package jenkinsemu

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Notification is one Notification-plugin POST the emulator made.
type Notification struct {
	Job    string
	Number int
	Phase  string // QUEUED, STARTED, COMPLETED, FINALIZED
	Body   []byte
	Status int   // HTTP status of the receiver's answer; 0 on transport error
	Err    error // transport error, if any
}

// Payload shapes follow jenkinsci/notification-plugin model/JobState.java and
// BuildState.java, serialised by Gson with LOWER_CASE_WITH_UNDERSCORES and
// null fields omitted.
type jobState struct {
	Name        string     `json:"name"`
	DisplayName string     `json:"display_name"`
	URL         string     `json:"url"`
	Build       buildState `json:"build"`
}

type buildState struct {
	FullURL     string            `json:"full_url"`
	Number      int               `json:"number"`
	QueueID     int               `json:"queue_id"`
	Timestamp   int64             `json:"timestamp"`
	Duration    int64             `json:"duration"`
	Phase       string            `json:"phase"`
	Status      string            `json:"status,omitempty"`
	URL         string            `json:"url"`
	DisplayName string            `json:"display_name"`
	SCM         *SCM              `json:"scm,omitempty"`
	Parameters  map[string]string `json:"parameters"`
	Log         string            `json:"log"`
	Notes       string            `json:"notes"`
}

// notify queues a notification for b's phase. Callers hold s.mu, which keeps
// the phases of all builds in the order they happened.
func (s *Server) notify(b *build, phase string) {
	if s.opts.NotifyURL == "" {
		return
	}
	rel := strings.TrimPrefix(jobURLPath(b.job.name), "/")
	st := buildState{
		FullURL:     s.buildURL(b),
		Number:      b.number,
		QueueID:     b.queueID,
		Timestamp:   b.start.UnixMilli(),
		Phase:       phase,
		URL:         rel + itoa(b.number) + "/",
		DisplayName: "#" + itoa(b.number),
		Parameters:  paramMap(b.params),
	}
	if !b.building {
		st.Status = b.result
		st.Duration = b.end.Sub(b.start).Milliseconds()
	}
	if s.opts.SCM != nil {
		st.SCM = s.opts.SCM(b.job.name, paramMap(b.params))
	}
	body, err := json.Marshal(jobState{Name: shortName(b.job.name), DisplayName: shortName(b.job.name), URL: rel, Build: st})
	if err != nil {
		panic("jenkinsemu: marshal notification: " + err.Error()) // plain structs: cannot fail
	}
	s.notifier.push(Notification{Job: b.job.name, Number: b.number, Phase: phase, Body: body})
}

// notifier delivers notifications one at a time, in order, off the server lock.
type notifier struct {
	url     string
	headers http.Header
	client  *http.Client
	ctx     context.Context
	cancel  context.CancelFunc

	mu      sync.Mutex
	pending []Notification
	done    []Notification
	wake    chan struct{}
	stop    chan struct{}
	stopped chan struct{}
}

func newNotifier(url string, headers http.Header) *notifier {
	ctx, cancel := context.WithCancel(context.Background())
	n := &notifier{
		url: url, headers: headers.Clone(),
		client: &http.Client{Timeout: 5 * time.Second},
		ctx:    ctx, cancel: cancel,
		wake: make(chan struct{}, 1), stop: make(chan struct{}), stopped: make(chan struct{}),
	}
	go n.loop()
	return n
}

func (n *notifier) push(x Notification) {
	n.mu.Lock()
	n.pending = append(n.pending, x)
	n.mu.Unlock()
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

func (n *notifier) sent() []Notification {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]Notification(nil), n.done...)
}

func (n *notifier) loop() {
	defer close(n.stopped)
	for {
		n.mu.Lock()
		if len(n.pending) > 0 {
			next := n.pending[0]
			n.pending = n.pending[1:]
			n.mu.Unlock()
			n.deliver(&next)
			n.mu.Lock()
			n.done = append(n.done, next)
			n.mu.Unlock()
			continue
		}
		n.mu.Unlock()
		select {
		case <-n.wake:
		case <-n.stop:
			return
		}
	}
}

// SetNotify points the Notification plugin at url (with headers) from now
// on, for tests that learn the receiver's address after the emulator starts.
func (s *Server) SetNotify(url string, headers http.Header) {
	s.mu.Lock()
	s.opts.NotifyURL = url
	s.mu.Unlock()
	s.notifier.mu.Lock()
	s.notifier.url, s.notifier.headers = url, headers.Clone()
	s.notifier.mu.Unlock()
}

func (n *notifier) deliver(x *Notification) {
	n.mu.Lock()
	url, headers := n.url, n.headers
	n.mu.Unlock()
	req, err := http.NewRequestWithContext(n.ctx, http.MethodPost, url, bytes.NewReader(x.Body))
	if err != nil {
		x.Err = err
		return
	}
	for k, vs := range headers {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	req.Header.Set("Content-Type", "application/json;charset=UTF-8")
	req.Header.Set("User-Agent", "Java/17.0.9")
	resp, err := n.client.Do(req)
	if err != nil {
		x.Err = err
		return
	}
	x.Status = resp.StatusCode
	_ = resp.Body.Close()
}

// close delivers what is already queued, then stops.
func (n *notifier) close() {
	close(n.stop)
	<-n.stopped
	n.mu.Lock()
	rest := n.pending
	n.pending = nil
	n.mu.Unlock()
	for i := range rest {
		n.deliver(&rest[i])
		n.mu.Lock()
		n.done = append(n.done, rest[i])
		n.mu.Unlock()
	}
	n.cancel()
}

func itoa(n int) string { return strconv.Itoa(n) }
