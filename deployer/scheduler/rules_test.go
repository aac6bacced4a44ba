package scheduler

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

func TestParseLabels(t *testing.T) {
	const p = LabelAffinityPrefix
	tests := []struct {
		name   string
		labels map[string]string
		want   Rules
	}{
		{"none", map[string]string{"app": "x"}, Rules{}},
		{"host_label several pairs", map[string]string{p + "host_label": "env=prod, zone=a"},
			Rules{Hard: Affinity{HostLabel: []KV{{"env", "prod"}, {"zone", "a"}}}}},
		{"host_label_ne", map[string]string{p + "host_label_ne": "env=dev"},
			Rules{Hard: Affinity{HostLabelNe: []KV{{"env", "dev"}}}}},
		{"soft forms", map[string]string{
			p + "host_label_soft":         "disk=ssd",
			p + "host_label_soft_ne":      "disk=hdd",
			p + "container_label_soft":    "app=cache",
			p + "container_label_soft_ne": "app=batch",
			p + "container_soft":          "db-1",
			p + "container_soft_ne":       "db-2",
		}, Rules{Soft: Affinity{
			HostLabel: []KV{{"disk", "ssd"}}, HostLabelNe: []KV{{"disk", "hdd"}},
			ContainerLabel: []KV{{"app", "cache"}}, ContainerLabelNe: []KV{{"app", "batch"}},
			Container: []string{"db-1"}, ContainerNe: []string{"db-2"},
		}}},
		{"anti-affinity with itself, escaped", map[string]string{
			p + "container_label_ne": "io.rancher.stack_service.name=$${stack_name}/$${service_name}",
		}, Rules{Hard: Affinity{ContainerLabelNe: []KV{{LabelStackService, "web/app"}}}}},
		{"interpolated, unescaped", map[string]string{
			p + "container_label": "io.rancher.stack.name=${stack_name}",
			p + "container_ne":    "${stack_name}-${service_name}-1",
			p + "container":       "db-1,cache-1",
		}, Rules{Hard: Affinity{
			ContainerLabel: []KV{{LabelStackName, "web"}},
			Container:      []string{"db-1", "cache-1"}, ContainerNe: []string{"web-app-1"},
		}}},
		{"global", map[string]string{LabelGlobal: "true"}, Rules{Global: true}},
		{"global false", map[string]string{LabelGlobal: "false"}, Rules{}},
		{"require_any on a service is ignored", map[string]string{LabelRequireAny: "a=b"}, Rules{}},
		{"empty value pair", map[string]string{p + "host_label": "flag="},
			Rules{Hard: Affinity{HostLabel: []KV{{"flag", ""}}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseLabels(tt.labels, "web", "app")
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestParseLabelsErrors(t *testing.T) {
	const p = LabelAffinityPrefix
	tests := []struct {
		labels map[string]string
		want   string // the error must contain it
	}{
		{map[string]string{p + "host_label": "envprod"}, `label io.rancher.scheduler.affinity:host_label="envprod": "envprod": want key=value`},
		{map[string]string{p + "host_label": "=prod"}, `host_label="=prod"`},
		{map[string]string{p + "host_label": " , "}, `host_label=" , ": empty value`},
		{map[string]string{p + "host_lable": "env=prod"}, `affinity:host_lable="env=prod": unknown rule "host_lable"`},
		{map[string]string{p + "container_label_ne": "x=${env}"}, `container_label_ne="x=${env}": unknown variable ${env}`},
		{map[string]string{LabelGlobal: "yes"}, `label io.rancher.scheduler.global="yes": want true or false`},
		{map[string]string{"io.rancher.scheduler.affinty:host_label": "a=b"}, `unknown label io.rancher.scheduler.affinty:host_label="a=b"`},
	}
	for _, tt := range tests {
		_, err := ParseLabels(tt.labels, "web", "app")
		if !errors.Is(err, ErrBadRule) {
			t.Errorf("%v: err = %v, want ErrBadRule", tt.labels, err)
			continue
		}
		if !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v:\n got %q\nwant it to contain %q", tt.labels, err, tt.want)
		}
	}
}

func TestSchedulingYAML(t *testing.T) {
	const doc = `
host_label: [env=prod]
container_label_ne: ["io.rancher.stack_service.name=${stack_name}/${service_name}"]
container_ne: [db-1]
soft:
  host_label: [disk=ssd]
  host_label_ne: [zone=c]
  container_label: [app=cache]
global: true
`
	var s Scheduling
	if err := yaml.Unmarshal([]byte(doc), &s); err != nil {
		t.Fatal(err)
	}
	got, err := s.Rules("web", "app")
	if err != nil {
		t.Fatal(err)
	}
	// The native form must mean exactly what the labels mean.
	const p = LabelAffinityPrefix
	want, err := ParseLabels(map[string]string{
		p + "host_label":           "env=prod",
		p + "container_label_ne":   "io.rancher.stack_service.name=$${stack_name}/$${service_name}",
		p + "container_ne":         "db-1",
		p + "host_label_soft":      "disk=ssd",
		p + "host_label_soft_ne":   "zone=c",
		p + "container_label_soft": "app=cache",
		LabelGlobal:                "true",
	}, "web", "app")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("native %+v\nlabels %+v", got, want)
	}
}

func TestSchedulingErrors(t *testing.T) {
	s := Scheduling{Soft: NativeAffinity{HostLabel: []string{"disk=ssd", "ssd"}}}
	_, err := s.Rules("web", "app")
	if !errors.Is(err, ErrBadRule) || !strings.Contains(err.Error(), `scheduling.soft.host_label[1] "ssd"`) {
		t.Errorf("err = %v", err)
	}
	s = Scheduling{NativeAffinity: NativeAffinity{ContainerNe: []string{""}}}
	if _, err := s.Rules("web", "app"); err == nil || !strings.Contains(err.Error(), "scheduling.container_ne[0]") {
		t.Errorf("err = %v", err)
	}
}

func TestRulesMerge(t *testing.T) {
	a := Rules{Hard: Affinity{HostLabel: []KV{{"a", "1"}}}}
	b := Rules{Hard: Affinity{HostLabel: []KV{{"b", "2"}}}, Soft: Affinity{Container: []string{"x"}}, Global: true}
	got := a.Merge(b)
	want := Rules{Hard: Affinity{HostLabel: []KV{{"a", "1"}, {"b", "2"}}}, Soft: Affinity{Container: []string{"x"}}, Global: true}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v", got)
	}
	if len(a.Hard.HostLabel) != 1 {
		t.Error("Merge changed its receiver")
	}
}

func TestReserve(t *testing.T) {
	tests := []struct {
		r        Resources
		cpu, mem int64
	}{
		{Resources{}, 0, 0},
		{Resources{NanoCPUs: 5e8, CPUShares: 2048}, 5e8, 0},
		{Resources{CPUShares: 512}, 5e8, 0},
		{Resources{MemoryLimit: 100, MemoryReservation: 40}, 0, 40},
		{Resources{MemoryLimit: 100}, 0, 100},
	}
	for _, tt := range tests {
		cpu, mem := tt.r.Reserve()
		if cpu != tt.cpu || mem != tt.mem {
			t.Errorf("%+v: got %d,%d want %d,%d", tt.r, cpu, mem, tt.cpu, tt.mem)
		}
	}
}
