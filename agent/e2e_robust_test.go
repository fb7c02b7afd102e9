package main

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kassa-agent/agent/internal/config"
	"kassa-agent/agent/internal/sale"
	"kassa-agent/fiscal"
	"kassa-agent/payments/smartpay"
	"kassa-agent/payments/smartpay/sandbox"
)

// TestSmartPayDisabledMidPayment: Smart Pay is switched off while a payment
// is being paid. The agent starts, the payment stays visible as
// provider_disabled, nothing panics; switched back on, it completes.
func TestSmartPayDisabledMidPayment(t *testing.T) {
	r := newRig(t, rigOptions{})
	stop := r.runInProcess()
	require.NoError(t, r.till.Sandbox.Inject(sandbox.Fault{Kind: sandbox.Stuck}))
	p := r.create("k", saleBody(20480, milkReceipt))
	r.showCode()
	r.waitState(p.ID, "processing", 10*time.Second)
	stop()

	r.cfg.SmartPay.Enabled = false
	stop = r.runInProcess()
	require.Eventually(t, func() bool {
		var q apiPayment
		r.call("GET", "/v1/payments/"+p.ID, "", "", &q)
		return q.Error != nil && q.Error.Code == "provider_disabled"
	}, 10*time.Second, 20*time.Millisecond, "log:\n%s", r.logs.String())
	var q apiPayment
	r.call("GET", "/v1/payments/"+p.ID, "", "", &q)
	assert.Equal(t, "processing", q.State)
	stop()

	// The buyer confirmed meanwhile; switched back on, the agent asks again.
	for _, pur := range r.till.Sandbox.Purchases() {
		if pur.State == "processing" {
			require.NoError(t, r.till.Sandbox.Settle(pur.ID, true))
		}
	}
	r.cfg.SmartPay.Enabled = true
	r.startInProcess()
	q = r.waitState(p.ID, "completed", 15*time.Second)
	assert.Nil(t, q.Error)
	r.checkSettled(q)
}

// panicOnce is a register whose first print panics, as a bug in a driver would.
type panicOnce struct {
	sale.Register
	done atomic.Bool
}

func (p *panicOnce) PrintReceipt(ctx context.Context, id string, r fiscal.Receipt) (fiscal.Document, error) {
	if p.done.CompareAndSwap(false, true) {
		panic("register driver bug") // as a nil dereference in a driver would
	}
	return p.Register.PrintReceipt(ctx, id, r)
}

// TestWorkerPanicIsSurvived: a panic in a payment's worker is logged with the
// payment's id; the process keeps running and the payment completes.
func TestWorkerPanicIsSurvived(t *testing.T) {
	r := newRig(t, rigOptions{})
	stop := r.runTuned(fastTimings, func(tu *tuning) {
		tu.WrapRegister = func(reg sale.Register) sale.Register { return &panicOnce{Register: reg} }
	})
	t.Cleanup(stop)
	p := r.create("k", saleBody(20480, milkReceipt))
	r.showCode()
	p = r.waitState(p.ID, "completed", 15*time.Second)
	r.checkSettled(p)
	logs := r.logs.String()
	var line string
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, "payment worker panicked") {
			line = l
		}
	}
	require.NotEmpty(t, line, "the panic was not logged")
	assert.Contains(t, line, "payment_id="+p.ID)
}

// TestSmartPayCodeNormalised: a code with a stray space or an upper-case
// scheme and host is the same code: committed, never published. A scan that
// looks like a Smart Pay code but does not match is not published either.
func TestSmartPayCodeNormalised(t *testing.T) {
	r := newRig(t, rigOptions{})
	r.startInProcess()
	ev := r.subscribe()
	code := r.till.Sandbox.NewCode()
	shown := " " + strings.Replace(code, "https://qr.smartpay.example", "HTTPS://QR.SmartPay.Example", 1) + " "
	p := r.create("k", saleBody(20480, milkReceipt))
	var ans map[string]string
	require.Equal(t, 202, r.call("POST", "/v1/scanner/codes", "", `{"code":"`+shown+`"}`, &ans))
	p = r.waitState(p.ID, "completed", 10*time.Second)
	r.checkSettled(p)
	pur, ok := r.purchaseOf(code)
	require.True(t, ok, "committed as the normalised code")
	assert.Equal(t, pur.ID, p.SmartPay.PurchaseID)

	// Malformed, but on the provider's host: not committed, not published.
	bad := "https://QR.smartpay.example/c/short"
	require.Equal(t, 202, r.call("POST", "/v1/scanner/codes", "", `{"code":"`+bad+`"}`, &ans))
	require.Eventually(t, func() bool { return len(ev.scans()) == 2 }, 5*time.Second, 10*time.Millisecond)
	for _, s := range ev.scans() {
		assert.True(t, s.SmartPay, "a payment code was published as an ordinary scan")
		assert.Empty(t, s.Text)
	}
	for _, raw := range ev.raw() {
		assert.NotContains(t, strings.ToLower(raw), "qr.smartpay.example", "a Smart Pay code leaked into events")
	}
	assert.Equal(t, 1, r.till.Sandbox.Count(smartpay.OpCommit))
}

// TestRepeatedCommitRefused: the commit's answer is lost (it was applied) and
// its repeat is refused with 409. The code is ours at Smart Pay, its purchase
// id unknown: the payment asks for a fresh code, and the first one is named
// and cancelled through the outbox, not left committed.
func TestRepeatedCommitRefused(t *testing.T) {
	r := newRig(t, rigOptions{})
	r.startInProcess()
	p := r.create("k", saleBody(20480, milkReceipt))
	for _, f := range []sandbox.Fault{{Op: smartpay.OpCommit, Kind: sandbox.ReplyLost}, {Op: smartpay.OpCommit, Kind: sandbox.RepeatConflict}} {
		require.NoError(t, r.till.Sandbox.Inject(f))
	}
	first := r.showCode()
	require.Eventually(t, func() bool {
		var q apiPayment
		r.call("GET", "/v1/payments/"+p.ID, "", "", &q)
		return q.Error != nil && q.Error.Code == "commit_unanswered"
	}, 10*time.Second, 20*time.Millisecond)
	r.waitCancelled(first)
	time.Sleep(600 * time.Millisecond) // past the scanner's double-read window
	r.showCode()
	p = r.waitState(p.ID, "completed", 10*time.Second)
	r.checkSettled(p)
}

// TestReleaseInFlightAtTheProviderCannotCharge is the proof behind cancelling
// after an ambiguous release: the release is held up at the provider past
// the client's timeout and the settle wait; the agent cancels the purchase;
// when the release then arrives, the cancelled purchase refuses it. Nothing
// is charged and no receipt is printed.
func TestReleaseInFlightAtTheProviderCannotCharge(t *testing.T) {
	r := newRig(t, rigOptions{})
	r.cfg.SmartPay.RequestTimeout = config.Duration(300 * time.Millisecond)
	r.startInProcess()
	code := r.showCode()
	require.Eventually(t, func() bool { return len(r.heldCodes()) == 1 }, 5*time.Second, 5*time.Millisecond)
	require.NoError(t, r.till.Sandbox.Inject(sandbox.Fault{Op: smartpay.OpRelease, Kind: sandbox.Latency, Delay: 2 * time.Second}))
	p := r.create("k", saleBody(20480, milkReceipt))
	p = r.waitState(p.ID, "failed", 15*time.Second)
	require.NotNil(t, p.Error)
	assert.Equal(t, "release_not_delivered", p.Error.Code)
	time.Sleep(2500 * time.Millisecond) // the held-up release reaches the provider
	pur, ok := r.purchaseOf(code)
	require.True(t, ok)
	assert.Equal(t, "canceled", pur.State)
	assert.Zero(t, pur.Releases, "a release that arrived after the cancel was applied")
	assert.Empty(t, receiptsOf(r.till.Register.Documents()))
}
