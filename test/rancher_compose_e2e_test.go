package test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dockmaster/dockmaster/internal/testenv"
)

// seedDeployScript is the deploy job's shell step as the rancher-compose
// setup ran it (issue 12). The test changes only the URL (RANCHER_HOST) and
// puts dockmaster on PATH under the name rancher-compose.
const seedDeployScript = `#!/bin/bash
set -e
export RANCHER_URL=http://RANCHER_HOST/v1/projects/1a5
export RANCHER_ACCESS_KEY=${RANCHER_ACCESS_KEY}
export RANCHER_SECRET_KEY=${RANCHER_SECRET_KEY}
app=java-service-1

if [ -f docker/docker-compose.yml ]; then
    docker_dir=docker
elif [ -f /opt/abc/dockerfiles/${app}/docker-compose.yml ]; then
    docker_dir=/opt/abc/dockerfiles/${app}
else
    echo "No docker-compose.yml found. Can't continue!"
    exit 1
fi
if [ ! -f ${docker_dir}/rancher-compose.yml ]; then
    echo "No rancher-compose.yml found. Can't continue!"
    exit 1
fi

export VERSION=${VERSION}
rancher-compose --verbose -f ${docker_dir}/docker-compose.yml -r ${docker_dir}/rancher-compose.yml up -d --upgrade
`

const seedCompose = `java-service-1:
  image: dockmaster-test/web:${VERSION}
  labels:
    io.rancher.container.pull_image: never
`

const seedRancher = `java-service-1:
  scale: 1
  health_check:
    port: 8080
    request_line: GET /healthz HTTP/1.0
    interval: 300
    healthy_threshold: 1
    response_timeout: 1000
    initializing_timeout: 20000
  upgrade_strategy:
    start_first: true
`

// TestRancherComposeDropIn runs the seed's deploy script unchanged but for
// the URL, with a rancher-compose symlink to dockmaster on PATH: it deploys
// java-service-1 to a real host, upgrades it (held), and stops with the
// seed's message when the compose file is missing.
func TestRancherComposeDropIn(t *testing.T) {
	testenv.Docker(t)
	h1 := testenv.StartHost(t, "h1")
	testenv.HTTPServerImage(t, h1.Client, "1.0.0")
	testenv.HTTPServerImage(t, h1.Client, "1.0.1")
	removeOwned(t, h1)
	bin := buildDockmaster(t)
	s := startDockmaster(t, bin, h1)

	pathDir := t.TempDir()
	if err := os.Symlink(bin, filepath.Join(pathDir, "rancher-compose")); err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(t.TempDir(), "deploy.sh")
	if err := os.WriteFile(script, []byte(strings.Replace(seedDeployScript, "RANCHER_HOST", strings.TrimPrefix(s.URL, "http://"), 1)), 0o755); err != nil {
		t.Fatal(err)
	}
	// The Jenkins job: workspace with docker/, key in RANCHER_*, VERSION
	// parameter, project name from the job's environment.
	ws := t.TempDir()
	if err := os.MkdirAll(filepath.Join(ws, "docker"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, text := range map[string]string{"docker-compose.yml": seedCompose, "rancher-compose.yml": seedRancher} {
		if err := os.WriteFile(filepath.Join(ws, "docker", name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	job := func(dir, version string) (string, string, int) {
		s2 := *s
		s2.URL = "" // only RANCHER_* carry the URL and key, as in the seed
		env := []string{"PATH=" + pathDir + ":" + os.Getenv("PATH"), "RANCHER_ACCESS_KEY=" + s.Access,
			"RANCHER_SECRET_KEY=" + s.Secret, "VERSION=" + version, "COMPOSE_PROJECT_NAME=java-service-1"}
		return s2.runCLI(t, dir, env, "/bin/bash", script)
	}

	out, errOut, code := job(ws, "1.0.0")
	if code != 0 || !strings.Contains(out, "accepted as job") || !strings.Contains(errOut, "environment prod") {
		t.Fatalf("seed script: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	if !strings.Contains(errOut, "warning: URL path /v1/projects/1a5 is Rancher's API path") {
		t.Errorf("no warning about the Rancher path in RANCHER_URL:\n%s", errOut)
	}
	st := waitState(t, s, "java-service-1", "active", 1)
	if st.Services[0].Version != "1.0.0" {
		t.Fatalf("deployed %+v, want 1.0.0", st)
	}

	out, errOut, code = job(ws, "1.0.1")
	if code != 0 {
		t.Fatalf("seed script upgrade: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	if st := waitState(t, s, "java-service-1", "upgraded", 1); st.Services[0].Version != "1.0.1" || st.Services[0].OldVersion != "1.0.0" {
		t.Fatalf("after upgrade: %+v", st)
	}

	out, _, code = job(t.TempDir(), "1.0.1")
	if code != 1 || strings.TrimSpace(out) != "No docker-compose.yml found. Can't continue!" {
		t.Fatalf("missing compose file: exit %d, stdout %q", code, out)
	}
}

// waitState polls the stack until it is in state with healthy containers
// of the current deployment.
func waitState(t *testing.T, s *dmServer, stack, state string, healthy int) stackStatus {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		st, ok := s.tryStatus(t, stack)
		if ok && st.State == state && len(st.Services) > 0 && st.Services[0].Healthy == healthy {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("stack %s did not reach %s with %d healthy: %+v", stack, state, healthy, st)
		}
		time.Sleep(300 * time.Millisecond)
	}
}
