package shtrih_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"kassa-agent/fiscal"
	"kassa-agent/fiscal/shtrih"
	"kassa-agent/fiscal/shtrihsim"
)

// bothRigs runs f over TCP and over a PTY.
func bothRigs(t *testing.T, f func(t *testing.T, r *rig)) {
	t.Run("tcp", func(t *testing.T) { f(t, newTCPRig(t, shtrihsim.Options{}, shtrih.Options{AutoOpenShift: true})) })
	t.Run("pty", func(t *testing.T) { f(t, newPTYRig(t, shtrihsim.Options{}, shtrih.Options{AutoOpenShift: true})) })
}

// TestReceiptSplitChangeAndCashierINN: every receipt type with a split payment,
// change from cash, the cashier's INN and the QR text, against the FN journal and
// the tape.
func TestReceiptSplitChangeAndCashierINN(t *testing.T) {
	bothRigs(t, func(t *testing.T, r *rig) {
		ctx := context.Background()
		for i, typ := range []fiscal.ReceiptType{fiscal.Sale, fiscal.SaleReturn, fiscal.Purchase, fiscal.PurchaseReturn} {
			rc := fiscal.Receipt{Type: typ, Cashier: "Иванова А.", CashierINN: "770123456789", Buyer: "+79990001122",
				Items: []fiscal.Item{
					{Name: "Аванс за ремонт", Quantity: fiscal.QuantityOne, Price: 50000, VAT: fiscal.VAT22, Method: fiscal.Advance, Object: fiscal.Work},
					{Name: "Услуга", Quantity: 2 * fiscal.QuantityOne, Price: 12345, VAT: fiscal.VAT10, Method: fiscal.CreditTransfer, Object: fiscal.Service},
				},
				Payments: []fiscal.Payment{{Kind: fiscal.Cash, Amount: 30000}, {Kind: fiscal.Electronic, Amount: 20000},
					{Kind: fiscal.Prepayment, Amount: 10000}, {Kind: fiscal.Credit, Amount: 10000}, {Kind: fiscal.Consideration, Amount: 5000}}}
			total := rc.Total() // 746.90; paid 750.00 → change 3.10
			doc, err := r.drv.PrintReceipt(ctx, "split-"+typ.String(), rc)
			if err != nil {
				t.Fatal(err)
			}
			if doc.Change != 75000-total || doc.Change != 310 {
				t.Fatalf("%s: change %d, want 310", typ, doc.Change)
			}
			if want := fiscal.QRString(doc, typ); doc.QR != want || !strings.HasSuffix(doc.QR, "&n="+string(rune('1'+i))) {
				t.Fatalf("%s: QR %q, want %q", typ, doc.QR, want)
			}
			fn := receipts(r.sim.Documents())
			last := fn[len(fn)-1]
			if last.FD != doc.FD || last.Change != 310 || last.Payments[0] != 30000 || last.Payments[13] != 10000 ||
				last.Payments[14] != 10000 || last.Payments[15] != 5000 || last.Operation != int(typ) {
				t.Fatalf("%s: FN has %+v", typ, last)
			}
			if last.Tags[shtrih.TagCashierINN] != "770123456789" || last.Tags[shtrih.TagCashier] != "Иванова А." || last.Tags[shtrih.TagBuyerContact] != "+79990001122" {
				t.Fatalf("%s: FN tags %v", typ, last.Tags)
			}
			if last.Items[0].Method != int(fiscal.Advance) || last.Items[0].Object != int(fiscal.Work) || last.Items[1].Method != int(fiscal.CreditTransfer) {
				t.Fatalf("%s: FN items %+v", typ, last.Items)
			}
			// A repeat returns the same document, change and QR included.
			again, err := r.drv.PrintReceipt(ctx, "split-"+typ.String(), rc)
			if err != nil || again.Change != 310 || again.QR != doc.QR {
				t.Fatalf("%s: repeat %+v, %v", typ, again, err)
			}
		}
		if tape := r.sim.Tape(); !strings.Contains(tape, "СДАЧА") || !strings.Contains(tape, "ИНН КАССИРА") {
			t.Fatalf("tape lacks change or cashier INN:\n%s", tape)
		}
	})
}

// TestRecoveredReceiptKnowsChangeAndQR: a receipt whose close reply is lost
// is learned from the FN with its change and QR.
func TestRecoveredReceiptKnowsChangeAndQR(t *testing.T) {
	r := newTCPRig(t, shtrihsim.Options{}, shtrih.Options{AutoOpenShift: true})
	rc := oneLine(fiscal.VAT22, 9999)
	rc.Payments = []fiscal.Payment{{Kind: fiscal.Cash, Amount: 20000}}
	r.sim.Inject(shtrihsim.Fault{Kind: shtrihsim.PowerCutAfterClose, Command: shtrih.CmdFNCloseReceipt})
	doc := printUntilDone(t, r, "lost-close", rc)
	if !doc.Recovered || doc.Change != 10001 || doc.QR != fiscal.QRString(doc, fiscal.Sale) {
		t.Fatalf("recovered %+v", doc)
	}
}

// cashSlips counts the cash-in (or cash-out) slips on the tape.
func cashSlips(r *rig, title string) int { return strings.Count(r.sim.Tape(), title) }

// TestCashLostReplySettledByCounter: the reply to 50h/51h is lost with the
// device's power; the call learns from the 11h document counter that the cash
// went in, rather than report an unknown outcome the POS would retry into a
// second slip.
func TestCashLostReplySettledByCounter(t *testing.T) {
	bothRigs(t, func(t *testing.T, r *rig) {
		ctx := context.Background()
		if err := r.drv.OpenShift(ctx); err != nil {
			t.Fatal(err)
		}
		r.sim.Inject(shtrihsim.Fault{Kind: shtrihsim.PowerCutAfterClose, Command: shtrih.CmdCashIn})
		if err := r.drv.CashIn(ctx, 150000); err != nil {
			t.Fatalf("cash in with the reply lost: %v", err)
		}
		if n := cashSlips(r, "ВНЕСЕНИЕ"); n != 1 {
			t.Fatalf("%d cash-in slips", n)
		}
		r.sim.Inject(shtrihsim.Fault{Kind: shtrihsim.NAK, Command: shtrih.CmdCashOut})
		if err := r.drv.CashOut(ctx, 50000); err != nil {
			t.Fatalf("cash out after a NAK: %v", err)
		}
		if n := cashSlips(r, "ВЫПЛАТА"); n != 1 {
			t.Fatalf("%d cash-out slips", n)
		}
	})
}

// correction is a correction of a 2025 sale not registered then (20 % VAT in force).
func correction(amount int64) fiscal.Correction {
	return fiscal.Correction{Type: fiscal.CorrectionSelf, BaseDate: time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC),
		Receipt: fiscal.Receipt{Type: fiscal.Sale, TaxSystem: fiscal.OSN, Cashier: "Петрова М.", CashierINN: "500100732259",
			Items:    []fiscal.Item{{Name: "Товар", Quantity: fiscal.QuantityOne, Price: amount, VAT: fiscal.VAT22}},
			Payments: []fiscal.Payment{{Kind: fiscal.Cash, Amount: amount}}}}
}

// TestXReportLostReplySettled: the X report is no FN document, but it is a
// device document: a reply lost with the power is settled by the 11h document
// counter, so the caller learns it printed (once) rather than "unknown".
func TestXReportLostReplySettled(t *testing.T) {
	bothRigs(t, func(t *testing.T, r *rig) {
		ctx := context.Background()
		if err := r.drv.OpenShift(ctx); err != nil {
			t.Fatal(err)
		}
		r.sim.Inject(shtrihsim.Fault{Kind: shtrihsim.PowerCutAfterClose, Command: shtrih.CmdXReport})
		if err := r.drv.XReport(ctx); err != nil {
			t.Fatalf("X report with the reply lost: %v", err)
		}
		if n := strings.Count(r.sim.Tape(), "X-ОТЧЕТ"); n != 1 {
			t.Fatalf("%d X reports on the tape", n)
		}
	})
}
