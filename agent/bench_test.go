package main

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"kassa-agent/payments/smartpay"
)

// BenchmarkScanToCommit measures, over the real serial path, the time from the
// last byte of a Smart Pay code written to the scanner's line to the commit
// request arriving at the Smart Pay sandbox (zero latency). Each iteration is
// 1000 scans; p50/p99 are reported, next to the time the same bytes take on the
// wire at 9600 and 115200 baud. Scans are spaced as buyers are (each one after
// the previous one's bookkeeping is done).
func BenchmarkScanToCommit(b *testing.B) {
	r := newRig(b, rigOptions{logLevel: "info"})
	r.startInProcess()
	const scans = 1000
	for b.Loop() {
		lat := make([]time.Duration, 0, scans)
		var codeLen int
		for i := range scans {
			code := r.till.Sandbox.NewCode()
			codeLen = len(code) + 1 // + CR
			before := r.till.Sandbox.Count(smartpay.OpCommit)
			if err := r.till.ScannerWrite([]byte(code + "\r")); err != nil {
				b.Fatal(err)
			}
			sent := time.Now()
			var at time.Time
			for deadline := time.Now().Add(5 * time.Second); ; {
				if r.till.Sandbox.Count(smartpay.OpCommit) > before {
					at = lastCommit(r)
					break
				}
				if time.Now().After(deadline) {
					b.Fatalf("scan %d never reached the sandbox", i)
				}
				time.Sleep(500 * time.Microsecond) // the figure comes from the sandbox's clock, not this loop
			}
			lat = append(lat, at.Sub(sent))
			// Buyers come seconds apart: let this scan's bookkeeping (its
			// record, the cancel of the code it replaced) finish first, so
			// each figure is one scan's latency, not a queue's.
			for r.till.Sandbox.Count(smartpay.OpCancel) < i {
				time.Sleep(time.Millisecond)
			}
			time.Sleep(5 * time.Millisecond)
		}
		slices.Sort(lat)
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
		b.ReportMetric(wireMS(codeLen, 9600), "wire9600-ms")
		b.ReportMetric(wireMS(codeLen, 115200), "wire115200-ms")
		b.Logf("code %d bytes; p50 %v p99 %v max %v", codeLen, lat[len(lat)/2], lat[len(lat)*99/100], lat[len(lat)-1])
	}
}

func lastCommit(r *rig) time.Time {
	reqs := r.till.Sandbox.Requests()
	for i := len(reqs) - 1; i >= 0; i-- {
		if reqs[i].Op == smartpay.OpCommit {
			return reqs[i].Time
		}
	}
	panic(fmt.Sprint("no commit in ", len(reqs), " requests"))
}

// wireMS is how long n bytes take on an 8N1 line (10 bits a byte).
func wireMS(n, baud int) float64 { return float64(n*10) / float64(baud) * 1000 }
