package main

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kassa-agent/agent/internal/sale"
	"kassa-agent/payments/smartpay"
	"kassa-agent/payments/smartpay/sandbox"
)

// The rule these tests hold the engine to: a Smart Pay code pays only for the
// sale it was shown for. A code is never carried into the next sale.

// purchaseOf finds the sandbox purchase a code was committed to.
func (r *rig) purchaseOf(code string) (sandbox.Purchase, bool) {
	for _, p := range r.till.Sandbox.Purchases() {
		if p.Code == code {
			return p, true
		}
	}
	return sandbox.Purchase{}, false
}

// waitCancelled waits until the code's purchase is cancelled at Smart Pay.
func (r *rig) waitCancelled(code string) sandbox.Purchase {
	r.t.Helper()
	var p sandbox.Purchase
	require.Eventually(r.t, func() bool {
		var ok bool
		p, ok = r.purchaseOf(code)
		return ok && p.Cancels == 1
	}, 10*time.Second, 10*time.Millisecond, "code was not cancelled at Smart Pay; log:\n%s", r.logs.String())
	assert.Zero(r.t, p.Releases, "a given-up code was released")
	return p
}

// TestRefreshedCodeNeverPaysTheNextSale: the presentation scanner reads buyer
// 1's refreshed QR while buyer 1 pays; that code must not pay buyer 2's sale.
func TestRefreshedCodeNeverPaysTheNextSale(t *testing.T) {
	r := newRig(t, rigOptions{processing: 700 * time.Millisecond})
	r.startInProcess()
	p1 := r.create("k1", saleBody(20480, milkReceipt))
	r.showCode()
	r.waitState(p1.ID, "processing", 5*time.Second)
	refreshed := r.showCode()
	r.waitCommits(2)
	p1 = r.waitState(p1.ID, "completed", 10*time.Second)
	r.checkSettled(p1)
	r.waitCancelled(refreshed)

	p2 := r.create("k2", saleBody(20480, milkReceipt))
	assert.Equal(t, "committing", p2.State, "buyer 2's sale took buyer 1's code")
	assert.Equal(t, "scan_code", p2.NextAction)
}

// TestCommitAnsweredAfterTheSaleEnded: the POS cancels the payment while the
// commit is still on the wire; the late answer must cancel the code, not
// hold it for the next sale. (TestGiveBackCodeInFlight does the same through
// POST /v1/smartpay/held/release.)
func TestCommitAnsweredAfterTheSaleEnded(t *testing.T) {
	r := newRig(t, rigOptions{})
	r.startInProcess()
	p1 := r.create("k1", saleBody(20480, milkReceipt))
	require.NoError(t, r.till.Sandbox.Inject(sandbox.Fault{Op: smartpay.OpCommit, Kind: sandbox.Latency, Delay: 500 * time.Millisecond}))
	code := r.showCode()
	r.waitCommits(1) // on the wire, not answered
	require.Equal(t, 200, r.call("POST", "/v1/payments/"+p1.ID+"/cancel", "", "", nil))
	r.waitCancelled(code)
	p2 := r.create("k2", saleBody(20480, milkReceipt))
	assert.Equal(t, "committing", p2.State, "the next sale took a code whose sale had ended")
}

// TestGiveBackCodeInFlight: held/release also gives back a code whose commit
// is still on the wire when no payment is open.
func TestGiveBackCodeInFlight(t *testing.T) {
	r := newRig(t, rigOptions{})
	r.startInProcess()
	require.NoError(t, r.till.Sandbox.Inject(sandbox.Fault{Op: smartpay.OpCommit, Kind: sandbox.Latency, Delay: 500 * time.Millisecond}))
	code := r.showCode()
	r.waitCommits(1)
	require.Equal(t, 200, r.call("POST", "/v1/smartpay/held/release", "", "", nil))
	r.waitCancelled(code)
	p := r.create("k", saleBody(20480, milkReceipt))
	assert.Equal(t, "committing", p.State, "a code given back while in flight paid the next sale")
}

// TestTwoCodesForOneWaitingPaymentTheNewestPays: while the payment has its
// code but has not released it (the register is out of paper), the buyer
// shows a fresh code: the fresh one pays, the first is cancelled, and nothing
// is left for the next sale.
func TestTwoCodesForOneWaitingPaymentTheNewestPays(t *testing.T) {
	r := newRig(t, rigOptions{})
	r.startInProcess()
	p1 := r.create("k1", saleBody(20480, milkReceipt))
	r.till.Register.SetPaper(false)
	first := r.showCode()
	require.Eventually(t, func() bool {
		var q apiPayment
		r.call("GET", "/v1/payments/"+p1.ID, "", "", &q)
		return q.State == "committed" && q.Error != nil && q.Error.Code == "register_not_ready"
	}, 10*time.Second, 20*time.Millisecond)
	fresh := r.showCode()
	r.waitCommits(2)
	r.waitCancelled(first)
	r.till.Register.SetPaper(true)
	p1 = r.waitState(p1.ID, "completed", 15*time.Second)
	r.checkSettled(p1)
	pur, ok := r.purchaseOf(fresh)
	require.True(t, ok)
	assert.Equal(t, pur.ID, p1.SmartPay.PurchaseID, "the newest code pays")

	p2 := r.create("k2", saleBody(20480, milkReceipt))
	assert.Equal(t, "committing", p2.State, "a second code leaked into the next sale")
}

// TestPaymentWithItsCodeAgesOut: the register cannot print for longer than
// abandon_after; the buyer has gone. When paper comes back nothing is released.
func TestPaymentWithItsCodeAgesOut(t *testing.T) {
	r := newRig(t, rigOptions{})
	r.startInProcess(func(o *sale.Options) { o.AbandonAfter = time.Second })
	p := r.create("k", saleBody(20480, milkReceipt))
	r.till.Register.SetPaper(false)
	code := r.showCode()
	p = r.waitState(p.ID, "canceled", 10*time.Second)
	require.NotNil(t, p.Error)
	assert.Equal(t, "abandoned", p.Error.Code)
	r.waitCancelled(code)
	r.till.Register.SetPaper(true)
	time.Sleep(500 * time.Millisecond)
	assert.Zero(t, r.till.Sandbox.Count(smartpay.OpRelease), "an abandoned payment released its amount")
}

// TestYesterdaysPaymentTakesNoCode: a payment left waiting when the agent
// stopped must not take the first code scanned after a restart past
// abandon_after, nor release anything.
func TestYesterdaysPaymentTakesNoCode(t *testing.T) {
	r := newRig(t, rigOptions{})
	const abandon = 1500 * time.Millisecond
	tune := func(o *sale.Options) { o.AbandonAfter = abandon }
	stop := r.runInProcess(tune)
	old := r.create("k1", saleBody(20480, milkReceipt))
	stop()
	time.Sleep(abandon + 200*time.Millisecond)
	r.startInProcess(tune)
	code := r.showCode()
	r.waitCommits(1)
	time.Sleep(300 * time.Millisecond)
	var o apiPayment
	require.Equal(t, 200, r.call("GET", "/v1/payments/"+old.ID, "", "", &o))
	assert.NotEqual(t, "committed", o.State, "yesterday's payment took this morning's code")
	assert.Zero(t, r.till.Sandbox.Count(smartpay.OpRelease), "yesterday's payment released its amount")
	o = r.waitState(old.ID, "canceled", 5*time.Second)
	require.NotNil(t, o.Error)
	p := r.create("k2", saleBody(20480, milkReceipt))
	pur, ok := r.purchaseOf(code)
	require.True(t, ok)
	require.NotNil(t, p.SmartPay, "the morning's code is held for the morning's sale")
	assert.Equal(t, pur.ID, p.SmartPay.PurchaseID)
}

// TestPaymentWithItsCodeAgesOutAcrossRestart: the payment has its code but
// the register cannot print; the agent is stopped and started again after
// abandon_after with paper loaded. The buyer is long gone: nothing is released.
func TestPaymentWithItsCodeAgesOutAcrossRestart(t *testing.T) {
	r := newRig(t, rigOptions{})
	const abandon = 1500 * time.Millisecond
	// Long sweeps: the restart, not the sweep, must find the payment too old.
	tune := func(o *sale.Options) { o.AbandonAfter = abandon }
	stop := r.runInProcess(tune)
	p := r.create("k", saleBody(20480, milkReceipt))
	r.till.Register.SetPaper(false)
	code := r.showCode()
	require.Eventually(t, func() bool {
		var q apiPayment
		r.call("GET", "/v1/payments/"+p.ID, "", "", &q)
		return q.State == "committed"
	}, 10*time.Second, 20*time.Millisecond)
	stop()
	time.Sleep(abandon + 200*time.Millisecond)
	r.till.Register.SetPaper(true)
	r.startInProcess(tune)
	p = r.waitState(p.ID, "canceled", 10*time.Second)
	require.NotNil(t, p.Error)
	assert.Equal(t, "abandoned", p.Error.Code)
	r.waitCancelled(code)
	assert.Zero(t, r.till.Sandbox.Count(smartpay.OpRelease), "released after a restart past abandon_after")
}
