package shtrih_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"kassa-agent/fiscal"
	"kassa-agent/fiscal/shtrih"
	"kassa-agent/fiscal/shtrihsim"
)

// memJournal keeps the benchmark about the wire, not the disk.
type memJournal struct {
	mu sync.Mutex
	m  map[string]fiscal.Entry
}

func (j *memJournal) Begin(_ context.Context, op fiscal.Pending) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if _, ok := j.m[op.ID]; ok {
		return fiscal.ErrJournalExists
	}
	j.m[op.ID] = fiscal.Entry{Op: op}
	return nil
}
func (j *memJournal) Finish(_ context.Context, id string, doc fiscal.Document) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	e := j.m[id]
	e.Done, e.Doc = true, doc
	j.m[id] = e
	return nil
}
func (j *memJournal) Abort(_ context.Context, id string) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	delete(j.m, id)
	return nil
}
func (j *memJournal) Get(_ context.Context, id string) (fiscal.Entry, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	e, ok := j.m[id]
	if !ok {
		return e, fiscal.ErrJournalNotFound
	}
	return e, nil
}
func (j *memJournal) Pending(context.Context) ([]fiscal.Pending, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	var out []fiscal.Pending
	for _, e := range j.m {
		if !e.Done {
			out = append(out, e.Op)
		}
	}
	return out, nil
}

func tenItems() fiscal.Receipt {
	r := fiscal.Receipt{Type: fiscal.Sale}
	for i := range 10 {
		r.Items = append(r.Items, fiscal.Item{Name: fmt.Sprintf("Товар номер %d", i+1), Quantity: fiscal.QuantityOne, Price: int64(1000 + 37*i), VAT: fiscal.VAT22})
	}
	r.Payments = []fiscal.Payment{{Kind: fiscal.Electronic, Amount: r.Total()}}
	return r
}

// minimumExchange is what the protocol needs for a receipt with the recovery rule:
// short status, FF01h (the FD before), 8Dh, one FF46h per item, FF45h; each a
// command frame, the device's ACK, the reply frame and the host's ACK.
func minimumExchange(r fiscal.Receipt) (roundTrips, bytes int) {
	frame := func(cmd uint16, params, reply int) int {
		cmdLen := 1
		if cmd > 0xFF {
			cmdLen = 2
		}
		return (3 + cmdLen + params) + 1 + (3 + cmdLen + 1 + reply) + 1
	}
	bytes += frame(shtrih.CmdShortStatus, 4, 14)
	bytes += frame(shtrih.CmdFNStatus, 4, 30)
	bytes += frame(shtrih.CmdOpenReceipt, 5, 1)
	for _, it := range r.Items {
		bytes += frame(shtrih.CmdFNOperation, 30+len(shtrih.Win1251(it.Name)), 0)
	}
	bytes += frame(shtrih.CmdFNCloseReceipt, 4+80+1+30+1, 13)
	return 4 + len(r.Items), bytes
}

func BenchmarkReceipt10Items(b *testing.B) {
	for _, baud := range []int{0, 115200} {
		b.Run(fmt.Sprintf("baud=%d", baud), func(b *testing.B) {
			r := newTCPRig(b, shtrihsim.Options{Baud: baud}, shtrih.Options{AutoOpenShift: true, Journal: &memJournal{m: map[string]fiscal.Entry{}},
				Timeouts: shtrih.Timeouts{Byte: 100 * time.Millisecond, ENQ: 500 * time.Millisecond, Reply: 5 * time.Second, Long: 35 * time.Second}})
			ctx := context.Background()
			rc := tenItems()
			if _, err := r.drv.PrintReceipt(ctx, "warm", rc); err != nil { // device info, shift open
				b.Fatal(err)
			}
			s0 := r.drv.Stats()
			b.ResetTimer()
			start := time.Now()
			for i := 0; b.Loop(); i++ {
				if _, err := r.drv.PrintReceipt(ctx, fmt.Sprint("b", i), rc); err != nil {
					b.Fatal(err)
				}
			}
			elapsed := time.Since(start)
			s := r.drv.Stats()
			n := float64(b.N)
			rt := float64(s.RoundTrips-s0.RoundTrips) / n
			bytes := float64(s.BytesOut-s0.BytesOut+s.BytesIn-s0.BytesIn) / n
			minRT, minBytes := minimumExchange(rc)
			b.ReportMetric(rt, "roundtrips/op")
			b.ReportMetric(bytes, "wirebytes/op")
			b.ReportMetric(rt/float64(minRT), "roundtrips/min")
			b.ReportMetric(bytes/float64(minBytes), "bytes/min")
			if baud > 0 {
				wire := time.Duration(bytes * 10 * float64(time.Second) / float64(baud))
				b.ReportMetric(float64(wire.Microseconds())/1000, "wire-ms/op")
				b.ReportMetric(float64(elapsed)/n/float64(wire), "time/wire")
			}
		})
	}
}
