package jenkins

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// QueueRef names a queue item: its id and the URL Jenkins gave in Location.
type QueueRef struct {
	ID  int64
	URL string
	// Merged is true when Jenkins folded the request into an identical item
	// already waiting (303 See Other) instead of queueing a new one.
	Merged bool
}

// QueueItem is the state of a queue item (/queue/item/N/api/json).
type QueueItem struct {
	ID        int64
	Class     string // hudson.model.Queue$WaitingItem, $BlockedItem, $BuildableItem, $LeftItem
	Why       string // why it is still waiting; "" once left
	Blocked   bool
	Buildable bool
	Stuck     bool
	Left      bool // left the queue: started (BuildNumber > 0) or cancelled
	Cancelled bool
	// BuildNumber and BuildURL are set once the item started (executable).
	BuildNumber int
	BuildURL    string
	Parameters  map[string]string
}

// Started reports whether the item became a build.
func (q QueueItem) Started() bool { return q.BuildNumber > 0 }

// BuildInfo is a build's state (/job/.../N/api/json).
type BuildInfo struct {
	Number     int
	URL        string
	Building   bool
	Result     string // "" while building; SUCCESS, UNSTABLE, FAILURE, NOT_BUILT, ABORTED
	Duration   time.Duration
	Timestamp  time.Time // start
	QueueID    int64
	Parameters map[string]string
}

// Done reports whether the build finished (Jenkins: building false and a result set).
func (b BuildInfo) Done() bool { return !b.Building && b.Result != "" }

// Found is what FindBuild found: exactly one of Queue and Build is set.
type Found struct {
	Queue *QueueRef  // an item still waiting in the queue
	Build *BuildInfo // a build (running or finished)
}

// Trigger queues job (full name "folder/job") with params via
// POST .../buildWithParameters. A 201 and a 303 (merged into an identical
// waiting item) both return the item named by Location.
func (c *Client) Trigger(ctx context.Context, job string, params map[string]string) (QueueRef, error) {
	p, err := JobPath(job)
	if err != nil {
		return QueueRef{}, fmt.Errorf("jenkins trigger: %w", err)
	}
	form := url.Values{}
	for k, v := range params {
		form.Set(k, v)
	}
	r, err := c.do(ctx, http.MethodPost, p+"/buildWithParameters", form)
	if err != nil {
		return QueueRef{}, fmt.Errorf("jenkins trigger job %q: %w", job, err)
	}
	if r.status != http.StatusCreated && r.status != http.StatusSeeOther {
		return QueueRef{}, c.httpError(opTrigger, job, r)
	}
	loc := r.header.Get("Location")
	id, err := queueIDFromURL(loc)
	if err != nil {
		return QueueRef{}, fmt.Errorf("jenkins trigger job %q: HTTP %d Location header: %w", job, r.status, err)
	}
	return QueueRef{ID: id, URL: loc, Merged: r.status == http.StatusSeeOther}, nil
}

// queueIDFromURL takes the id out of ".../queue/item/<id>/".
func queueIDFromURL(loc string) (int64, error) {
	u, err := url.Parse(loc)
	if err != nil {
		return 0, fmt.Errorf("%q: %w", loc, err)
	}
	segs := strings.Split(strings.Trim(u.Path, "/"), "/")
	n := len(segs)
	if n < 3 || segs[n-3] != "queue" || segs[n-2] != "item" {
		return 0, fmt.Errorf("%q is not a queue item URL", loc)
	}
	id, err := strconv.ParseInt(segs[n-1], 10, 64)
	if err != nil || id <= 0 {
		return 0, fmt.Errorf("%q: bad queue item id %q", loc, segs[n-1])
	}
	return id, nil
}

// ParseQueueRef rebuilds a QueueRef from a stored Location URL.
func ParseQueueRef(loc string) (QueueRef, error) {
	id, err := queueIDFromURL(loc)
	if err != nil {
		return QueueRef{}, fmt.Errorf("jenkins queue ref: %w", err)
	}
	return QueueRef{ID: id, URL: loc}, nil
}

// Wire shapes: only what we read.
type (
	wireParam struct {
		Name  string          `json:"name"`
		Value json.RawMessage `json:"value"`
	}
	wireAction struct {
		Parameters []wireParam `json:"parameters"`
	}
	wireItem struct {
		Class      string       `json:"_class"`
		ID         int64        `json:"id"`
		Why        *string      `json:"why"`
		Blocked    bool         `json:"blocked"`
		Buildable  bool         `json:"buildable"`
		Stuck      bool         `json:"stuck"`
		Cancelled  *bool        `json:"cancelled"`
		Actions    []wireAction `json:"actions"`
		Task       struct{ Name, URL string }
		Executable *struct {
			Number int    `json:"number"`
			URL    string `json:"url"`
		} `json:"executable"`
	}
	wireBuild struct {
		Number    int          `json:"number"`
		URL       string       `json:"url"`
		Building  bool         `json:"building"`
		Result    *string      `json:"result"`
		Duration  int64        `json:"duration"`
		Timestamp int64        `json:"timestamp"`
		QueueID   int64        `json:"queueId"`
		Actions   []wireAction `json:"actions"`
	}
)

// paramsOf collects the ParametersAction values. The _class is not required:
// older cores omit it (fixture api-build-info.json). Non-string values
// (booleans) keep their JSON text.
func paramsOf(actions []wireAction) map[string]string {
	out := map[string]string{}
	for _, a := range actions {
		for _, p := range a.Parameters {
			var s string
			if err := json.Unmarshal(p.Value, &s); err != nil {
				s = string(p.Value)
				if s == "null" {
					s = ""
				}
			}
			out[p.Name] = s
		}
	}
	return out
}

func (w wireItem) item() QueueItem {
	q := QueueItem{
		ID: w.ID, Class: w.Class, Blocked: w.Blocked, Buildable: w.Buildable, Stuck: w.Stuck,
		Left:       strings.HasSuffix(w.Class, "$LeftItem") || w.Cancelled != nil,
		Parameters: paramsOf(w.Actions),
	}
	if w.Why != nil {
		q.Why = *w.Why
	}
	if w.Cancelled != nil {
		q.Cancelled = *w.Cancelled
	}
	if w.Executable != nil {
		q.BuildNumber, q.BuildURL = w.Executable.Number, w.Executable.URL
	}
	return q
}

func (w wireBuild) info() BuildInfo {
	b := BuildInfo{
		Number: w.Number, URL: w.URL, Building: w.Building,
		Duration:   time.Duration(w.Duration) * time.Millisecond,
		QueueID:    w.QueueID,
		Parameters: paramsOf(w.Actions),
	}
	if w.Timestamp > 0 {
		b.Timestamp = time.UnixMilli(w.Timestamp)
	}
	if w.Result != nil {
		b.Result = *w.Result
	}
	return b
}

// QueueItem reads the item's state. An item that left the queue stays
// readable for about 5 minutes; after that Jenkins answers 404, returned as
// an *Error matching ErrQueueItemGone (find the build with FindBuild then).
func (c *Client) QueueItem(ctx context.Context, q QueueRef) (QueueItem, error) {
	if q.ID <= 0 {
		return QueueItem{}, fmt.Errorf("jenkins queue item: bad id %d", q.ID)
	}
	var w wireItem
	if err := c.getJSON(ctx, opQueueItem, "", fmt.Sprintf("/queue/item/%d/api/json", q.ID), &w); err != nil {
		return QueueItem{}, err
	}
	return w.item(), nil
}

// Build reads build number of job.
func (c *Client) Build(ctx context.Context, job string, number int) (BuildInfo, error) {
	p, err := JobPath(job)
	if err != nil {
		return BuildInfo{}, fmt.Errorf("jenkins build: %w", err)
	}
	if number <= 0 {
		return BuildInfo{}, fmt.Errorf("jenkins build job %q: bad build number %d", job, number)
	}
	var w wireBuild
	if err := c.getJSON(ctx, opBuild, job, fmt.Sprintf("%s/%d/api/json", p, number), &w); err != nil {
		return BuildInfo{}, err
	}
	return w.info(), nil
}

const (
	queueTree = "items[_class,id,url,why,blocked,buildable,stuck,task[name,url],actions[parameters[name,value]]]"
	buildTree = "builds[number,url,building,result,duration,timestamp,queueId,actions[parameters[name,value]]]{0,50}"
)

// FindBuild looks for a queued item or one of the last 50 builds of job whose
// parameter param equals value (a run id), so that a restarted caller can
// adopt it instead of triggering again. It returns (nil, nil) when there is none.
//
// The queue is read before the builds: an item that leaves the queue between
// the two reads is already a build by the second, so it cannot be missed.
func (c *Client) FindBuild(ctx context.Context, job, param, value string) (*Found, error) {
	p, err := JobPath(job)
	if err != nil {
		return nil, fmt.Errorf("jenkins find build: %w", err)
	}
	var queue struct {
		Items []wireItem `json:"items"`
	}
	if err := c.getJSON(ctx, opFind, "", "/queue/api/json?tree="+url.QueryEscape(queueTree), &queue); err != nil {
		return nil, err
	}
	for _, it := range queue.Items {
		if !sameJob(it.Task.URL, p) {
			continue
		}
		if v, ok := paramsOf(it.Actions)[param]; ok && v == value {
			return &Found{Queue: &QueueRef{ID: it.ID, URL: c.base.String() + "/queue/item/" + strconv.FormatInt(it.ID, 10) + "/"}}, nil
		}
	}
	var jobInfo struct {
		Builds []wireBuild `json:"builds"`
	}
	if err := c.getJSON(ctx, opFind, job, p+"/api/json?tree="+url.QueryEscape(buildTree), &jobInfo); err != nil {
		return nil, err
	}
	for _, b := range jobInfo.Builds { // newest first
		info := b.info()
		if v, ok := info.Parameters[param]; ok && v == value {
			return &Found{Build: &info}, nil
		}
	}
	return nil, nil
}

// sameJob compares a queue task URL (absolute, under Jenkins' own root URL,
// which may differ from ours) with our job path from the first "/job/" on.
func sameJob(taskURL, jobPath string) bool {
	u, err := url.Parse(taskURL)
	if err != nil {
		return false
	}
	p := u.EscapedPath()
	i := strings.Index(p, "/job/")
	if i < 0 {
		return false
	}
	got, err1 := url.PathUnescape(strings.TrimSuffix(p[i:], "/"))
	want, err2 := url.PathUnescape(jobPath)
	return err1 == nil && err2 == nil && got == want
}
