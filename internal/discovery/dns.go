package discovery

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/miekg/dns"

	"github.com/dockmaster/dockmaster/deployer"
)

// DNSOptions configure the DNS answers.
type DNSOptions struct {
	// Suffix is the zone under which names are answered authoritatively
	// (default "dockmaster"): <service>.<stack>.<env>.<suffix>. Names
	// without it (<service>.<stack>.<env>) are answered too; anything else
	// is REFUSED, so a container's resolver moves on to its next server.
	Suffix string
	// TTL of every record in seconds (default 5): a changed view reaches
	// clients within it.
	TTL uint32
}

func (o DNSOptions) withDefaults() DNSOptions {
	o.Suffix = strings.Trim(strings.ToLower(o.Suffix), ".")
	if o.Suffix == "" {
		o.Suffix = "dockmaster"
	}
	if o.TTL == 0 {
		o.TTL = 5
	}
	return o
}

// address is where a client reaches an endpoint by DNS: its host's
// address when it publishes a port, else its container IP (reachable on
// the same host and across routed bridges).
func address(e deployer.Endpoint) string {
	for _, p := range e.Ports {
		if p.HostPort != 0 {
			if e.Address != "" {
				return e.Address
			}
			if p.HostIP != "" && p.HostIP != "0.0.0.0" && p.HostIP != "::" {
				return p.HostIP
			}
		}
	}
	return e.IP
}

// DNSHandler answers A and SRV queries from the view:
//
//	<service>.<stack>.<env>[.<suffix>]   A: each healthy container's address
//	                                     SRV: each published port of them,
//	                                     target <container>.<stack>.<env>.<suffix>
//	<container>.<stack>.<env>[.<suffix>] A: that container, while healthy
//
// A known name with nothing healthy, or another record type, gets an
// empty NOERROR answer.
func (d *Discovery) DNSHandler(o DNSOptions) dns.Handler {
	o = o.withDefaults()
	return dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(req)
		if len(req.Question) != 1 {
			m.Rcode = dns.RcodeFormatError
			_ = w.WriteMsg(m)
			return
		}
		d.answer(o, req.Question[0], m)
		_ = w.WriteMsg(m)
	})
}

func (d *Discovery) answer(o DNSOptions, q dns.Question, m *dns.Msg) {
	name := strings.TrimSuffix(strings.ToLower(q.Name), ".")
	inZone := false
	if rest, ok := strings.CutSuffix(name, "."+o.Suffix); ok {
		name, inZone = rest, true
	}
	labels := strings.Split(name, ".")
	if len(labels) != 3 {
		m.Rcode = dns.RcodeRefused
		if inZone {
			m.Authoritative, m.Rcode = true, dns.RcodeNameError
		}
		return
	}
	first, stack, env := labels[0], labels[1], labels[2]
	svcs, _ := d.Services(env)
	if svcs == nil && !inZone {
		m.Rcode = dns.RcodeRefused
		return
	}
	m.Authoritative = true
	hdr := func(t uint16) dns.RR_Header {
		return dns.RR_Header{Name: q.Name, Rrtype: t, Class: dns.ClassINET, Ttl: o.TTL}
	}
	aRecord := func(h dns.RR_Header, addr string) dns.RR {
		ip := net.ParseIP(addr)
		if ip == nil {
			return nil
		}
		if v4 := ip.To4(); v4 != nil {
			h.Rrtype = dns.TypeA
			return &dns.A{Hdr: h, A: v4}
		}
		h.Rrtype = dns.TypeAAAA
		return &dns.AAAA{Hdr: h, AAAA: ip}
	}
	wantsAddr := func(rr dns.RR) bool { return rr != nil && rr.Header().Rrtype == q.Qtype }
	if s, ok := find(svcs, stack, first); ok {
		seen := map[string]bool{}
		for _, e := range s.Healthy() {
			switch q.Qtype {
			case dns.TypeA, dns.TypeAAAA:
				a := address(e)
				if rr := aRecord(hdr(q.Qtype), a); !seen[a] && wantsAddr(rr) {
					seen[a] = true
					m.Answer = append(m.Answer, rr)
				}
			case dns.TypeSRV:
				target := dns.Fqdn(fmt.Sprintf("%s.%s.%s.%s", e.Container, stack, env, o.Suffix))
				for _, p := range e.Ports {
					if p.HostPort == 0 || (p.Protocol != "" && p.Protocol != "tcp") {
						continue
					}
					m.Answer = append(m.Answer, &dns.SRV{Hdr: hdr(dns.TypeSRV), Priority: 0, Weight: 10, Port: p.HostPort, Target: target})
				}
				if rr := aRecord(dns.RR_Header{Name: target, Class: dns.ClassINET, Ttl: o.TTL}, address(e)); rr != nil && len(e.Ports) > 0 {
					m.Extra = append(m.Extra, rr)
				}
			}
		}
		return
	}
	for _, s := range svcs {
		if s.Stack != stack {
			continue
		}
		for _, e := range s.Endpoints {
			if strings.EqualFold(e.Container, first) {
				if rr := aRecord(hdr(q.Qtype), address(e)); e.Healthy && wantsAddr(rr) {
					m.Answer = append(m.Answer, rr)
				}
				return
			}
		}
	}
	m.Rcode = dns.RcodeNameError
}

// DNSServer is a running DNS server (UDP and TCP on one address).
type DNSServer struct {
	udp, tcp *dns.Server
}

// ListenDNS starts answering on addr (host:port) over UDP and TCP.
func (d *Discovery) ListenDNS(addr string, o DNSOptions) (*DNSServer, error) {
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("discovery.dns_listen %s: %w", addr, err)
	}
	// TCP on the port UDP got (addr may say port 0).
	ln, err := net.Listen("tcp", pc.LocalAddr().String())
	if err != nil {
		pc.Close()
		return nil, fmt.Errorf("discovery.dns_listen %s (tcp): %w", addr, err)
	}
	h := d.DNSHandler(o)
	started := make(chan struct{}, 2)
	up := func() { started <- struct{}{} }
	s := &DNSServer{udp: &dns.Server{PacketConn: pc, Handler: h, NotifyStartedFunc: up},
		tcp: &dns.Server{Listener: ln, Handler: h, NotifyStartedFunc: up}}
	go func() { _ = s.udp.ActivateAndServe() }()
	go func() { _ = s.tcp.ActivateAndServe() }()
	// Shutdown before a server started fails, so return once both run.
	<-started
	<-started
	return s, nil
}

// Addr is the UDP address answered on.
func (s *DNSServer) Addr() net.Addr { return s.udp.PacketConn.LocalAddr() }

// Shutdown stops both servers.
func (s *DNSServer) Shutdown(ctx context.Context) error {
	return errors.Join(s.udp.ShutdownContext(ctx), s.tcp.ShutdownContext(ctx))
}
