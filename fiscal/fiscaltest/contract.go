// Package fiscaltest holds conformance tests any fiscal.Journal implementation runs.
package fiscaltest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"kassa-agent/fiscal"
)

// JournalContract checks the behaviour PrintReceipt relies on. open returns a journal
// over fresh storage when called with reopen=false, and the same storage re-opened
// (as after a restart) when reopen=true.
func JournalContract(t *testing.T, open func(t *testing.T, reopen bool) fiscal.Journal) {
	ctx := context.Background()
	rcpt := fiscal.Receipt{Type: fiscal.Sale, Items: []fiscal.Item{{Name: "Молоко", Quantity: fiscal.QuantityOne, Price: 8990, VAT: fiscal.VAT10}},
		Payments: []fiscal.Payment{{Kind: fiscal.Electronic, Amount: 8990}}, Buyer: "+79990000000"}
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

	j := open(t, false)
	if _, err := j.Get(ctx, "p1"); !errors.Is(err, fiscal.ErrJournalNotFound) {
		t.Fatalf("Get missing: %v, want ErrJournalNotFound", err)
	}
	if err := j.Begin(ctx, fiscal.Pending{ID: "p1", Receipt: rcpt, LastFD: 41, FN: "9999078900001234", Started: t0}); err != nil {
		t.Fatal(err)
	}
	if err := j.Begin(ctx, fiscal.Pending{ID: "p1", Receipt: rcpt, LastFD: 42}); !errors.Is(err, fiscal.ErrJournalExists) {
		t.Fatalf("second Begin: %v, want ErrJournalExists", err)
	}
	if err := j.Begin(ctx, fiscal.Pending{ID: "p2/with:odd chars", Receipt: rcpt, LastFD: 43, Started: t0.Add(time.Second)}); err != nil {
		t.Fatal(err)
	}
	p, err := j.Pending(ctx)
	if err != nil || len(p) != 2 || p[0].ID != "p1" || p[1].ID != "p2/with:odd chars" {
		t.Fatalf("Pending = %+v, %v", p, err)
	}
	if p[0].LastFD != 41 || p[0].Receipt.Items[0].Name != "Молоко" || p[0].Receipt.Buyer != "+79990000000" || !p[0].Started.Equal(t0) {
		t.Fatalf("pending op not kept intact: %+v", p[0])
	}

	// Survives a restart.
	j = open(t, true)
	e, err := j.Get(ctx, "p1")
	if err != nil || e.Done || e.Op.LastFD != 41 || e.Op.Receipt.Total() != 8990 {
		t.Fatalf("after reopen Get = %+v, %v", e, err)
	}
	doc := fiscal.Document{FD: 42, FP: 123456789, FNNumber: "9999078900001234", Total: 8990, Shift: 3, ReceiptNumber: 7, Time: t0, Type: fiscal.Sale}
	if err := j.Finish(ctx, "p1", doc); err != nil {
		t.Fatal(err)
	}
	if err := j.Finish(ctx, "p1", doc); err != nil {
		t.Fatalf("repeated identical Finish: %v", err)
	}
	if err := j.Finish(ctx, "p1", fiscal.Document{FD: 99, FP: 1}); err == nil {
		t.Fatal("Finish with another document must fail")
	}
	if err := j.Finish(ctx, "nope", doc); !errors.Is(err, fiscal.ErrJournalNotFound) {
		t.Fatalf("Finish unknown: %v", err)
	}
	if err := j.Abort(ctx, "p1"); err == nil {
		t.Fatal("Abort of a finished op must fail")
	}
	if err := j.Abort(ctx, "p2/with:odd chars"); err != nil {
		t.Fatal(err)
	}
	j = open(t, true)
	e, err = j.Get(ctx, "p1")
	if err != nil || !e.Done || e.Doc.FD != 42 || e.Doc.FP != 123456789 || e.Doc.ReceiptNumber != 7 || !e.Doc.Time.Equal(t0) {
		t.Fatalf("finished entry after reopen = %+v, %v", e, err)
	}
	if _, err := j.Get(ctx, "p2/with:odd chars"); !errors.Is(err, fiscal.ErrJournalNotFound) {
		t.Fatalf("aborted op still there: %v", err)
	}
	if p, err := j.Pending(ctx); err != nil || len(p) != 0 {
		t.Fatalf("Pending after finish/abort = %+v, %v", p, err)
	}
	// An aborted id may begin again (the receipt is printed anew).
	if err := j.Begin(ctx, fiscal.Pending{ID: "p2/with:odd chars", Receipt: rcpt, LastFD: 50, Started: t0}); err != nil {
		t.Fatalf("Begin after Abort: %v", err)
	}

	// Concurrent Begins of one id: exactly one wins.
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := 0
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := j.Begin(ctx, fiscal.Pending{ID: "race", LastFD: uint32(i), Started: t0}); err == nil {
				mu.Lock()
				wins++
				mu.Unlock()
			} else if !errors.Is(err, fiscal.ErrJournalExists) {
				t.Error(fmt.Errorf("concurrent Begin: %w", err))
			}
		}()
	}
	wg.Wait()
	if wins != 1 {
		t.Fatalf("%d concurrent Begins of one id succeeded, want 1", wins)
	}
}
