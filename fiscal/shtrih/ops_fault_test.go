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

func docsOf(docs []shtrihsim.Document, typ int) []shtrihsim.Document {
	var out []shtrihsim.Document
	for _, d := range docs {
		if d.Type == typ {
			out = append(out, d)
		}
	}
	return out
}

// untilDone calls op with the same id until it succeeds, loading paper when it
// runs out, as the agent's retries do.
func untilDone(t *testing.T, r *rig, what string, op func() (fiscal.Document, error)) fiscal.Document {
	t.Helper()
	for attempt := 0; ; attempt++ {
		doc, err := op()
		if err == nil {
			return doc
		}
		var fe *fiscal.Error
		if !errors.As(err, &fe) || !fe.Retryable() || attempt > 8 {
			t.Fatalf("%s: attempt %d: %v (fired %v)", what, attempt, err, r.sim.Fired())
		}
		if fe.Code == fiscal.CodePaperOut {
			r.sim.SetPaper(true)
		}
	}
}

var opFaults = []shtrihsim.FaultKind{shtrihsim.NAK, shtrihsim.Garbage, shtrihsim.DropReply, shtrihsim.DelayReply,
	shtrihsim.PaperOut, shtrihsim.PowerCutAfterClose, shtrihsim.CorruptReply}

var cashier = fiscal.Cashier{Name: "Петрова М.", INN: "500100732259"}

// TestShiftFaults: every fault on the command that completes a shift open (E0h)
// or close (41h), and on the tags before it: exactly one shift document in the
// FN per id, its FD and FP known to the caller, the cashier's tags in it.
func TestShiftFaults(t *testing.T) {
	bothRigs(t, func(t *testing.T, r *rig) {
		ctx := context.Background()
		n := 0
		for _, kind := range opFaults {
			for _, at := range []uint16{shtrih.CmdFNSendTLV, 0} {
				n++
				for _, open := range []bool{true, false} {
					cmd := at
					typ, complete := shtrihsim.DocShiftOpen, shtrih.CmdOpenShift
					call := func(id string) (fiscal.Document, error) { return r.drv.OpenShiftAs(ctx, id, cashier) }
					if !open {
						typ, complete = shtrihsim.DocShiftClose, shtrih.CmdZReport
						call = func(id string) (fiscal.Document, error) { return r.drv.CloseShiftAs(ctx, id, cashier) }
					}
					if cmd == 0 {
						cmd = complete
					}
					id := fmt.Sprintf("shift-%v-%d", open, n)
					before := len(docsOf(r.sim.Documents(), typ))
					r.sim.Inject(shtrihsim.Fault{Kind: kind, Command: cmd, Delay: 3 * testTimeouts.Long})
					doc := untilDone(t, r, id, func() (fiscal.Document, error) { return call(id) })
					r.sim.ClearFaults()
					r.sim.SetPaper(true)
					got := docsOf(r.sim.Documents(), typ)
					if len(got) != before+1 {
						t.Fatalf("%s %v on %#x: %d new shift documents, want 1", id, kind, cmd, len(got)-before)
					}
					last := got[len(got)-1]
					if last.FD != doc.FD || last.FP != doc.FP || last.Shift != doc.Shift || doc.Kind == "" {
						t.Fatalf("%s %v: FN %+v, caller %+v", id, kind, last, doc)
					}
					if last.Tags[shtrih.TagCashier] != cashier.Name || last.Tags[shtrih.TagCashierINN] != cashier.INN {
						t.Fatalf("%s %v: tags %v", id, kind, last.Tags)
					}
					if f := r.sim.Fired(); len(f) == 0 || !strings.HasPrefix(f[len(f)-1], kind.String()+"@") {
						t.Fatalf("%s: fault %v did not fire: %v", id, kind, f)
					}
					if again, err := call(id); err != nil || again.FD != doc.FD {
						t.Fatalf("%s repeated: %+v, %v", id, again, err)
					}
					if len(docsOf(r.sim.Documents(), typ)) != before+1 {
						t.Fatalf("%s: the repeat made another document", id)
					}
				}
			}
		}
	})
}

// TestCashOnceFaults: every fault on 50h/51h: exactly one slip per id, the
// drawer's cash moved once, the result known.
func TestCashOnceFaults(t *testing.T) {
	bothRigs(t, func(t *testing.T, r *rig) {
		ctx := context.Background()
		for i, kind := range opFaults {
			for _, in := range []bool{true, false} {
				cmd, title, call := shtrih.CmdCashIn, "ВНЕСЕНИЕ", r.drv.CashInOnce
				if !in {
					cmd, title, call = shtrih.CmdCashOut, "ВЫПЛАТА", r.drv.CashOutOnce
				}
				id := fmt.Sprintf("cash-%v-%d", in, i)
				amount := int64(10000 + i)
				before := cashSlips(r, title)
				r.sim.Inject(shtrihsim.Fault{Kind: kind, Command: cmd, Delay: 3 * testTimeouts.Long})
				doc := untilDone(t, r, id, func() (fiscal.Document, error) { return call(ctx, id, amount) })
				r.sim.ClearFaults()
				r.sim.SetPaper(true)
				if n := cashSlips(r, title) - before; n != 1 {
					t.Fatalf("%s %v: %d slips, want 1", id, kind, n)
				}
				if doc.Total != amount || doc.DocNumber == 0 || doc.Kind == "" {
					t.Fatalf("%s %v: %+v", id, kind, doc)
				}
				if again, err := call(ctx, id, amount); err != nil || again.DocNumber != doc.DocNumber {
					t.Fatalf("%s repeated: %+v, %v", id, again, err)
				}
				if n := cashSlips(r, title) - before; n != 1 {
					t.Fatalf("%s: the repeat printed another slip", id)
				}
			}
		}
		// Each amount went in once and out once.
		if c := r.sim.Snapshot().Cash; c != 0 {
			t.Fatalf("drawer holds %d, want 0", c)
		}
	})
}

// TestOpsRefuseBadInput: bad input is refused naming the field, before anything
// is sent to the register.
func TestOpsRefuseBadInput(t *testing.T) {
	r := newTCPRig(t, shtrihsim.Options{}, shtrih.Options{AutoOpenShift: true})
	ctx := context.Background()
	before := r.sim.Commands()
	for name, c := range map[string]struct {
		call  func() error
		field string
	}{
		"no cashier": {func() error { _, err := r.drv.OpenShiftAs(ctx, "s1", fiscal.Cashier{}); return err }, "cashier.name"},
		"bad INN": {func() error {
			_, err := r.drv.CloseShiftAs(ctx, "s2", fiscal.Cashier{Name: "А", INN: "123"})
			return err
		}, "cashier.inn"},
		"zero cash":  {func() error { _, err := r.drv.CashInOnce(ctx, "c1", 0); return err }, "amount"},
		"no id":      {func() error { _, err := r.drv.CashOutOnce(ctx, "", 100); return err }, "id"},
		"old zero":   {func() error { return r.drv.CashIn(ctx, -5) }, "amount"},
		"big cash":   {func() error { _, err := r.drv.CashInOnce(ctx, "c2", 1<<41); return err }, "amount"},
		"ctl in INN": {func() error { _, err := r.drv.OpenShiftAs(ctx, "s3", fiscal.Cashier{Name: "А\x1b"}); return err }, "cashier.name"},
	} {
		err := c.call()
		var fe *fiscal.Error
		if !errors.As(err, &fe) || fe.Code != fiscal.CodeBadReceipt || fe.Field != c.field {
			t.Errorf("%s: %v, want a bad-input error on %s", name, err, c.field)
		}
	}
	if n := r.sim.Commands() - before; n != 0 {
		t.Fatalf("%d commands sent for bad input", n)
	}
	// An id names one operation whatever it is.
	if _, err := r.drv.CashInOnce(ctx, "same", 100); err != nil {
		t.Fatal(err)
	}
	if _, err := r.drv.PrintReceipt(ctx, "same", oneLine(fiscal.VAT22, 100)); fiscal.CodeOf(err) != fiscal.CodeBadReceipt {
		t.Fatalf("receipt under a cash op's id: %v", err)
	}
}

// TestCorrectionFaults: a correction receipt by order under every fault on the
// command that makes it (FF45h with lines under FFD 1.2, FF4Ah under 1.05) and
// on its base tag: one correction document per id in the FN with 1173, 1178
// and 1179, its FD and FP known.
func TestCorrectionFaults(t *testing.T) {
	for _, ffd := range []string{"1.2", "1.05"} {
		t.Run("ffd="+ffd, func(t *testing.T) { correctionFaults(t, ffd) })
	}
}

func correctionFaults(t *testing.T, ffd string) {
	closeCmd := shtrih.CmdFNCloseReceipt
	if ffd == "1.05" {
		closeCmd = shtrih.CmdFNCorrection
	}
	opt := shtrih.Options{AutoOpenShift: true, FFD: ffd}
	for name, newRig := range map[string]func(testing.TB, shtrihsim.Options, shtrih.Options) *rig{"tcp": newTCPRig, "pty": newPTYRig} {
		t.Run(name, func(t *testing.T) {
			r := newRig(t, shtrihsim.Options{}, opt)
			ctx := context.Background()
			n := 0
			for _, kind := range opFaults {
				for _, cmd := range []uint16{closeCmd, shtrih.CmdFNSendTLV} {
					n++
					id := fmt.Sprintf("corr-%d", n)
					c := correction(int64(5000 + n))
					c.Type, c.BaseNumber = fiscal.CorrectionByOrder, "ПР-77/2026"
					c.Receipt.Type = []fiscal.ReceiptType{fiscal.Sale, fiscal.SaleReturn, fiscal.Purchase, fiscal.PurchaseReturn}[n%4]
					if ffd == "1.05" {
						c.Receipt.Items[0].VAT = fiscal.VAT10 // FF4Ah has no 22 % sum
					}
					c.Receipt.Payments = []fiscal.Payment{{Kind: fiscal.Cash, Amount: 1000}, {Kind: fiscal.Electronic, Amount: c.Receipt.Total() - 1000}}
					before := len(docsOf(r.sim.Documents(), shtrihsim.DocCorrection))
					r.sim.Inject(shtrihsim.Fault{Kind: kind, Command: cmd, Delay: 3 * testTimeouts.Long})
					doc := untilDone(t, r, id, func() (fiscal.Document, error) { return r.drv.PrintCorrection(ctx, id, c) })
					r.sim.ClearFaults()
					r.sim.SetPaper(true)
					got := docsOf(r.sim.Documents(), shtrihsim.DocCorrection)
					if len(got) != before+1 {
						t.Fatalf("%s %v on %#x: %d new corrections, want 1", id, kind, cmd, len(got)-before)
					}
					last := got[len(got)-1]
					if last.FD != doc.FD || last.FP != doc.FP || last.Total != c.Receipt.Total() || last.Operation != int(c.Receipt.Type) ||
						last.Payments[0] != 1000 || doc.Kind != fiscal.OpCorrection || doc.QR != fiscal.QRString(doc, c.Receipt.Type) {
						t.Fatalf("%s %v: FN %+v, caller %+v", id, kind, last, doc)
					}
					if last.Tags[shtrih.TagCorrectionType] != "1" || last.Tags[shtrih.TagCorrectionDate] != "2026-11-20" ||
						last.Tags[shtrih.TagCorrectionOrder] != "ПР-77/2026" || last.Tags[shtrih.TagCashierINN] != "500100732259" {
						t.Fatalf("%s: tags %v", id, last.Tags)
					}
					if again, err := r.drv.PrintCorrection(ctx, id, c); err != nil || again.FD != doc.FD {
						t.Fatalf("%s repeated: %+v, %v", id, again, err)
					}
				}
			}
			if !strings.Contains(r.sim.Tape(), "КАССОВЫЙ ЧЕК КОРРЕКЦИИ") || !strings.Contains(r.sim.Tape(), "ПО ПРЕДПИСАНИЮ") {
				t.Fatal("no correction on the tape")
			}
		})
	}
}

// TestCorrectionRefusesBadInput: refused naming the field, nothing sent.
func TestCorrectionRefusesBadInput(t *testing.T) {
	r := newTCPRig(t, shtrihsim.Options{}, shtrih.Options{AutoOpenShift: true})
	ctx := context.Background()
	before := r.sim.Commands()
	for name, tc := range map[string]struct {
		mod   func(*fiscal.Correction)
		field string
	}{
		"no base date":     {func(c *fiscal.Correction) { c.BaseDate = time.Time{} }, "base_date"},
		"future base date": {func(c *fiscal.Correction) { c.BaseDate = time.Now().AddDate(0, 1, 0) }, "base_date"},
		"by order, no no.": {func(c *fiscal.Correction) { c.Type = fiscal.CorrectionByOrder }, "base_number"},
		"bad type":         {func(c *fiscal.Correction) { c.Type = 5 }, "type"},
		"22 % in 2025":     {func(c *fiscal.Correction) { c.BaseDate = time.Date(2025, 12, 20, 0, 0, 0, 0, time.UTC) }, "items[0].vat"},
		"20 % in 2026":     {func(c *fiscal.Correction) { c.Receipt.Items[0].VAT = fiscal.VAT20 }, "items[0].vat"},
		"change":           {func(c *fiscal.Correction) { c.Receipt.Payments[0].Amount++ }, "payments"},
		"no items":         {func(c *fiscal.Correction) { c.Receipt.Items = nil }, "items"},
	} {
		c := correction(1000)
		tc.mod(&c)
		_, err := r.drv.PrintCorrection(ctx, "bad-"+name, c)
		var fe *fiscal.Error
		if !errors.As(err, &fe) || fe.Code != fiscal.CodeBadReceipt || fe.Field != tc.field {
			t.Errorf("%s: %v, want a bad-input error on %s", name, err, tc.field)
		}
	}
	if n := r.sim.Commands() - before; n != 0 {
		t.Fatalf("%d commands sent for bad input", n)
	}
}
