package shtrih_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"kassa-agent/fiscal"
	"kassa-agent/fiscal/shtrih"
	"kassa-agent/fiscal/shtrihsim"
)

// TestCorrectionLinesEveryRate: under FFD 1.2 a correction carries its lines,
// so every 2026 rate can be corrected, on a sale and on a return; the FN's
// correction document holds each line with its row, tax and rate name.
func TestCorrectionLinesEveryRate(t *testing.T) {
	bothRigs(t, func(t *testing.T, r *rig) {
		ctx := context.Background()
		rates := []struct {
			vat  fiscal.VATRate
			row  int
			tax  int64 // of 100.00
			name string
		}{
			{fiscal.VAT22, 11, 1803, "НДС 22%"}, {fiscal.VAT22122, 12, 1803, "НДС 22/122"},
			{fiscal.VAT10, 2, 909, "НДС 10%"}, {fiscal.VAT10110, 6, 909, "НДС 10/110"},
			{fiscal.VAT5, 7, 476, "НДС 5%"}, {fiscal.VAT5105, 9, 476, "НДС 5/105"},
			{fiscal.VAT7, 8, 654, "НДС 7%"}, {fiscal.VAT7107, 10, 654, "НДС 7/107"},
			{fiscal.VAT0, 3, 0, "НДС 0%"}, {fiscal.NoVAT, 4, 0, "БЕЗ НДС"},
		}
		for _, typ := range []fiscal.ReceiptType{fiscal.Sale, fiscal.SaleReturn} {
			c := correction(0)
			c.Receipt.Type, c.Receipt.Items = typ, nil
			for _, rt := range rates {
				c.Receipt.Items = append(c.Receipt.Items, fiscal.Item{Name: "Товар " + rt.name, Quantity: fiscal.QuantityOne, Price: 10000, VAT: rt.vat})
			}
			c.Receipt.Payments = []fiscal.Payment{{Kind: fiscal.Electronic, Amount: c.Receipt.Total()}}
			doc, err := r.drv.PrintCorrection(ctx, "lines-"+typ.String(), c)
			if err != nil {
				t.Fatalf("%s: %v", typ, err)
			}
			got := docsOf(r.sim.Documents(), shtrihsim.DocCorrection)
			last := got[len(got)-1]
			if last.FD != doc.FD || last.FP != doc.FP || last.Operation != int(typ) || last.Total != 100000 || len(last.Items) != len(rates) {
				t.Fatalf("%s: FN %+v, caller %+v", typ, last, doc)
			}
			for i, rt := range rates {
				it := last.Items[i]
				if it.TaxRate != rt.row || it.Tax != rt.tax || it.RateName != rt.name || it.Sum != 10000 {
					t.Errorf("%s line %d (%s): FN row %d tax %d %q", typ, i, rt.name, it.TaxRate, it.Tax, it.RateName)
				}
			}
			if last.Tags[shtrih.TagCorrectionType] != "0" || last.Tags[shtrih.TagCorrectionDate] != "2026-11-20" {
				t.Fatalf("%s: tags %v", typ, last.Tags)
			}
			if doc.Shift == 0 || doc.ReceiptNumber == 0 || doc.QR != fiscal.QRString(doc, typ) {
				t.Fatalf("%s: document %+v", typ, doc)
			}
		}
		tape := r.sim.Tape()
		for _, want := range []string{"КАССОВЫЙ ЧЕК КОРРЕКЦИИ", "САМОСТОЯТЕЛЬНО", "Товар НДС 7/107"} {
			if !strings.Contains(tape, want) {
				t.Fatalf("tape lacks %q", want)
			}
		}
	})
}

// TestCorrectionAt20Percent: a 2025 settlement is corrected at 20 % only on a
// register that sends rates as given (T17П71 = 2); one left at 1 would total it
// at 22 %, so it is refused naming the line, with no document begun.
func TestCorrectionAt20Percent(t *testing.T) {
	ctx := context.Background()
	c := correction(10000)
	c.BaseDate = time.Date(2025, 12, 20, 0, 0, 0, 0, time.UTC)
	c.Receipt.Items[0].VAT = fiscal.VAT20
	for _, mode := range []int{1, 2} {
		t.Run(fmt.Sprint("T17П71=", mode), func(t *testing.T) {
			r := newTCPRig(t, shtrihsim.Options{VATMode: mode}, shtrih.Options{AutoOpenShift: true})
			doc, err := r.drv.PrintCorrection(ctx, "c20", c)
			got := docsOf(r.sim.Documents(), shtrihsim.DocCorrection)
			if mode == 1 {
				var fe *fiscal.Error
				if fiscal.CodeOf(err) != fiscal.CodeBadReceipt || !errorsAs(err, &fe) || fe.Field != "items[0].vat" || !strings.Contains(err.Error(), "T17П71") {
					t.Fatalf("mode 1: %v", err)
				}
				if len(got) != 0 || strings.Contains(r.sim.Tape(), "КОРРЕКЦИИ") {
					t.Fatal("a refused correction reached the FN or the tape")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 1 || got[0].FD != doc.FD || got[0].Items[0].TaxRate != 1 || got[0].Items[0].Tax != 1667 || got[0].Items[0].RateName != "НДС 20%" {
				t.Fatalf("FN %+v", got)
			}
		})
	}
}
