package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"kassa-agent/agent/internal/sale"
	"kassa-agent/payments/alif"
	"kassa-agent/payments/alikassa"
	"kassa-agent/payments/smartpay"
	"kassa-agent/payments/smartpay/sandbox"
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

// finalToPOS is one provider's side of BenchmarkFinalToPOS: start a payment
// and bring it to where the buyer pays, then make the provider's state final
// as the buyer would, and count the status requests the provider has seen.
type finalToPOS struct {
	name     string
	start    func(r *rig, key string) apiPayment // returns once the payment is processing
	pay      func(r *rig, p apiPayment)          // the provider's state becomes final (paid)
	statuses func(r *rig) int
}

var smartPayFinal = finalToPOS{
	name: "smartpay",
	start: func(r *rig, key string) apiPayment {
		require.NoError(r.t, r.till.Sandbox.Inject(sandbox.Fault{Kind: sandbox.Stuck}))
		p := r.create(key, saleBody(20480, milkReceipt))
		r.showCode()
		return r.waitState(p.ID, "processing", 10*time.Second)
	},
	pay: func(r *rig, p apiPayment) {
		require.NoError(r.t, r.till.Sandbox.Settle(p.SmartPay.PurchaseID, true))
	},
	statuses: func(r *rig) int { return r.till.Sandbox.Count(smartpay.OpStatus) },
}

// hostedFinal is a hosted provider's side of BenchmarkFinalToPOS; with
// notify, a verified notification is relayed right after the buyer pays.
func hostedFinal(h hosted, notify bool, statuses func(r *rig) int) finalToPOS {
	name := h.name
	if notify {
		name += "+notification"
	}
	return finalToPOS{
		name: name,
		start: func(r *rig, key string) apiPayment {
			p := r.create(key, h.body)
			return r.waitState(p.ID, "processing", 10*time.Second)
		},
		pay: func(r *rig, p apiPayment) {
			require.NoError(r.t, h.pay(r, p))
			if notify {
				require.Equal(r.t, 200, r.relayNotice(h.name, p))
			}
		},
		statuses: statuses,
	}
}

// relayNotice sends the provider's signed notification for p, as a relay would.
func (r *rig) relayNotice(provider string, p apiPayment) int {
	r.t.Helper()
	switch provider {
	case alif.Name:
		body := []byte(`{"id":"` + p.ProviderPaymentID + `"}`)
		mac := hmac.New(sha256.New, []byte(r.till.Alif.WebhookSecret()))
		mac.Write(body)
		return r.notice("POST", "/v1/providers/alif/webhook", body, map[string]string{"Signature": base64.StdEncoding.EncodeToString(mac.Sum(nil))})
	default:
		v, err := r.till.AliKassa.Notice(p.OrderID)
		require.NoError(r.t, err)
		return r.notice("GET", "/v1/providers/alikassa/notify?"+v.Encode(), nil, nil)
	}
}

func alifStatuses(r *rig) int { return r.till.Alif.Count(alif.OpStatus) }

func aliKassaStatuses(r *rig) int {
	n := 0
	for _, q := range r.till.AliKassa.Requests() {
		if q.Op == alikassa.OpStatus {
			n++
		}
	}
	return n
}

// BenchmarkFinalToPOS measures, per provider, the time from the provider's
// state becoming final (the buyer paid) to the POS's long-poll answering with
// the paid payment, and how many status requests a payment costs a second
// while the buyer pays. Each iteration is 10 payments; the buyer pays at a
// random moment 2–8 s after the payment reached the provider (confirming in
// a bank app or on a payment page takes seconds).
func BenchmarkFinalToPOS(b *testing.B) {
	for _, pr := range []finalToPOS{smartPayFinal,
		hostedFinal(hostedProviders[0], false, alifStatuses), hostedFinal(hostedProviders[0], true, alifStatuses),
		hostedFinal(hostedProviders[1], false, aliKassaStatuses), hostedFinal(hostedProviders[1], true, aliKassaStatuses)} {
		b.Run(pr.name, func(b *testing.B) {
			r := newRig(b, rigOptions{logLevel: "warn"})
			r.startInProcess(func(o *sale.Options) { o.PollMin, o.PollMax = 300*time.Millisecond, 800*time.Millisecond })
			const payments = 10
			for b.Loop() {
				lat := make([]time.Duration, 0, payments)
				var requests int
				var paying time.Duration
				for i := range payments {
					p := pr.start(r, fmt.Sprintf("bench-%d-%d", b.N, i))
					before, from := pr.statuses(r), time.Now()
					time.Sleep(2*time.Second + time.Duration(rand.Int64N(int64(6*time.Second))))
					paid := time.Now()
					pr.pay(r, p)
					for id := p.ID; p.State == "processing"; {
						p = apiPayment{}
						require.Equal(b, 200, r.call("GET", "/v1/payments/"+id+"?wait=5s", "", "", &p))
					}
					lat = append(lat, time.Since(paid))
					requests += pr.statuses(r) - before
					paying += time.Since(from)
					r.waitState(p.ID, "completed", 10*time.Second)
				}
				slices.Sort(lat)
				b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
				b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
				b.ReportMetric(float64(requests)/paying.Seconds(), "status/s")
				b.Logf("%s: p50 %v p99 %v max %v; %d status requests over %v of paying", pr.name,
					lat[len(lat)/2], lat[len(lat)*99/100], lat[len(lat)-1], requests, paying.Round(time.Millisecond))
			}
		})
	}
}

// BenchmarkPOSReceipt10Items: a 10-item cash receipt through the local API,
// from the POST to the answer with its fiscal sign, with the register's line
// at 115200 baud emulated; reported against the wire time of every frame
// exchanged during the call (the register's check before it, the receipt's
// commands, their replies). The simulator keeps its FN in memory here: its
// state file's fsync per command is the register's time, not the agent's.
func BenchmarkPOSReceipt10Items(b *testing.B) {
	r := newRig(b, rigOptions{logLevel: "warn", baud: 115200, memReg: true, tcpReg: os.Getenv("KASSA_BENCH_TCP") != ""})
	r.startInProcess()
	var items []string
	for i := range 10 {
		items = append(items, fmt.Sprintf(`{"name":"Товар %d","quantity":1000,"price":%d,"vat":"vat22"}`, i, 1000+i))
	}
	var total int64
	for i := range 10 {
		total += int64(1000 + i)
	}
	body := fmt.Sprintf(`{"receipt":{"items":[%s]},"payments":{"cash":%d}}`, strings.Join(items, ","), total)
	var elapsed time.Duration
	var bytes, rts int64
	var ratios []float64 // each receipt's time over its own wire time
	n := 0
	for b.Loop() {
		s0 := r.app.register.Stats()
		start := time.Now()
		var op apiOp
		if code := r.call("POST", "/v1/receipts", fmt.Sprintf("bench-r-%d", n), body, &op); code != 201 || op.Receipt == nil || op.Receipt.Document.FP == 0 {
			b.Fatalf("HTTP %d: %+v", code, op)
		}
		took := time.Since(start)
		elapsed += took
		s := r.app.register.Stats()
		bytes += s.BytesOut - s0.BytesOut + s.BytesIn - s0.BytesIn
		rts += s.RoundTrips - s0.RoundTrips
		ratios = append(ratios, float64(took)/(float64(s.BytesOut-s0.BytesOut+s.BytesIn-s0.BytesIn)*10*float64(time.Second)/115200))
		n++
	}
	// The median shows the agent's own cost; the mean also carries whatever
	// else the machine's two cores were doing (a scheduling stall of tens of
	// milliseconds moves the mean of a 100-receipt run by a few hundredths).
	slices.Sort(ratios)
	b.ReportMetric(ratios[len(ratios)/2], "p50-time/wire")
	b.ReportMetric(ratios[len(ratios)*9/10], "p90-time/wire")
	wire := time.Duration(float64(bytes) * 10 * float64(time.Second) / 115200)
	b.ReportMetric(float64(elapsed.Microseconds())/float64(n)/1000, "ms/receipt")
	b.ReportMetric(float64(wire.Microseconds())/float64(n)/1000, "wire-ms/receipt")
	b.ReportMetric(float64(elapsed)/float64(wire), "time/wire")
	b.ReportMetric(float64(rts)/float64(n), "roundtrips/receipt")
}
