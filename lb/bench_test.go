package lb

import (
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Throughput hammers url with conc keep-alive clients for d and returns
// requests per second and the number of failed requests.
func Throughput(url string, conc int, d time.Duration) (rps float64, errs int64) {
	tr := &http.Transport{MaxIdleConnsPerHost: conc, MaxIdleConns: conc}
	defer tr.CloseIdleConnections()
	cl := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	var n, bad atomic.Int64
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	start := time.Now()
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				resp, err := cl.Get(url)
				if err != nil {
					bad.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					bad.Add(1)
					continue
				}
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	return float64(n.Load()) / time.Since(start).Seconds(), bad.Load()
}

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
