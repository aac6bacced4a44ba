package config

import (
	"fmt"
	"net"
	"net/url"
	"strings"
)

// Discovery configures service discovery: the DNS server, and the load
// balancer containers that rancher-compose lb_config services become.
// The zero value (zero config) turns the DNS server off and runs lb_config
// services as written.
type Discovery struct {
	// DNSListen is the host:port the DNS server answers on, e.g.
	// "0.0.0.0:53". Empty: no DNS server.
	DNSListen string `yaml:"dns_listen"`
	// DNSSuffix is the zone (default "dockmaster"):
	// <service>.<stack>.<env>.<suffix>.
	DNSSuffix string `yaml:"dns_suffix"`
	// DNSResolver is the IP containers are given as their resolver
	// (dockmaster's DNS as the hosts reach it; Docker needs port 53).
	// Empty: the host of dns_listen when it is a specific address on port
	// 53, else containers keep their resolver.
	DNSResolver string `yaml:"dns_resolver"`
	// LBImage is the dockmaster image that lb_config services run as
	// `dockmaster lb` (e.g. registry.example.com/dockmaster:1.4). Empty:
	// lb_config services run their own image.
	LBImage string `yaml:"lb_image"`
	// AdvertiseURL is dockmaster's base URL as the hosts' containers reach
	// it, for the LB config polls (default public_url).
	AdvertiseURL string `yaml:"advertise_url"`
	// Interval between refreshes of the healthy-endpoint view (default
	// 250ms).
	Interval Duration `yaml:"interval"`
}

// Resolver is the resolver IP to give containers, or "".
func (d Discovery) Resolver() string {
	if d.DNSResolver != "" {
		return d.DNSResolver
	}
	h, p, err := net.SplitHostPort(d.DNSListen)
	if err != nil || p != "53" {
		return ""
	}
	if ip := net.ParseIP(h); ip != nil && !ip.IsUnspecified() && !ip.IsLoopback() {
		return h
	}
	return ""
}

func (c *Config) validateDiscovery(at func(msg string, path ...string) error) error {
	d := c.Discovery
	if d.DNSListen != "" {
		if _, _, err := net.SplitHostPort(d.DNSListen); err != nil {
			return at(fmt.Sprintf("want host:port, got %q", d.DNSListen), "discovery", "dns_listen")
		}
	}
	if d.DNSResolver != "" && net.ParseIP(d.DNSResolver) == nil {
		return at(fmt.Sprintf("want an IP address, got %q", d.DNSResolver), "discovery", "dns_resolver")
	}
	if strings.ContainsAny(strings.Trim(d.DNSSuffix, "."), " /:") {
		return at(fmt.Sprintf("want a DNS name, got %q", d.DNSSuffix), "discovery", "dns_suffix")
	}
	if d.AdvertiseURL != "" {
		if u, err := url.Parse(d.AdvertiseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return at(fmt.Sprintf("want http(s)://host[:port], got %q", d.AdvertiseURL), "discovery", "advertise_url")
		}
	}
	if d.Interval < 0 {
		return at("must not be negative", "discovery", "interval")
	}
	return nil
}
