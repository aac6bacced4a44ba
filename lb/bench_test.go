package lb

import (
	"testing"
	"time"
)

// BenchmarkLBVersusDirect measures requests per second through the LB
// against the same backend asked directly, in one run, and reports the
// ratio (goal: at least 70%). Run:
//
//	go test ./lb -run '^$' -bench LBVersusDirect -benchtime 1x
func BenchmarkLBVersusDirect(b *testing.B) {
	be := backend(b, "ok")
	l := newLB(b)
	if err := l.Apply(Config{Rules: []Rule{{SourcePort: 80, Backends: []string{hostOf(be)}}}}); err != nil {
		b.Fatal(err)
	}
	via := "http://" + l.Addr(80).String() + "/"
	const conc, d = 8, time.Second
	b.ResetTimer()
	for range b.N {
		direct, derr := Throughput(be.URL+"/", conc, d)
		through, lerr := Throughput(via, conc, d)
		if derr+lerr > 0 {
			b.Fatalf("errors: direct %d, via lb %d", derr, lerr)
		}
		b.ReportMetric(direct, "direct-req/s")
		b.ReportMetric(through, "lb-req/s")
		b.ReportMetric(100*through/direct, "lb/direct-%")
		b.Logf("direct %.0f req/s, through the LB %.0f req/s (%.0f%%)", direct, through, 100*through/direct)
	}
}
