package testenv

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"
)

// StateRoot holds one directory per harness host (h<X>) and the slot lock
// files (slot-<X>.lock). It is short on purpose: unix socket paths are
// limited to 108 bytes and dockerd and containerd put sockets under it.
const StateRoot = "/tmp/dockmaster-testenv"

// Slot indexes X give each host 127.0.0.X, bridge dm-br<X> with 10.250.X.1/24
// and address pool 10.251.X.0/24. 127.0.0.1 belongs to the default daemon.
const (
	firstSlot = 2
	lastSlot  = 254
)

const (
	hostStartTimeout = 30 * time.Second
	hostStopTimeout  = 20 * time.Second
)

// Host is an extra dockerd started by StartHost: one simulated Docker host of
// an environment. Its published ports bind 127.0.0.X by default (dockerd
// --ip), so two hosts can publish the same port. There is no NAT: its
// containers reach this machine's servers that listen on all addresses at
// Gateway, and nothing on 127.0.0.1 (that is their own loopback). Its daemon,
// not being in a container, reaches everything, e.g. a Registry for pulls.
// User-defined networks created on it get /28 subnets of 10.251.X.0/24 (16
// at most), so networks of different hosts never overlap.
type Host struct {
	Name     string         // the name given to StartHost
	Socket   string         // unix socket path of its API
	Endpoint string         // "unix://" + Socket, for DOCKER_HOST or client.WithHost
	IP       string         // 127.0.0.X, the default IP its published ports bind
	Client   *client.Client // API client (version negotiated), closed on cleanup

	Index   int    // X, unique among live hosts of all test processes
	Bridge  string // dm-br<X>, the default bridge of its containers
	Subnet  string // 10.250.X.0/24, the bridge's network
	Gateway string // 10.250.X.1, this machine as seen from its containers
	Dir     string // StateRoot/h<X>: data-root, exec-root, socket, pidfile, log
	PID     int    // dockerd's process id
}

// StartHost starts an extra dockerd and returns it once it answers and has
// BaseImage. Each host gets its own data-root, exec-root, containerd, bridge
// (created here with `ip link`), address pools and 127.0.0.X; the index X is
// claimed with a flock on StateRoot/slot-<X>.lock, so test processes running
// in parallel never share one, and leftovers of a killed test are cleared
// before reuse. The daemon runs with --iptables=false: a second daemon with
// iptables on would flush the default daemon's DOCKER chains; published
// ports still work through docker-proxy.
//
// Cleanup (even when the test fails): force-remove its containers, stop
// dockerd (SIGTERM, then SIGKILL after 20s), unmount what it left under Dir,
// delete the bridge and Dir, release the slot. Cleanup problems are reported
// with t.Errorf. Needs root and the default daemon's tools (see
// scripts/setup.sh); skips like Docker does when Docker is unavailable.
func StartHost(t testing.TB, name string) *Host {
	t.Helper()
	Docker(t) // same skip rules as every Docker test
	if os.Geteuid() != 0 {
		needDocker(t, "StartHost needs root (dockerd, ip link)")
	}
	for _, bin := range []string{"dockerd", "ip"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("testenv: StartHost %s: %v (see scripts/setup.sh)", name, err)
		}
	}
	idx, lock, err := claimSlot()
	if err != nil {
		t.Fatalf("testenv: StartHost %s: %v", name, err)
	}
	h := &Host{
		Name:    name,
		Index:   idx,
		IP:      fmt.Sprintf("127.0.0.%d", idx),
		Bridge:  fmt.Sprintf("dm-br%d", idx),
		Subnet:  fmt.Sprintf("10.250.%d.0/24", idx),
		Gateway: fmt.Sprintf("10.250.%d.1", idx),
		Dir:     filepath.Join(StateRoot, fmt.Sprintf("h%d", idx)),
	}
	h.Socket = filepath.Join(h.Dir, "docker.sock")
	h.Endpoint = "unix://" + h.Socket

	var proc *daemonProc
	started := false
	t.Cleanup(func() {
		defer lock.Close() // closing the fd releases the flock
		if started && t.Failed() {
			t.Logf("testenv: host %s (%s) dockerd log tail:\n%s", name, h.Dir, readTail(filepath.Join(h.Dir, "dockerd.log")))
		}
		for _, err := range h.teardown(proc) {
			t.Errorf("testenv: cleanup of host %s: %v", name, err)
		}
	})

	// A test process killed earlier may have left this slot's daemon running.
	for _, err := range h.teardown(nil) {
		t.Fatalf("testenv: StartHost %s: clearing slot %d: %v", name, idx, err)
	}
	if err := allowHarnessForwarding(); err != nil {
		t.Fatalf("testenv: StartHost %s: %v", name, err)
	}
	proc, err = h.start()
	if err != nil {
		t.Fatalf("testenv: StartHost %s: %v", name, err)
	}
	h.PID = proc.cmd.Process.Pid
	started = true
	BusyboxImage(t, h.Client)
	return h
}

// claimSlot locks the first free StateRoot/slot-<X>.lock. The lock lives as
// long as the returned file stays open, and dies with the process.
func claimSlot() (int, *os.File, error) {
	if err := os.MkdirAll(StateRoot, 0o755); err != nil {
		return 0, nil, fmt.Errorf("state dir: %w", err)
	}
	for x := firstSlot; x <= lastSlot; x++ {
		f, err := os.OpenFile(filepath.Join(StateRoot, fmt.Sprintf("slot-%d.lock", x)), os.O_CREATE|os.O_RDWR, 0o644)
		if err != nil {
			return 0, nil, fmt.Errorf("slot %d: %w", x, err)
		}
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return x, f, nil
		}
		f.Close()
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return 0, nil, fmt.Errorf("lock slot %d: %w", x, err)
		}
	}
	return 0, nil, fmt.Errorf("all slots %d..%d of %s are taken", firstSlot, lastSlot, StateRoot)
}

// daemonProc is a dockerd started by Host.start.
type daemonProc struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd.Wait returns
	err    error         // cmd.Wait's result, valid after exited is closed
}

func (h *Host) start() (*daemonProc, error) {
	data, execRoot := filepath.Join(h.Dir, "data"), filepath.Join(h.Dir, "exec")
	for _, d := range []string{data, execRoot} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("mkdir: %w", err)
		}
	}
	// Its own config: /etc/docker/daemon.json may set hosts or data-root. Its
	// own key (a config-file-only option): dockerd 20.10 derives the engine ID
	// from it, and the default path is shared with the default daemon.
	cfg := filepath.Join(h.Dir, "daemon.json")
	conf := fmt.Sprintf("{\"deprecated-key-path\": %q}\n", filepath.Join(h.Dir, "key.json"))
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		return nil, fmt.Errorf("write daemon config: %w", err)
	}
	gw := h.Gateway + "/24"
	for _, args := range [][]string{
		{"link", "add", "name", h.Bridge, "type", "bridge"},
		{"addr", "add", gw, "dev", h.Bridge},
		{"link", "set", h.Bridge, "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		}
	}
	logPath := filepath.Join(h.Dir, "dockerd.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("create log: %w", err)
	}
	defer logf.Close() // dockerd has its own copy
	cmd := exec.Command("dockerd",
		"--config-file", cfg,
		"--data-root", data,
		"--exec-root", execRoot,
		"--pidfile", filepath.Join(h.Dir, "docker.pid"),
		"--host", h.Endpoint,
		"--bridge", h.Bridge,
		"--ip", h.IP,
		"--iptables=false",
		"--ip-masq=false",
		"--ip-forward=false",
		"--default-address-pool", fmt.Sprintf("base=10.251.%d.0/24,size=28", h.Index),
		"--shutdown-timeout", "2",
	)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start dockerd: %w", err)
	}
	p := &daemonProc{cmd: cmd, exited: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.exited) }()

	cli, err := client.NewClientWithOpts(client.WithHost(h.Endpoint), client.WithAPIVersionNegotiation())
	if err != nil {
		return p, fmt.Errorf("client for %s: %w", h.Endpoint, err)
	}
	h.Client = cli
	deadline := time.Now().Add(hostStartTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := cli.Ping(ctx)
		cancel()
		if err == nil {
			return p, nil
		}
		select {
		case <-p.exited:
			return p, fmt.Errorf("dockerd exited before answering (%v); log tail:\n%s", p.err, readTail(logPath))
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return p, fmt.Errorf("dockerd gave no answer on %s within %s: %w; log tail:\n%s", h.Endpoint, hostStartTimeout, err, readTail(logPath))
		}
	}
}

// teardown removes everything of this host's slot; proc is the daemon this
// process started, or nil to clear leftovers found through the pidfiles. It
// returns every problem met, after trying every step.
func (h *Host) teardown(proc *daemonProc) []error {
	var errs []error
	if h.Client != nil {
		if proc != nil {
			select {
			case <-proc.exited:
			default:
				h.removeContainers()
			}
		}
		_ = h.Client.Close()
	}
	if proc != nil {
		if err := stopProc(proc); err != nil {
			errs = append(errs, err)
		}
	}
	// dockerd and its containerd by pidfile: leftovers of a killed test, or a
	// containerd that outlived its SIGKILLed dockerd.
	for _, pidfile := range []string{
		filepath.Join(h.Dir, "docker.pid"),
		filepath.Join(h.Dir, "exec", "containerd", "containerd.pid"),
	} {
		if err := stopByPidfile(pidfile, h.Dir); err != nil {
			errs = append(errs, err)
		}
	}
	if err := unmountUnder(h.Dir); err != nil {
		errs = append(errs, err)
	}
	if _, err := os.Stat("/sys/class/net/" + h.Bridge); err == nil {
		if out, err := exec.Command("ip", "link", "del", h.Bridge).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("ip link del %s: %w: %s", h.Bridge, err, strings.TrimSpace(string(out))))
		}
	}
	// dockerd leaves the bridges of its user-defined networks behind; they
	// hold the slot's 10.251.X.0/24 pool and would exhaust it over runs.
	errs = append(errs, deleteBridgesIn(fmt.Sprintf("10.251.%d.", h.Index))...)
	if err := os.RemoveAll(h.Dir); err != nil {
		errs = append(errs, fmt.Errorf("remove %s: %w", h.Dir, err))
	}
	return errs
}

// harnessNets covers every harness host's bridge (10.250.X.0/24) and
// networks (10.251.X.0/24).
const harnessNets = "10.250.0.0/15"

// allowHarnessForwarding lets containers of harness hosts reach each other,
// as on a real host: the harness daemons run without iptables, and the
// default daemon's FORWARD policy (DROP, with bridge netfilter on) would
// drop their traffic. The rule goes in DOCKER-USER, the chain dockerd
// leaves to users; without that chain there is nothing to open.
func allowHarnessForwarding() error {
	rule := []string{"DOCKER-USER", "-s", harnessNets, "-d", harnessNets, "-j", "ACCEPT"}
	if exec.Command("iptables", append([]string{"-n", "-L"}, rule[0])...).Run() != nil {
		return nil
	}
	if exec.Command("iptables", append([]string{"-C"}, rule...)...).Run() == nil {
		return nil
	}
	if out, err := exec.Command("iptables", append([]string{"-I"}, rule...)...).CombinedOutput(); err != nil {
		return fmt.Errorf("iptables -I %v: %w: %s", rule, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// deleteBridgesIn removes every interface holding an IPv4 address that
// starts with prefix.
func deleteBridgesIn(prefix string) []error {
	out, err := exec.Command("ip", "-o", "-4", "addr", "show").Output()
	if err != nil {
		return []error{fmt.Errorf("ip addr show: %w", err)}
	}
	var errs []error
	for _, line := range strings.Split(string(out), "\n") {
		// "23: br-1a2b3c    inet 10.251.3.1/28 brd 10.251.3.15 scope global br-1a2b3c"
		f := strings.Fields(line)
		if len(f) < 4 || f[2] != "inet" || !strings.HasPrefix(f[3], prefix) {
			continue
		}
		if out, err := exec.Command("ip", "link", "del", f[1]).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("ip link del %s: %w: %s", f[1], err, strings.TrimSpace(string(out))))
		}
	}
	return errs
}

// removeContainers force-removes every container, in parallel: busybox
// processes run as PID 1 ignore SIGTERM, so a plain daemon shutdown would wait
// out each stop timeout.
func (h *Host) removeContainers() {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	list, err := h.Client.ContainerList(ctx, container.ListOptions{All: true})
	if err != nil {
		return // the daemon is going away regardless
	}
	var wg sync.WaitGroup
	for _, c := range list {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = h.Client.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true, RemoveVolumes: true})
		}()
	}
	wg.Wait()
}

// stopProc ends a dockerd this process started: SIGTERM, then SIGKILL to its
// whole process group after hostStopTimeout.
func stopProc(p *daemonProc) error {
	select {
	case <-p.exited:
		return nil
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		return nil
	case <-time.After(hostStopTimeout):
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-p.exited:
		return fmt.Errorf("dockerd pid %d ignored SIGTERM for %s; killed", p.cmd.Process.Pid, hostStopTimeout)
	case <-time.After(5 * time.Second):
		return fmt.Errorf("dockerd pid %d survives SIGKILL", p.cmd.Process.Pid)
	}
}

// stopByPidfile ends the process named in pidfile if it is still alive and
// its command line mentions dir (so a recycled pid of a stranger is left
// alone). It is not our child, so liveness is polled through /proc.
func stopByPidfile(pidfile, dir string) error {
	b, err := os.ReadFile(pidfile)
	if err != nil {
		return nil // no pidfile: nothing ran, or it exited cleanly and removed it
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return nil
	}
	owned := func() bool {
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		return err == nil && strings.Contains(string(cmdline), dir)
	}
	if !owned() {
		return nil
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	for deadline := time.Now().Add(hostStopTimeout); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if !owned() {
			return nil
		}
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	for range 50 {
		if !owned() {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("pid %d from %s survives SIGKILL", pid, pidfile)
}

// unmountUnder detaches every mount at or below dir, deepest first: dockerd
// leaves overlay and netns mounts that os.RemoveAll cannot cross.
func unmountUnder(dir string) error {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return fmt.Errorf("read mounts: %w", err)
	}
	defer f.Close()
	var points []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMountPath(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			points = append(points, mp)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read mounts: %w", err)
	}
	sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
	var errs []error
	for _, mp := range points {
		if err := syscall.Unmount(mp, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", mp, err))
		}
	}
	return errors.Join(errs...)
}

// unescapeMountPath undoes mountinfo's octal escapes (\040 for space etc.).
func unescapeMountPath(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
