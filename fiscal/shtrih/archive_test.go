package shtrih_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"

	"kassa-agent/fiscal"
	"kassa-agent/fiscal/shtrih"
	"kassa-agent/fiscal/shtrihsim"
)

// TestPrintCopyFromArchive: any fiscal document can be copied: the last with
// the register's own copy (8Ch), an earlier one read back from the FN archive
// (FF3Ah/FF3Bh) and printed as text with its lines, payments, FD and FP.
// Copies make no fiscal document; a document the FN does not have is refused.
func TestPrintCopyFromArchive(t *testing.T) {
	bothRigs(t, func(t *testing.T, r *rig) {
		ctx := context.Background()
		first := fiscal.Receipt{Type: fiscal.Sale, Cashier: "Иванова А.", Items: []fiscal.Item{
			{Name: "Молоко 3,2%", Quantity: 2 * fiscal.QuantityOne, Price: 8990, VAT: fiscal.VAT10},
			{Name: "Сыр весовой", Quantity: 350_000, Price: 120000, VAT: fiscal.VAT22}},
			Payments: []fiscal.Payment{{Kind: fiscal.Cash, Amount: 20000}, {Kind: fiscal.Electronic, Amount: 40000}}}
		a, err := r.drv.PrintReceipt(ctx, "copy-a", first)
		if err != nil {
			t.Fatal(err)
		}
		b, err := r.drv.PrintReceipt(ctx, "copy-b", oneLine(fiscal.VAT22, 5000))
		if err != nil {
			t.Fatal(err)
		}
		docs := len(r.sim.Documents())
		tape := len(r.sim.Tape())

		if err := r.drv.PrintCopy(ctx, a.FD); err != nil {
			t.Fatalf("copy of FD %d: %v", a.FD, err)
		}
		got := r.sim.Tape()[tape:]
		for _, want := range []string{"КОПИЯ ДОКУМЕНТА ИЗ ФН", "КАССОВЫЙ ЧЕК", "ПРИХОД", "Молоко 3,2%", "2 x 89.90 =179.80",
			"Сыр весовой", "0.35 x 1200.00 =420.00", "НДС 22%", "ИТОГ =599.80", "НАЛИЧНЫМИ =200.00", "БЕЗНАЛИЧНЫМИ =400.00",
			"КАССИР Иванова А.", fmt.Sprintf("ФД %d", a.FD), fmt.Sprintf("ФП %d", a.FP), "ФН " + a.FNNumber, "РН ККТ " + a.RegNumber} {
			if !strings.Contains(got, want) {
				t.Errorf("copy lacks %q:\n%s", want, got)
			}
		}
		tape = len(r.sim.Tape())
		if err := r.drv.PrintCopy(ctx, b.FD); err != nil {
			t.Fatalf("copy of the last FD %d: %v", b.FD, err)
		}
		if got := r.sim.Tape()[tape:]; !strings.Contains(got, "КОПИЯ") || strings.Contains(got, "ИЗ ФН") {
			t.Fatalf("the last document is copied by the register itself:\n%s", got)
		}
		if n := len(r.sim.Documents()); n != docs {
			t.Fatalf("copies made %d FN documents", n-docs)
		}
		tape = len(r.sim.Tape())
		err = r.drv.PrintCopy(ctx, b.FD+1)
		var fe *fiscal.Error
		if !errorsAs(err, &fe) || fe.Code != fiscal.CodeBadReceipt || fe.Field != "fd" {
			t.Fatalf("copy of a document not yet made: %v", err)
		}
		if len(r.sim.Tape()) != tape {
			t.Fatal("a refused copy printed")
		}
	})
}

// TestPrintCopyOfCorrection: a correction's copy shows its kind and base.
func TestPrintCopyOfCorrection(t *testing.T) {
	r := newTCPRig(t, shtrihsim.Options{}, shtrih.Options{AutoOpenShift: true})
	ctx := context.Background()
	c := correction(3000)
	c.Type, c.BaseNumber = fiscal.CorrectionByOrder, "ПР-5"
	doc, err := r.drv.PrintCorrection(ctx, "corr", c)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.drv.PrintReceipt(ctx, "after", oneLine(fiscal.VAT22, 100)); err != nil {
		t.Fatal(err)
	}
	tape := len(r.sim.Tape())
	if err := r.drv.PrintCopy(ctx, doc.FD); err != nil {
		t.Fatal(err)
	}
	got := r.sim.Tape()[tape:]
	for _, want := range []string{"КАССОВЫЙ ЧЕК КОРРЕКЦИИ", "КОРРЕКЦИЯ ПО ПРЕДПИСАНИЮ", "ДАТА РАСЧЕТА 20.11.2026", "ПРЕДПИСАНИЕ ПР-5", "ИТОГ =30.00"} {
		if !strings.Contains(got, want) {
			t.Errorf("copy lacks %q:\n%s", want, got)
		}
	}
}

func FuzzArchive(f *testing.F) {
	line := shtrih.TLV(shtrih.TagItemName, shtrih.CP866("Хлеб"))
	line = append(line, shtrih.TLV(shtrih.TagItemQuantity, shtrih.PutFVLN(1_500_000))...)
	line = append(line, shtrih.TLV(shtrih.TagItemPrice, shtrih.PutVLN(4500))...)
	f.Add(uint16(3), append(shtrih.TLV(shtrih.TagItem, line), shtrih.TLV(shtrih.TagTotal, shtrih.PutVLN(6750))...))
	f.Add(uint16(31), shtrih.TLV(shtrih.TagCorrectionBase, []byte{0x7a, 0x04, 0x04, 0x00, 1, 2, 3, 4}))
	f.Add(uint16(3), []byte{0x0c, 0x04, 0x03, 0x00, 1, 2})
	f.Add(uint16(3), shtrih.TLV(shtrih.TagItem, shtrih.TLV(shtrih.TagItemQuantity, []byte{9, 1})))
	f.Fuzz(func(t *testing.T, typ uint16, b []byte) {
		fields, err := shtrih.ParseTLVs(b)
		if err == nil {
			var again []byte
			for _, x := range fields {
				again = append(again, shtrih.TLV(x.Tag, x.Value)...)
			}
			if !bytes.Equal(again, b) {
				t.Fatalf("TLVs %x re-encode as %x", b, again)
			}
			_, _ = shtrih.CopyLines(typ, fields)
		}
		_, _, _ = shtrih.DecodeReadDocument(b)
		if q, err := shtrih.FVLN(b); err == nil && len(b) <= 8 && q >= 0 {
			if q2, err := shtrih.FVLN(shtrih.PutFVLN(q)); err != nil || q2 != q {
				t.Fatalf("FVLN %x = %d, round trip %d %v", b, q, q2, err)
			}
		}
		if len(b) <= 8 {
			if v := shtrih.VLN(b); shtrih.VLN(shtrih.PutVLN(v)) != v {
				t.Fatalf("VLN %x round trip", b)
			}
		}
	})
}

// TestPrintCopyUnderFaults: every fault while the document is read back
// (FF3Bh): the copy still prints whole once it succeeds, and nothing prints
// before the whole document was read.
func TestPrintCopyUnderFaults(t *testing.T) {
	r := newPTYRig(t, shtrihsim.Options{}, shtrih.Options{AutoOpenShift: true, Timeouts: testTimeouts})
	ctx := context.Background()
	a, err := r.drv.PrintReceipt(ctx, "f-a", oneLine(fiscal.VAT22, 4321))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.drv.PrintReceipt(ctx, "f-b", oneLine(fiscal.VAT22, 100)); err != nil {
		t.Fatal(err)
	}
	for _, kind := range opFaults {
		tape := len(r.sim.Tape())
		r.sim.Inject(shtrihsim.Fault{Kind: kind, Command: shtrih.CmdFNReadDocumentTLV, Delay: 3 * testTimeouts.Long})
		var err error
		for range 5 {
			if err = r.drv.PrintCopy(ctx, a.FD); err == nil {
				break
			}
			if strings.Contains(r.sim.Tape()[tape:], "КОПИЯ ДОКУМЕНТА") {
				t.Fatalf("%v: a failed read printed part of a copy: %v", kind, err)
			}
			r.sim.SetPaper(true)
		}
		r.sim.ClearFaults()
		r.sim.SetPaper(true)
		if err != nil {
			t.Fatalf("%v: %v (fired %v)", kind, err, r.sim.Fired())
		}
		got := r.sim.Tape()[tape:]
		if strings.Count(got, "КОПИЯ ДОКУМЕНТА ИЗ ФН") != 1 || !strings.Contains(got, "ИТОГ =43.21") || !strings.Contains(got, fmt.Sprintf("ФП %d", a.FP)) {
			t.Fatalf("%v: copy\n%s", kind, got)
		}
	}
}
