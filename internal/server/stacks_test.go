package server

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/dockmaster/dockmaster/deployer"
	"github.com/dockmaster/dockmaster/deployer/compose"
	"github.com/dockmaster/dockmaster/internal/auth"
)

// deployKey is a prod member key (deploy permission, basic auth: no CSRF).
func deployKey(t *testing.T, s *accessServer) *creds {
	t.Helper()
	k, err := s.auth.CreateKey(context.Background(), 0, "prod", auth.RoleMember, "ci", "test")
	if err != nil {
		t.Fatal(err)
	}
	return &creds{access: k.AccessKey, secret: k.Secret}
}

func upBody(t *testing.T, in UpRequest) reqOpt {
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	return withBody("application/json", string(b))
}

func TestStackUpRefusesBadInputNamingThePlace(t *testing.T) {
	s := newAccessServer(t, "")
	key := deployKey(t, s)
	for _, tc := range []struct {
		name string
		in   UpRequest
		want string
	}{
		{"no compose", UpRequest{}, "compose: the docker-compose.yml text is required"},
		{"bad yaml line", UpRequest{StackFiles: StackFiles{Compose: "services:\n  web:\n    image: [\n", ComposeFile: "docker/docker-compose.yml"}}, "docker/docker-compose.yml:"},
		{"env_file", UpRequest{StackFiles: StackFiles{Compose: "services:\n  web:\n    image: x\n    env_file: /etc/shadow\n", ComposeFile: "dc.yml"}}, "dc.yml:4: env_file is not supported"},
		{"bad rancher", UpRequest{StackFiles: StackFiles{Compose: "services:\n  web:\n    image: x\n", Rancher: "web:\n  scale: lots\n", RancherFile: "rc.yml"}}, "rc.yml:2"},
		{"negative batch", UpRequest{StackFiles: StackFiles{Compose: "services:\n  web:\n    image: x\n"}, BatchSize: -1}, "batch_size"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := s.do(http.MethodPost, "/api/v1/environments/prod/stacks/app/up", key, upBody(t, tc.in))
			if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), tc.want) {
				t.Fatalf("got %d %s, want 400 containing %q", w.Code, w.Body, tc.want)
			}
		})
	}
	if w := s.do(http.MethodPost, "/api/v1/environments/prod/stacks/app/up", key, withBody("application/json", `{"composee":"x"}`)); w.Code != http.StatusBadRequest ||
		!strings.Contains(w.Body.String(), "composee") {
		t.Fatalf("unknown field: %d %s", w.Code, w.Body)
	}
}

func TestStackUpRefusesWhileHeld(t *testing.T) {
	s := newAccessServer(t, "")
	key := deployKey(t, s)
	ctx := context.Background()
	rec := deployer.ServiceRecord{Env: "prod", Stack: "app", Service: "web", State: deployer.StateActive,
		Spec: deployer.ServiceSpec{Name: "web", Image: "x:1"}, Deployment: "d1", Version: "1"}
	if err := s.db.CreateService(ctx, rec); err != nil {
		t.Fatal(err)
	}
	rec.State, rec.Old, rec.OldDeployment, rec.OldVersion, rec.Version = deployer.StateUpgrading, &rec.Spec, "d1", "1", "2"
	if err := s.db.UpdateService(ctx, rec, deployer.StateActive); err != nil {
		t.Fatal(err)
	}
	rec.State = deployer.StateUpgraded
	if err := s.db.UpdateService(ctx, rec, deployer.StateUpgrading); err != nil {
		t.Fatal(err)
	}
	in := UpRequest{StackFiles: StackFiles{Compose: "services:\n  web:\n    image: x:3\n"}, Upgrade: true, Detach: true}
	w := s.do(http.MethodPost, "/api/v1/environments/prod/stacks/app/up", key, upBody(t, in))
	if w.Code != http.StatusConflict || !strings.Contains(w.Body.String(), "finish or roll back first, or pass --confirm-upgrade") {
		t.Fatalf("second upgrade: %d %s, want 409 with the way out", w.Code, w.Body)
	}
	// Listing shows the held state without touching Docker.
	var list struct{ Stacks []StackSummary }
	s.mustJSON(s.do(http.MethodGet, "/api/v1/environments/prod/stacks", key), http.StatusOK, &list)
	if len(list.Stacks) != 1 || list.Stacks[0].State != "upgraded" || list.Stacks[0].Services[0].OldVersion != "1" {
		t.Fatalf("stacks = %+v", list.Stacks)
	}
}

// TestStackJobStreamsAndDetaches runs finish on an environment without
// hosts: the job ends at once, streamed as NDJSON or polled when detached.
func TestStackJobStreamsAndDetaches(t *testing.T) {
	s := newAccessServer(t, "")
	key := deployKey(t, s)
	w := s.do(http.MethodPost, "/api/v1/environments/prod/stacks/app/finish", key)
	if w.Code != http.StatusOK || w.Header().Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("finish: %d %q %s", w.Code, w.Header().Get("Content-Type"), w.Body)
	}
	var lines []StreamLine
	sc := bufio.NewScanner(w.Body)
	for sc.Scan() {
		var l StreamLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		lines = append(lines, l)
	}
	if len(lines) < 2 || lines[0].Job == "" || lines[len(lines)-1].Result == nil || !lines[len(lines)-1].Result.OK {
		t.Fatalf("stream = %s", w.Body)
	}

	w = s.do(http.MethodPost, "/api/v1/environments/prod/stacks/app/rollback", key, withBody("application/json", `{"detach":true}`))
	var acc struct{ Job string }
	s.mustJSON(w, http.StatusAccepted, &acc)
	deadline := time.Now().Add(5 * time.Second)
	for {
		var j JobJSON
		s.mustJSON(s.do(http.MethodGet, "/api/v1/jobs/"+acc.Job, key), http.StatusOK, &j)
		if j.State == "succeeded" && j.Op == "rollback" && j.Env == "prod" {
			break
		}
		if j.State == "failed" || time.Now().After(deadline) {
			t.Fatalf("job = %+v", j)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// A key of another environment cannot read prod's job.
	other, err := s.auth.CreateKey(context.Background(), 0, "staging", auth.RoleOwner, "ci", "test")
	if err != nil {
		t.Fatal(err)
	}
	if w := s.do(http.MethodGet, "/api/v1/jobs/"+acc.Job, &creds{access: other.AccessKey, secret: other.Secret}); w.Code != http.StatusForbidden {
		t.Fatalf("staging key read prod job: %d %s", w.Code, w.Body)
	}
	if w := s.do(http.MethodGet, "/api/v1/environments/nope/stacks", s.user("root2", true, nil)); w.Code != http.StatusNotFound {
		t.Fatalf("unknown env: %d %s", w.Code, w.Body)
	}
}

func TestStatusOf(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want int
	}{
		{fmt.Errorf("upgrade a/b: %w", deployer.ErrUpgradeHeld), http.StatusConflict},
		{fmt.Errorf("x: %w", deployer.ErrBusy), http.StatusConflict},
		{fmt.Errorf("x: %w", deployer.ErrForeignContainer), http.StatusConflict},
		{fmt.Errorf("x: %w: h1: %w", deployer.ErrHostUnreachable, errors.New("dial")), http.StatusServiceUnavailable},
		{fmt.Errorf("upgrade: %w", &deployer.HealthError{Host: "h1", Container: "c", Reason: "503"}), http.StatusUnprocessableEntity},
		{&compose.Error{File: "dc.yml", Line: 3, Err: errors.New("bad")}, http.StatusBadRequest},
		{fmt.Errorf("x: %w", deployer.ErrNotFound), http.StatusNotFound},
		{errors.New("boom"), http.StatusInternalServerError},
	} {
		if got, msg := statusOf(tc.err); got != tc.want || !strings.Contains(msg, tc.err.Error()) {
			t.Errorf("statusOf(%v) = %d %q, want %d", tc.err, got, msg, tc.want)
		}
	}
}

func TestApplyOverridesForceChangesHash(t *testing.T) {
	spec := &deployer.StackSpec{Services: []deployer.ServiceSpec{{Name: "web", Image: "x:1", Labels: map[string]string{"a": "b"}}}}
	orig := spec.Services[0].Labels
	before := deployer.ConfigHash(spec.Services[0])
	applyOverrides(spec, UpRequest{ForceUpgrade: true, Pull: true, BatchSize: 5, IntervalMS: 1500})
	s := spec.Services[0]
	if deployer.ConfigHash(s) == before || !s.PullAlways || s.Upgrade.BatchSize != 5 || s.Upgrade.Interval != 1500*time.Millisecond {
		t.Fatalf("overrides not applied: %+v", s)
	}
	if _, leaked := orig[forceLabel]; leaked {
		t.Fatal("force label written into the caller's map")
	}
}
