package shtrih_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"kassa-agent/fiscal"
	"kassa-agent/fiscal/shtrih"
	"kassa-agent/fiscal/shtrihsim"
)

// TestLastDocumentAndCopy: the FN's last document read back with its FP, total,
// type and OFD state; 8Ch prints a copy of it on the tape.
func TestLastDocumentAndCopy(t *testing.T) {
	bothRigs(t, func(t *testing.T, r *rig) {
		ctx := context.Background()
		doc, err := r.drv.PrintReceipt(ctx, "last", oneLine(fiscal.VAT22, 4321))
		if err != nil {
			t.Fatal(err)
		}
		last, err := r.drv.LastDocument(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if last.FD != doc.FD || last.FP != doc.FP || last.Total != 4321 || last.Kind != shtrihsim.DocReceipt || last.Operation != fiscal.Sale || last.SentToOFD {
			t.Fatalf("last document %+v, printed %+v", last, doc)
		}
		if err := r.drv.PrintLastCopy(ctx); err != nil {
			t.Fatal(err)
		}
		tape := r.sim.Tape()
		i := strings.LastIndex(tape, "КОПИЯ")
		if i < 0 || !strings.Contains(tape[i:], "43.21") || !strings.Contains(tape[i:], "ФП") {
			t.Fatalf("no copy of the receipt on the tape:\n%s", tape)
		}
		if _, err := r.drv.OpenShiftAs(ctx, "open-again", cashier); fiscal.CodeOf(err) != fiscal.CodeRejected {
			t.Fatalf("open an open shift: %v", err)
		}
		z, err := r.drv.CloseShiftAs(ctx, "z1", cashier)
		if err != nil {
			t.Fatal(err)
		}
		if last, err = r.drv.LastDocument(ctx); err != nil || last.FD != z.FD || last.Kind != shtrihsim.DocShiftClose || last.Shift != z.Shift || z.Shift == 0 {
			t.Fatalf("after Z: %+v %v (z %+v)", last, err, z)
		}
	})
}

// TestPrintQR: DDh blocks then DEh; the simulator draws the code as a marker
// line with its text; a long text spans several blocks.
func TestPrintQR(t *testing.T) {
	bothRigs(t, func(t *testing.T, r *rig) {
		ctx := context.Background()
		long := "https://qr.nspk.ru/AS1000" + strings.Repeat("X", 150) + "?type=02&bank=100000000111&sum=12345&cur=RUB"
		for _, text := range []string{"t=20260101T1230&s=123.45&fn=9999078902012345&i=12&fp=3826176301&n=1", long} {
			if err := r.drv.PrintQR(ctx, text); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(r.sim.Tape(), "[QR] "+text+"\n") {
				t.Fatalf("QR %q not on the tape:\n%s", text, r.sim.Tape())
			}
		}
		before := r.sim.Commands()
		for _, bad := range []string{"", "a\nb", strings.Repeat("x", shtrih.MaxQRLen+1)} {
			var fe *fiscal.Error
			if err := r.drv.PrintQR(ctx, bad); !errors.As(err, &fe) || fe.Field != "qr" {
				t.Fatalf("PrintQR(%.10q) = %v", bad, err)
			}
		}
		if r.sim.Commands() != before {
			t.Fatal("bad QR text was sent")
		}
		// Paper out while printing the code: it is printed once paper is back.
		r.sim.Inject(shtrihsim.Fault{Kind: shtrihsim.PaperOut, Command: shtrih.CmdPrint2D})
		err := r.drv.PrintQR(ctx, "after paper")
		r.sim.SetPaper(true)
		if err != nil && fiscal.CodeOf(err) != fiscal.CodePaperOut {
			t.Fatal(err)
		}
		if !strings.Contains(r.sim.Tape(), "[QR] after paper") {
			t.Fatal("QR lost on paper out")
		}
	})
}

// TestInfo: every field against what the simulator holds; the clock drift of
// a register 90 s fast; FN warnings; the shift's open time and age; OFD backlog.
func TestInfo(t *testing.T) {
	c := &clock{}
	fast := func() time.Time { return c.Now().Add(90 * time.Second) }
	r := newTCPRig(t, shtrihsim.Options{Now: fast, FNWarnings: 0x02 | 0x80}, shtrih.Options{AutoOpenShift: true})
	// A second driver on the host clock c; the register's runs 90 s ahead of it.
	r2 := finishRig(t, r.sim, c, mustDial(t, r.addr), shtrih.Options{AutoOpenShift: true, Journal: r.j}, r.addr)
	ctx := context.Background()
	if _, err := r2.drv.OpenShiftAs(ctx, "o", cashier); err != nil {
		t.Fatal(err)
	}
	c.Advance(3 * time.Hour)
	if _, err := r2.drv.PrintReceipt(ctx, "p", oneLine(fiscal.VAT10, 1000)); err != nil {
		t.Fatal(err)
	}
	in, err := r2.drv.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	docs := r.sim.Documents()
	if in.FNNumber != "9999078902012345" || in.RegNumber != "0000000001012345" || in.INN != "7701234567" || in.Serial != "12345678" ||
		!strings.Contains(in.Model, "ШТРИХ") || in.Firmware == "" || in.FFD != "1.2" || in.FNPhase != 3 || in.TaxSystems != fiscal.OSN {
		t.Fatalf("identity in %+v", in)
	}
	if !in.FNWarnings.ReplaceSoon || !in.FNWarnings.Critical || in.FNWarnings.MemoryFull || in.FNWarnings.ReplaceUrgently {
		t.Fatalf("warnings %+v", in.FNWarnings)
	}
	if in.FNExpiry.IsZero() || in.FNDaysLeft < 360 || in.FNDaysLeft > 400 {
		t.Fatalf("expiry %s, %d days left", in.FNExpiry, in.FNDaysLeft)
	}
	if d := in.ClockDrift; d < 89*time.Second || d > 91*time.Second {
		t.Fatalf("clock drift %s, want 90 s", d)
	}
	if !in.ShiftOpen || in.ShiftNumber != 1 || in.ShiftOpened.IsZero() || in.ShiftAge < 3*time.Hour || in.ShiftAge > 3*time.Hour+3*time.Minute {
		t.Fatalf("shift %+v", in)
	}
	var unsent []shtrihsim.Document
	for _, d := range docs {
		if !d.SentToOFD {
			unsent = append(unsent, d)
		}
	}
	if in.LastFD != docs[len(docs)-1].FD || len(unsent) != 2 || in.OFDBacklog != 2 || in.OFDOldestFD != unsent[0].FD || !in.OFDOldest.Equal(unsent[0].Time) {
		t.Fatalf("OFD backlog %d (oldest %d %s), FN has %+v", in.OFDBacklog, in.OFDOldestFD, in.OFDOldest, unsent)
	}
	if in.PaperOut || in.Mode != shtrih.ModeShiftOpen {
		t.Fatalf("mode %d paper out %v", in.Mode, in.PaperOut)
	}
	r.sim.SetPaper(false)
	if in, err = r2.drv.Info(ctx); err != nil || !in.PaperOut {
		t.Fatalf("paper out not seen: %+v %v", in, err)
	}
}

func mustDial(t *testing.T, addr string) shtrih.Port {
	t.Helper()
	p, err := shtrih.DialTCP(addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestRecoverRegisterAnyTime: a receipt left open by other software is
// cancelled, printing stopped by paper out is continued, and the report says so.
func TestRecoverRegisterAnyTime(t *testing.T) {
	r := newTCPRig(t, shtrihsim.Options{}, shtrih.Options{AutoOpenShift: true})
	ctx := context.Background()
	if _, err := r.drv.PrintReceipt(ctx, "first", oneLine(fiscal.VAT22, 100)); err != nil {
		t.Fatal(err)
	}
	// Other software on the same register opens a receipt and goes away.
	op := shtrih.Operation{Type: 1, Quantity: fiscal.QuantityOne, Price: 500, Sum: -1, Tax: -1, TaxRate: 4, Department: 1, Method: 4, Object: 1, Name: "Чужой"}
	if err := rawCommand(mustDial(t, r.addr), shtrih.CmdFNOperation, shtrih.EncodeOperation(30, op)); err != nil {
		t.Fatal(err)
	}
	if !r.sim.Snapshot().ReceiptOpen {
		t.Fatal("the other software's receipt did not open")
	}
	rep, err := r.drv.RecoverRegister(ctx)
	if err != nil || !rep.CancelledOpen || rep.Mode != shtrih.ModeDocumentOpen || !strings.Contains(strings.Join(rep.Found, "; "), "cancelled") {
		t.Fatalf("foreign receipt: %+v, %v", rep, err)
	}
	if r.sim.Snapshot().ReceiptOpen {
		t.Fatal("receipt still open")
	}
	// Paper runs out while a line prints; recovery without paper says so.
	r.sim.Inject(shtrihsim.Fault{Kind: shtrihsim.PaperOut, Command: shtrih.CmdPrintLine})
	_ = r.drv.PrintText(ctx, []string{"строка"})
	if rep, err = r.drv.RecoverRegister(ctx); fiscal.CodeOf(err) != fiscal.CodePaperOut || !rep.PaperOut {
		t.Fatalf("paper out: %+v, %v", rep, err)
	}
	r.sim.SetPaper(true)
	if rep, err = r.drv.RecoverRegister(ctx); err != nil || rep.Found == nil {
		t.Fatalf("after paper: %+v, %v", rep, err)
	}
	if s := r.sim.Snapshot(); s.Submode != 0 {
		t.Fatalf("submode %d after recovery", s.Submode)
	}
	// Other software began a shift close in the FN (FF42h) and went away: the
	// FN takes no other document until it is voided.
	if err := rawCommand(mustDial(t, r.addr), shtrih.CmdFNBeginClose, shtrih.Password(30)); err != nil {
		t.Fatal(err)
	}
	if rep, err = r.drv.RecoverRegister(ctx); err != nil || !strings.Contains(strings.Join(rep.Found, "; "), "voided") {
		t.Fatalf("begun FN document: %+v, %v", rep, err)
	}
	if _, err := r.drv.CloseShiftAs(ctx, "z-after-void", cashier); err != nil {
		t.Fatalf("Z after the void: %v", err)
	}
}
