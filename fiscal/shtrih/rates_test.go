package shtrih_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"kassa-agent/fiscal"
	"kassa-agent/fiscal/shtrih"
	"kassa-agent/fiscal/shtrihsim"
)

// at moves the rig's shared clock to t.
func (r *rig) at(t time.Time) { r.clock.Advance(time.Until(t)) }

func oneLine(vat fiscal.VATRate, price int64) fiscal.Receipt {
	return fiscal.Receipt{Type: fiscal.Sale, TaxSystem: fiscal.USNIncome,
		Items:    []fiscal.Item{{Name: "Товар", Quantity: fiscal.QuantityOne, Price: price, VAT: vat}},
		Payments: []fiscal.Payment{{Kind: fiscal.Electronic, Amount: price}}}
}

// TestVATRatesOverTheWire prints one line at every current rate through the real
// driver and the simulator, which computes the tax itself and refuses a line whose
// tax the host computed at another rate. Tax = round_half_up(sum × r / (100 + r)).
func TestVATRatesOverTheWire(t *testing.T) {
	y2026 := time.Date(2026, 3, 10, 12, 0, 0, 0, time.Local)
	y2025 := time.Date(2025, 6, 10, 12, 0, 0, 0, time.Local)
	cases := []struct {
		vat     fiscal.VATRate
		price   int64
		when    time.Time
		tax     int64
		row     int
		printed string
	}{
		{fiscal.VAT22, 10000, y2026, 1803, 11, "НДС 22%"},
		{fiscal.VAT22122, 10000, y2026, 1803, 12, "НДС 22/122"},
		{fiscal.VAT10, 10000, y2026, 909, 2, "НДС 10%"},
		{fiscal.VAT10110, 10000, y2026, 909, 6, "НДС 10/110"},
		{fiscal.VAT5, 10000, y2026, 476, 7, "НДС 5%"},
		{fiscal.VAT5105, 10000, y2026, 476, 9, "НДС 5/105"},
		{fiscal.VAT7, 10000, y2026, 654, 8, "НДС 7%"},
		{fiscal.VAT7107, 10000, y2026, 654, 10, "НДС 7/107"},
		{fiscal.VAT0, 10000, y2026, 0, 3, "НДС 0%"},
		{fiscal.NoVAT, 10000, y2026, 0, 4, "БЕЗ НДС"},
		// Rounding: just under and just over half a kopeck.
		{fiscal.VAT22, 2, y2026, 0, 11, "НДС 22%"},       // 0.36
		{fiscal.VAT22, 3, y2026, 1, 11, "НДС 22%"},       // 0.54
		{fiscal.VAT10, 5, y2026, 0, 2, "НДС 10%"},        // 0.45
		{fiscal.VAT10, 6, y2026, 1, 2, "НДС 10%"},        // 0.55
		{fiscal.VAT5, 10, y2026, 0, 7, "НДС 5%"},         // 0.476
		{fiscal.VAT5, 11, y2026, 1, 7, "НДС 5%"},         // 0.524
		{fiscal.VAT7, 7, y2026, 0, 8, "НДС 7%"},          // 0.458
		{fiscal.VAT7, 8, y2026, 1, 8, "НДС 7%"},          // 0.523
		{fiscal.VAT22, 9999, y2026, 1803, 11, "НДС 22%"}, // 1803.1
		// 2025: 20 % still applies; exact halves round up.
		{fiscal.VAT20, 10000, y2025, 1667, 1, "НДС 20%"},
		{fiscal.VAT20, 3, y2025, 1, 1, "НДС 20%"}, // 0.5
		{fiscal.VAT20, 9, y2025, 2, 1, "НДС 20%"}, // 1.5
		{fiscal.VAT20120, 10000, y2025, 1667, 5, "НДС 20/120"},
	}
	for i, c := range cases {
		// Every rate on a sale and on its return: a return's tax is computed
		// and printed the same way.
		for _, typ := range []fiscal.ReceiptType{fiscal.Sale, fiscal.SaleReturn} {
			t.Run(fmt.Sprintf("%d_rate%d_%d_%s", i, c.vat, c.price, typ), func(t *testing.T) {
				r := newTCPRig(t, shtrihsim.Options{}, shtrih.Options{AutoOpenShift: true})
				r.at(c.when)
				rc := oneLine(c.vat, c.price)
				rc.Type = typ
				doc, err := r.drv.PrintReceipt(context.Background(), "p", rc)
				if err != nil {
					t.Fatalf("print: %v", err)
				}
				rs := receipts(r.sim.Documents())
				if len(rs) != 1 || len(rs[0].Items) != 1 || rs[0].Operation != int(typ) {
					t.Fatalf("FN receipts %+v", rs)
				}
				it := rs[0].Items[0]
				if it.Tax != c.tax || it.TaxRate != c.row || it.RateName != c.printed || doc.Total != c.price {
					t.Fatalf("line tax %d row %d %q, want %d row %d %q", it.Tax, it.TaxRate, it.RateName, c.tax, c.row, c.printed)
				}
				if !strings.Contains(r.sim.Tape(), c.printed) {
					t.Fatalf("tape lacks %q:\n%s", c.printed, r.sim.Tape())
				}
			})
		}
	}
}

// TestVAT20After2025Refused: a receipt dated 2026 or later with 20 % is wrong; it is
// refused before anything is sent, naming vat22. 22 % before 2026 likewise.
func TestVAT20After2025Refused(t *testing.T) {
	r := newTCPRig(t, shtrihsim.Options{}, shtrih.Options{AutoOpenShift: true})
	r.at(time.Date(2026, 1, 1, 0, 5, 0, 0, time.Local))
	for _, v := range []fiscal.VATRate{fiscal.VAT20, fiscal.VAT20120} {
		_, err := r.drv.PrintReceipt(context.Background(), fmt.Sprint("v", v), oneLine(v, 10000))
		if !errors.Is(err, fiscal.ErrBadReceipt) || !strings.Contains(err.Error(), "vat22") {
			t.Fatalf("rate %d in 2026: %v", v, err)
		}
	}
	r.at(time.Date(2025, 12, 31, 23, 50, 0, 0, time.Local))
	if _, err := r.drv.PrintReceipt(context.Background(), "v22", oneLine(fiscal.VAT22, 10000)); !errors.Is(err, fiscal.ErrBadReceipt) {
		t.Fatalf("22%% in 2025: %v", err)
	}
	if n := len(receipts(r.sim.Documents())); n != 0 {
		t.Fatalf("%d receipts printed", n)
	}
}

// TestVAT22InBothRegisterModes: 22 % and 22/122 go as rows 11 and 12, right
// whether the register's T17П71 is 1 (it would turn row 1 into 22 % itself) or 2
// (it uses exactly the row sent).
func TestVAT22InBothRegisterModes(t *testing.T) {
	for _, mode := range []int{1, 2} {
		r := newTCPRig(t, shtrihsim.Options{VATMode: mode}, shtrih.Options{AutoOpenShift: true})
		r.at(time.Date(2026, 2, 1, 10, 0, 0, 0, time.Local))
		rc := oneLine(fiscal.VAT22, 10000)
		rc.Items = append(rc.Items, fiscal.Item{Name: "Аванс", Quantity: fiscal.QuantityOne, Price: 5000, VAT: fiscal.VAT22122})
		rc.Payments[0].Amount = rc.Total()
		if _, err := r.drv.PrintReceipt(context.Background(), "v22", rc); err != nil {
			t.Fatalf("mode %d: %v", mode, err)
		}
		it := receipts(r.sim.Documents())[0].Items
		if it[0].TaxRate != 11 || it[0].Tax != 1803 || it[1].TaxRate != 12 || it[1].Tax != 902 {
			t.Fatalf("mode %d: lines %+v", mode, it)
		}
		if tape := r.sim.Tape(); !strings.Contains(tape, "СУММА НДС 22%") || !strings.Contains(tape, "=18.03") || !strings.Contains(tape, "СУММА НДС 22/122") {
			t.Fatalf("mode %d: tape:\n%s", mode, tape)
		}
	}
}

// TestReceiptTaxTotals: FF45h carries the tax sums of rows 1..6 the register
// checks; the receipt's totals per rate are printed under the total.
func TestReceiptTaxTotals(t *testing.T) {
	r := newTCPRig(t, shtrihsim.Options{}, shtrih.Options{AutoOpenShift: true})
	r.at(time.Date(2026, 4, 1, 10, 0, 0, 0, time.Local))
	rc := fiscal.Receipt{Type: fiscal.Sale, Items: []fiscal.Item{
		{Name: "Кофе", Quantity: fiscal.QuantityOne, Price: 10000, VAT: fiscal.VAT22},
		{Name: "Чай", Quantity: 3 * fiscal.QuantityOne, Price: 3333, VAT: fiscal.VAT22},
		{Name: "Молоко", Quantity: fiscal.QuantityOne, Price: 10000, VAT: fiscal.VAT10},
		{Name: "Книга", Quantity: fiscal.QuantityOne, Price: 10000, VAT: fiscal.VAT5},
		{Name: "Экспорт", Quantity: fiscal.QuantityOne, Price: 1000, VAT: fiscal.VAT0},
		{Name: "Услуга", Quantity: fiscal.QuantityOne, Price: 2500, VAT: fiscal.NoVAT},
	}}
	rc.Payments = []fiscal.Payment{{Kind: fiscal.Cash, Amount: rc.Total()}}
	if _, err := r.drv.PrintReceipt(context.Background(), "mix", rc); err != nil {
		t.Fatal(err)
	}
	tape := r.sim.Tape()
	for _, want := range []string{"СУММА НДС 22%", "=36.06", "СУММА НДС 10%", "=9.09", "СУММА НДС 5%", "=4.76", "СУММА С НДС 0%", "=10.00", "СУММА БЕЗ НДС", "=25.00"} {
		if !strings.Contains(tape, want) {
			t.Fatalf("tape lacks %q:\n%s", want, tape)
		}
	}
}

// TestPrintTextRefusesControlCharacters: escape sequences never reach the tape.
func TestPrintTextRefusesControlCharacters(t *testing.T) {
	r := newTCPRig(t, shtrihsim.Options{}, shtrih.Options{})
	before := r.sim.Commands()
	for _, line := range []string{"\x1b[2J", "a\r\nb", "bell\a", "\x00", "del\x7f", "c1\u009b"} {
		if err := r.drv.PrintText(context.Background(), []string{"ok", line}); !errors.Is(err, fiscal.ErrBadReceipt) {
			t.Errorf("%q: %v", line, err)
		}
	}
	if r.sim.Commands() != before {
		t.Fatal("text with control characters reached the device")
	}
}

// TestVATRowsCheckedAgainstTableSix: the rows of 5 %, 7 %, 5/105, 7/107 are not in
// a vendor document, so the driver reads the rate the register's table 6 holds in
// the row before using it; a mismatch is refused before anything prints, and
// Options.VATRows (config register.vat_rows) names the right row.
func TestVATRowsCheckedAgainstTableSix(t *testing.T) {
	sim := shtrihsim.Options{TaxRows: map[int]int{7: 7, 8: 5}} // 5 % and 7 % swapped
	r := newTCPRig(t, sim, shtrih.Options{AutoOpenShift: true})
	_, err := r.drv.PrintReceipt(context.Background(), "swapped", oneLine(fiscal.VAT5, 10000))
	if !errors.Is(err, fiscal.ErrBadReceipt) || !strings.Contains(err.Error(), "table 6 row 7 holds 7.00 %") {
		t.Fatalf("vat5 in a row holding 7 %%: %v", err)
	}
	if n := len(receipts(r.sim.Documents())); n != 0 || r.sim.Snapshot().ReceiptOpen {
		t.Fatalf("%d receipts printed", n)
	}
	r = newTCPRig(t, sim, shtrih.Options{AutoOpenShift: true, VATRows: map[fiscal.VATRate]byte{fiscal.VAT5: 8, fiscal.VAT7: 7}})
	if _, err := r.drv.PrintReceipt(context.Background(), "mapped", oneLine(fiscal.VAT5, 10000)); err != nil {
		t.Fatal(err)
	}
	if it := receipts(r.sim.Documents())[0].Items[0]; it.TaxRate != 8 || it.Tax != 476 {
		t.Fatalf("line %+v", it)
	}
}
