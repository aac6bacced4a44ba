package config

import (
	"strings"
	"testing"
)

func TestDiscoveryConfig(t *testing.T) {
	cfg, err := Parse("d.yaml", []byte("discovery:\n  dns_listen: 10.0.0.5:53\n  lb_image: dockmaster:1\n  interval: 100ms\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Discovery.Resolver() != "10.0.0.5" || cfg.Discovery.LBImage != "dockmaster:1" {
		t.Errorf("discovery = %+v resolver %q", cfg.Discovery, cfg.Discovery.Resolver())
	}
	if (Discovery{DNSListen: "0.0.0.0:53"}).Resolver() != "" || (Discovery{DNSListen: "10.0.0.5:5353"}).Resolver() != "" {
		t.Error("a wildcard or non-53 listen address became the containers' resolver")
	}
	if cfg, _ := Parse("d.yaml", nil); cfg.Discovery.DNSListen != "" || cfg.Discovery.Resolver() != "" {
		t.Error("DNS is on in zero config")
	}
	for _, c := range []struct{ yaml, want string }{
		{"discovery:\n  dns_listen: nope\n", "d.yaml:2: discovery.dns_listen: want host:port"},
		{"discovery:\n  dns_resolver: host.example\n", "d.yaml:2: discovery.dns_resolver: want an IP address"},
		{"discovery:\n  advertise_url: ftp://x\n", "d.yaml:2: discovery.advertise_url"},
	} {
		_, err := Parse("d.yaml", []byte(c.yaml))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: err = %v, want %q", c.yaml, err, c.want)
		}
	}
}
