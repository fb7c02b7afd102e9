package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kassa-agent/fiscal/shtrih"
	"kassa-agent/fiscal/shtrihsim"
)

// regClock is the simulated register's clock, shifted by off.
type regClock struct{ off atomic.Int64 }

func (c *regClock) now() time.Time      { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *regClock) set(d time.Duration) { c.off.Store(int64(d)) }

// regSnapshot is what a refused call must leave unchanged on the register.
type regSnapshot struct {
	docs int
	snap shtrihsim.Snapshot
	tape string
}

func (r *rig) regSnapshot() regSnapshot {
	r.t.Helper()
	tape, err := os.ReadFile(r.till.TapePath())
	if !errors.Is(err, fs.ErrNotExist) { // nothing printed yet
		require.NoError(r.t, err)
	}
	return regSnapshot{docs: len(r.till.Register.Documents()), snap: r.till.Register.Snapshot(), tape: string(tape)}
}

const shiftBody = `{"cashier":{"name":"Иванова И."}}`

const corrBody = `{"type":"self","base_date":"2026-11-30","receipt":{"items":[{"name":"Хлеб","quantity":1000,"price":4500,"vat":"vat10"}]},"payments":{"cash":4500}}`

type refusal struct {
	path, body string
	code, hint string // the API error code, and what its message tells the cashier to do
}

// refuses checks each call is answered 409 with code and hint at once, and
// that nothing reached the register that changes it.
func (r *rig) refuses(t *testing.T, calls []refusal) {
	t.Helper()
	for i, c := range calls {
		before := r.regSnapshot()
		var e apiError
		start := time.Now()
		status := r.call("POST", c.path+"?wait=2s", "refused-"+c.path+string(rune('a'+i)), c.body, &e)
		assert.Equal(t, 409, status, "%s: %+v", c.path, e)
		assert.Equal(t, c.code, e.Error.Code, c.path)
		assert.Contains(t, e.Error.Message, c.hint, c.path)
		assert.Less(t, time.Since(start), time.Second, "%s: answered only after waiting for the register", c.path)
		assert.Equal(t, before, r.regSnapshot(), "%s changed the register", c.path)
	}
}

// TestRegisterOpsRefusedByRegisterState: an operation the register cannot do
// in its present state is answered at once with the state's code and what to
// do, before anything is stored or sent; it is not queued to be retried
// behind (and in front of) the Z report that would cure it.
func TestRegisterOpsRefusedByRegisterState(t *testing.T) {
	noAuto := func(tu *tuning) { tu.Register.AutoOpenShift, tu.Register.AutoCloseExpiredShift = false, false }

	t.Run("shift over 24 h", func(t *testing.T) {
		clk := &regClock{}
		r := newRig(t, rigOptions{regNow: clk.now})
		r.t.Cleanup(r.runTuned(fastTimings, noAuto))
		clk.set(-25 * time.Hour)
		var op apiRegOp
		require.Equal(t, 201, r.call("POST", "/v1/shift/open", "open", shiftBody, &op))
		clk.set(0)
		r.refuses(t, []refusal{
			{"/v1/cash/in", `{"amount":1000}`, "register_shift_expired", "/v1/shift/close"},
			{"/v1/cash/out", `{"amount":1000}`, "register_shift_expired", "/v1/shift/close"},
			{"/v1/corrections", corrBody, "register_shift_expired", "/v1/shift/close"},
			{"/v1/shift/open", shiftBody, "register_shift_expired", "/v1/shift/close"},
			{"/v1/receipts", posReceipt("", `{"cash":30000}`), "register_shift_expired", "/v1/shift/close"},
		})
		// The Z report that cures it is not stuck behind them.
		require.Equal(t, 201, r.call("POST", "/v1/shift/close?wait=5s", "z", shiftBody, &op), "%+v", op)
		assert.Equal(t, "done", op.State, "%+v", op.Error)
		assert.Len(t, docsOfType(r.till.Register.Documents(), shtrihsim.DocShiftClose), 1)
	})

	t.Run("shift closed", func(t *testing.T) {
		r := newRig(t, rigOptions{})
		r.t.Cleanup(r.runTuned(fastTimings, noAuto))
		r.refuses(t, []refusal{
			{"/v1/cash/in", `{"amount":1000}`, "register_shift_closed", "/v1/shift/open"},
			{"/v1/cash/out", `{"amount":1000}`, "register_shift_closed", "/v1/shift/open"},
			{"/v1/corrections", corrBody, "register_shift_closed", "/v1/shift/open"},
			{"/v1/shift/close", shiftBody, "register_shift_closed", "already closed"},
			{"/v1/receipts", posReceipt("", `{"cash":30000}`), "register_shift_closed", "/v1/shift/open"},
		})
	})

	t.Run("paper out", func(t *testing.T) {
		r := newRig(t, rigOptions{})
		r.startInProcess()
		var op apiRegOp
		require.Equal(t, 201, r.call("POST", "/v1/shift/open", "open", shiftBody, &op))
		var last struct {
			FD uint32 `json:"fd"`
		}
		require.Equal(t, 200, r.call("GET", "/v1/documents/last", "", "", &last))
		r.till.Register.SetPaper(false)
		r.refuses(t, []refusal{
			{"/v1/shift/close", shiftBody, "register_paper_out", "load paper"},
			{"/v1/reports/x", `{}`, "register_paper_out", "load paper"},
			{"/v1/cash/in", `{"amount":1000}`, "register_paper_out", "load paper"},
			{"/v1/cash/out", `{"amount":1000}`, "register_paper_out", "load paper"},
			{"/v1/corrections", corrBody, "register_paper_out", "load paper"},
			{"/v1/print", `{"lines":["x"]}`, "register_paper_out", "load paper"},
			{"/v1/documents/" + fmt.Sprint(last.FD) + "/copy", `{}`, "register_paper_out", "load paper"},
			{"/v1/receipts", posReceipt("", `{"cash":30000}`), "register_paper_out", "load paper"},
		})
		// Nothing was stored: the same key, once paper is in, makes the operation.
		r.till.Register.SetPaper(true)
		require.Equal(t, 201, r.call("POST", "/v1/cash/in?wait=5s", "refused-/v1/cash/inc", `{"amount":1000}`, &op))
		assert.Equal(t, "done", op.State)
	})

	t.Run("FN expired", func(t *testing.T) {
		// Registered 400 days ago: the FN's 13 months are over.
		clk := &regClock{}
		clk.set(-400 * 24 * time.Hour)
		r := newRig(t, rigOptions{regNow: clk.now})
		clk.set(0)
		r.startInProcess()
		r.refuses(t, []refusal{
			{"/v1/shift/open", shiftBody, "register_fn_exhausted", "replace"},
			{"/v1/corrections", corrBody, "register_fn_exhausted", "replace"},
			{"/v1/receipts", posReceipt("", `{"cash":30000}`), "register_fn_exhausted", "replace"},
		})
	})

	t.Run("FN archive full at the register", func(t *testing.T) {
		// Not visible in any status: the FN refuses the document. The operation
		// fails with the FN's code at once; it is not retried for ever in
		// front of every later operation.
		r := newRig(t, rigOptions{})
		r.startInProcess()
		var op apiRegOp
		require.Equal(t, 201, r.call("POST", "/v1/shift/open", "open", shiftBody, &op))
		r.till.Register.Inject(shtrihsim.Fault{Kind: shtrihsim.DeviceError, Command: shtrih.CmdFNBeginCorrection, Code: shtrih.FNErrArchiveFull, Count: 1000})
		r.call("POST", "/v1/corrections?wait=3s", "corr", corrBody, &op)
		assert.Equal(t, "failed", op.State)
		require.NotNil(t, op.Error)
		assert.Equal(t, "register_fn_exhausted", op.Error.Code)
		assert.Contains(t, op.Error.Message, "replaced")
		assert.Empty(t, docsOfType(r.till.Register.Documents(), shtrihsim.DocCorrection))
		var x apiRegOp
		require.Equal(t, 201, r.call("POST", "/v1/reports/x?wait=3s", "x", `{}`, &x), "the X report waits behind the correction")
		assert.Equal(t, "done", x.State)
	})
}

// TestQueuedReceiptWhoseShiftExpires: a receipt waits in the queue (the
// register did not answer) while its shift passes 24 hours, with automatic Z
// reports off. It fails with the shift's code and what to do; it is not
// retried for ever in front of the Z report the cashier then asks for.
func TestQueuedReceiptWhoseShiftExpires(t *testing.T) {
	clk := &regClock{}
	r := newRig(t, rigOptions{regNow: clk.now})
	t.Cleanup(r.runTuned(fastTimings, func(tu *tuning) { tu.Register.AutoOpenShift, tu.Register.AutoCloseExpiredShift = false, false }))
	var op apiRegOp
	require.Equal(t, 201, r.call("POST", "/v1/shift/open", "open", shiftBody, &op))
	r.till.Register.Inject(shtrihsim.Fault{Kind: shtrihsim.DeviceError, Command: shtrih.CmdFNOperation, Code: shtrih.FNErrFailure, Count: 1000})
	var rc apiOp
	require.Equal(t, 202, r.call("POST", "/v1/receipts?wait=1s", "rc", posReceipt("", `{"cash":30000}`), &rc))
	// Between two attempts it is queued with the register's error; during
	// one it is printing.
	require.Eventually(t, func() bool {
		r.call("GET", "/v1/receipts/"+rc.ID, "", "", &rc)
		return rc.State == "queued" && rc.Error != nil
	}, 5*time.Second, 10*time.Millisecond, "%+v", rc)
	clk.set(25 * time.Hour)
	r.till.Register.ClearFaults()

	id := rc.ID
	require.Eventually(t, func() bool {
		rc = apiOp{}
		r.call("GET", "/v1/receipts/"+id, "", "", &rc)
		return rc.State == "failed"
	}, 5*time.Second, 20*time.Millisecond, "the receipt stays queued (see the log for why)")
	require.NotNil(t, rc.Error)
	assert.Equal(t, "register_shift_expired", rc.Error.Code)
	assert.Contains(t, rc.Error.Message, "/v1/shift/close")
	assert.Empty(t, receiptsOf(r.till.Register.Documents()))
	require.Equal(t, 201, r.call("POST", "/v1/shift/close?wait=5s", "z", shiftBody, &op), "%+v", op)
	assert.Equal(t, "done", op.State)
}

// TestRegisterOpBehindQueuedOpIsNotJudgedByTheRegisterNow: the POS sends the
// shift open and the cash in at once, without waiting. The cash in is judged
// by the register as the shift open will leave it, not as it is now (shift
// closed): it is queued behind it and done.
func TestRegisterOpBehindQueuedOpIsNotJudgedByTheRegisterNow(t *testing.T) {
	r := newRig(t, rigOptions{})
	t.Cleanup(r.runTuned(fastTimings, func(tu *tuning) { tu.Register.AutoOpenShift, tu.Register.AutoCloseExpiredShift = false, false }))
	// The shift open stays queued: the register does not take it yet.
	r.till.Register.Inject(shtrihsim.Fault{Kind: shtrihsim.NAK, Command: shtrih.CmdFNBeginOpen, Count: 1000})
	var open, in apiRegOp
	require.Equal(t, 202, r.call("POST", "/v1/shift/open?wait=300ms", "open", shiftBody, &open))
	require.Equal(t, 202, r.call("POST", "/v1/cash/in?wait=0s", "in", `{"amount":1000}`, &in), "%+v", in)
	r.till.Register.ClearFaults()
	id := in.ID
	require.Eventually(t, func() bool {
		in = apiRegOp{}
		r.call("GET", "/v1/operations/"+id, "", "", &in)
		return in.State == "done" || in.State == "failed"
	}, 10*time.Second, 20*time.Millisecond)
	assert.Equal(t, "done", in.State, "%+v", in.Error)
	assert.Equal(t, int64(1000), r.till.Register.Snapshot().Cash)
}
