package compose

import (
	"context"
	"reflect"
	"strings"
	"testing"

	"github.com/dockmaster/dockmaster/deployer/scheduler"
)

func TestRancherScheduling(t *testing.T) {
	compose := []byte("services:\n  web:\n    image: web:1\n")
	load := func(rancher string) (*scheduler.Scheduling, error) {
		spec, err := Load(context.Background(), Options{StackName: "shop", ComposeBytes: compose, RancherBytes: []byte(rancher)})
		if err != nil {
			return nil, err
		}
		return spec.Service("web").Scheduling, nil
	}
	got, err := load("web:\n  scale: 2\n  scheduling:\n    host_label: [env=prod]\n    container_label_ne: ['io.rancher.stack_service.name=$${stack_name}/$${service_name}']\n    soft:\n      host_label: [disk=ssd]\n    strategy: binpack\n")
	if err != nil {
		t.Fatal(err)
	}
	want := &scheduler.Scheduling{
		NativeAffinity: scheduler.NativeAffinity{HostLabel: []string{"env=prod"},
			ContainerLabelNe: []string{"io.rancher.stack_service.name=${stack_name}/${service_name}"}},
		Soft:     scheduler.NativeAffinity{HostLabel: []string{"disk=ssd"}},
		Strategy: scheduler.Binpack,
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("scheduling = %+v\nwant %+v", got, want)
	}
	for rancher, wantErr := range map[string]string{
		"web:\n  scheduling:\n    host_lable: [env=prod]\n": "rancher-compose.yml:3: web.scheduling: ",
		"web:\n  scheduling:\n    host_label: [prod]\n":     `web: bad scheduling rule: scheduling.host_label[0] "prod"`,
		"web:\n  scheduling:\n    strategy: pack\n":         `web.scheduling.strategy "pack": want spread or binpack`,
		"web:\n  scheduling: [a]\n":                         "web.scheduling must be a mapping",
	} {
		_, err := load(rancher)
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("%q: err = %v, want it to contain %q", rancher, err, wantErr)
		}
	}
}
