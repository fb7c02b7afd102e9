package shtrih_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"kassa-agent/device"
	"kassa-agent/device/ptytest"
	"kassa-agent/fiscal"
	"kassa-agent/fiscal/shtrih"
	"kassa-agent/fiscal/shtrihsim"
)

// clock is the shared, movable time of a simulator and a driver.
type clock struct{ off atomic.Int64 }

func (c *clock) Now() time.Time          { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *clock) Advance(d time.Duration) { c.off.Add(int64(d)) }

// testTimeouts are short: loopback answers in microseconds.
var testTimeouts = shtrih.Timeouts{Byte: 20 * time.Millisecond, ENQ: 40 * time.Millisecond, Reply: 120 * time.Millisecond,
	Long: 200 * time.Millisecond, Tries: 5, BusyWait: time.Second}

type rig struct {
	sim   *shtrihsim.Sim
	drv   *shtrih.Driver
	j     fiscal.Journal
	clock *clock
	addr  string
}

func startSim(t testing.TB, opt shtrihsim.Options) (*shtrihsim.Sim, *clock) {
	t.Helper()
	c := &clock{}
	if opt.Now == nil {
		opt.Now = c.Now
	}
	s, err := shtrihsim.New(opt)
	if err != nil {
		t.Fatal(err)
	}
	return s, c
}

func newTCPRig(t testing.TB, simOpt shtrihsim.Options, drvOpt shtrih.Options) *rig {
	t.Helper()
	s, c := startSim(t, simOpt)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = s.ServeTCP(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	port, err := shtrih.DialTCP(ln.Addr().String(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return finishRig(t, s, c, port, drvOpt, ln.Addr().String())
}

func newPTYRig(t testing.TB, simOpt shtrihsim.Options, drvOpt shtrih.Options) *rig {
	t.Helper()
	s, c := startSim(t, simOpt)
	pd := ptytest.New(t)
	// Reading a PTY master while no one has the line open fails with EIO; hold
	// the line open so the simulator does not stop before the driver opens it.
	hold, err := os.OpenFile(pd.SlavePath(), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = hold.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	// The PTY's owner closes the master; hide Close from Serve.
	go func() { _ = s.Serve(ctx, struct{ io.ReadWriter }{pd.Master()}) }()
	port, err := device.Open(device.PortConfig{Name: pd.Path(), Baud: 115200})
	if err != nil {
		t.Fatal(err)
	}
	return finishRig(t, s, c, port, drvOpt, "")
}

func finishRig(t testing.TB, s *shtrihsim.Sim, c *clock, port shtrih.Port, opt shtrih.Options, addr string) *rig {
	if opt.Journal == nil {
		j, err := fiscal.OpenFileJournal(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		opt.Journal = j
	}
	if opt.Timeouts == (shtrih.Timeouts{}) {
		opt.Timeouts = testTimeouts
	}
	opt.Now = c.Now
	d := shtrih.New(port, opt)
	t.Cleanup(func() { _ = d.Close() })
	return &rig{sim: s, drv: d, j: opt.Journal, clock: c, addr: addr}
}

func receipts(docs []shtrihsim.Document) []shtrihsim.Document {
	var out []shtrihsim.Document
	for _, d := range docs {
		if d.Type == shtrihsim.DocReceipt {
			out = append(out, d)
		}
	}
	return out
}

func TestFullShiftTCP(t *testing.T) {
	fullShift(t, newTCPRig(t, shtrihsim.Options{StrayFF: true}, shtrih.Options{}))
}
func TestFullShiftPTY(t *testing.T) {
	fullShift(t, newPTYRig(t, shtrihsim.Options{}, shtrih.Options{}))
}

func fullShift(t *testing.T, r *rig) {
	ctx := context.Background()
	rep, err := r.drv.Recover(ctx)
	if err != nil || len(rep.Completed)+len(rep.NotPrinted) != 0 || rep.CancelledOpen {
		t.Fatalf("Recover on a clean device = %+v, %v", rep, err)
	}
	st, err := r.drv.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.ShiftOpen || st.Mode != shtrih.ModeShiftClosed || !errors.Is(st.Ready, fiscal.ErrShiftClosed) || st.FNNumber != "9999078902012345" ||
		st.RegNumber != "0000000001012345" || st.INN != "7701234567" || st.Serial != "12345678" || !strings.Contains(st.Model, "ШТРИХ") {
		t.Fatalf("initial status %+v", st)
	}
	if _, err := r.drv.PrintReceipt(ctx, "early", sale(100)); !errors.Is(err, fiscal.ErrShiftClosed) {
		t.Fatalf("receipt with the shift closed and auto-open off: %v", err)
	}
	if err := r.drv.OpenShift(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.drv.CashIn(ctx, 100_000); err != nil {
		t.Fatal(err)
	}
	r1 := fiscal.Receipt{Type: fiscal.Sale, TaxSystem: fiscal.OSN,
		Items: []fiscal.Item{
			{Name: "Молоко 3,2% 1 л", Quantity: 2 * fiscal.QuantityOne, Price: 8990, VAT: fiscal.VAT10},
			{Name: "Кофе молотый", Quantity: fiscal.QuantityOne, Price: 45000, VAT: fiscal.VAT22},
		},
		Payments: []fiscal.Payment{{Kind: fiscal.Cash, Amount: 70000}}}
	r2 := fiscal.Receipt{Type: fiscal.Sale, TaxSystem: fiscal.USNIncome, Buyer: "+79161234567", Cashier: "Иванова А.",
		Items: []fiscal.Item{
			{Name: "Яблоки", Quantity: 1_234_000, Price: 12990, VAT: fiscal.VAT10, Object: fiscal.Goods},
			{Name: "Доставка", Quantity: fiscal.QuantityOne, Price: 25000, VAT: fiscal.NoVAT, Object: fiscal.Service},
			{Name: "Экспорт", Quantity: fiscal.QuantityOne, Price: 1000, VAT: fiscal.VAT0},
			{Name: "Туфли", Quantity: fiscal.QuantityOne, Price: 399000, VAT: fiscal.VAT22, MarkingCode: "010460406000600021N4N57RSCBUZTQ\x1d2403004002910161218"},
		}}
	r2.Payments = []fiscal.Payment{{Kind: fiscal.Electronic, Amount: r2.Total()}}
	r2.Items[3] = checked(t, r.drv, r2.Type, r2.Items[3])
	r3 := fiscal.Receipt{Type: fiscal.SaleReturn, TaxSystem: fiscal.OSN,
		Items:    []fiscal.Item{{Name: "Кофе молотый", Quantity: fiscal.QuantityOne, Price: 45000, VAT: fiscal.VAT22122}},
		Payments: []fiscal.Payment{{Kind: fiscal.Cash, Amount: 5000}, {Kind: fiscal.Electronic, Amount: 40000}}}
	var docs []fiscal.Document
	for i, rc := range []fiscal.Receipt{r1, r2, r3} {
		doc, err := r.drv.PrintReceipt(ctx, fmt.Sprintf("pay-%d", i+1), rc)
		if err != nil {
			t.Fatalf("receipt %d: %v", i+1, err)
		}
		if doc.FP == 0 || doc.FD == 0 || doc.Total != rc.Total() || doc.FNNumber != st.FNNumber || doc.RegNumber != st.RegNumber ||
			doc.Shift != 1 || doc.ReceiptNumber != i+1 || doc.Time.IsZero() || doc.Type != rc.Type {
			t.Fatalf("receipt %d document %+v", i+1, doc)
		}
		docs = append(docs, doc)
	}
	again, err := r.drv.PrintReceipt(ctx, "pay-2", r2)
	if err != nil || !sameDoc(again, docs[1]) {
		t.Fatalf("same id again = %+v, %v; want %+v", again, err, docs[1])
	}
	if err := r.drv.CashOut(ctx, 20_000); err != nil {
		t.Fatal(err)
	}
	if err := r.drv.CashOut(ctx, 10_000_000); !errors.Is(err, fiscal.ErrRejected) {
		t.Fatalf("cash out more than the drawer holds: %v", err)
	}
	if err := r.drv.XReport(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.drv.PrintText(ctx, []string{"Оплата по QR:", "https://qr.nspk.ru/AS10003P3RH0LJ2A9ROO038L6NT5RU1M?type=01&bank=100000000111"}); err != nil {
		t.Fatal(err)
	}
	if err := r.drv.Cut(ctx); err != nil {
		t.Fatal(err)
	}
	st, err = r.drv.Status(ctx)
	if err != nil || !st.ShiftOpen || st.ShiftNumber != 1 || st.Ready != nil || st.LastFD != docs[2].FD || st.OFDBacklog != 4 || st.OFDOldest.IsZero() {
		t.Fatalf("status in the shift %+v %v", st, err)
	}
	if err := r.drv.CloseShift(ctx); err != nil {
		t.Fatal(err)
	}

	// Cross-check everything with the simulator's FN journal.
	all := r.sim.Documents()
	got := receipts(all)
	if len(got) != 3 {
		t.Fatalf("FN holds %d receipts, want 3", len(got))
	}
	ops := []int{1, 1, 2}
	for i, g := range got {
		d := docs[i]
		if g.FD != d.FD || g.FP != d.FP || g.Total != d.Total || g.Operation != ops[i] || g.Number != i+1 || g.Shift != 1 || !g.Time.Equal(d.Time) {
			t.Errorf("receipt %d: FN %+v, driver %+v", i+1, g, d)
		}
		f, err := r.drv.FindDocument(ctx, d.FD)
		if err != nil || f.FP != d.FP || f.Total != d.Total || f.Kind != 3 || int(f.Operation) != ops[i] {
			t.Errorf("FindDocument(%d) = %+v, %v", d.FD, f, err)
		}
	}
	if it := got[1].Items; len(it) != 4 || it[0].Quantity != 1_234_000 || it[0].Sum != 16030 || it[0].Name != "Яблоки" ||
		it[3].Marking == "" || it[1].Object != 4 || it[2].TaxRate != 3 {
		t.Errorf("receipt 2 items in the FN: %+v", it)
	}
	if got[1].Tags[1008] != "+79161234567" || got[1].Tags[1021] != "Иванова А." || got[1].Payments[1] != r2.Total() || got[1].TaxSystem != 2 {
		t.Errorf("receipt 2 tags/payments: %+v", got[1])
	}
	if got[0].Change != 70000-r1.Total() || got[2].Payments[0] != 5000 || got[2].Payments[1] != 40000 {
		t.Errorf("payments: %+v / %+v", got[0], got[2])
	}
	snap := r.sim.Snapshot()
	wantCash := int64(100_000) + r1.Total() - 5000 - 20_000
	if snap.ShiftOpen || snap.Cash != wantCash || snap.LastFD != all[len(all)-1].FD || all[len(all)-1].Type != shtrihsim.DocShiftClose {
		t.Errorf("device after Z: %+v (want cash %d)", snap, wantCash)
	}
	if st, err := r.drv.Status(ctx); err != nil || st.ShiftOpen || st.LastFD != snap.LastFD {
		t.Errorf("status after Z: %+v %v", st, err)
	}
	tape := r.sim.Tape()
	for _, want := range []string{"ОТЧЕТ ОБ ОТКРЫТИИ СМЕНЫ", "Кофе молотый", "ВОЗВРАТ ПРИХОДА", "X-ОТЧЕТ", "https://qr.nspk.ru/AS10003P3RH0LJ2A", "ОТЧЕТ О ЗАКРЫТИИ СМЕНЫ", fmt.Sprintf("%010d", docs[0].FP)} {
		if !strings.Contains(tape, want) {
			t.Errorf("tape lacks %q:\n%s", want, tape)
		}
	}
	if testing.Verbose() {
		t.Log("\n" + tape)
	}
}

func sameDoc(a, b fiscal.Document) bool {
	ta, tb := a.Time, b.Time
	a.Time, b.Time = time.Time{}, time.Time{}
	return a == b && ta.Equal(tb)
}

func sale(amount int64) fiscal.Receipt {
	return fiscal.Receipt{Type: fiscal.Sale, Items: []fiscal.Item{{Name: "Товар", Quantity: fiscal.QuantityOne, Price: amount, VAT: fiscal.VAT22}},
		Payments: []fiscal.Payment{{Kind: fiscal.Electronic, Amount: amount}}}
}

func TestSelfHealing(t *testing.T) {
	r := newTCPRig(t, shtrihsim.Options{}, shtrih.Options{AutoOpenShift: true, AutoCloseExpiredShift: true})
	ctx := context.Background()
	d1, err := r.drv.PrintReceipt(ctx, "a", sale(1000))
	if err != nil || d1.Shift != 1 {
		t.Fatalf("auto-open shift: %+v %v", d1, err)
	}
	r.clock.Advance(25 * time.Hour)
	st, err := r.drv.Status(ctx)
	if err != nil || !st.ShiftExpired || st.Ready != nil {
		t.Fatalf("expired shift status %+v %v", st, err)
	}
	d2, err := r.drv.PrintReceipt(ctx, "b", sale(2000))
	if err != nil || d2.Shift != 2 || d2.ReceiptNumber != 1 {
		t.Fatalf("Z + open before receipt: %+v %v", d2, err)
	}
	types := []int{}
	for _, d := range r.sim.Documents() {
		types = append(types, d.Type)
	}
	if fmt.Sprint(types) != "[1 2 3 5 2 3]" {
		t.Fatalf("FN documents %v", types)
	}
	// Paper out before a receipt: a clear error, nothing opened.
	r.sim.SetPaper(false)
	if _, err := r.drv.PrintReceipt(ctx, "c", sale(3000)); fiscal.CodeOf(err) != fiscal.CodePaperOut {
		t.Fatalf("paper out: %v", err)
	}
	if st, _ := r.drv.Status(ctx); !st.PaperOut || !errors.Is(st.Ready, fiscal.ErrPaperOut) {
		t.Fatalf("status with no paper %+v", st)
	}
	r.sim.SetPaper(true)
	if _, err := r.drv.PrintReceipt(ctx, "c", sale(3000)); err != nil {
		t.Fatal(err)
	}
	// Without the auto options the shift states are errors.
	r2 := newTCPRig(t, shtrihsim.Options{}, shtrih.Options{})
	if err := r2.drv.OpenShift(ctx); err != nil {
		t.Fatal(err)
	}
	r2.clock.Advance(24*time.Hour + time.Minute)
	if _, err := r2.drv.PrintReceipt(ctx, "x", sale(100)); !errors.Is(err, fiscal.ErrShiftExpired) {
		t.Fatalf("expired shift without auto Z: %v", err)
	}
	if err := r2.drv.CloseShift(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestStillPrintingAndPaperOutMidReceipt(t *testing.T) {
	r := newTCPRig(t, shtrihsim.Options{PrintTime: 15 * time.Millisecond}, shtrih.Options{AutoOpenShift: true})
	ctx := context.Background()
	rc := sale(5000)
	rc.Items = append(rc.Items, rc.Items[0], rc.Items[0])
	rc.Payments[0].Amount = 15000
	if _, err := r.drv.PrintReceipt(ctx, "busy", rc); err != nil {
		t.Fatalf("with 0x50 retries: %v", err)
	}
	// Paper runs out while an item prints; the next item fails; after loading paper
	// the same id prints the receipt once.
	r.sim.Inject(shtrihsim.Fault{Kind: shtrihsim.PaperOut, Command: shtrih.CmdFNOperation})
	_, err := r.drv.PrintReceipt(ctx, "paper", rc)
	if fiscal.CodeOf(err) != fiscal.CodePaperOut {
		t.Fatalf("paper out mid-receipt: %v", err)
	}
	if snap := r.sim.Snapshot(); snap.ReceiptOpen {
		t.Fatal("the interrupted receipt must be cancelled")
	}
	r.sim.SetPaper(true)
	doc, err := r.drv.PrintReceipt(ctx, "paper", rc)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(receipts(r.sim.Documents())); n != 2 {
		t.Fatalf("%d receipts in the FN, want 2", n)
	}
	// Paper out at the close: the FN has the document; B0h continues printing.
	r.sim.Inject(shtrihsim.Fault{Kind: shtrihsim.PaperOut, Command: shtrih.CmdFNCloseReceipt, Delay: 10 * time.Millisecond})
	doc2, err := r.drv.PrintReceipt(ctx, "paper2", rc)
	if err != nil || doc2.FD != doc.FD+1 {
		t.Fatalf("paper out at close: %+v %v", doc2, err)
	}
	time.Sleep(15 * time.Millisecond)
	if _, err := r.drv.PrintReceipt(ctx, "paper3", rc); err != nil {
		t.Fatalf("after paper is back (B0h): %v", err)
	}
	if !strings.Contains(r.sim.Tape(), "printing continued") {
		t.Fatal("B0h was not sent")
	}
}

func TestBadReceiptNothingSent(t *testing.T) {
	r := newTCPRig(t, shtrihsim.Options{}, shtrih.Options{AutoOpenShift: true})
	ctx := context.Background()
	before := r.sim.Commands()
	long := sale(100)
	long.Items[0].Name = strings.Repeat("я", 129)
	emoji := sale(100)
	emoji.Items[0].Name = "Пицца 🍕"
	for name, rc := range map[string]fiscal.Receipt{"empty": {Type: fiscal.Sale}, "long name": long, "unprintable": emoji, "zero": sale(0)} {
		if _, err := r.drv.PrintReceipt(ctx, "bad-"+name, rc); fiscal.CodeOf(err) != fiscal.CodeBadReceipt {
			t.Errorf("%s: %v", name, err)
		}
	}
	if r.sim.Commands() != before {
		t.Fatal("a bad receipt reached the device")
	}
	if p, _ := r.j.Pending(ctx); len(p) != 0 {
		t.Fatal("a bad receipt was journalled")
	}
}

func TestRecoverCancelsForeignOpenReceipt(t *testing.T) {
	r := newTCPRig(t, shtrihsim.Options{}, shtrih.Options{AutoOpenShift: true})
	ctx := context.Background()
	if err := r.drv.OpenShift(ctx); err != nil {
		t.Fatal(err)
	}
	// Another program opened a receipt and went away.
	p, err := shtrih.DialTCP(r.addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	other := shtrih.New(p, shtrih.Options{Timeouts: testTimeouts, Journal: r.j})
	op, _ := fiscal.OpenFileJournal(t.TempDir())
	_ = op
	if err := rawCommand(p, shtrih.CmdOpenReceipt, append(shtrih.Password(30), 0)); err != nil {
		t.Fatal(err)
	}
	_ = other.Close()
	if !r.sim.Snapshot().ReceiptOpen {
		t.Fatal("setup: no open receipt")
	}
	rep, err := r.drv.Recover(ctx)
	if err != nil || !rep.CancelledOpen || r.sim.Snapshot().ReceiptOpen {
		t.Fatalf("Recover = %+v, %v", rep, err)
	}
}

// rawCommand sends one frame and reads its ACK and reply, as other host software would.
func rawCommand(p shtrih.Port, cmd uint16, params []byte) error {
	if _, err := p.Write(shtrih.Frame(shtrih.CommandBody(cmd, params))); err != nil {
		return err
	}
	_ = p.SetReadTimeout(200 * time.Millisecond)
	var got []byte
	buf := make([]byte, 64)
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		n, err := p.Read(buf)
		if err != nil {
			return err
		}
		got = append(got, buf[:n]...)
		if len(got) > 1 && got[0] == shtrih.ACK {
			if body, _, err := shtrih.ParseFrame(got[1:]); err == nil {
				_, _ = p.Write([]byte{shtrih.ACK})
				if _, code, _, _ := shtrih.SplitReply(body); code != 0 {
					return shtrih.DeviceError(cmd, code)
				}
				return nil
			}
		}
	}
	return fmt.Errorf("no reply, got % X", got)
}

var _ sync.Locker = (*sync.Mutex)(nil)

// TestServePTY: the simulator's own PTY (what the demo uses) with the project's real
// serial port driver.
func TestServePTY(t *testing.T) {
	s, c := startSim(t, shtrihsim.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	path, err := s.ServePTY(ctx)
	if err != nil {
		t.Skip(err)
	}
	port, err := device.Open(device.PortConfig{Name: path, Baud: 115200})
	if err != nil {
		t.Fatal(err)
	}
	r := finishRig(t, s, c, port, shtrih.Options{AutoOpenShift: true}, "")
	doc, err := r.drv.PrintReceipt(ctx, "pty", sale(12345))
	if err != nil || doc.FP != receipts(s.Documents())[0].FP {
		t.Fatalf("%+v %v", doc, err)
	}
}
