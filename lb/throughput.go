package lb

import (
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Throughput is a small load generator for the LB's benchmarks (here and
// in test/): it hammers url with conc keep-alive clients for d and returns
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
