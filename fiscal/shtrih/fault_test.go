package shtrih_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"kassa-agent/fiscal"
	"kassa-agent/fiscal/shtrih"
	"kassa-agent/fiscal/shtrihsim"
)

// rates2026 are the rates a receipt may carry now.
var rates2026 = []fiscal.VATRate{fiscal.VAT22, fiscal.VAT10, fiscal.VAT0, fiscal.NoVAT, fiscal.VAT22122, fiscal.VAT10110,
	fiscal.VAT5, fiscal.VAT7, fiscal.VAT5105, fiscal.VAT7107}

// receiptSteps are the commands of one receipt, in order.
var receiptSteps = []uint16{shtrih.CmdShortStatus, shtrih.CmdFNStatus, shtrih.CmdOpenReceipt, shtrih.CmdFNOperation,
	shtrih.CmdFNSendTLV, shtrih.CmdFNCloseReceipt, shtrih.CmdFNShiftParams}

var faultKinds = []shtrihsim.FaultKind{shtrihsim.NAK, shtrihsim.Garbage, shtrihsim.DropReply, shtrihsim.DelayReply,
	shtrihsim.PaperOut, shtrihsim.PowerCutAfterClose, shtrihsim.CorruptReply}

func randomReceipt(rng *rand.Rand) fiscal.Receipt {
	r := fiscal.Receipt{Type: []fiscal.ReceiptType{fiscal.Sale, fiscal.Sale, fiscal.SaleReturn, fiscal.Purchase}[rng.IntN(4)], Buyer: "buyer@example.ru"}
	for i := range 1 + rng.IntN(4) {
		r.Items = append(r.Items, fiscal.Item{Name: fmt.Sprintf("Товар %d", i+1), Quantity: int64(1+rng.IntN(3000)) * 1000,
			Price: int64(100 + rng.IntN(100000)), VAT: rates2026[rng.IntN(len(rates2026))]})
	}
	t := r.Total()
	switch rng.IntN(3) {
	case 0:
		r.Payments = []fiscal.Payment{{Kind: fiscal.Cash, Amount: t + int64(rng.IntN(5000))}}
	case 1:
		r.Payments = []fiscal.Payment{{Kind: fiscal.Electronic, Amount: t}}
	default:
		c := t / 2
		r.Payments = []fiscal.Payment{{Kind: fiscal.Cash, Amount: c}, {Kind: fiscal.Electronic, Amount: t - c}}
	}
	return r
}

// trial prints one receipt with a fault injected and checks it ends up in the FN
// exactly once with its FP known to the caller, retrying with the same id as the
// agent does.
func trial(t *testing.T, r *rig, id string, rc fiscal.Receipt, f shtrihsim.Fault) {
	t.Helper()
	ctx := context.Background()
	before := len(receipts(r.sim.Documents()))
	r.sim.Inject(f)
	var doc fiscal.Document
	var err error
	for attempt := 0; ; attempt++ {
		doc, err = r.drv.PrintReceipt(ctx, id, rc)
		if err == nil {
			break
		}
		var fe *fiscal.Error
		if !errors.As(err, &fe) || !fe.Retryable() || attempt > 8 {
			t.Fatalf("%s with fault %+v: attempt %d: %v (fired %v)", id, f, attempt, err, r.sim.Fired())
		}
		if fe.Code == fiscal.CodePaperOut {
			r.sim.SetPaper(true)
		}
	}
	r.sim.ClearFaults()
	r.sim.SetPaper(true)
	got := receipts(r.sim.Documents())
	if len(got) != before+1 {
		t.Fatalf("%s with fault %+v: FN has %d new receipts, want 1", id, f, len(got)-before)
	}
	last := got[len(got)-1]
	if last.FD != doc.FD || last.FP != doc.FP || last.Total != rc.Total() {
		t.Fatalf("%s with fault %+v: FN %+v, agent %+v", id, f, last, doc)
	}
	if again, err := r.drv.PrintReceipt(ctx, id, rc); err != nil || !sameDoc(again, doc) {
		t.Fatalf("%s repeated: %+v, %v", id, again, err)
	}
	if e, err := r.j.Get(ctx, id); err != nil || !e.Done || e.Doc.FP != doc.FP {
		t.Fatalf("%s journal: %+v, %v", id, e, err)
	}
	if n := len(receipts(r.sim.Documents())); n != before+1 {
		t.Fatalf("%s: repeating the call printed again", id)
	}
}

func faultFor(kind shtrihsim.FaultKind, cmd uint16, after int) shtrihsim.Fault {
	f := shtrihsim.Fault{Kind: kind, Command: cmd, After: after}
	switch kind {
	case shtrihsim.DelayReply:
		f.Delay = testTimeouts.Long + 30*time.Millisecond // longer than the driver waits
	case shtrihsim.PowerCutAfterClose:
		f.Delay = 60 * time.Millisecond
	case shtrihsim.Garbage, shtrihsim.NAK, shtrihsim.CorruptReply:
		f.Count = 1 + after%3
	}
	return f
}

// TestFaultMatrix: every fault at every step of a receipt.
func TestFaultMatrix(t *testing.T) {
	r := newTCPRig(t, shtrihsim.Options{}, shtrih.Options{AutoOpenShift: true})
	rng := rand.New(rand.NewPCG(7, 7))
	n := 0
	for _, kind := range faultKinds {
		for _, cmd := range receiptSteps {
			n++
			trial(t, r, fmt.Sprintf("m-%d", n), randomReceipt(rng), faultFor(kind, cmd, 0))
		}
	}
}

// TestFaultRandomized: 200 random trials (KASSA_CRASH_ITERATIONS for more), seed in
// KASSA_FAULT_SEED to replay.
func TestFaultRandomized(t *testing.T) {
	n := envInt("KASSA_CRASH_ITERATIONS", 200)
	seed := uint64(envInt("KASSA_FAULT_SEED", int(time.Now().UnixNano()%1e9)))
	t.Logf("KASSA_FAULT_SEED=%d, %d trials", seed, n)
	rng := rand.New(rand.NewPCG(seed, seed))
	r := newTCPRig(t, shtrihsim.Options{}, shtrih.Options{AutoOpenShift: true, AutoCloseExpiredShift: true})
	for i := range n {
		rc := randomReceipt(rng)
		f := faultFor(faultKinds[rng.IntN(len(faultKinds))], receiptSteps[rng.IntN(len(receiptSteps))], rng.IntN(len(rc.Items)))
		if rng.IntN(10) == 0 {
			f.Command = 0 // whatever comes next
		}
		if rng.IntN(20) == 0 {
			r.clock.Advance(25 * time.Hour)
		}
		trial(t, r, fmt.Sprintf("r-%d", i), rc, f)
	}
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// The kill -9 test: the simulator runs here; a child process (this test binary
// re-executed) drives it over TCP and is killed mid-receipt; a new child recovers.
const childEnv = "KASSA_SHTRIH_CHILD"

type childResult struct {
	Doc fiscal.Document
	Rep fiscal.RecoveryReport
	Err string
}

// childDriver is a kill-test child's driver: the journal file and the
// simulator's address from the environment, short timeouts.
func childDriver(t *testing.T, journalEnv, addr string) *shtrih.Driver {
	t.Helper()
	j, err := fiscal.OpenFileJournal(os.Getenv(journalEnv))
	if err != nil {
		t.Fatal(err)
	}
	p, err := shtrih.DialTCP(addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return shtrih.New(p, shtrih.Options{Journal: j, AutoOpenShift: true, Timeouts: shtrih.Timeouts{Byte: 50 * time.Millisecond,
		ENQ: 100 * time.Millisecond, Reply: time.Second, Long: 2 * time.Second, Tries: 5, BusyWait: time.Second}})
}

func TestKill9Child(t *testing.T) {
	addr := os.Getenv(childEnv)
	if addr == "" {
		t.Skip("child process of TestKill9MidReceipt")
	}
	ctx := context.Background()
	d := childDriver(t, "KASSA_SHTRIH_JOURNAL", addr)
	var err error
	var res childResult
	res.Rep, err = d.Recover(ctx)
	if err == nil {
		var amount int64
		amount, _ = strconv.ParseInt(os.Getenv("KASSA_SHTRIH_AMOUNT"), 10, 64)
		rc := sale(amount)
		rc.Items = append(rc.Items, fiscal.Item{Name: "Пакет", Quantity: fiscal.QuantityOne, Price: 500, VAT: fiscal.VAT22})
		rc.Payments[0].Amount += 500
		res.Doc, err = d.PrintReceipt(ctx, os.Getenv("KASSA_SHTRIH_ID"), rc)
	}
	if err != nil {
		res.Err = err.Error()
	}
	b, _ := json.Marshal(res)
	if err := os.WriteFile(os.Getenv("KASSA_SHTRIH_OUT"), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestKill9MidReceipt(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	r := newTCPRig(t, shtrihsim.Options{}, shtrih.Options{})
	dir := t.TempDir()
	jdir := filepath.Join(dir, "journal")
	// Kill points: while an item is being registered (receipt open, not in the FN),
	// while waiting for the close reply (document in the FN, reply held), and after
	// a power cut at the close (document in the FN, reply gone).
	points := []shtrihsim.Fault{
		{Kind: shtrihsim.DelayReply, Command: shtrih.CmdFNOperation, Delay: 5 * time.Second},
		{Kind: shtrihsim.DelayReply, Command: shtrih.CmdFNCloseReceipt, Delay: 5 * time.Second},
		{Kind: shtrihsim.PowerCutAfterClose, Command: shtrih.CmdFNCloseReceipt, Delay: 300 * time.Millisecond},
		{Kind: shtrihsim.DelayReply, Command: shtrih.CmdFNStatus, Delay: 5 * time.Second},
	}
	iters := max(1, envInt("KASSA_CRASH_ITERATIONS", 200)/200)
	n := 0
	for range iters {
		for pi, f := range points {
			n++
			id := fmt.Sprintf("kill-%d", n)
			amount := int64(1000 + n)
			before := len(receipts(r.sim.Documents()))
			r.sim.Inject(f)
			child := func() *exec.Cmd {
				c := exec.Command(os.Args[0], "-test.run=^TestKill9Child$", "-test.count=1")
				c.Env = append(os.Environ(), childEnv+"="+r.addr, "KASSA_SHTRIH_JOURNAL="+jdir, "KASSA_SHTRIH_ID="+id,
					"KASSA_SHTRIH_AMOUNT="+strconv.FormatInt(amount, 10), "KASSA_SHTRIH_OUT="+filepath.Join(dir, id+".json"))
				return c
			}
			c := child()
			if err := c.Start(); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(10 * time.Second)
			for len(r.sim.Fired()) < n && time.Now().Before(deadline) {
				time.Sleep(2 * time.Millisecond)
			}
			if len(r.sim.Fired()) < n {
				_ = c.Process.Kill()
				_ = c.Wait()
				t.Fatalf("point %d: fault never fired", pi)
			}
			time.Sleep(20 * time.Millisecond) // let the child block in its wait
			if err := c.Process.Signal(os.Kill); err != nil {
				t.Fatal(err)
			}
			_ = c.Wait()
			r.sim.ClearFaults()
			if f.Kind == shtrihsim.PowerCutAfterClose {
				time.Sleep(f.Delay) // the device has rebooted by the restart
			}
			c = child()
			if out, err := c.CombinedOutput(); err != nil {
				t.Fatalf("point %d: restarted child: %v\n%s", pi, err, out)
			}
			b, err := os.ReadFile(filepath.Join(dir, id+".json"))
			if err != nil {
				t.Fatal(err)
			}
			var res childResult
			if err := json.Unmarshal(b, &res); err != nil || res.Err != "" {
				t.Fatalf("point %d: child result %s %v", pi, b, err)
			}
			got := receipts(r.sim.Documents())
			if len(got) != before+1 {
				t.Fatalf("point %d: %d new receipts in the FN, want 1 (recovery %+v)", pi, len(got)-before, res.Rep)
			}
			last := got[len(got)-1]
			if last.FD != res.Doc.FD || last.FP != res.Doc.FP || last.Total != amount+500 {
				t.Fatalf("point %d: FN %+v, child %+v", pi, last, res.Doc)
			}
			if r.sim.Snapshot().ReceiptOpen {
				t.Fatalf("point %d: receipt left open", pi)
			}
		}
	}
}
