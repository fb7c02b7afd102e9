package shtrih_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"kassa-agent/fiscal/shtrih"
	"kassa-agent/fiscal/shtrihsim"
)

// TestKill9OpChild is the child of TestKill9MidOperation: it recovers, then
// runs the operation KASSA_SHTRIH_OP with the id KASSA_SHTRIH_ID.
func TestKill9OpChild(t *testing.T) {
	addr := os.Getenv(childEnv)
	if addr == "" || os.Getenv("KASSA_SHTRIH_OP") == "" {
		t.Skip("child process of TestKill9MidOperation")
	}
	ctx := context.Background()
	d := childDriver(t, "KASSA_SHTRIH_JOURNAL", addr)
	var err error
	var res childResult
	res.Rep, err = d.RecoverRegister(ctx)
	if err == nil {
		id := os.Getenv("KASSA_SHTRIH_ID")
		amount, _ := strconv.ParseInt(os.Getenv("KASSA_SHTRIH_AMOUNT"), 10, 64)
		switch os.Getenv("KASSA_SHTRIH_OP") {
		case "open":
			res.Doc, err = d.OpenShiftAs(ctx, id, cashier)
		case "close":
			res.Doc, err = d.CloseShiftAs(ctx, id, cashier)
		case "cash_in":
			res.Doc, err = d.CashInOnce(ctx, id, amount)
		case "correction":
			res.Doc, err = d.PrintCorrection(ctx, id, correction(amount))
		}
	}
	if err != nil {
		res.Err = err.Error()
	}
	b, _ := json.Marshal(res)
	if err := os.WriteFile(os.Getenv("KASSA_SHTRIH_OUT"), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestKill9MidOperation kills the agent (a child process) while the register
// executes a shift open, a cash in, a correction and a Z report, and checks that a
// restarted agent finds exactly one document of each and knows it.
func TestKill9MidOperation(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	r := newTCPRig(t, shtrihsim.Options{}, shtrih.Options{})
	dir := t.TempDir()
	jdir := filepath.Join(dir, "journal")
	hold := 5 * time.Second
	points := []struct {
		op    string
		f     shtrihsim.Fault
		count func() int
	}{
		{"open", shtrihsim.Fault{Kind: shtrihsim.DelayReply, Command: shtrih.CmdOpenShift, Delay: hold}, nil},
		{"cash_in", shtrihsim.Fault{Kind: shtrihsim.DelayReply, Command: shtrih.CmdCashIn, Delay: hold}, nil},
		{"cash_in", shtrihsim.Fault{Kind: shtrihsim.PowerCutAfterClose, Command: shtrih.CmdCashIn, Delay: 300 * time.Millisecond}, nil},
		{"correction", shtrihsim.Fault{Kind: shtrihsim.DelayReply, Command: shtrih.CmdFNCloseReceipt, Delay: hold}, nil},
		{"correction", shtrihsim.Fault{Kind: shtrihsim.DelayReply, Command: shtrih.CmdFNSendTLV, Delay: hold}, nil},
		{"close", shtrihsim.Fault{Kind: shtrihsim.DelayReply, Command: shtrih.CmdZReport, Delay: hold}, nil},
		{"open", shtrihsim.Fault{Kind: shtrihsim.PowerCutAfterClose, Command: shtrih.CmdOpenShift, Delay: 300 * time.Millisecond}, nil},
		{"close", shtrihsim.Fault{Kind: shtrihsim.DelayReply, Command: shtrih.CmdFNSendTLV, Delay: hold}, nil},
	}
	count := func(op string) int {
		switch op {
		case "open":
			return len(docsOf(r.sim.Documents(), shtrihsim.DocShiftOpen))
		case "close":
			return len(docsOf(r.sim.Documents(), shtrihsim.DocShiftClose))
		case "correction":
			return len(docsOf(r.sim.Documents(), shtrihsim.DocCorrection))
		}
		return strings.Count(r.sim.Tape(), "ВНЕСЕНИЕ")
	}
	for n, pt := range points {
		id := fmt.Sprintf("kill-op-%d", n)
		amount := int64(2000 + n)
		before := count(pt.op)
		fired := len(r.sim.Fired())
		r.sim.Inject(pt.f)
		child := func() *exec.Cmd {
			c := exec.Command(os.Args[0], "-test.run=^TestKill9OpChild$", "-test.count=1")
			c.Env = append(os.Environ(), childEnv+"="+r.addr, "KASSA_SHTRIH_JOURNAL="+jdir, "KASSA_SHTRIH_ID="+id, "KASSA_SHTRIH_OP="+pt.op,
				"KASSA_SHTRIH_AMOUNT="+strconv.FormatInt(amount, 10), "KASSA_SHTRIH_OUT="+filepath.Join(dir, id+".json"))
			return c
		}
		c := child()
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for len(r.sim.Fired()) == fired && time.Now().Before(deadline) {
			time.Sleep(2 * time.Millisecond)
		}
		if len(r.sim.Fired()) == fired {
			_ = c.Process.Kill()
			_ = c.Wait()
			t.Fatalf("point %d (%s): fault never fired", n, pt.op)
		}
		time.Sleep(20 * time.Millisecond)
		if err := c.Process.Signal(os.Kill); err != nil {
			t.Fatal(err)
		}
		_ = c.Wait()
		r.sim.ClearFaults()
		if pt.f.Kind == shtrihsim.PowerCutAfterClose {
			time.Sleep(pt.f.Delay)
		}
		c = child()
		if out, err := c.CombinedOutput(); err != nil {
			t.Fatalf("point %d: restarted child: %v\n%s", n, err, out)
		}
		b, err := os.ReadFile(filepath.Join(dir, id+".json"))
		if err != nil {
			t.Fatal(err)
		}
		var res childResult
		if err := json.Unmarshal(b, &res); err != nil || res.Err != "" {
			t.Fatalf("point %d (%s): child result %s %v", n, pt.op, b, err)
		}
		if got := count(pt.op) - before; got != 1 {
			t.Fatalf("point %d (%s): %d new documents, want 1 (recovery %+v)", n, pt.op, got, res.Rep)
		}
		docs := r.sim.Documents()
		if last := docs[len(docs)-1]; pt.op != "cash_in" && (last.FD != res.Doc.FD || last.FP != res.Doc.FP) {
			t.Fatalf("point %d (%s): FN %+v, child %+v", n, pt.op, last, res.Doc)
		}
		if pt.op == "cash_in" && res.Doc.DocNumber == 0 {
			t.Fatalf("point %d: cash document number unknown: %+v", n, res.Doc)
		}
	}
}
