package main

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kassa-agent/agent/internal/sale"
	"kassa-agent/fiscal/shtrih"
	"kassa-agent/fiscal/shtrihsim"
	"kassa-agent/payments/smartpay"
	"kassa-agent/payments/smartpay/sandbox"
)

// TestSmartPayFaultMatrix injects every sandbox fault at every step of a sale
// and checks where the payment ends, that the release was sent at most once,
// and that money taken always ends with exactly one receipt and delivered
// confirm and fiscal data.
func TestSmartPayFaultMatrix(t *testing.T) {
	type outcome struct {
		state    string
		errCode  string // payment error code, when it ends in error
		releases int    // release requests the sandbox saw
		applied  int    // releases the sandbox applied
	}
	paid := outcome{state: "completed", releases: 1, applied: 1}
	cases := []struct {
		name   string
		faults []sandbox.Fault
		tune   func(*sale.Options)
		want   outcome
	}{
		{"commit latency", []sandbox.Fault{{Op: smartpay.OpCommit, Kind: sandbox.Latency, Delay: 300 * time.Millisecond}}, nil, paid},
		{"commit 5xx", []sandbox.Fault{{Op: smartpay.OpCommit, Kind: sandbox.ServerError, Status: 503}}, nil, paid},
		{"commit reset", []sandbox.Fault{{Op: smartpay.OpCommit, Kind: sandbox.Reset}}, nil, paid},
		{"commit reply lost", []sandbox.Fault{{Op: smartpay.OpCommit, Kind: sandbox.ReplyLost}}, nil, paid},
		{"commit session expired", []sandbox.Fault{{Op: smartpay.OpCommit, Kind: sandbox.Unauthorized}}, nil, paid},
		{"release latency", []sandbox.Fault{{Op: smartpay.OpRelease, Kind: sandbox.Latency, Delay: 300 * time.Millisecond}}, nil, paid},
		{"release reply lost", []sandbox.Fault{{Op: smartpay.OpRelease, Kind: sandbox.ReplyLost}}, nil, paid},
		{"release 5xx not applied", []sandbox.Fault{{Op: smartpay.OpRelease, Kind: sandbox.ServerError}}, nil,
			outcome{state: "failed", errCode: "release_not_delivered", releases: 1, applied: 0}},
		{"release reset", []sandbox.Fault{{Op: smartpay.OpRelease, Kind: sandbox.Reset}}, nil,
			outcome{state: "failed", errCode: "release_not_delivered", releases: 1, applied: 0}},
		{"release session expired", []sandbox.Fault{{Op: smartpay.OpRelease, Kind: sandbox.Unauthorized}}, nil,
			outcome{state: "completed", releases: 2, applied: 1}}, // the 401 was not applied; re-auth and one retry
		{"code expired at release", []sandbox.Fault{{Op: smartpay.OpRelease, Kind: sandbox.CodeExpired}}, nil,
			outcome{state: "code_expired", errCode: "code_expired", releases: 1, applied: 0}},
		{"declined", []sandbox.Fault{{Kind: sandbox.Declined, Reason: "insufficient funds"}}, nil,
			outcome{state: "declined", errCode: "declined", releases: 1, applied: 1}},
		{"stuck in processing", []sandbox.Fault{{Kind: sandbox.Stuck}}, func(o *sale.Options) { o.PollDeadline = 500 * time.Millisecond },
			outcome{state: "processing", errCode: "payment_unconfirmed", releases: 1, applied: 1}},
		{"status 5xx then fine", []sandbox.Fault{{Op: smartpay.OpStatus, Kind: sandbox.ServerError, Times: 3}}, nil, paid},
		{"status reset", []sandbox.Fault{{Op: smartpay.OpStatus, Kind: sandbox.Reset, Times: 2}}, nil, paid},
		{"status unknown word", []sandbox.Fault{{Op: smartpay.OpStatus, Kind: sandbox.StatusWord, Word: "HOLD_ON", Times: 3}}, nil, paid},
		{"confirm 5xx", []sandbox.Fault{{Op: smartpay.OpConfirm, Kind: sandbox.ServerError, Times: 3}}, nil, paid},
		{"confirm reply lost", []sandbox.Fault{{Op: smartpay.OpConfirm, Kind: sandbox.ReplyLost}}, nil, paid},
		{"fiscal 5xx", []sandbox.Fault{{Op: smartpay.OpFiscal, Kind: sandbox.ServerError, Times: 3}}, nil, paid},
		{"fiscal reply lost", []sandbox.Fault{{Op: smartpay.OpFiscal, Kind: sandbox.ReplyLost}}, nil, paid},
		// A repeat of an applied call answered 409: done, not parked, and
		// the fiscal data behind the confirm still goes.
		{"confirm repeat answered 409", []sandbox.Fault{{Op: smartpay.OpConfirm, Kind: sandbox.ReplyLost}, {Op: smartpay.OpConfirm, Kind: sandbox.RepeatConflict}}, nil, paid},
		{"fiscal repeat answered 409", []sandbox.Fault{{Op: smartpay.OpFiscal, Kind: sandbox.ReplyLost}, {Op: smartpay.OpFiscal, Kind: sandbox.RepeatConflict}}, nil, paid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := newRig(t, rigOptions{processing: 100 * time.Millisecond})
			tune := []func(*sale.Options){}
			if tc.tune != nil {
				tune = append(tune, tc.tune)
			}
			r.startInProcess(tune...)
			for _, f := range tc.faults {
				require.NoError(t, r.till.Sandbox.Inject(f))
			}
			p := r.create("k", saleBody(20480, milkReceipt))
			r.showCode()
			p = r.waitState(p.ID, tc.want.state, 15*time.Second)
			if tc.want.errCode != "" {
				// An error can come after the state (unconfirmed past the deadline).
				require.Eventually(t, func() bool {
					r.call("GET", "/v1/payments/"+p.ID, "", "", &p)
					return p.Error != nil
				}, 10*time.Second, 20*time.Millisecond)
				assert.Equal(t, tc.want.state, p.State)
				assert.Equal(t, tc.want.errCode, p.Error.Code, p.Error.Message)
			}
			if tc.want.state == "completed" {
				r.checkSettled(p)
			} else {
				assert.Empty(t, receiptsOf(r.till.Register.Documents()), "a receipt was printed for a payment that took no money")
			}
			assert.Equal(t, tc.want.releases, r.till.Sandbox.Count(smartpay.OpRelease), "release requests")
			var applied int
			for _, pur := range r.till.Sandbox.Purchases() {
				applied += pur.Releases
			}
			assert.Equal(t, tc.want.applied, applied, "releases applied")
		})
	}
}

// TestReleaseReloginFails: the release meets a lapsed session (401, not
// applied) and the re-login fails with a 5xx. The release never left a second
// time: it is sent again and the sale completes, instead of the purchase being
// given up as if the release had been lost.
func TestReleaseReloginFails(t *testing.T) {
	r := newRig(t, rigOptions{})
	r.startInProcess()
	code := r.showCode()
	require.Eventually(t, func() bool { return len(r.heldCodes()) == 1 }, 5*time.Second, 5*time.Millisecond)
	for _, f := range []sandbox.Fault{{Op: smartpay.OpRelease, Kind: sandbox.Unauthorized}, {Op: smartpay.OpAuth, Kind: sandbox.ServerError}} {
		require.NoError(t, r.till.Sandbox.Inject(f))
	}
	p := r.create("k", saleBody(20480, milkReceipt))
	p = r.waitState(p.ID, "completed", 15*time.Second)
	r.checkSettled(p)
	assert.Equal(t, 2, r.till.Sandbox.Count(smartpay.OpRelease), "the refused release and the one sent again")
	pur, _ := r.purchaseOf(code)
	assert.Zero(t, pur.Cancels)
}

// TestRegisterFailsAfterPayment: the money is taken, the register cannot
// print; the payment stays paid with the receipt pending, visible as needing
// attention, and prints once the register is back — exactly once.
func TestRegisterFailsAfterPayment(t *testing.T) {
	r := newRig(t, rigOptions{})
	r.startInProcess()
	p := r.create("k", saleBody(20480, milkReceipt))
	// The register goes deaf right after the payment's readiness check.
	r.till.Register.Inject(shtrihsim.Fault{Kind: shtrihsim.PaperOut, Command: 0x8D})
	r.showCode()
	require.Eventually(t, func() bool {
		var q apiPayment
		r.call("GET", "/v1/payments/"+p.ID, "", "", &q)
		return q.State == "paid" && q.Fiscal.State == "pending" && q.Fiscal.Error != nil
	}, 10*time.Second, 20*time.Millisecond, "payment should stay paid with the receipt pending")
	var st struct {
		Attention []apiPayment `json:"attention"`
	}
	require.Equal(t, 200, r.call("GET", "/v1/status", "", "", &st))
	require.Len(t, st.Attention, 1)
	assert.Equal(t, p.ID, st.Attention[0].ID)

	r.till.Register.SetPaper(true)
	p = r.waitState(p.ID, "completed", 15*time.Second)
	r.checkSettled(p)
	assert.Len(t, receiptsOf(r.till.Register.Documents()), 1)
}

// TestRegisterReplyLostAtClose: the FN closes the receipt but the reply is
// lost; the driver finds the document by its number instead of printing again.
func TestRegisterReplyLostAtClose(t *testing.T) {
	for _, kind := range []shtrihsim.FaultKind{shtrihsim.DropReply, shtrihsim.PowerCutAfterClose, shtrihsim.NAK, shtrihsim.Garbage} {
		t.Run(kind.String(), func(t *testing.T) {
			t.Parallel()
			r := newRig(t, rigOptions{})
			r.startInProcess()
			r.till.Register.Inject(shtrihsim.Fault{Kind: kind, Command: 0xFF45, Delay: 300 * time.Millisecond})
			p := r.create("k", saleBody(20480, milkReceipt))
			r.showCode()
			p = r.waitState(p.ID, "completed", 20*time.Second)
			r.checkSettled(p)
			assert.Len(t, receiptsOf(r.till.Register.Documents()), 1, "printed twice")
		})
	}
}

// TestRegisterIdentityReadFails: the register answers its first fiscal-result
// read (FF09h, the registration number) with a transient FN error. The sale
// must still end with a receipt that carries the registration number and a
// fiscal submission that reaches Smart Pay, never one parked with an empty
// registration number.
func TestRegisterIdentityReadFails(t *testing.T) {
	r := newRig(t, rigOptions{})
	r.till.Register.Inject(shtrihsim.Fault{Kind: shtrihsim.DeviceError, Command: shtrih.CmdFNFiscalResult, Code: shtrih.FNErrFailure})
	r.startInProcess()
	// Whichever read meets the error first — the agent's own check, the
	// check before the payment, or the receipt — the sale must end with a
	// full receipt. A payment refused while the identity is unknown (no
	// money taken, register_identity_unknown) is asked again, as a POS would.
	var p apiPayment
	require.Eventually(t, func() bool {
		p = apiPayment{}
		return r.call("POST", "/v1/payments", "k", saleBody(20480, milkReceipt), &p) == 201
	}, 10*time.Second, 100*time.Millisecond)
	r.showCode()
	p = r.waitState(p.ID, "completed", 15*time.Second)
	require.NotNil(t, p.Fiscal.Document)
	assert.NotEmpty(t, p.Fiscal.Document.RegNumber, "receipt recorded without the registration number")
	r.checkSettled(p)
}
