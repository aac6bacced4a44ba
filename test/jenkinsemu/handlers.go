package jenkinsemu

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"html"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

const (
	crumbField  = "Jenkins-Crumb"
	noCrumbText = "No valid crumb was included in the request"
)

func pathEscape(s string) string { return url.PathEscape(s) }

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	user, ok := s.authenticate(r)
	if !ok {
		w.Header().Set("WWW-Authenticate", `Basic realm="Jenkins"`)
		jettyError(w, http.StatusUnauthorized, "Invalid password/token for user: "+user)
		return
	}
	segs, err := splitPath(r.URL.EscapedPath())
	if err != nil {
		jettyError(w, http.StatusBadRequest, err.Error())
		return
	}
	if r.Method == http.MethodPost && !s.crumbOK(r, user) {
		jettyError(w, http.StatusForbidden, noCrumbText)
		return
	}
	switch {
	case pathIs(segs, "crumbIssuer", "api", "json"):
		s.serveCrumb(w, r, user)
	case pathIs(segs, "queue", "api", "json"):
		s.serveQueue(w, r)
	case len(segs) == 5 && pathIs(segs[:2], "queue", "item") && pathIs(segs[3:], "api", "json"):
		s.serveQueueItem(w, r, segs[2])
	case len(segs) >= 2 && segs[0] == "job":
		s.serveJob(w, r, segs)
	default:
		jettyError(w, http.StatusNotFound, "Not Found")
	}
}

// authenticate checks HTTP Basic user:token when security is on.
func (s *Server) authenticate(r *http.Request) (string, bool) {
	if s.opts.User == "" {
		return "anonymous", true
	}
	u, p, ok := r.BasicAuth()
	if !ok {
		return "anonymous", false
	}
	good := subtle.ConstantTimeCompare([]byte(u), []byte(s.opts.User)) == 1 &&
		subtle.ConstantTimeCompare([]byte(p), []byte(s.opts.Token)) == 1
	return u, good
}

// crumbOK follows DefaultCrumbIssuer since SECURITY-626: the crumb is a hash of
// user, session id and salt, so it is only valid with the session cookie it was issued with.
func (s *Server) crumbOK(r *http.Request, user string) bool {
	if !s.opts.RequireCrumb {
		return true
	}
	got := r.Header.Get(crumbField)
	if got == "" {
		got = r.URL.Query().Get(crumbField)
	}
	if got == "" {
		return false
	}
	for _, c := range r.Cookies() {
		if !strings.HasPrefix(c.Name, "JSESSIONID.") {
			continue
		}
		s.mu.Lock()
		known := s.sessions[c.Value] == user
		s.mu.Unlock()
		if known && subtle.ConstantTimeCompare([]byte(got), []byte(s.crumb(user, c.Value))) == 1 {
			return true
		}
	}
	return false
}

func (s *Server) crumb(user, session string) string {
	sum := sha256.Sum256([]byte(user + ";" + session + ";" + s.salt))
	return hex.EncodeToString(sum[:])
}

func (s *Server) serveCrumb(w http.ResponseWriter, r *http.Request, user string) {
	if r.Method != http.MethodGet {
		jettyError(w, http.StatusMethodNotAllowed, "Method Not Allowed")
		return
	}
	session := ""
	for _, c := range r.Cookies() {
		if strings.HasPrefix(c.Name, "JSESSIONID.") {
			s.mu.Lock()
			if s.sessions[c.Value] == user {
				session = c.Value
			}
			s.mu.Unlock()
		}
	}
	if session == "" {
		session = "node0" + randomHex(12) + ".node0"
		s.mu.Lock()
		s.sessions[session] = user
		s.mu.Unlock()
		http.SetCookie(w, &http.Cookie{Name: "JSESSIONID." + s.salt[:8], Value: session, Path: "/", HttpOnly: true})
	}
	writeJSON(w, r, http.StatusOK, map[string]any{
		"_class":            "hudson.security.csrf.DefaultCrumbIssuer",
		"crumb":             s.crumb(user, session),
		"crumbRequestField": crumbField,
	})
}

func (s *Server) serveQueue(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	items := []any{}
	for id := 1; id < s.nextItem; id++ {
		if it, ok := s.items[id]; ok && !it.left {
			items = append(items, s.itemJSON(it))
		}
	}
	s.mu.Unlock()
	writeJSON(w, r, http.StatusOK, map[string]any{
		"_class":            "hudson.model.Queue",
		"discoverableItems": []any{},
		"items":             items,
	})
}

func (s *Server) serveQueueItem(w http.ResponseWriter, r *http.Request, idSeg string) {
	id, err := strconv.Atoi(idSeg)
	if err != nil {
		jettyError(w, http.StatusNotFound, "Not Found")
		return
	}
	s.mu.Lock()
	it, ok := s.items[id]
	var body map[string]any
	if ok {
		body = s.itemJSON(it)
	}
	s.mu.Unlock()
	if !ok {
		jettyError(w, http.StatusNotFound, "Not Found")
		return
	}
	writeJSON(w, r, http.StatusOK, body)
}

// serveJob handles /job/a/job/b/<rest>.
func (s *Server) serveJob(w http.ResponseWriter, r *http.Request, segs []string) {
	var names []string
	for len(segs) >= 2 && segs[0] == "job" {
		names = append(names, segs[1])
		segs = segs[2:]
	}
	full := strings.Join(names, "/")
	s.mu.Lock()
	j, ok := s.jobs[full]
	s.mu.Unlock()
	if !ok {
		jettyError(w, http.StatusNotFound, "Not Found")
		return
	}
	switch {
	case pathIs(segs, "buildWithParameters"), pathIs(segs, "build"):
		s.serveTrigger(w, r, j, segs[0] == "build")
	case pathIs(segs, "api", "json"):
		s.mu.Lock()
		body := s.jobJSON(j, r.URL.Query().Get("tree") != "")
		s.mu.Unlock()
		writeJSON(w, r, http.StatusOK, body)
	case len(segs) == 3 && pathIs(segs[1:], "api", "json"):
		s.serveBuild(w, r, j, segs[0])
	default:
		jettyError(w, http.StatusNotFound, "Not Found")
	}
}

func (s *Server) serveTrigger(w http.ResponseWriter, r *http.Request, j *job, plain bool) {
	// RequirePOST: a GET without a trigger token is refused.
	if r.Method != http.MethodPost {
		jettyError(w, http.StatusMethodNotAllowed, "This URL requires POST")
		return
	}
	if err := r.ParseForm(); err != nil {
		jettyError(w, http.StatusBadRequest, err.Error())
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if j.def.Disabled {
		jettyError(w, http.StatusConflict, j.name+" is not buildable")
		return
	}
	parameterised := len(j.def.Parameters) > 0
	switch {
	case !plain && !parameterised:
		jettyError(w, http.StatusBadRequest, j.name+" is not parameterized")
		return
	case plain && parameterised:
		// /build on a parameterised job expects the UI's JSON form submission.
		jettyError(w, http.StatusBadRequest, "Nothing is submitted")
		return
	}
	params, err := resolveParams(j.def, r.Form)
	if err != nil {
		jettyError(w, http.StatusBadRequest, err.Error())
		return
	}
	it, created := s.enqueue(j, params)
	s.triggers[j.name]++
	w.Header().Set("Location", s.srv.URL+"/queue/item/"+strconv.Itoa(it.id)+"/")
	if created || plain { // /build answers 201 even when merged (JENKINS-66105)
		w.WriteHeader(http.StatusCreated)
		return
	}
	w.WriteHeader(http.StatusSeeOther)
}

func (s *Server) serveBuild(w http.ResponseWriter, r *http.Request, j *job, numSeg string) {
	n, err := strconv.Atoi(numSeg)
	if err != nil {
		jettyError(w, http.StatusNotFound, "Not Found")
		return
	}
	s.mu.Lock()
	var body map[string]any
	for _, b := range j.builds {
		if b.number == n {
			body = s.buildJSON(b)
		}
	}
	s.mu.Unlock()
	if body == nil {
		jettyError(w, http.StatusNotFound, "Not Found")
		return
	}
	writeJSON(w, r, http.StatusOK, body)
}

// JSON models. Callers hold s.mu.

func (s *Server) jobURL(j *job) string { return s.srv.URL + jobURLPath(j.name) }

func shortName(full string) string { return full[strings.LastIndexByte(full, '/')+1:] }

func (s *Server) taskJSON(j *job) map[string]any {
	return map[string]any{
		"_class": "hudson.model.FreeStyleProject",
		"name":   shortName(j.name),
		"url":    s.jobURL(j),
		"color":  s.color(j),
	}
}

func (s *Server) color(j *job) string {
	if j.def.Disabled {
		return "disabled"
	}
	c := "notbuilt"
	var last *build
	for _, b := range j.builds {
		if !b.building {
			last = b
		}
	}
	if last != nil {
		switch last.result {
		case Success:
			c = "blue"
		case Unstable:
			c = "yellow"
		case Aborted:
			c = "aborted"
		default:
			c = "red"
		}
	}
	if len(j.builds) > 0 && j.builds[len(j.builds)-1].building {
		c += "_anime"
	}
	return c
}

func paramsActions(ps []param) []any {
	vals := make([]any, 0, len(ps))
	for _, p := range ps {
		vals = append(vals, map[string]any{"_class": "hudson.model.StringParameterValue", "name": p.name, "value": p.value})
	}
	return []any{
		map[string]any{"_class": "hudson.model.ParametersAction", "parameters": vals},
		map[string]any{"_class": "hudson.model.CauseAction", "causes": []any{map[string]any{
			"_class":           "hudson.model.Cause$UserIdCause",
			"shortDescription": "Started by user emulator",
			"userId":           "emulator",
			"userName":         "emulator",
		}}},
	}
}

// itemJSON follows Queue.Item's @Exported getters and LeftItem's extras.
func (s *Server) itemJSON(it *queueItem) map[string]any {
	var ps strings.Builder
	for _, p := range it.params {
		ps.WriteString("\n" + p.name + "=" + p.value)
	}
	m := map[string]any{
		"actions":      paramsActions(it.params),
		"blocked":      false,
		"buildable":    false,
		"id":           it.id,
		"inQueueSince": it.since.UnixMilli(),
		"params":       ps.String(),
		"stuck":        false,
		"task":         s.taskJSON(it.job),
		"url":          "queue/item/" + strconv.Itoa(it.id) + "/",
		"why":          nil,
	}
	switch {
	case it.left:
		m["_class"] = "hudson.model.Queue$LeftItem"
		m["cancelled"] = it.cancelled
		m["executable"] = nil
		if it.build != nil {
			m["executable"] = map[string]any{
				"_class": "hudson.model.FreeStyleBuild",
				"number": it.build.number,
				"url":    s.buildURL(it.build),
			}
		}
	case it.blocked:
		m["_class"] = "hudson.model.Queue$BlockedItem"
		m["blocked"] = true
		m["why"] = it.job.holdWhy
		m["buildableStartMilliseconds"] = it.since.UnixMilli()
	default:
		m["_class"] = "hudson.model.Queue$WaitingItem"
		due := it.since.Add(s.opts.QueueDelay)
		m["timestamp"] = due.UnixMilli()
		m["why"] = fmt.Sprintf("In the quiet period. Expires in %d ms", max(0, time.Until(due).Milliseconds()))
	}
	return m
}

func (s *Server) buildURL(b *build) string {
	return s.jobURL(b.job) + strconv.Itoa(b.number) + "/"
}

// buildJSON follows Run's @Exported getters (see fixture api-build-info.json).
func (s *Server) buildJSON(b *build) map[string]any {
	var result any
	duration := int64(0)
	if !b.building {
		result = b.result
		duration = b.end.Sub(b.start).Milliseconds()
	}
	display := strings.ReplaceAll(b.job.name, "/", " » ")
	return map[string]any{
		"_class":            "hudson.model.FreeStyleBuild",
		"actions":           paramsActions(b.params),
		"artifacts":         []any{},
		"building":          b.building,
		"description":       nil,
		"displayName":       "#" + strconv.Itoa(b.number),
		"duration":          duration,
		"estimatedDuration": s.opts.BuildDuration.Milliseconds(),
		"executor":          nil,
		"fullDisplayName":   display + " #" + strconv.Itoa(b.number),
		"id":                strconv.Itoa(b.number),
		"inProgress":        b.building,
		"keepLog":           false,
		"number":            b.number,
		"queueId":           b.queueID,
		"result":            result,
		"timestamp":         b.start.UnixMilli(),
		"url":               s.buildURL(b),
		"builtOn":           "",
		"changeSet":         map[string]any{"_class": "hudson.scm.EmptyChangeLogSet", "items": []any{}, "kind": nil},
		"culprits":          []any{},
	}
}

// jobJSON follows Job's exports. Without a tree, builds are shallow
// ({_class, number, url}) as at Jenkins' default depth 0.
func (s *Server) jobJSON(j *job, deep bool) map[string]any {
	builds := []any{}
	for i := len(j.builds) - 1; i >= 0; i-- { // newest first, as Jenkins lists them
		b := j.builds[i]
		if deep {
			builds = append(builds, s.buildJSON(b))
		} else {
			builds = append(builds, map[string]any{"_class": "hudson.model.FreeStyleBuild", "number": b.number, "url": s.buildURL(b)})
		}
	}
	inQueue := false
	for _, it := range s.items {
		if it.job == j && !it.left {
			inQueue = true
		}
	}
	defs := []any{}
	for _, p := range j.def.Parameters {
		defs = append(defs, map[string]any{
			"_class":                "hudson.model.StringParameterDefinition",
			"name":                  p,
			"type":                  "StringParameterDefinition",
			"defaultParameterValue": map[string]any{"_class": "hudson.model.StringParameterValue", "name": p, "value": j.def.Defaults[p]},
		})
	}
	props := []any{}
	if len(defs) > 0 {
		props = append(props, map[string]any{"_class": "hudson.model.ParametersDefinitionProperty", "parameterDefinitions": defs})
	}
	return map[string]any{
		"_class":          "hudson.model.FreeStyleProject",
		"name":            shortName(j.name),
		"fullName":        j.name,
		"displayName":     shortName(j.name),
		"url":             s.jobURL(j),
		"buildable":       !j.def.Disabled,
		"color":           s.color(j),
		"inQueue":         inQueue,
		"nextBuildNumber": j.nextNumber,
		"builds":          builds,
		"property":        props,
	}
}

// writeJSON applies ?tree= like hudson.model.Api and writes the body.
func writeJSON(w http.ResponseWriter, r *http.Request, status int, v map[string]any) {
	var out any = v
	if tree := r.URL.Query().Get("tree"); tree != "" {
		fields, err := parseTree(tree)
		if err != nil {
			jettyError(w, http.StatusBadRequest, err.Error())
			return
		}
		out = prune(v, fields)
	}
	body, err := json.Marshal(out)
	if err != nil {
		jettyError(w, http.StatusInternalServerError, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json;charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// jettyError writes an error page shaped like Jetty's (which Jenkins uses for sendError).
func jettyError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/html;charset=iso-8859-1")
	w.Header().Set("Cache-Control", "must-revalidate,no-cache,no-store")
	w.WriteHeader(status)
	m := html.EscapeString(msg)
	fmt.Fprintf(w, "<html>\n<head>\n<meta http-equiv=\"Content-Type\" content=\"text/html;charset=ISO-8859-1\"/>\n"+
		"<title>Error %d %s</title>\n</head>\n<body><h2>HTTP ERROR %d %s</h2>\n"+
		"<table>\n<tr><th>URI:</th><td>/</td></tr>\n<tr><th>STATUS:</th><td>%d</td></tr>\n"+
		"<tr><th>MESSAGE:</th><td>%s</td></tr>\n</table>\n</body>\n</html>\n", status, m, status, m, status, m)
}

// splitPath splits an escaped URL path into unescaped segments, dropping empty ones.
func splitPath(escaped string) ([]string, error) {
	var out []string
	for _, seg := range strings.Split(escaped, "/") {
		if seg == "" {
			continue
		}
		u, err := url.PathUnescape(seg)
		if err != nil {
			return nil, fmt.Errorf("bad path segment %q: %w", seg, err)
		}
		out = append(out, u)
	}
	return out, nil
}

func pathIs(segs []string, want ...string) bool {
	if len(segs) != len(want) {
		return false
	}
	for i := range want {
		if segs[i] != want[i] {
			return false
		}
	}
	return true
}
