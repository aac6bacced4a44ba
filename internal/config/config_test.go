package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

func TestDefaultsWithoutFile(t *testing.T) {
	cfg, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != "127.0.0.1:8080" || cfg.Store != "./data/dockmaster.db" || cfg.Webhooks.MaxBodyBytes != 5<<20 ||
		cfg.Webhooks.CommitLinger != Duration(500*time.Microsecond) {
		t.Fatalf("defaults: %+v", cfg)
	}
}

func TestErrorsNameFileLineAndKey(t *testing.T) {
	cases := []struct {
		name, yaml string
		line       int
		key, msg   string
	}{
		{"typo at top", "listen: 127.0.0.1:9090\nstroe: x.db\n", 2, "stroe", "unknown key"},
		{"typo nested", "log:\n  format: json\n  levle: info\n", 3, "levle", "unknown key"},
		{"typo in list", "environments:\n  - name: prod\n    hosts:\n      - name: h1\n        endpiont: tcp://h1:2376\n", 5, "endpiont", "unknown key"},
		{"bad listen", "listen: nonsense\n", 1, "listen", "want host:port"},
		{"bad level", "log:\n  level: loud\n", 2, "log.level", "want debug"},
		{"bad endpoint", "environments:\n  - name: prod\n    hosts:\n      - name: h1\n        endpoint: h1:2376\n", 5, "environments.0.hosts.0.endpoint", "want unix"},
		{"bad swarm manager", "environments:\n  - name: prod\n    swarm:\n      manager: mgr:2375\n", 4, "environments.0.swarm.manager", "want unix"},
		{"swarm with hosts", "environments:\n  - name: prod\n    swarm: {manager: tcp://mgr:2375}\n    hosts:\n      - name: h1\n        endpoint: tcp://h1:2376\n", 4, "environments.0.hosts", "no hosts"},
		{"bad duration", "shutdown_timeout: soon\n", 1, "", "want a duration"},
		{"negative linger", "webhooks:\n  max_body_bytes: 1024\n  commit_linger: -1ms\n", 3, "webhooks.commit_linger", "want 0 to 1s"},
		{"long linger", "webhooks:\n  commit_linger: 2s\n", 2, "webhooks.commit_linger", "want 0 to 1s"},
		{"secret env missing", "webhooks:\n  secrets:\n    github: {env: DOCKMASTER_TEST_UNSET_VAR}\n", 3, "webhooks.secrets.github", "DOCKMASTER_TEST_UNSET_VAR is not set"},
		{"secret bad key", "webhooks:\n  secrets:\n    github: {envv: X}\n", 3, "envv", "unknown key"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse("dm.yaml", []byte(c.yaml))
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("want *config.Error, got %v", err)
			}
			if ce.File != "dm.yaml" || ce.Line != c.line || ce.Key != c.key || !strings.Contains(ce.Msg, c.msg) {
				t.Fatalf("got %#v (%v), want line %d key %q msg ~%q", ce, err, c.line, c.key, c.msg)
			}
			if !strings.HasPrefix(err.Error(), "dm.yaml:") {
				t.Fatalf("message does not start with the file: %v", err)
			}
		})
	}
}

func TestSecretsFromEnvAndFileNeverPrinted(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "tok")
	if err := os.WriteFile(file, []byte("from-file-s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DM_TEST_SECRET", "from-env-s3cret")
	src := "webhooks:\n  secrets:\n    github: {env: DM_TEST_SECRET}\n    gitlab: {secret_file: " + file + "}\n    gitea: literal-s3cret\n"
	cfg, err := Parse("dm.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]string{"github": "from-env-s3cret", "gitlab": "from-file-s3cret", "gitea": "literal-s3cret"} {
		got, err := cfg.Webhooks.Secrets[p].Value()
		if err != nil || got != want {
			t.Fatalf("%s: got %q, %v", p, got, err)
		}
	}
	out, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "s3cret") {
		t.Fatalf("secret printed:\n%s", out)
	}
	if s := cfg.Webhooks.Secrets["gitea"].String(); s != "[redacted]" {
		t.Fatalf("String() = %q", s)
	}
}

// The commented example in the repo must stay loadable.
func TestExampleConfigLoads(t *testing.T) {
	t.Setenv("GITHUB_WEBHOOK_SECRET", "x")
	cfg, err := Load("../../dockmaster.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Environments) == 0 {
		t.Fatal("example declares no environment")
	}
}
