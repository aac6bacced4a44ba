package discovery

import (
	"fmt"
	"regexp"
	"strings"
)

// Traefik is Traefik's dynamic configuration (the HTTP provider reads it
// as JSON; schema subset with its source in traefiktest/). Only what
// dockmaster fills is modelled.
type Traefik struct {
	HTTP *TraefikHTTP `json:"http,omitempty"`
	TCP  *TraefikTCP  `json:"tcp,omitempty"`
}

// TraefikHTTP is the http section.
type TraefikHTTP struct {
	Routers  map[string]TraefikRouter      `json:"routers"`
	Services map[string]TraefikHTTPService `json:"services"`
}

// TraefikTCP is the tcp section.
type TraefikTCP struct {
	Routers  map[string]TraefikRouter     `json:"routers"`
	Services map[string]TraefikTCPService `json:"services"`
}

// TraefikRouter is an http or tcp router.
type TraefikRouter struct {
	EntryPoints []string `json:"entryPoints,omitempty"`
	Rule        string   `json:"rule"`
	Service     string   `json:"service"`
	Priority    int      `json:"priority,omitempty"`
}

// TraefikHTTPService is an http service with a server load balancer.
type TraefikHTTPService struct {
	LoadBalancer TraefikHTTPLB `json:"loadBalancer"`
}

// TraefikHTTPLB is the servers load balancer of an http service.
type TraefikHTTPLB struct {
	Servers        []TraefikURL   `json:"servers"`
	PassHostHeader bool           `json:"passHostHeader"`
	Sticky         *TraefikSticky `json:"sticky,omitempty"`
}

// TraefikURL is one http server.
type TraefikURL struct {
	URL string `json:"url"`
}

// TraefikSticky is cookie stickiness.
type TraefikSticky struct {
	Cookie struct {
		Name string `json:"name,omitempty"`
	} `json:"cookie"`
}

// TraefikTCPService is a tcp service with a server load balancer.
type TraefikTCPService struct {
	LoadBalancer TraefikTCPLB `json:"loadBalancer"`
}

// TraefikTCPLB is the servers load balancer of a tcp service.
type TraefikTCPLB struct {
	Servers []TraefikAddress `json:"servers"`
}

// TraefikAddress is one tcp server.
type TraefikAddress struct {
	Address string `json:"address"`
}

var traefikName = regexp.MustCompile(`[^a-zA-Z0-9_-]+`)

// TraefikEntryPoint is the entry point a tcp rule's router is bound to:
// Traefik users declare one per tcp source port, named "tcp-<port>".
// http routers are left on every entry point.
func TraefikEntryPoint(port uint16) string { return fmt.Sprintf("tcp-%d", port) }

// Traefik returns env's routes in Traefik's dynamic configuration: one
// router and one service per port rule of every load balancer service,
// the services listing the target's healthy containers by published host
// port (else container IP). A rule whose target has no healthy container
// is left out (Traefik requires at least one server).
func (d *Discovery) Traefik(env string) Traefik {
	svcs, _ := d.Services(env)
	out := Traefik{}
	for _, s := range svcs {
		if s.LB == nil {
			continue
		}
		for i, r := range s.LB.PortRules {
			tp := r.TargetPort
			if tp == 0 {
				tp = r.SourcePort
			}
			ts, tn := target(s.Stack, r.Service)
			t, ok := find(svcs, ts, tn)
			if !ok {
				continue
			}
			addrs := backends(t, "", tp)
			if len(addrs) == 0 {
				continue
			}
			name := traefikName.ReplaceAllString(fmt.Sprintf("%s-%s-%s-%d-%d", env, s.Stack, s.Name, r.SourcePort, i), "_")
			if strings.EqualFold(r.Protocol, "tcp") {
				if out.TCP == nil {
					out.TCP = &TraefikTCP{Routers: map[string]TraefikRouter{}, Services: map[string]TraefikTCPService{}}
				}
				var svc TraefikTCPService
				for _, a := range addrs {
					svc.LoadBalancer.Servers = append(svc.LoadBalancer.Servers, TraefikAddress{Address: a})
				}
				out.TCP.Services[name] = svc
				out.TCP.Routers[name] = TraefikRouter{EntryPoints: []string{TraefikEntryPoint(r.SourcePort)},
					Rule: "HostSNI(`*`)", Service: name}
				continue
			}
			if out.HTTP == nil {
				out.HTTP = &TraefikHTTP{Routers: map[string]TraefikRouter{}, Services: map[string]TraefikHTTPService{}}
			}
			svc := TraefikHTTPService{LoadBalancer: TraefikHTTPLB{PassHostHeader: true}}
			for _, a := range addrs {
				svc.LoadBalancer.Servers = append(svc.LoadBalancer.Servers, TraefikURL{URL: "http://" + a})
			}
			if c := stickyCookie(s.LB.StickinessPolicy); c != "" {
				svc.LoadBalancer.Sticky = &TraefikSticky{}
				svc.LoadBalancer.Sticky.Cookie.Name = c
			}
			out.HTTP.Services[name] = svc
			out.HTTP.Routers[name] = TraefikRouter{Rule: traefikRule(r.Hostname, r.Path), Service: name, Priority: max(r.Priority, 0)}
		}
	}
	return out
}

// traefikRule is the router rule of a hostname and path prefix.
func traefikRule(host, path string) string {
	var parts []string
	switch {
	case host == "" || host == "*":
	case strings.HasPrefix(host, "*."):
		parts = append(parts, "HostRegexp(`{sub:[a-zA-Z0-9-]+}"+regexp.QuoteMeta(host[1:])+"`)")
	default:
		parts = append(parts, "Host(`"+host+"`)")
	}
	if path == "" {
		path = "/"
	}
	parts = append(parts, "PathPrefix(`"+path+"`)")
	return strings.Join(parts, " && ")
}
