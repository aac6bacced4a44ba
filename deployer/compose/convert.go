package compose

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"

	"github.com/dockmaster/dockmaster/deployer"
)

// Rancher labels with a meaning beyond the scheduler's.
const (
	labelPullImage = "io.rancher.container.pull_image"
	labelGlobal    = "io.rancher.scheduler.global"
)

// convertService maps one compose-go service onto a ServiceSpec. Fields the
// engine does not use (build, networks, healthcheck...) are dropped.
func (s *source) convertService(svc types.ServiceConfig, dir string) (deployer.ServiceSpec, error) {
	out := deployer.ServiceSpec{
		Name:        svc.Name,
		Image:       svc.Image,
		Command:     []string(svc.Command),
		Entrypoint:  []string(svc.Entrypoint),
		WorkingDir:  svc.WorkingDir,
		User:        svc.User,
		Restart:     svc.Restart,
		NetworkMode: svc.NetworkMode,
		DNS:         []string(svc.DNS),
		Scale:       1,
	}
	if out.Image == "" {
		s.warnf(s.lineAt("services."+svc.Name), "service %s has no image", svc.Name)
	}
	if svc.Scale != nil {
		out.Scale = *svc.Scale
	} else if svc.Deploy != nil && svc.Deploy.Replicas != nil {
		out.Scale = *svc.Deploy.Replicas
	}
	if out.Scale < 0 {
		return out, &Error{File: s.name, Line: s.lineAt("services." + svc.Name + ".scale"), Err: fmt.Errorf("service %s: scale %d is negative", svc.Name, out.Scale)}
	}
	if svc.Deploy != nil && svc.Deploy.Mode == "global" {
		out.Global = true
	}

	if len(svc.EnvFiles) > 0 || len(svc.Environment) > 0 {
		out.Environment = s.envFromFiles(svc, dir)
		for k, v := range svc.Environment {
			if v != nil {
				out.Environment[k] = *v
			} else {
				out.Environment[k] = s.vars[k] // nil: taken from the deploy parameters, else empty
			}
		}
	}
	if len(svc.Labels) > 0 {
		out.Labels = make(map[string]string, len(svc.Labels))
		for k, v := range svc.Labels {
			out.Labels[k] = v
		}
		switch strings.ToLower(out.Labels[labelPullImage]) {
		case "always", "true":
			out.PullAlways = true
		}
		out.Global = out.Global || strings.EqualFold(out.Labels[labelGlobal], "true")
	}

	for _, p := range svc.Ports {
		ports, err := s.convertPort(svc.Name, p)
		if err != nil {
			return out, err
		}
		out.Ports = append(out.Ports, ports...)
	}
	for _, v := range svc.Volumes {
		if vol := s.convertVolume(svc.Name, v); vol != "" {
			out.Volumes = append(out.Volumes, vol)
		}
	}
	if len(svc.ExtraHosts) > 0 {
		out.ExtraHosts = svc.ExtraHosts.AsList(":")
		sort.Strings(out.ExtraHosts)
	}

	r := &out.Resources
	r.NanoCPUs = int64(float64(svc.CPUS) * 1e9)
	r.CPUShares = svc.CPUShares
	r.MemoryLimit = int64(svc.MemLimit)
	r.MemoryReservation = int64(svc.MemReservation)
	if svc.Deploy != nil {
		if l := svc.Deploy.Resources.Limits; l != nil {
			if l.NanoCPUs > 0 {
				r.NanoCPUs = int64(float64(l.NanoCPUs) * 1e9)
			}
			if l.MemoryBytes > 0 {
				r.MemoryLimit = int64(l.MemoryBytes)
			}
		}
		if rs := svc.Deploy.Resources.Reservations; rs != nil && rs.MemoryBytes > 0 && r.MemoryReservation == 0 {
			r.MemoryReservation = int64(rs.MemoryBytes)
		}
	}
	return out, nil
}

// convertPort maps a compose port; compose-go has already expanded short
// syntax ranges ("8000-8002:8000-8002") into one entry per port.
func (s *source) convertPort(svc string, p types.ServicePortConfig) ([]deployer.PortSpec, error) {
	bad := func(format string, args ...any) error {
		return &Error{File: s.name, Line: s.lineAt("services." + svc + ".ports"),
			Err: fmt.Errorf("service %s: port %s: %s", svc, portString(p), fmt.Sprintf(format, args...))}
	}
	if p.Target == 0 || p.Target > 65535 {
		return nil, bad("container port %d out of range", p.Target)
	}
	proto := strings.ToLower(p.Protocol)
	if proto == "" {
		proto = "tcp"
	}
	if proto != "tcp" && proto != "udp" && proto != "sctp" {
		return nil, bad("unknown protocol %q", p.Protocol)
	}
	spec := deployer.PortSpec{HostIP: p.HostIP, ContainerPort: uint16(p.Target), Protocol: proto}
	if p.Published == "" {
		return []deployer.PortSpec{spec}, nil
	}
	lo, hi, isRange := strings.Cut(p.Published, "-")
	first, err := strconv.ParseUint(lo, 10, 16)
	if err != nil {
		return nil, bad("host port %q is not a port number", p.Published)
	}
	if isRange {
		last, err := strconv.ParseUint(hi, 10, 16)
		if err != nil || last < first {
			return nil, bad("host port range %q is invalid", p.Published)
		}
		// One container port on a host range means "any free port of the
		// range"; the first is the deterministic choice.
		s.warnf(s.lineAt("services."+svc+".ports"), "service %s: host port range %s for one container port: using %d", svc, p.Published, first)
	}
	spec.HostPort = uint16(first)
	return []deployer.PortSpec{spec}, nil
}

func portString(p types.ServicePortConfig) string {
	if p.Published == "" {
		return strconv.Itoa(int(p.Target))
	}
	return p.Published + ":" + strconv.Itoa(int(p.Target))
}

// convertVolume renders a volume in docker's "src:dst[:mode]" short form.
func (s *source) convertVolume(svc string, v types.ServiceVolumeConfig) string {
	if v.Type == types.VolumeTypeTmpfs || v.Type == types.VolumeTypeNamedPipe || v.Type == types.VolumeTypeImage {
		s.warnf(s.lineAt("services."+svc+".volumes"), "service %s: %s volume %s is not supported, ignored", svc, v.Type, v.Target)
		return ""
	}
	var opts []string
	if v.ReadOnly {
		opts = append(opts, "ro")
	}
	if v.Bind != nil && v.Bind.SELinux != "" {
		opts = append(opts, v.Bind.SELinux)
	}
	if v.Bind != nil && v.Bind.Propagation != "" {
		opts = append(opts, v.Bind.Propagation)
	}
	if v.Volume != nil && v.Volume.NoCopy {
		opts = append(opts, "nocopy")
	}
	out := v.Target
	if v.Source != "" {
		out = v.Source + ":" + v.Target
	}
	if len(opts) > 0 {
		out += ":" + strings.Join(opts, ",")
	}
	return out
}
