package shtrih_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"kassa-agent/fiscal"
	"kassa-agent/fiscal/shtrih"
	"kassa-agent/fiscal/shtrihsim"
)

// checked checks and accepts it's code as a line of a receipt of type typ and
// returns the line with its accepted check.
func checked(t testing.TB, d *shtrih.Driver, typ fiscal.ReceiptType, it fiscal.Item) fiscal.Item {
	t.Helper()
	ctx := context.Background()
	res, err := d.CheckMarking(ctx, fiscal.MarkingRequestFor(typ, it))
	if err != nil {
		t.Fatalf("check %q: %v", it.MarkingCode, err)
	}
	if err := d.AcceptMarking(ctx, res); err != nil {
		t.Fatalf("accept %q (%s): %v", it.MarkingCode, res.Verdict(), err)
	}
	it.MarkingResult = &res
	return it
}

// Codes as a scanner with GS kept reads them: milk (GS between the AIs),
// weighed cheese, cigarettes.
const (
	codeMilk   = "0104650118041019215'WCKI\x1d93Zdh1"
	codeCheese = "0104607114051523215ABcdEF\x1d93dGVz\x1d3103000512"
	codeTobac  = "00000046186195Xp4k=xyAQDPtFEa"
)

var permissive = fiscal.IndustryRequisite{FOIV: "030", Date: time.Date(2023, 11, 21, 0, 0, 0, 0, time.UTC), Number: "1944",
	Value: "UUID=fb8f8e2e-0d44-4a0c-8c6a-1d0b1a2c3d4e&Time=1700000000000"}

func markedReceipt() fiscal.Receipt {
	r := fiscal.Receipt{Type: fiscal.Sale, TaxSystem: fiscal.OSN, Industry: []fiscal.IndustryRequisite{permissive},
		Items: []fiscal.Item{
			{Name: "Хлеб", Quantity: fiscal.QuantityOne, Price: 5500, VAT: fiscal.VAT10},
			{Name: "Молоко 3,2%", Quantity: fiscal.QuantityOne, Price: 8990, VAT: fiscal.VAT10, MarkingCode: codeMilk},
			{Name: "Сыр весовой", Quantity: 512_000, Price: 99000, VAT: fiscal.VAT10, MarkingCode: codeCheese, Measure: fiscal.Kilogram},
		}}
	r.Payments = []fiscal.Payment{{Kind: fiscal.Cash, Amount: r.Total()}}
	return r
}

func markingStatus(t testing.TB, r *rig) shtrih.MarkingStatus {
	t.Helper()
	st, err := r.drv.MarkingStatus(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestMarkedReceiptPTY: two marked lines (a piece of milk, weighed cheese)
// are checked, accepted and sold in one receipt over a PTY; the FN journal
// binds each code, byte for byte with its GS, and its verdict 2106 to its own
// line, with the line's planned status, measure and the receipt's 1260.
func TestMarkedReceiptPTY(t *testing.T) {
	r := newPTYRig(t, shtrihsim.Options{}, shtrih.Options{AutoOpenShift: true})
	ctx := context.Background()
	rc := markedReceipt()
	if err := r.drv.CheckReceipt(rc); !errors.Is(err, fiscal.ErrBadReceipt) || !strings.Contains(err.Error(), "items[1].marking_result") {
		t.Fatalf("marked lines without checks: %v", err)
	}
	for i := 1; i <= 2; i++ {
		rc.Items[i] = checked(t, r.drv, rc.Type, rc.Items[i])
		if v := rc.Items[i].MarkingResult.Verdict(); v != fiscal.Valid {
			t.Fatalf("item %d verdict %s", i, v)
		}
	}
	if res := rc.Items[2].MarkingResult; res.Status != fiscal.MeasuredSold || res.Result != 0x0F || res.ItemStatus != 1 {
		t.Fatalf("weighed check %+v", res)
	}
	if st := markingStatus(t, r); st.Saved != 2 || st.Awaiting() {
		t.Fatalf("after two accepts: %+v", st)
	}
	doc, err := r.drv.PrintReceipt(ctx, "mark-1", rc)
	if err != nil {
		t.Fatal(err)
	}
	got := receipts(r.sim.Documents())
	if len(got) != 1 || got[0].FD != doc.FD || got[0].Total != rc.Total() {
		t.Fatalf("FN receipts %+v, doc %+v", got, doc)
	}
	it := got[0].Items
	if len(it) != 3 {
		t.Fatalf("items %+v", it)
	}
	if it[0].Marking != "" || it[0].MarkingCheck != 0 || len(it[0].Industry) != 0 {
		t.Errorf("unmarked line carries marking: %+v", it[0])
	}
	if it[1].Marking != codeMilk || it[1].MarkingCheck != 0x0F || it[1].PlannedStatus != 1 || it[1].Measure != 0 || it[1].Object != 33 {
		t.Errorf("milk line %+v", it[1])
	}
	if it[2].Marking != codeCheese || it[2].MarkingCheck != 0x0F || it[2].PlannedStatus != 2 || it[2].Measure != 11 || it[2].Quantity != 512_000 {
		t.Errorf("cheese line %+v", it[2])
	}
	for _, k := range []int{1, 2} {
		if ind := it[k].Industry; len(ind) != 1 || ind[0].FOIV != "030" || ind[0].Date != "21.11.2023" || ind[0].Number != "1944" || ind[0].Value != permissive.Value {
			t.Errorf("line %d 1260 %+v", k, ind)
		}
	}
	if st := markingStatus(t, r); st.Saved != 0 {
		t.Errorf("codes left saved after the receipt: %+v", st)
	}
	if !strings.Contains(r.sim.Tape(), "[M+] 0104650118041019215'WCKI<GS>93Zdh1") {
		t.Errorf("tape:\n%s", r.sim.Tape())
	}
	// The same id again is the same document, and nothing is bound again.
	again, err := r.drv.PrintReceipt(ctx, "mark-1", rc)
	if err != nil || again.FD != doc.FD || len(receipts(r.sim.Documents())) != 1 {
		t.Fatalf("repeat: %+v %v", again, err)
	}
}

// TestMarkingGSByteForByte: the code reaches the register as scanned, every
// GS in place: the FN journal holds exactly the bytes checked.
func TestMarkingGSByteForByte(t *testing.T) {
	r := newTCPRig(t, shtrihsim.Options{}, shtrih.Options{AutoOpenShift: true})
	code := "\x1d010460406000600021N4N57RSCBUZTQ\x1d2403004002910161218\x1d\x1d93abc"
	rc := fiscal.Receipt{Type: fiscal.Sale, Items: []fiscal.Item{{Name: "Туфли", Quantity: fiscal.QuantityOne, Price: 399000, VAT: fiscal.VAT22, MarkingCode: code}}}
	rc.Payments = []fiscal.Payment{{Kind: fiscal.Electronic, Amount: rc.Total()}}
	rc.Items[0] = checked(t, r.drv, rc.Type, rc.Items[0])
	if rc.Items[0].MarkingResult.Code != code {
		t.Fatalf("result code %q", rc.Items[0].MarkingResult.Code)
	}
	if _, err := r.drv.PrintReceipt(context.Background(), "gs", rc); err != nil {
		t.Fatal(err)
	}
	got := receipts(r.sim.Documents())
	if len(got) != 1 || !bytes.Equal([]byte(got[0].Items[0].Marking), []byte(code)) {
		t.Fatalf("FN holds %q, want %q", got[0].Items[0].Marking, code)
	}
}

// TestMarkingInvalidRefused: a code the FN and the OISM refuse is Invalid, the
// accept is refused without a byte sent, and a receipt carrying it is refused
// before anything reaches the register.
func TestMarkingInvalidRefused(t *testing.T) {
	r := newPTYRig(t, shtrihsim.Options{}, shtrih.Options{AutoOpenShift: true})
	ctx := context.Background()
	r.sim.SetMarkingVerdict(codeMilk, shtrihsim.MarkInvalid)
	rc := markedReceipt()
	rc.Items = rc.Items[:2]
	rc.Payments = []fiscal.Payment{{Kind: fiscal.Cash, Amount: rc.Total()}}
	res, err := r.drv.CheckMarking(ctx, fiscal.MarkingRequestFor(rc.Type, rc.Items[1]))
	if err != nil {
		t.Fatal(err)
	}
	if res.Verdict() != fiscal.Invalid || res.Result != 0x05 || res.ItemStatus != 2 || !strings.Contains(res.Message(), "не прошёл проверку ФН") {
		t.Fatalf("invalid code: %+v %s %q", res, res.Verdict(), res.Message())
	}
	n := r.sim.Commands()
	if err := r.drv.AcceptMarking(ctx, res); !errors.Is(err, fiscal.ErrBadReceipt) || r.sim.Commands() != n {
		t.Fatalf("accept of an invalid code: %v (%d commands sent)", err, r.sim.Commands()-n)
	}
	if err := r.drv.DeclineMarking(ctx); err != nil {
		t.Fatal(err)
	}
	rc.Items[1].MarkingResult = &res
	n = r.sim.Commands()
	_, err = r.drv.PrintReceipt(ctx, "bad-mark", rc)
	var fe *fiscal.Error
	if !errors.As(err, &fe) || fe.Code != fiscal.CodeBadReceipt || fe.Field != "items[1].marking_code" {
		t.Fatalf("receipt with an invalid code: %v", err)
	}
	if r.sim.Commands() != n || len(receipts(r.sim.Documents())) != 0 || r.sim.Snapshot().ReceiptOpen {
		t.Fatalf("something reached the register: %d commands", r.sim.Commands()-n)
	}
	// A forged result claiming Valid for a code never accepted: the register's
	// count of accepted codes refuses the receipt before it opens.
	forged := res
	forged.Local, forged.Result, forged.ItemStatus = 0x03, 0x0F, 1
	rc.Items[1].MarkingResult = &forged
	if _, err := r.drv.PrintReceipt(ctx, "bad-mark-2", rc); !errors.As(err, &fe) || fe.Code != fiscal.CodeBadReceipt || !strings.Contains(fe.Text, "holds 0 accepted") {
		t.Fatalf("receipt with a code never accepted: %v", err)
	}
	if len(receipts(r.sim.Documents())) != 0 || r.sim.Snapshot().ReceiptOpen {
		t.Fatal("a receipt reached the FN")
	}
}

// TestMarkingUnknownAndUnreachable: a code the OISM does not know is Invalid;
// with the OISM unreachable the code is not checked, sold under the default
// policy (2106 says the FN checked it only), refused under RefuseUnchecked.
func TestMarkingUnknownAndUnreachable(t *testing.T) {
	r := newTCPRig(t, shtrihsim.Options{}, shtrih.Options{AutoOpenShift: true})
	ctx := context.Background()
	r.sim.SetMarkingVerdict(codeTobac, shtrihsim.MarkUnknown)
	r.sim.SetMarkingVerdict(codeMilk, shtrihsim.MarkUnreachable)
	tob := fiscal.Item{Name: "Сигареты", Quantity: fiscal.QuantityOne, Price: 21000, VAT: fiscal.VAT22, MarkingCode: codeTobac, Object: fiscal.Excise}
	res, err := r.drv.CheckMarking(ctx, fiscal.MarkingRequestFor(fiscal.Sale, tob))
	if err != nil || res.Verdict() != fiscal.Invalid || !strings.Contains(res.Message(), "не найден") {
		t.Fatalf("unknown code: %+v %v %q", res, err, res.Message())
	}
	milk := markedReceipt().Items[1]
	res, err = r.drv.CheckMarking(ctx, fiscal.MarkingRequestFor(fiscal.Sale, milk))
	if err != nil || res.Verdict() != fiscal.NotChecked || res.Online || !strings.Contains(res.Message(), "проверен только ФН") {
		t.Fatalf("unreachable: %+v %v", res, err)
	}
	strict := shtrih.New(dialRig(t, r), shtrih.Options{AutoOpenShift: true, Journal: r.j, Timeouts: testTimeouts, MarkingOffline: fiscal.RefuseUnchecked})
	t.Cleanup(func() { _ = strict.Close() })
	if err := strict.AcceptMarking(ctx, res); !errors.Is(err, fiscal.ErrBadReceipt) {
		t.Fatalf("strict policy accepted a not-checked code: %v", err)
	}
	if err := r.drv.AcceptMarking(ctx, res); err != nil {
		t.Fatal(err)
	}
	milk.MarkingResult = &res
	rc := fiscal.Receipt{Type: fiscal.Sale, Items: []fiscal.Item{milk}}
	rc.Payments = []fiscal.Payment{{Kind: fiscal.Cash, Amount: rc.Total()}}
	if err := strict.CheckReceipt(rc); !errors.Is(err, fiscal.ErrBadReceipt) {
		t.Fatalf("strict policy: receipt with a not-checked code: %v", err)
	}
	if _, err := r.drv.PrintReceipt(ctx, "offline", rc); err != nil {
		t.Fatal(err)
	}
	got := receipts(r.sim.Documents())
	if len(got) != 1 || got[0].Items[0].MarkingCheck != 0x03 || !strings.Contains(r.sim.Tape(), "[M] ") {
		t.Fatalf("offline line %+v", got)
	}
}

// TestMarkedReturnCarriesCode: a sale return of a marked item is checked as
// "piece returned" and the return line carries the code; a code checked for
// a sale is refused on a return.
func TestMarkedReturnCarriesCode(t *testing.T) {
	r := newTCPRig(t, shtrihsim.Options{}, shtrih.Options{AutoOpenShift: true})
	ctx := context.Background()
	rc := fiscal.Receipt{Type: fiscal.SaleReturn, Items: []fiscal.Item{markedReceipt().Items[1]}}
	rc.Payments = []fiscal.Payment{{Kind: fiscal.Cash, Amount: rc.Total()}}
	sale := checked(t, r.drv, fiscal.Sale, rc.Items[0])
	rc.Items[0] = sale
	if err := r.drv.CheckReceipt(rc); !errors.Is(err, fiscal.ErrBadReceipt) || !strings.Contains(err.Error(), "checked for piece_sold") {
		t.Fatalf("a sale check on a return: %v", err)
	}
	if err := r.drv.ClearMarking(ctx); err != nil {
		t.Fatal(err)
	}
	rc.Items[0] = checked(t, r.drv, rc.Type, markedReceipt().Items[1])
	if rc.Items[0].MarkingResult.Status != fiscal.PieceReturned {
		t.Fatalf("status %s", rc.Items[0].MarkingResult.Status)
	}
	if _, err := r.drv.PrintReceipt(ctx, "ret", rc); err != nil {
		t.Fatal(err)
	}
	got := receipts(r.sim.Documents())
	if len(got) != 1 || got[0].Operation != 2 || got[0].Items[0].Marking != codeMilk || got[0].Items[0].PlannedStatus != 3 {
		t.Fatalf("return %+v", got)
	}
}

// TestMarkedFraction: two blisters of ten of an opened pack: 1291 = 2/10,
// quantity 0.2, measure pieces; checked and bound as "measured sold".
func TestMarkedFraction(t *testing.T) {
	r := newTCPRig(t, shtrihsim.Options{}, shtrih.Options{AutoOpenShift: true})
	f := &fiscal.Fraction{Numerator: 2, Denominator: 10}
	it := fiscal.Item{Name: "Лекарство", Quantity: f.Quantity(), Price: 45000, VAT: fiscal.VAT10, MarkingCode: codeTobac + "\x1dmed", Fraction: f}
	bad := it
	bad.Measure = fiscal.Kilogram
	rc := fiscal.Receipt{Type: fiscal.Sale, Items: []fiscal.Item{bad}}
	rc.Payments = []fiscal.Payment{{Kind: fiscal.Cash, Amount: rc.Total()}}
	if err := rc.Validate(fiscal.DefaultLimits); !errors.Is(err, fiscal.ErrBadReceipt) || !strings.Contains(err.Error(), "items[0].fraction") {
		t.Fatalf("fraction in kilograms: %v", err)
	}
	rc.Items[0] = checked(t, r.drv, rc.Type, it)
	if _, err := r.drv.PrintReceipt(context.Background(), "frac", rc); err != nil {
		t.Fatal(err)
	}
	got := receipts(r.sim.Documents())[0].Items[0]
	if got.FractionNum != 2 || got.FractionDen != 10 || got.Quantity != 200_000 || got.PlannedStatus != 2 || got.Measure != 0 {
		t.Fatalf("fraction line %+v", got)
	}
}

// dialRig opens a second connection to a TCP rig's simulator.
func dialRig(t testing.TB, r *rig) shtrih.Port {
	t.Helper()
	p, err := shtrih.DialTCP(r.addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestMarkingBelowFFD12: a register configured for FFD 1.05 gets the code as
// tag 1162 after the line, unchecked; the FFD 1.2 commands are not offered.
func TestMarkingBelowFFD12(t *testing.T) {
	r := newTCPRig(t, shtrihsim.Options{FFD: "1.05"}, shtrih.Options{AutoOpenShift: true, FFD: "1.05"})
	ctx := context.Background()
	milk := markedReceipt().Items[1]
	if _, err := r.drv.CheckMarking(ctx, fiscal.MarkingRequestFor(fiscal.Sale, milk)); !errors.Is(err, fiscal.ErrNotSupported) {
		t.Fatalf("check on FFD 1.05: %v", err)
	}
	rc := fiscal.Receipt{Type: fiscal.Sale, Items: []fiscal.Item{milk}}
	rc.Payments = []fiscal.Payment{{Kind: fiscal.Cash, Amount: rc.Total()}}
	if _, err := r.drv.PrintReceipt(ctx, "legacy", rc); err != nil {
		t.Fatal(err)
	}
	got := receipts(r.sim.Documents())
	if len(got) != 1 || got[0].Items[0].Marking != codeMilk || got[0].Items[0].MarkingCheck != 0 {
		t.Fatalf("legacy line %+v", got)
	}
}
