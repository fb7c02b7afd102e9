package main

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kassa-agent/fiscal/shtrih"
	"kassa-agent/fiscal/shtrihsim"
	"kassa-agent/payments/alif"
	alifsandbox "kassa-agent/payments/alif/sandbox"
)

// TestCrashMidPOSReceipt kills the real agent while the register closes a
// receipt the POS asked for (the close is held by the simulator, which then
// completes it), restarts it, and retries the POS's request with the same key:
// exactly one receipt in the FN, and the retry answered with it.
func TestCrashMidPOSReceipt(t *testing.T) {
	for _, point := range []string{"close held", "power cut after close"} {
		t.Run(point, func(t *testing.T) {
			c := newCrashRig(t)
			c.start()
			if point == "close held" {
				c.till.Register.Inject(shtrihsim.Fault{Kind: shtrihsim.DelayReply, Command: shtrih.CmdFNCloseReceipt, Delay: 2 * time.Second})
			} else {
				c.till.Register.Inject(shtrihsim.Fault{Kind: shtrihsim.PowerCutAfterClose, Command: shtrih.CmdFNCloseReceipt, Delay: time.Second})
			}
			var op apiOp
			go func() { c.call("POST", "/v1/receipts?wait=0s", "crash-r-1", posReceipt("", `{"cash":30000}`), &op) }()
			want := fmt.Sprintf("delay_reply@%X", shtrih.CmdFNCloseReceipt)
			if point != "close held" {
				want = fmt.Sprintf("power_cut@%X", shtrih.CmdFNCloseReceipt)
			}
			c.waitFor("the close at the register", func() bool { return c.fired(want) })
			c.kill()
			time.Sleep(2500 * time.Millisecond) // the register finishes what it was doing
			c.start()
			var again apiOp
			require.Eventually(t, func() bool {
				again = apiOp{}
				code := c.call("POST", "/v1/receipts?wait=5s", "crash-r-1", posReceipt("", `{"cash":30000}`), &again)
				return code == 200 && again.State == "done"
			}, 30*time.Second, 100*time.Millisecond)
			docs := receiptsOf(c.till.Register.Documents())
			require.Len(t, docs, 1, "the receipt printed twice across the crash")
			assert.Equal(t, docs[0].FD, again.Receipt.Document.FD)
			assert.Equal(t, docs[0].FP, again.Receipt.Document.FP)
			c.stop()
		})
	}
}

// TestCrashMidRefund kills the agent while Alif holds the refund call (it
// applies it after the kill); restarted, the agent asks again, finds it
// applied, and the retry gets the same refund: one refund at the provider,
// one slip.
func TestCrashMidRefund(t *testing.T) {
	c := newCrashRig(t)
	c.start()
	h := hostedCrashes[0]
	p := c.hostedSale(h)
	p = c.waitState(p.ID, "processing", 10*time.Second)
	require.NoError(t, h.pay(c.rig, p))
	p = c.waitState(p.ID, "completed", 10*time.Second)
	require.NoError(t, c.till.Alif.Inject(alifsandbox.Fault{Op: alif.OpRefund, Kind: alifsandbox.Latency, Delay: 2 * time.Second}))
	go func() { c.call("POST", "/v1/payments/"+p.ID+"/refunds?wait=0s", "crash-refund", `{}`, nil) }()
	c.waitFor("the refund at Alif", func() bool { return c.till.Alif.Count(alif.OpRefund) == 1 })
	c.kill()
	time.Sleep(2500 * time.Millisecond)
	c.start()
	var op apiOp
	require.Eventually(t, func() bool {
		op = apiOp{}
		code := c.call("POST", "/v1/payments/"+p.ID+"/refunds?wait=5s", "crash-refund", `{}`, &op)
		return code == 200 && op.State == "done"
	}, 30*time.Second, 100*time.Millisecond)
	s, ok := c.till.Alif.Session(p.ProviderPaymentID)
	require.True(t, ok)
	assert.Equal(t, 1, s.Refunds, "refunded twice across the crash")
	tape, err := os.ReadFile(c.till.TapePath())
	require.NoError(t, err)
	assert.LessOrEqual(t, strings.Count(string(tape), "REFUND alif"), 1, "the refund slip printed twice")
	c.stop()
}

// TestCrashMidRegisterOperation kills the real agent while the register does
// a document-making operation the POS asked for (the command is held by the
// simulator, which then completes it), restarts it and retries the POS's
// request with the same key: exactly one document, and the retry answered
// with it.
func TestCrashMidRegisterOperation(t *testing.T) {
	const cashier = `{"cashier":{"name":"Иванова И."}}`
	type pre struct{ path, body string }
	open := pre{"/v1/shift/open", cashier}
	oneFN := func(docType int) func(*testing.T, *crashRig, apiRegOp) {
		return func(t *testing.T, c *crashRig, op apiRegOp) {
			require.NotNil(t, op.Document)
			docs := docsOfType(c.till.Register.Documents(), docType)
			require.Len(t, docs, 1, "the operation made two FN documents across the crash")
			assert.Equal(t, docs[0].FD, op.Document.FD)
		}
	}
	cash := func(want int64) func(*testing.T, *crashRig, apiRegOp) {
		return func(t *testing.T, c *crashRig, op apiRegOp) {
			require.NotNil(t, op.Document)
			assert.Equal(t, want, c.till.Register.Snapshot().Cash, "cash counted twice (or not at all) across the crash")
		}
	}
	cases := []struct {
		name, path, body string
		before           []pre
		cmd              uint16
		check            func(*testing.T, *crashRig, apiRegOp)
	}{
		{"shift open", "/v1/shift/open", cashier, nil, shtrih.CmdOpenShift, oneFN(shtrihsim.DocShiftOpen)},
		{"cash in", "/v1/cash/in", `{"amount":100000}`, []pre{open}, shtrih.CmdCashIn, cash(100000)},
		{"correction", "/v1/corrections", `{"type":"self","base_date":"2026-11-30","receipt":{"items":[{"name":"Хлеб","quantity":1000,"price":4500,"vat":"vat10"}]},"payments":{"cash":4500}}`,
			[]pre{open}, shtrih.CmdFNCloseReceipt, oneFN(shtrihsim.DocCorrection)},
		{"shift close", "/v1/shift/close", cashier, []pre{open}, shtrih.CmdZReport, oneFN(shtrihsim.DocShiftClose)},
		{"cash out", "/v1/cash/out", `{"amount":30000}`, []pre{open, {"/v1/cash/in", `{"amount":100000}`}}, shtrih.CmdCashOut, cash(70000)},
		// A copy is no fiscal document and is not journaled: interrupted, it
		// is not printed again, and says so. It did print once here.
		{"copy", "/v1/documents/2/copy", `{}`, []pre{open}, shtrih.CmdPrintCopy, func(t *testing.T, c *crashRig, op apiRegOp) {
			require.NotNil(t, op.Error)
			assert.Equal(t, "interrupted", op.Error.Code)
			assert.Equal(t, 1, strings.Count(c.till.Register.Tape(), "КОПИЯ"), "copies on the tape")
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newCrashRig(t)
			c.start()
			for i, p := range tc.before {
				var op apiRegOp
				require.Equal(t, 201, c.call("POST", p.path, fmt.Sprint("before-", i), p.body, &op), "%s: %+v", p.path, op)
			}
			// The reply is held back until the agent has been killed.
			c.till.Register.Inject(shtrihsim.Fault{Kind: shtrihsim.DelayReply, Command: tc.cmd, Delay: time.Second})
			go func() { c.call("POST", tc.path+"?wait=0s", "crash-op", tc.body, nil) }()
			c.waitFor("the command at the register", func() bool { return c.fired(fmt.Sprintf("delay_reply@%X", tc.cmd)) })
			c.kill()
			time.Sleep(1500 * time.Millisecond)
			c.start()
			var op apiRegOp
			require.Eventually(t, func() bool {
				op = apiRegOp{}
				code := c.call("POST", tc.path+"?wait=5s", "crash-op", tc.body, &op)
				return code == 200 && op.State == "done"
			}, 30*time.Second, 100*time.Millisecond)
			tc.check(t, c, op)
			c.stop()
		})
	}
}
