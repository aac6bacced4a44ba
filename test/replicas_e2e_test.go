package test

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dockmaster/dockmaster/internal/store/pgtest"
	"github.com/dockmaster/dockmaster/internal/testenv"
	"github.com/dockmaster/dockmaster/test/jenkinsemu"
)

// logHas reports whether a server's log contains s.
func logHas(srv *testenv.Server, s string) bool {
	b, _ := os.ReadFile(filepath.Join(srv.Dir, "serve.log"))
	return strings.Contains(string(b), s)
}

const leadingMsg = "leader election: leading"

// TestReplicasHandOverMidPipeline: two replicas share one PostgreSQL
// database. The follower takes the push and the Jenkins notification; the
// leader runs the pipeline until it is killed (SIGKILL) while the test
// stage waits in Jenkins. The follower takes over and finishes the run
// exactly once: one Jenkins trigger, one run, one ticket.
func TestReplicasHandOverMidPipeline(t *testing.T) {
	url := pgtest.URL(t)
	emu := jenkinsemu.New(t, jenkinsemu.Options{User: "ci", Token: "tok", RequireCrumb: true,
		QueueDelay: 50 * time.Millisecond, ManualFinish: true})
	emu.AddJob(testJob, jenkinsemu.Job{Parameters: []string{"GIT_URL", "BRANCH", "GIT_COMMIT", "VERSION", "DOCKMASTER_RUN"}})
	cloneURL, sha := "https://git.example/acme/java-service-1.git", strings.Repeat("ab", 20)
	config := fmt.Sprintf(`webhooks:
  secrets:
    github: %s
    jenkins: %s
pipeline:
  jenkins_poll_after: 2s
  jenkins: {url: %s, user: ci, token: tok}
  apps:
    - name: JavaService1
      repo: {url: "%s", full_name: acme/java-service-1}
      rules:
        - {branch: "release/*", environment: prod}
      environments: [prod]
      stages:
        test: {executor: jenkins, job: %s}
        build: {executor: none}
environments:
  - name: prod
`, githubSecret, jenkinsSecret, emu.URL(), cloneURL, testJob)

	a := testenv.StartReplica(t, url, config)
	waitFor(t, "replica a to lead", 15*time.Second, func() bool { return logHas(a, leadingMsg) })
	b := testenv.StartReplica(t, url, config)
	time.Sleep(2 * time.Second) // several election rounds: b must stay a follower
	if logHas(b, leadingMsg) {
		t.Fatal("b leads while a does")
	}

	// Everything enters through the follower.
	emu.SetNotify(b.URL+"/webhooks/jenkins?token="+jenkinsSecret, nil)
	admin := b.Admin()
	signedPush(t, b.URL, cloneURL, "release/1.0.1", sha)
	waitFor(t, "the leader to trigger the test job", 30*time.Second, func() bool {
		runs := listRuns(admin)
		return len(runs) == 1 && runs[0].State == "testing" && len(emu.Builds(testJob)) == 1
	})

	a.Kill()
	killed := time.Now()
	if err := emu.Complete(testJob, 1, "SUCCESS"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "b to take over", 15*time.Second, func() bool { return logHas(b, leadingMsg) })
	t.Logf("b leads %v after the kill", time.Since(killed).Round(100*time.Millisecond))

	var run e2eRun
	waitFor(t, "the run to reach ticketed on b", 60*time.Second, func() bool {
		runs := listRuns(admin)
		if len(runs) == 1 {
			run = runs[0]
		}
		if run.State == "failed" {
			t.Fatalf("run failed: %s", run.Reason)
		}
		return run.State == "ticketed"
	})
	time.Sleep(2 * time.Second) // anything run twice would show by now
	if n := len(listRuns(admin)); n != 1 {
		t.Fatalf("%d runs, want 1", n)
	}
	if n := emu.TriggerCount(testJob); n != 1 {
		t.Fatalf("%d Jenkins triggers, want 1", n)
	}
	var tickets []struct{ Key, Version, Environment string }
	if st := admin.Do("GET", "/api/v1/tickets", nil, &tickets); st != http.StatusOK {
		t.Fatalf("tickets: status %d", st)
	}
	if len(tickets) != 1 || tickets[0].Key != "DEPLOY-1" || tickets[0].Version != "1.0.1" {
		t.Fatalf("tickets %+v, want DEPLOY-1 for 1.0.1 only", tickets)
	}
}
