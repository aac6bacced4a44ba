package containers

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"

	"github.com/dockmaster/dockmaster/internal/store"
)

func TestRingKeepsTheLastSamples(t *testing.T) {
	r := newRing(3)
	t0 := time.Unix(1000, 0)
	for i := range 5 {
		r.add(Sample{T: t0.Add(time.Duration(i) * time.Second), MemBytes: uint64(i)})
	}
	got := r.since(time.Time{})
	if len(got) != 3 || got[0].MemBytes != 2 || got[2].MemBytes != 4 {
		t.Fatalf("ring = %+v, want samples 2..4", got)
	}
	if s := r.since(t0.Add(3 * time.Second)); len(s) != 1 || s[0].MemBytes != 4 {
		t.Fatalf("since = %+v", s)
	}
	if hs := newHostStats(time.Hour, time.Millisecond); hs.ringSize() != 3600 {
		t.Fatalf("ring size %d, want the 3600 cap", hs.ringSize())
	}
}

func TestSampleRatesFromTwoReadings(t *testing.T) {
	h := newHostStats(time.Hour, time.Second)
	t0 := time.Unix(1000, 0)
	read := func(at time.Time, cpu, sys, rx uint64) container.StatsResponse {
		var st container.StatsResponse
		st.Read = at
		st.CPUStats.CPUUsage.TotalUsage, st.CPUStats.SystemUsage, st.CPUStats.OnlineCPUs = cpu, sys, 2
		st.MemoryStats.Usage, st.MemoryStats.Stats = 300, map[string]uint64{"inactive_file": 100}
		st.Networks = map[string]container.NetworkStats{"eth0": {RxBytes: rx}}
		return st
	}
	h.record(t0, map[string]container.StatsResponse{"a": read(t0, 0, 0, 0)})
	if len(h.byID) != 0 {
		t.Fatal("a first reading must only set the base")
	}
	h.record(t0.Add(2*time.Second), map[string]container.StatsResponse{"a": read(t0.Add(2*time.Second), 50, 100, 4000)})
	s, ok := h.byID["a"].last()
	// 50/100 of the system's time on 2 CPUs is one core busy: 100%.
	if !ok || s.CPUPercent != 100 || s.MemBytes != 200 || s.NetRxBps != 2000 {
		t.Fatalf("sample = %+v, want cpu 100%%, mem 200 (cache dropped), rx 2000 B/s", s)
	}
	if l, _ := h.host.last(); l.CPUPercent != 100 {
		t.Fatalf("host sum = %+v", l)
	}
}

func TestChartDrawsEscapedSVG(t *testing.T) {
	c := string(Chart("CPU <x>", []float64{0, 50, 100}, func(v float64) string { return "v" }))
	if !strings.HasPrefix(c, "<svg") || !strings.Contains(c, "<polyline") || strings.Contains(c, "<x>") || strings.Contains(c, "style=") {
		t.Fatalf("chart = %s", c)
	}
	if e := string(Chart("CPU", nil, func(float64) string { return "" })); strings.Contains(e, "polyline") || !strings.Contains(e, "no data") {
		t.Fatalf("empty chart = %s", e)
	}
}

func TestResolveAmbiguousNamesBothHosts(t *testing.T) {
	s := New(Options{Hosts: hostList{}, StatsInterval: -1})
	defer s.Close()
	for _, h := range []string{"a", "b"} {
		w := newHostWatch(storeHost("prod", h), time.Hour, time.Second)
		w.state = "active"
		close(w.synced)
		w.byID[h+"1"] = Container{Env: "prod", Host: h, ID: h + "1234567", Name: "web"}
		s.hosts["prod/"+h] = w
	}
	_, err := s.resolve(t.Context(), "prod", "", "web")
	var ae *AmbiguousError
	if !errorsAs(err, &ae) || len(ae.Matches) != 2 {
		t.Fatalf("err = %v, want both hosts named", err)
	}
	if c, err := s.resolve(t.Context(), "prod", "b", "web"); err != nil || c.Host != "b" {
		t.Fatalf("with host: %+v %v", c, err)
	}
}

func storeHost(env, name string) store.Host { return store.Host{Environment: env, Name: name} }

func errorsAs(err error, target any) bool { return errors.As(err, target) }
