package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kassa-agent/fiscal/shtrih"
	"kassa-agent/fiscal/shtrihsim"
)

// TestRegisterOperationFaults: each document-making operation through the
// API with the register's reply lost, a NAK, and the paper running out in
// the middle of its document. The call, and the POS's retry with the same
// key, end with the operation's document made exactly once (in the FN, on
// the tape or in the drawer), its result known, and the retry answered with
// that same result.
func TestRegisterOperationFaults(t *testing.T) {
	const cashier = `{"cashier":{"name":"Иванова И."}}`
	type pre struct{ path, body string }
	open := pre{"/v1/shift/open", cashier}
	fnDocs := func(typ int) func(*rig) int {
		return func(r *rig) int { return len(docsOfType(r.till.Register.Documents(), typ)) }
	}
	onTape := func(text string) func(*rig) int {
		return func(r *rig) int { return strings.Count(r.till.Register.Tape(), text) }
	}
	returns := func(r *rig) int {
		n := 0
		for _, d := range receiptsOf(r.till.Register.Documents()) {
			if d.Operation == 2 {
				n++
			}
		}
		return n
	}
	ops := []struct {
		name, path, body string
		before           []pre
		// last is the command that completes the document (its reply lost,
		// or NAKed); first is one early in it (the paper runs out there).
		first, last uint16
		count       func(*rig) int
		cash        int64 // the drawer after it, for cash in and out
		// cut, for what is not journaled (copy, print), counts what a power
		// cut left on the tape: its outcome is unknown, so it fails, says
		// so, and is not printed again.
		cut func(*rig) int
	}{
		{name: "shift open", path: "/v1/shift/open", body: cashier,
			first: shtrih.CmdFNBeginOpen, last: shtrih.CmdOpenShift, count: fnDocs(shtrihsim.DocShiftOpen)},
		{name: "shift close", path: "/v1/shift/close", body: cashier, before: []pre{open},
			first: shtrih.CmdFNBeginClose, last: shtrih.CmdZReport, count: fnDocs(shtrihsim.DocShiftClose)},
		{name: "cash in", path: "/v1/cash/in", body: `{"amount":100000}`, before: []pre{open},
			first: shtrih.CmdCashIn, last: shtrih.CmdCashIn, count: onTape("ВНЕСЕНИЕ"), cash: 100000},
		{name: "cash out", path: "/v1/cash/out", body: `{"amount":30000}`, before: []pre{open, {"/v1/cash/in", `{"amount":100000}`}},
			first: shtrih.CmdCashOut, last: shtrih.CmdCashOut, count: onTape("ВЫПЛАТА"), cash: 70000},
		{name: "correction", path: "/v1/corrections", body: corrBody, before: []pre{open},
			first: shtrih.CmdFNBeginCorrection, last: shtrih.CmdFNCloseReceipt, count: fnDocs(shtrihsim.DocCorrection)},
		// The only provider with refunds (Alif) pays in UZS: its refunds end in
		// a slip, so a return receipt is reached through /v1/receipts.
		{name: "return receipt", path: "/v1/receipts", body: posReceipt(`,"type":"sale_return"`, `{"electronic":20480}`), before: []pre{open},
			first: shtrih.CmdFNOperation, last: shtrih.CmdFNCloseReceipt, count: returns},
		{name: "copy", path: "/v1/documents/2/copy", body: `{}`, before: []pre{open},
			first: shtrih.CmdPrintCopy, last: shtrih.CmdPrintCopy, count: onTape("КОПИЯ"), cut: onTape("КОПИЯ")},
		{name: "print", path: "/v1/print", body: `{"lines":["Оплата по ссылке:","https://checkout.example/p/1"]}`, before: []pre{open},
			first: shtrih.CmdPrintLine, last: shtrih.CmdPrintLine, count: func(r *rig) int {
				// Both lines, each once: the paper runs out after the first.
				if a, b := onTape("Оплата по ссылке:")(r), onTape("https://checkout.example/p/1")(r); a == b {
					return a
				}
				return -1
			}, cut: func(r *rig) int {
				// Power is cut after the first line: the second never prints.
				if onTape("https://checkout.example/p/1")(r) == 0 {
					return onTape("Оплата по ссылке:")(r)
				}
				return -1
			}},
		{name: "X report", path: "/v1/reports/x", body: `{}`, before: []pre{open},
			first: shtrih.CmdXReport, last: shtrih.CmdXReport, count: onTape("X-ОТЧЕТ (без гашения)")},
	}
	faults := []struct {
		name  string
		fault func(first, last uint16) shtrihsim.Fault
	}{
		{"lost reply", func(_, last uint16) shtrihsim.Fault { return shtrihsim.Fault{Kind: shtrihsim.DropReply, Command: last} }},
		{"NAK", func(_, last uint16) shtrihsim.Fault { return shtrihsim.Fault{Kind: shtrihsim.NAK, Command: last} }},
		{"paper out", func(first, _ uint16) shtrihsim.Fault {
			return shtrihsim.Fault{Kind: shtrihsim.PaperOut, Command: first, Delay: 300 * time.Millisecond}
		}},
		// The reply is gone for good (the device holds none to ask again for):
		// only the FN, the device's counters or the journal can tell.
		{"power cut", func(_, last uint16) shtrihsim.Fault {
			return shtrihsim.Fault{Kind: shtrihsim.PowerCutAfterClose, Command: last, Delay: 300 * time.Millisecond}
		}},
	}
	for _, o := range ops {
		for _, f := range faults {
			t.Run(o.name+"/"+f.name, func(t *testing.T) {
				r := newRig(t, rigOptions{})
				// A lost reply costs a reply timeout; the simulator answers in
				// milliseconds. A timeout that fires early only sends the
				// agent through the same recovery, which must still make one document.
				t.Cleanup(r.runTuned(fastTimings, func(tu *tuning) {
					tu.Register.Timeouts.Long, tu.Register.Timeouts.Reply = 600*time.Millisecond, 400*time.Millisecond
				}))
				for i, p := range o.before {
					var op apiRegOp
					require.Equal(t, 201, r.call("POST", p.path, fmt.Sprint("before-", i), p.body, &op), "%s: %+v", p.path, op)
				}
				count, want := o.count, "done"
				if f.name == "power cut" && o.cut != nil {
					count, want = o.cut, "failed"
				}
				before := count(r)
				fault := f.fault(o.first, o.last)
				r.till.Register.Inject(fault)

				var op apiRegOp
				code := r.call("POST", o.path+"?wait=10s", "op", o.body, &op)
				require.Contains(t, []int{201, 202}, code, "%+v", op)
				id := op.ID
				require.Eventually(t, func() bool {
					op = apiRegOp{}
					r.call("GET", "/v1/operations/"+id, "", "", &op)
					return op.State == "done" || op.State == "failed"
				}, 10*time.Second, 20*time.Millisecond)
				assert.Contains(t, r.till.Register.Fired(), fmt.Sprintf("%s@%X", fault.Kind, fault.Command), "the fault did not fire")
				assert.Equal(t, want, op.State, "error %+v", op.Error)
				if want == "failed" && assert.NotNil(t, op.Error) {
					assert.Equal(t, "register_outcome_unknown", op.Error.Code)
					assert.Contains(t, op.Error.Message, "new Idempotency-Key", "what to do")
				}
				assert.Equal(t, 1, count(r)-before, "documents made")
				if o.cash != 0 {
					assert.Equal(t, o.cash, r.till.Register.Snapshot().Cash, "the drawer")
				}

				var again apiRegOp
				require.Equal(t, 200, r.call("POST", o.path, "op", o.body, &again), "the POS's retry")
				assert.Equal(t, op.ID, again.ID)
				assert.Equal(t, op.State, again.State)
				assert.Equal(t, docFD(op), docFD(again), "the retry's document")
				assert.Equal(t, 1, count(r)-before, "documents made after the retry")
			})
		}
	}
}

// docFD is the FN document an operation answered with (0: none, a device
// document such as a cash slip, or a print).
func docFD(op apiRegOp) uint32 {
	switch {
	case op.Document != nil:
		return op.Document.FD
	case op.Receipt != nil:
		return op.Receipt.Document.FD
	}
	return 0
}
