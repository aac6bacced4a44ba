package test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/dockmaster/dockmaster/internal/seal/sealtest"
	"github.com/dockmaster/dockmaster/internal/testenv"
)

// adminKey logs in as the bootstrap admin of startDockmaster and creates
// an API key: an account key (env "") or an environment key with role.
func (s *dmServer) adminKey(t *testing.T, env, role string) (access, secret string) {
	t.Helper()
	var login struct {
		CSRF string `json:"csrf_token"`
	}
	resp := s.call(t, http.MethodPost, "/login", func(*http.Request) {}, `{"user":"admin","password":"admin-pw-for-e2e-1"}`, &login)
	var key struct {
		AccessKey string `json:"access_key"`
		Secret    string `json:"secret"`
	}
	path, body := "/api/v1/keys", `{"description":"e2e admin"}`
	if env != "" {
		path, body = "/api/v1/environments/"+env+"/keys", fmt.Sprintf(`{"role":%q,"description":"e2e"}`, role)
	}
	s.call(t, http.MethodPost, path, func(r *http.Request) {
		for _, c := range resp.Cookies() {
			r.AddCookie(c)
		}
		r.Header.Set("X-CSRF-Token", login.CSRF)
	}, body, &key)
	return key.AccessKey, key.Secret
}

// playbook runs deploy/ansible/register-host.yml against localhost.
func playbook(t *testing.T, s *dmServer, access, secret string, vars string) string {
	t.Helper()
	dir := t.TempDir()
	inv := filepath.Join(dir, "inventory.ini")
	if err := os.WriteFile(inv, []byte("[docker_hosts]\nlocalhost ansible_connection=local ansible_python_interpreter=/usr/bin/python3\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ansible-playbook", "-i", inv, filepath.Join(repoRoot(t), "deploy/ansible/register-host.yml"), "-e", vars)
	cmd.Env = append(cleanEnv(), "DOCKMASTER_URL="+s.URL, "DOCKMASTER_ACCESS_KEY="+access, "DOCKMASTER_SECRET_KEY="+secret,
		"HOME="+dir, "ANSIBLE_NOCOLOR=1", "ANSIBLE_LOCALHOST_WARNING=false", "ANSIBLE_INVENTORY_UNPARSED_WARNING=false",
		"ANSIBLE_LOCAL_TEMP="+filepath.Join(dir, "tmp"), "ANSIBLE_REMOTE_TEMP="+filepath.Join(dir, "rtmp"))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("ansible-playbook: %v\n%s", err, out.String())
	}
	return out.String()
}

var recapRe = regexp.MustCompile(`localhost\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)`)

// TestRegistrationEndToEnd creates an environment with the CLI, registers
// a harness host into it with the example Ansible playbook (twice: the
// second run changes nothing), checks that dockmaster reaches the host,
// and registers a TLS host with `dockmaster host register`.
func TestRegistrationEndToEnd(t *testing.T) {
	if _, err := exec.LookPath("ansible-playbook"); err != nil {
		t.Skip("ansible-playbook not installed (scripts/setup.sh installs ansible-core)")
	}
	host := testenv.StartHost(t, "reg1")
	bin := buildDockmaster(t)
	s := startDockmaster(t, bin)
	adminAccess, adminSecret := s.adminKey(t, "", "")
	admin := []string{"DOCKMASTER_ACCESS_KEY=" + adminAccess, "DOCKMASTER_SECRET_KEY=" + adminSecret}

	// Environments through the CLI.
	if out, errOut, code := s.runCLI(t, t.TempDir(), admin, bin, "env", "create", "qa", "--description", "testers"); code != 0 || !strings.Contains(out, "created environment qa") {
		t.Fatalf("env create: %d %s %s", code, out, errOut)
	}
	if _, errOut, code := s.runCLI(t, t.TempDir(), admin, bin, "env", "create", "qa"); code != 1 || !strings.Contains(errOut, "already exists") {
		t.Fatalf("env create twice: %d %s", code, errOut)
	}
	if out, errOut, code := s.runCLI(t, t.TempDir(), admin, bin, "env", "list"); code != 0 || !regexp.MustCompile(`(?m)^qa\s+0\s+testers$`).MatchString(out) || !strings.Contains(out, "prod") {
		t.Fatalf("env list: %d %s %s", code, out, errOut)
	}
	// The member key of startDockmaster: may not create environments.
	if _, errOut, code := s.runCLI(t, t.TempDir(), nil, bin, "env", "create", "nope"); code != 1 || !strings.Contains(errOut, "missing permission admin") {
		t.Fatalf("env create as member: %d %s", code, errOut)
	}

	// The playbook, with a qa owner's key.
	ownerAccess, ownerSecret := s.adminKey(t, "qa", "owner")
	vars := fmt.Sprintf(`{"dockmaster_environment":"qa","dockmaster_host_name":"reg1","docker_endpoint":%q,"docker_address":%q,"docker_tls":false,"host_labels":{"zone":"a"}}`,
		host.Endpoint, host.IP)
	for i, wantChanged := range []string{"1", "0"} {
		out := playbook(t, s, ownerAccess, ownerSecret, vars)
		m := recapRe.FindStringSubmatch(out)
		if m == nil || m[2] != wantChanged || m[4] != "0" {
			t.Fatalf("run %d: recap %v, want changed=%s\n%s", i+1, m, wantChanged, out)
		}
	}
	var hosts struct {
		Hosts []struct {
			Name, Endpoint, State string
			Labels                map[string]string
			NCPU                  int `json:"ncpu"`
		} `json:"hosts"`
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		s.call(t, http.MethodGet, "/api/v1/environments/qa/hosts", func(r *http.Request) { r.SetBasicAuth(ownerAccess, ownerSecret) }, "", &hosts)
		if len(hosts.Hosts) == 1 && hosts.Hosts[0].State == "active" && hosts.Hosts[0].NCPU > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("registered host not reached by the inventory: %+v", hosts)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if h := hosts.Hosts[0]; h.Name != "reg1" || h.Endpoint != host.Endpoint || h.Labels["zone"] != "a" {
		t.Fatalf("host %+v", h)
	}

	// `dockmaster host register` with TLS files, using the token alone.
	var tokens struct {
		Tokens []struct{ Token, Command string } `json:"tokens"`
	}
	s.call(t, http.MethodGet, "/api/v1/environments/qa/registrationtokens", func(r *http.Request) { r.SetBasicAuth(ownerAccess, ownerSecret) }, "", &tokens)
	if len(tokens.Tokens) != 1 || !strings.Contains(tokens.Tokens[0].Command, "dockmaster host register --url "+s.URL+" --token "+tokens.Tokens[0].Token) {
		t.Fatalf("tokens %+v", tokens)
	}
	pki := sealtest.New(t)
	dir := t.TempDir()
	for name, pem := range map[string]string{"ca.pem": pki.Client.CA, "cert.pem": pki.Client.Cert, "key.pem": pki.Client.Key} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(pem), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	args := []string{"host", "register", "--token", tokens.Tokens[0].Token, "--name", "tls1", "--endpoint", "tcp://127.0.0.1:2376",
		"--tls-ca", "ca.pem", "--tls-cert", "cert.pem", "--tls-key", "key.pem", "--label", "zone=b", "--label", "disk=ssd"}
	noKey := []string{"DOCKMASTER_ACCESS_KEY=", "DOCKMASTER_SECRET_KEY="}
	for _, want := range []string{"registered host tls1", "already registered, unchanged: host tls1"} {
		if out, errOut, code := s.runCLI(t, dir, noKey, bin, args...); code != 0 || !strings.Contains(out, want) {
			t.Fatalf("host register: %d %q %s, want %q", code, out, errOut, want)
		}
	}
	bad := append(append([]string{}, args[:len(args)-4]...), "--tls-key", "ca.pem")
	if _, errOut, code := s.runCLI(t, dir, noKey, bin, bad...); code != 2 || !strings.Contains(errOut, "tls.cert/tls.key") {
		t.Fatalf("mismatched key: %d %s", code, errOut)
	}
	args[3] = "dmreg-wrong"
	if _, errOut, code := s.runCLI(t, dir, noKey, bin, args...); code != 1 || !strings.Contains(errOut, "invalid, expired or revoked") {
		t.Fatalf("wrong token: %d %s", code, errOut)
	}

	// Every registration that changed something is audited, once.
	var audit struct {
		Entries []struct{ Action, Target, Result string } `json:"entries"`
	}
	s.call(t, http.MethodGet, "/api/v1/audit?env=qa", func(r *http.Request) { r.SetBasicAuth(adminAccess, adminSecret) }, "", &audit)
	var got []string
	for _, e := range audit.Entries {
		if strings.HasPrefix(e.Action, "host.") || strings.HasPrefix(e.Action, "registrationtoken.") || e.Action == "environment.create" {
			got = append(got, e.Action+":"+e.Result)
		}
	}
	if want := "host.register:ok,host.register:ok,registrationtoken.create:ok,environment.create:failed,environment.create:ok"; strings.Join(got, ",") != want {
		t.Fatalf("audit %v, want %s", got, want)
	}
}
