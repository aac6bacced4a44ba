package compose

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/dockmaster/dockmaster/deployer"
)

func load(t *testing.T, compose, rancher string, vars map[string]string) (*deployer.StackSpec, error) {
	t.Helper()
	opts := Options{StackName: "shop", ComposeFile: filepath.Join("testdata", compose), Variables: vars}
	if rancher != "" {
		opts.RancherFile = filepath.Join("testdata", rancher)
	}
	return Load(context.Background(), opts)
}

func mustLoad(t *testing.T, compose, rancher string, vars map[string]string) *deployer.StackSpec {
	t.Helper()
	spec, err := load(t, compose, rancher, vars)
	if err != nil {
		t.Fatalf("Load(%s, %s): %v", compose, rancher, err)
	}
	return spec
}

func service(t *testing.T, spec *deployer.StackSpec, name string) *deployer.ServiceSpec {
	t.Helper()
	s := spec.Service(name)
	if s == nil {
		t.Fatalf("service %s missing; have %v", name, names(spec))
	}
	return s
}

func names(spec *deployer.StackSpec) []string {
	var out []string
	for _, s := range spec.Services {
		out = append(out, s.Name)
	}
	return out
}

func eq[T any](t *testing.T, what string, got, want T) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s = %#v, want %#v", what, got, want)
	}
}

func hasWarning(t *testing.T, spec *deployer.StackSpec, parts ...string) {
	t.Helper()
	for _, w := range spec.Warnings {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(w, p)
		}
		if all {
			return
		}
	}
	t.Errorf("no warning containing %q in %q", parts, spec.Warnings)
}

func TestV1(t *testing.T) {
	spec := mustLoad(t, "v1.yml", "", map[string]string{"VERSION": "1.4.2"})
	eq(t, "stack name", spec.Name, "shop")
	eq(t, "services (sorted)", names(spec), []string{"java-service-1", "java-service-2"})
	s1 := service(t, spec, "java-service-1")
	eq(t, "image", s1.Image, "registry.abc.net/java-service-1:1.4.2")
	eq(t, "ports", s1.Ports, []deployer.PortSpec{{HostPort: 8080, ContainerPort: 8080, Protocol: "tcp"}})
	eq(t, "environment", s1.Environment, map[string]string{"JAVA_OPTS": "-Xmx512m", "DB_HOST": ""})
	eq(t, "labels", s1.Labels, map[string]string{
		"io.rancher.container.pull_image":          "always",
		"io.rancher.scheduler.affinity:host_label": "env=prod",
		"io.rancher.scheduler.global":              "true", // bare YAML boolean
	})
	eq(t, "pull always", s1.PullAlways, true)
	eq(t, "global", s1.Global, true)
	eq(t, "net: host", s1.NetworkMode, "host")
	eq(t, "restart", s1.Restart, "always")
	eq(t, "resources", s1.Resources, deployer.Resources{CPUShares: 512, MemoryLimit: 536870912})
	eq(t, "scale default", s1.Scale, 1)
	hasWarning(t, spec, "testdata/v1.yml:16:", "volume_driver")

	s2 := service(t, spec, "java-service-2")
	eq(t, "default ignored when set", s2.Image, "registry.abc.net/java-service-2:1.4.2")
	eq(t, "command split", s2.Command, []string{"java", "-jar", "/app.jar", "--port", "9090"})
	eq(t, "pull", s2.PullAlways, false)
}

func TestV2(t *testing.T) {
	spec := mustLoad(t, "v2.yml", "", map[string]string{"EMPTY": "from-vars"})
	w := service(t, spec, "web")
	eq(t, "default used", w.Image, "nginx:1.25")
	eq(t, "ports", w.Ports, []deployer.PortSpec{
		{HostPort: 80, ContainerPort: 80, Protocol: "tcp"},
		{HostIP: "127.0.0.1", HostPort: 8443, ContainerPort: 443, Protocol: "tcp"},
		{HostPort: 5353, ContainerPort: 53, Protocol: "udp"},
		{ContainerPort: 9000, Protocol: "tcp"},
	})
	eq(t, "volumes", w.Volumes, []string{"/srv/www:/usr/share/nginx/html:ro", "data:/var/cache/nginx", "/tmp/anon"})
	eq(t, "environment (nil value from Variables)", w.Environment, map[string]string{"MODE": "production", "EMPTY": "from-vars"})
	eq(t, "working_dir", w.WorkingDir, "/usr/share/nginx")
	eq(t, "user", w.User, "nginx")
	eq(t, "dns", w.DNS, []string{"10.0.0.2"})
	eq(t, "extra_hosts", w.ExtraHosts, []string{"db.internal:10.0.0.5"})
	eq(t, "resources", w.Resources, deployer.Resources{CPUShares: 256, MemoryLimit: 256 << 20, MemoryReservation: 128 << 20})
	eq(t, "compose scale", w.Scale, 3)
	eq(t, "no rancher file, no health check", w.HealthCheck, (*deployer.HealthCheck)(nil))
	eq(t, "warnings", len(spec.Warnings), 0)
}

func TestV3(t *testing.T) {
	spec := mustLoad(t, "v3.yml", "", map[string]string{"VERSION": "2.0"})
	a := service(t, spec, "api")
	eq(t, "entrypoint", a.Entrypoint, []string{"/bin/api", "--serve"})
	eq(t, "ports: long syntax and expanded range", a.Ports, []deployer.PortSpec{
		{HostIP: "0.0.0.0", HostPort: 18080, ContainerPort: 8080, Protocol: "tcp"},
		{HostPort: 7000, ContainerPort: 7000, Protocol: "tcp"},
		{HostPort: 7001, ContainerPort: 7001, Protocol: "tcp"},
		{HostPort: 7002, ContainerPort: 7002, Protocol: "tcp"},
	})
	eq(t, "deploy.replicas", a.Scale, 4)
	eq(t, "deploy resources", a.Resources, deployer.Resources{NanoCPUs: 1.5e9, MemoryLimit: 1 << 30, MemoryReservation: 512 << 20})
	eq(t, "deploy.mode global", service(t, spec, "worker").Global, true)
}

func TestSpecFormat(t *testing.T) {
	spec := mustLoad(t, "spec.yml", "", map[string]string{"VERSION": "3.1"})
	a := service(t, spec, "app")
	eq(t, "image", a.Image, "registry.abc.net/app:3.1")
	eq(t, "command with $$ escape", a.Command, []string{"sh", "-c", "echo $HOME && sleep 1"})
	eq(t, "entrypoint string", a.Entrypoint, []string{"/docker-entrypoint.sh"})
	eq(t, "cpus", a.Resources.NanoCPUs, int64(5e8))
	eq(t, "network_mode", a.NetworkMode, "bridge")
	eq(t, "restart", a.Restart, "unless-stopped")
	eq(t, "extra_hosts map", a.ExtraHosts, []string{"cache:10.0.0.7"})
	eq(t, "labels list", a.Labels, map[string]string{"io.rancher.container.pull_image": "always", "team": "payments"})
	eq(t, "pull", a.PullAlways, true)
}

func TestRancherFull(t *testing.T) {
	spec := mustLoad(t, "v2.yml", "rancher-full.yml", nil)
	w := service(t, spec, "web")
	eq(t, "rancher scale wins over compose scale", w.Scale, 2)
	eq(t, "retain_ip", w.RetainIP, true)
	eq(t, "metadata", w.Metadata, map[string]any{"owner": "team-a", "limits": map[string]any{"rps": 100}})
	eq(t, "health_check", w.HealthCheck, &deployer.HealthCheck{
		Port:                  80,
		RequestLine:           "GET /healthz HTTP/1.0",
		Interval:              2 * time.Second,
		InitializingTimeout:   60 * time.Second,
		ReinitializingTimeout: 30 * time.Second,
		ResponseTimeout:       2 * time.Second,
		HealthyThreshold:      2,
		UnhealthyThreshold:    3,
		Strategy:              "recreateOnQuorum",
		RecreateQuorum:        1,
	})
	eq(t, "upgrade_strategy", w.Upgrade, deployer.UpgradeStrategy{StartFirst: true, BatchSize: 2, Interval: 1500 * time.Millisecond})
	eq(t, ".catalog raises no warning", spec.Warnings, []string(nil))

	spec = mustLoad(t, "v2.yml", "rancher-full.yml", map[string]string{"WEB_SCALE": "5"})
	eq(t, "variable in rancher-compose", service(t, spec, "web").Scale, 5)
}

func TestLBConfig(t *testing.T) {
	spec := mustLoad(t, "lb-compose.yml", "lb-rancher.yml", nil)
	lb := service(t, spec, "lb")
	eq(t, "scale (v1 rancher layout)", lb.Scale, 2)
	eq(t, "lb_config", lb.LB, &deployer.LBConfig{
		PortRules: []deployer.LBPortRule{
			{SourcePort: 80, TargetPort: 8080, Service: "web", Protocol: "http", Hostname: "www.example.com", Path: "/api", Priority: 1},
			{SourcePort: 443, TargetPort: 8080, Service: "other-stack/web", Protocol: "https", Priority: 2},
		},
		DefaultCert:      "main-cert",
		Certs:            []string{"wildcard"},
		StickinessPolicy: map[string]any{"name": "SRV", "cookie": "", "mode": "insert", "indirect": false},
	})
	eq(t, "lb health check", lb.HealthCheck, &deployer.HealthCheck{Port: 42, RequestLine: `GET "/_health" HTTP/1.0`, Interval: 2 * time.Second, Strategy: "recreate"})
	eq(t, "string label 'true'", lb.Labels["io.rancher.container.create_agent"], "true")
	eq(t, "web lb", service(t, spec, "web").LB, (*deployer.LBConfig)(nil))
	hasWarning(t, spec, "testdata/lb-rancher.yml:3:", `"start_on_create"`)
	hasWarning(t, spec, "testdata/lb-rancher.yml:33:", `"bogus_key"`)
}

func TestDuplicateKeys(t *testing.T) {
	spec := mustLoad(t, "dup.yml", "", nil)
	w := service(t, spec, "web")
	eq(t, "last image wins", w.Image, "nginx:3")
	eq(t, "last service wins", len(w.Ports), 1)
	hasWarning(t, spec, "testdata/dup.yml:3:", `duplicate key "web"`, "line 5")
	hasWarning(t, spec, "testdata/dup.yml:6:", `duplicate key "image"`, "line 9")
}

func TestMissingRequiredVariable(t *testing.T) {
	_, err := load(t, "missing-required.yml", "", map[string]string{"OTHER": "x"})
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("err = %v, want *Error", err)
	}
	eq(t, "file", e.File, "testdata/missing-required.yml")
	eq(t, "line", e.Line, 6)
	if !errors.Is(err, ErrMissingVariable) || !strings.Contains(err.Error(), "set the database password") || !strings.Contains(err.Error(), "DB_PASSWORD") {
		t.Errorf("err = %v, want ErrMissingVariable naming DB_PASSWORD and the message", err)
	}
	if _, err := load(t, "missing-required.yml", "", map[string]string{"DB_PASSWORD": "s3cret"}); err != nil {
		t.Errorf("with the variable set: %v", err)
	}

	// In rancher-compose too.
	_, err = Load(context.Background(), Options{
		ComposeBytes: []byte("web:\n  image: nginx\n"),
		RancherFile:  "r.yml", RancherBytes: []byte("web:\n  scale: 1\n  retain_ip: ${RETAIN:?say whether}\n"),
	})
	if !errors.As(err, &e) || e.File != "r.yml" || e.Line != 3 || !errors.Is(err, ErrMissingVariable) {
		t.Errorf("rancher-compose: err = %v, want r.yml:3 missing variable", err)
	}
}

func TestUnsetPlainVariableWarns(t *testing.T) {
	spec, err := Load(context.Background(), Options{
		ComposeFile:  "c.yml",
		ComposeBytes: []byte("web:\n  image: nginx:${TAG}\n  environment:\n    A: ${TAG}-${B:-b}\n"),
	})
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "image", service(t, spec, "web").Image, "nginx:")
	eq(t, "env", service(t, spec, "web").Environment["A"], "-b")
	eq(t, "one warning per variable, defaults silent", spec.Warnings, []string{"c.yml:2: variable TAG is not set, using an empty string"})
}

func TestCRLF(t *testing.T) {
	compose, err := os.ReadFile("testdata/v2.yml")
	if err != nil {
		t.Fatal(err)
	}
	rancher, err := os.ReadFile("testdata/rancher-full.yml")
	if err != nil {
		t.Fatal(err)
	}
	crlf := func(b []byte) []byte { return []byte(strings.ReplaceAll(string(b), "\n", "\r\n")) }
	spec, err := Load(context.Background(), Options{StackName: "shop", ComposeBytes: crlf(compose), RancherBytes: crlf(rancher)})
	if err != nil {
		t.Fatal(err)
	}
	w := service(t, spec, "web")
	eq(t, "request line has no \\r", w.HealthCheck.RequestLine, "GET /healthz HTTP/1.0")
	eq(t, "user has no \\r", w.User, "nginx")
	eq(t, "scale", w.Scale, 2)
}

func TestTemplates(t *testing.T) {
	spec := mustLoad(t, "template.yml.tpl", "", map[string]string{"VERSION": "9.9", "DEBUG": "true"})
	a := service(t, spec, "app")
	eq(t, ".Values.VERSION", a.Image, "registry.abc.net/app:9.9")
	eq(t, ".Stack.Name", a.Labels["io.dockmaster.test"], "shop")
	eq(t, "if branch", a.Environment, map[string]string{"DEBUG": "1"})

	spec = mustLoad(t, "template.yml.tpl", "", map[string]string{"VERSION": "9.9"})
	eq(t, "missing value is empty, if not taken", service(t, spec, "app").Environment, map[string]string(nil))

	spec = mustLoad(t, "notemplating.yml", "", nil)
	eq(t, "# notemplating keeps braces", service(t, spec, "web").Command, []string{"echo", "{{ not a template }}"})

	_, err := load(t, "template-bad.yml.tpl", "", nil)
	var e *Error
	if !errors.As(err, &e) || e.Line != 5 || e.File != "testdata/template-bad.yml.tpl" || !strings.Contains(err.Error(), "nosuchfunc") {
		t.Errorf("bad template: err = %v, want testdata/template-bad.yml.tpl:5 naming nosuchfunc", err)
	}
}

func TestBadInput(t *testing.T) {
	for _, tc := range []struct {
		name, compose, rancher string
		line                   int
		want                   string
	}{
		{"yaml syntax", "web:\n  image: nginx\n    bad: x\n", "", 3, "invalid YAML: mapping values"},
		{"top level list", "- web\n", "", 1, "top level must be a mapping"},
		{"empty", "", "", 0, "empty"},
		{"schema type", "services:\n  web:\n    image: nginx\n    ports: 80\n", "", 4, "ports"},
		{"port out of range", "web:\n  image: nginx\n  ports: ['70000:80']\n", "", 0, "70000"},
		{"health port", "web:\n  image: nginx\n", "web:\n  health_check:\n    port: http\n", 3, "web.health_check.port"},
		{"strategy", "web:\n  image: nginx\n", "web:\n  health_check:\n    strategy: sometimes\n", 3, "strategy"},
		{"start_first", "web:\n  image: nginx\n", "web:\n  upgrade_strategy:\n    start_first: maybe\n", 3, "start_first"},
		{"port_rules", "web:\n  image: nginx\n", "web:\n  lb_config:\n    port_rules: 80\n", 3, "port_rules must be a list"},
		{"rancher service not a map", "web:\n  image: nginx\n", "web: 3\n", 1, "must be a mapping"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := Options{ComposeFile: "c.yml", ComposeBytes: []byte(tc.compose)}
			file := "c.yml"
			if tc.rancher != "" {
				opts.RancherFile, opts.RancherBytes, file = "r.yml", []byte(tc.rancher), "r.yml"
			}
			_, err := Load(context.Background(), opts)
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("err = %v, want *Error", err)
			}
			if e.File != file || (tc.line > 0 && e.Line != tc.line) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v (line %d), want %s:%d containing %q", err, e.Line, file, tc.line, tc.want)
			}
		})
	}
}

func TestUnknownKeysAreWarnings(t *testing.T) {
	spec, err := Load(context.Background(), Options{
		ComposeFile:  "c.yml",
		ComposeBytes: []byte("version: '2'\nservices:\n  web:\n    image: nginx\n    volumes:\n    flavour: vanilla\nvolumes:\n  data:\n    per_container: true\n"),
		RancherFile:  "r.yml",
		RancherBytes: []byte("version: '2'\nservices:\n  web:\n    scale: 2\n    drain_timeout_ms: 5\n  ghost:\n    scale: 1\nextra: 1\n"),
	})
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "scale", service(t, spec, "web").Scale, 2)
	hasWarning(t, spec, "c.yml:6:", `"flavour"`)
	hasWarning(t, spec, "c.yml:9:", `"per_container"`)
	hasWarning(t, spec, "r.yml:5:", `"drain_timeout_ms"`)
	hasWarning(t, spec, "r.yml:6:", "ghost")
	hasWarning(t, spec, "r.yml:8:", `"extra"`)
}

func TestVariablesAreNotTheProcessEnvironment(t *testing.T) {
	t.Setenv("DOCKMASTER_TEST_TAG", "from-process")
	spec, err := Load(context.Background(), Options{ComposeBytes: []byte("web:\n  image: nginx:${DOCKMASTER_TEST_TAG:-default}\n")})
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "image", service(t, spec, "web").Image, "nginx:default")
}

func TestReadsFilesFromDisk(t *testing.T) {
	if _, err := Load(context.Background(), Options{ComposeFile: "testdata/nope.yml"}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: err = %v, want os.ErrNotExist", err)
	}
	if _, err := Load(context.Background(), Options{}); err == nil {
		t.Error("no compose file: want an error")
	}
}

func TestTemplateLoopBudget(t *testing.T) {
	src := "web:\n  image: nginx\n{{ range until 1000 }}{{ range until 1000 }}{{ end }}{{ end }}\n"
	_, err := Load(context.Background(), Options{ComposeFile: "c.yml", ComposeBytes: []byte(src)})
	if err == nil || !strings.Contains(err.Error(), "loops exceed") {
		t.Errorf("err = %v, want the loop budget error", err)
	}
	src = "{{ range $i := until 3 }}s{{ $i }}:\n  image: nginx\n{{ end }}"
	spec, err := Load(context.Background(), Options{ComposeFile: "c.yml", ComposeBytes: []byte(src)})
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "services from a loop", names(spec), []string{"s0", "s1", "s2"})
}
