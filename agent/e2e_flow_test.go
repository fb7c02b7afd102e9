package main

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kassa-agent/agent/internal/sale"
	"kassa-agent/payments/smartpay"
	"kassa-agent/payments/smartpay/sandbox"
)

func TestScanBeforeDuringAfterThePOSCall(t *testing.T) {
	t.Run("before", func(t *testing.T) {
		r := newRig(t, rigOptions{})
		r.startInProcess()
		r.showCode()
		r.waitCommits(1)
		// The commit went out before any amount was known.
		assert.Zero(t, r.till.Sandbox.Count(smartpay.OpRelease))
		require.Eventually(t, func() bool { return len(r.heldCodes()) == 1 }, 5*time.Second, 5*time.Millisecond)
		p := r.create("k", saleBody(20480, milkReceipt))
		assert.Equal(t, "committed", p.State, "a held code is attached at once")
		p = r.waitState(p.ID, "completed", 10*time.Second)
		r.checkSettled(p)
	})
	t.Run("after", func(t *testing.T) {
		r := newRig(t, rigOptions{})
		r.startInProcess()
		p := r.create("k", saleBody(20480, milkReceipt))
		time.Sleep(50 * time.Millisecond)
		assert.Zero(t, r.till.Sandbox.Count(smartpay.OpCommit))
		r.showCode()
		p = r.waitState(p.ID, "completed", 10*time.Second)
		r.checkSettled(p)
	})
	t.Run("during", func(t *testing.T) {
		r := newRig(t, rigOptions{})
		r.startInProcess()
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { defer wg.Done(); r.showCode() }()
		p := r.create("k", saleBody(20480, milkReceipt))
		wg.Wait()
		p = r.waitState(p.ID, "completed", 10*time.Second)
		r.checkSettled(p)
		assert.Equal(t, 1, r.till.Sandbox.Count(smartpay.OpCommit))
	})
}

// heldCodes lists sandbox purchases committed and not released or cancelled.
func (r *rig) heldCodes() []sandbox.Purchase {
	var out []sandbox.Purchase
	for _, p := range r.till.Sandbox.Purchases() {
		if p.Releases == 0 && p.Cancels == 0 {
			out = append(out, p)
		}
	}
	return out
}

func TestTwoScansTheNewerWins(t *testing.T) {
	r := newRig(t, rigOptions{})
	r.startInProcess()
	r.showCode()
	r.waitCommits(1)
	time.Sleep(600 * time.Millisecond) // past the scanner's double-read window
	r.showCode()
	r.waitCommits(2)
	// The older code is cancelled at the service through the outbox.
	require.Eventually(t, func() bool { return r.till.Sandbox.Count(smartpay.OpCancel) == 1 }, 5*time.Second, 5*time.Millisecond)
	ps := r.till.Sandbox.Purchases()
	require.Len(t, ps, 2)
	first, second := ps[0], ps[1]
	if first.CommittedAt.After(second.CommittedAt) {
		first, second = second, first
	}
	assert.Equal(t, 1, first.Cancels)
	assert.Zero(t, second.Cancels)

	p := r.create("k", saleBody(20480, milkReceipt))
	assert.Equal(t, second.ID, p.SmartPay.PurchaseID, "the newer code pays")
	p = r.waitState(p.ID, "completed", 10*time.Second)
	r.checkSettled(p)
}

func TestOtherScansAreNotCommitted(t *testing.T) {
	r := newRig(t, rigOptions{})
	r.startInProcess()
	ev := r.subscribe()
	// A goods barcode and a marking code with GS separators: published to the
	// POS as read, never sent to Smart Pay.
	require.NoError(t, r.till.ShowCode("4607001771234"))
	marking := "0104601234567890215abcde\x1d93dGVz"
	time.Sleep(600 * time.Millisecond)
	require.NoError(t, r.till.ShowCode(marking))
	require.Eventually(t, func() bool { return len(ev.scans()) == 2 }, 5*time.Second, 5*time.Millisecond)
	scans := ev.scans()
	assert.Equal(t, "4607001771234", scans[0].Text)
	assert.Equal(t, marking, scans[1].Text, "GS kept")
	for _, s := range scans {
		assert.False(t, s.SmartPay)
		assert.Equal(t, "serial", s.Source)
	}
	assert.Zero(t, r.till.Sandbox.Count(smartpay.OpCommit))

	// A code handed over by the POS goes the same way.
	var ans map[string]string
	assert.Equal(t, 202, r.call("POST", "/v1/scanner/codes", "", `{"code":"`+r.till.Sandbox.NewCode()+`"}`, &ans))
	r.waitCommits(1)
}

func TestBadPaymentRequestsChangeNothing(t *testing.T) {
	r := newRig(t, rigOptions{})
	r.startInProcess()
	cases := []struct {
		name, key, body string
		status          int
		code            string
	}{
		{"no key", "", saleBody(100, ""), 400, "idempotency_key_missing"},
		{"long key", strings.Repeat("k", 256), saleBody(100, ""), 400, "idempotency_key_invalid"},
		{"not json", "k1", `{"provider":`, 400, "bad_request"},
		{"unknown field", "k2", `{"provider":"smartpay","amount":1,"currency":"RUB","tip":5}`, 400, "unknown_field"},
		{"float amount", "k3", `{"provider":"smartpay","amount":1.5,"currency":"RUB"}`, 400, "bad_request"},
		{"zero amount", "k4", saleBody(0, ""), 422, "validation_failed"},
		{"negative amount", "k5", saleBody(-100, ""), 422, "validation_failed"},
		{"huge amount", "k6", saleBody(1<<41, ""), 422, "validation_failed"},
		{"no provider", "k7", `{"amount":100,"currency":"RUB"}`, 422, "validation_failed"},
		{"unknown provider", "k8", `{"provider":"paypal","amount":100,"currency":"RUB"}`, 422, "validation_failed"},
		{"disabled provider", "k9", `{"provider":"alif","amount":100,"currency":"UZS"}`, 422, "validation_failed"},
		{"wrong currency", "k10", `{"provider":"smartpay","amount":100,"currency":"USD"}`, 422, "validation_failed"},
		{"total differs", "k11", saleBody(100, milkReceipt), 422, "validation_failed"},
		{"empty receipt", "k12", saleBody(100, `{"items":[]}`), 422, "validation_failed"},
		{"bad vat", "k13", saleBody(100, `{"items":[{"name":"x","quantity":1000,"price":100,"vat":"vat18"}]}`), 422, "validation_failed"},
		{"zero quantity", "k14", saleBody(100, `{"items":[{"name":"x","quantity":0,"price":100,"vat":"vat22"}]}`), 422, "validation_failed"},
		{"empty name", "k15", saleBody(100, `{"items":[{"name":" ","quantity":1000,"price":100,"vat":"vat22"}]}`), 422, "validation_failed"},
		{"name too long", "k16", saleBody(100, fmt.Sprintf(`{"items":[{"name":"%0200d","quantity":1000,"price":100,"vat":"vat22"}]}`, 0)), 422, "validation_failed"},
		{"bad receipt type", "k17", saleBody(100, `{"type":"gift","items":[{"name":"x","quantity":1000,"price":100,"vat":"vat22"}]}`), 422, "validation_failed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var e apiError
			assert.Equal(t, tc.status, r.call("POST", "/v1/payments", tc.key, tc.body, &e))
			assert.Equal(t, tc.code, e.Error.Code, e.Error.Message)
			assert.NotEmpty(t, e.Error.Message)
		})
	}
	var list struct{ Payments []apiPayment }
	require.Equal(t, 200, r.call("GET", "/v1/payments", "", "", &list))
	assert.Empty(t, list.Payments, "a refused request created a payment")
	for _, op := range []smartpay.Op{smartpay.OpCommit, smartpay.OpRelease, smartpay.OpCancel} {
		assert.Zero(t, r.till.Sandbox.Count(op), "a refused request reached Smart Pay: %s", op)
	}
}

func TestIdempotencyKey(t *testing.T) {
	r := newRig(t, rigOptions{})
	r.startInProcess()
	body := saleBody(20480, milkReceipt)
	p1 := r.create("same", body)
	var p2 apiPayment
	assert.Equal(t, 200, r.call("POST", "/v1/payments", "same", body, &p2), "replay")
	assert.Equal(t, p1.ID, p2.ID)
	var e apiError
	assert.Equal(t, 422, r.call("POST", "/v1/payments", "same", saleBody(100, ""), &e))
	assert.Equal(t, "idempotency_key_reused", e.Error.Code)

	// Concurrent retries of one request make one payment.
	var wg sync.WaitGroup
	ids := make([]string, 8)
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var p apiPayment
			r.call("POST", "/v1/payments", "race", body, &p)
			ids[i] = p.ID
		}()
	}
	wg.Wait()
	for _, id := range ids {
		assert.Equal(t, ids[0], id)
	}
}

func TestRegisterNotReadyTakesNoMoney(t *testing.T) {
	r := newRig(t, rigOptions{})
	r.startInProcess()
	r.showCode()
	r.waitCommits(1)
	r.till.Register.SetPaper(false)
	var e apiError
	assert.Equal(t, 409, r.call("POST", "/v1/payments", "k", saleBody(20480, milkReceipt), &e))
	assert.Equal(t, "register_paper_out", e.Error.Code)
	assert.Zero(t, r.till.Sandbox.Count(smartpay.OpRelease), "money taken although the receipt could not print")

	// Paper loaded: the same key is new (the refusal was not stored) and the
	// held code pays.
	r.till.Register.SetPaper(true)
	p := r.create("k", saleBody(20480, milkReceipt))
	p = r.waitState(p.ID, "completed", 10*time.Second)
	r.checkSettled(p)
}

func TestCancelBeforeRelease(t *testing.T) {
	r := newRig(t, rigOptions{})
	r.startInProcess()
	p := r.create("k", saleBody(20480, milkReceipt))
	var c apiPayment
	require.Equal(t, 200, r.call("POST", "/v1/payments/"+p.ID+"/cancel", "", "", &c))
	assert.Equal(t, "canceled", c.State)
	// A scan now is held for the next payment, not given to the cancelled one.
	r.showCode()
	r.waitCommits(1)
	time.Sleep(100 * time.Millisecond)
	assert.Zero(t, r.till.Sandbox.Count(smartpay.OpRelease))

	p2 := r.create("k2", saleBody(20480, milkReceipt))
	assert.Equal(t, "committed", p2.State)
	p2 = r.waitState(p2.ID, "completed", 10*time.Second)
	var e apiError
	assert.Equal(t, 409, r.call("POST", "/v1/payments/"+p2.ID+"/cancel", "", "", &e), "no cancel after release")
	assert.Equal(t, "conflict", e.Error.Code)
}

// TestNetworkRegister: the same sale with the register on TCP (network models).
func TestNetworkRegister(t *testing.T) {
	r := newRig(t, rigOptions{tcpReg: true})
	require.Contains(t, r.till.Config(), `transport = "tcp"`)
	r.startInProcess()
	p := r.create("k", saleBody(20480, milkReceipt))
	r.showCode()
	p = r.waitState(p.ID, "completed", 10*time.Second)
	r.checkSettled(p)
}

// TestAbandonedCodeIsCancelled: a code nobody pays with is given back.
func TestAbandonedCodeIsCancelled(t *testing.T) {
	r := newRig(t, rigOptions{})
	r.startInProcess(func(o *sale.Options) { o.AbandonAfter = 300 * time.Millisecond })
	r.showCode()
	r.waitCommits(1)
	require.Eventually(t, func() bool { return r.till.Sandbox.Count(smartpay.OpCancel) == 1 }, 5*time.Second, 10*time.Millisecond)
	// A payment now waits for a fresh scan instead of taking the cancelled code.
	p := r.create("k", saleBody(20480, milkReceipt))
	assert.Equal(t, "committing", p.State)
	assert.Equal(t, "scan_code", p.NextAction)
}

func TestListPayments(t *testing.T) {
	r := newRig(t, rigOptions{})
	r.startInProcess()
	start := time.Now().UTC().Add(-time.Second)
	var ids []string
	for i := range 5 {
		ids = append(ids, r.create(fmt.Sprintf("k%d", i), saleBody(100, "")).ID)
	}
	var page struct {
		Payments []apiPayment `json:"payments"`
		Next     string       `json:"next"`
	}
	require.Equal(t, 200, r.call("GET", "/v1/payments?limit=2", "", "", &page))
	require.Len(t, page.Payments, 2)
	assert.Equal(t, ids[:2], []string{page.Payments[0].ID, page.Payments[1].ID})
	require.Equal(t, ids[1], page.Next)
	after := page.Next
	page.Next = "" // absent from the last page
	require.Equal(t, 200, r.call("GET", "/v1/payments?limit=10&after="+after, "", "", &page))
	require.Len(t, page.Payments, 3)
	assert.Equal(t, ids[2], page.Payments[0].ID)
	assert.Empty(t, page.Next)

	require.Equal(t, 200, r.call("GET", "/v1/payments?since="+start.Format(time.RFC3339), "", "", &page))
	assert.Len(t, page.Payments, 5)
	require.Equal(t, 200, r.call("GET", "/v1/payments?since="+time.Now().UTC().Add(time.Hour).Format(time.RFC3339), "", "", &page))
	assert.Empty(t, page.Payments)
	var e apiError
	assert.Equal(t, 400, r.call("GET", "/v1/payments?since=yesterday", "", "", &e))
	assert.Equal(t, 400, r.call("GET", "/v1/payments?limit=0", "", "", &e))
	assert.Equal(t, 400, r.call("GET", "/v1/payments/"+ids[0]+"?wait=forever", "", "", &e))
	assert.Equal(t, 404, r.call("GET", "/v1/payments/pay_nope", "", "", &e))
}

// TestScannerUnpluggedAndBack: the POS hears the scanner go and come back, and
// a code shown after the re-plug is committed as usual.
func TestScannerUnpluggedAndBack(t *testing.T) {
	r := newRig(t, rigOptions{})
	r.startInProcess()
	ev := r.subscribe()
	connected := func() bool {
		var st struct {
			Devices struct {
				Scanner struct {
					Connected bool `json:"connected"`
				} `json:"scanner"`
			} `json:"devices"`
		}
		r.call("GET", "/v1/status", "", "", &st)
		return st.Devices.Scanner.Connected
	}
	require.Eventually(t, connected, 5*time.Second, 10*time.Millisecond)
	r.till.UnplugScanner()
	require.Eventually(t, func() bool { return !connected() }, 5*time.Second, 10*time.Millisecond)
	r.till.ReplugScanner()
	require.Eventually(t, connected, 5*time.Second, 10*time.Millisecond, "scanner did not come back")
	// The stream is read on its own goroutine: wait for it to catch up.
	assert.Eventually(t, func() bool {
		var devEvents int
		for _, e := range ev.raw() {
			if strings.Contains(e, "event: device\n") {
				devEvents++
			}
		}
		return devEvents >= 2
	}, 5*time.Second, 10*time.Millisecond, "device events for the unplug and the re-plug")
	p := r.create("k", saleBody(20480, milkReceipt))
	r.showCode()
	p = r.waitState(p.ID, "completed", 10*time.Second)
	r.checkSettled(p)
}

// TestOnlyTheNewestPaymentTakesACode: a payment the POS left waiting must
// never take the next buyer's code and charge its own amount.
func TestOnlyTheNewestPaymentTakesACode(t *testing.T) {
	r := newRig(t, rigOptions{})
	r.startInProcess(func(o *sale.Options) { o.AbandonAfter = 2 * time.Second })
	old := r.create("k1", saleBody(100, ""))
	cur := r.create("k2", saleBody(20480, milkReceipt))
	var o apiPayment
	require.Equal(t, 200, r.call("GET", "/v1/payments/"+old.ID, "", "", &o))
	assert.Equal(t, "canceled", o.State)
	require.NotNil(t, o.Error)
	assert.Equal(t, "replaced", o.Error.Code)

	r.showCode()
	cur = r.waitState(cur.ID, "completed", 10*time.Second)
	r.checkSettled(cur)

	// A payment nobody scans for is given up after abandon_after.
	lone := r.create("k3", saleBody(100, ""))
	lone = r.waitState(lone.ID, "canceled", 10*time.Second)
	require.NotNil(t, lone.Error)
	assert.Equal(t, "no_code_scanned", lone.Error.Code)
	assert.Equal(t, 1, r.till.Sandbox.Count(smartpay.OpRelease))
}

// TestPaperOutBetweenCreateAndRelease: the register is checked again before
// the money moves; while it cannot print, nothing is released.
func TestPaperOutBetweenCreateAndRelease(t *testing.T) {
	r := newRig(t, rigOptions{})
	r.startInProcess()
	p := r.create("k", saleBody(20480, milkReceipt))
	r.till.Register.SetPaper(false)
	r.showCode()
	require.Eventually(t, func() bool {
		var q apiPayment
		r.call("GET", "/v1/payments/"+p.ID, "", "", &q)
		return q.State == "committed" && q.Error != nil && q.Error.Code == "register_not_ready"
	}, 10*time.Second, 20*time.Millisecond)
	assert.Zero(t, r.till.Sandbox.Count(smartpay.OpRelease), "money moved while the receipt could not print")
	r.till.Register.SetPaper(true)
	p = r.waitState(p.ID, "completed", 15*time.Second)
	assert.Nil(t, p.Error)
	r.checkSettled(p)
}

// TestUnprintableReceiptRefusedUpFront: a name the register's code page cannot
// print is refused before any money moves, not discovered after.
func TestUnprintableReceiptRefusedUpFront(t *testing.T) {
	r := newRig(t, rigOptions{})
	r.startInProcess()
	var e apiError
	body := saleBody(100, `{"items":[{"name":"Кофе ☕","quantity":1000,"price":100,"vat":"vat22"}]}`)
	assert.Equal(t, 422, r.call("POST", "/v1/payments", "k", body, &e))
	assert.Equal(t, "validation_failed", e.Error.Code)
	assert.Contains(t, e.Error.Message, "cannot print")
	var list struct{ Payments []apiPayment }
	r.call("GET", "/v1/payments", "", "", &list)
	assert.Empty(t, list.Payments)
}

// TestLateCommitNeverPays: a commit whose answer comes after a newer scan was
// taken is cancelled, never held for the next sale.
func TestLateCommitNeverPays(t *testing.T) {
	r := newRig(t, rigOptions{})
	r.startInProcess()
	p := r.create("k", saleBody(20480, milkReceipt))
	require.NoError(t, r.till.Sandbox.Inject(sandbox.Fault{Op: smartpay.OpCommit, Kind: sandbox.Latency, Delay: 700 * time.Millisecond}))
	slow := r.showCode()
	time.Sleep(100 * time.Millisecond)
	fast := r.showCode()
	p = r.waitState(p.ID, "completed", 10*time.Second)
	r.checkSettled(p)
	var slowP, fastP sandbox.Purchase
	require.Eventually(t, func() bool {
		for _, pu := range r.till.Sandbox.Purchases() {
			switch pu.Code {
			case slow:
				slowP = pu
			case fast:
				fastP = pu
			}
		}
		return slowP.Cancels == 1
	}, 10*time.Second, 10*time.Millisecond, "the late commit was not cancelled")
	assert.Equal(t, p.SmartPay.PurchaseID, fastP.ID, "the newer scan pays")
	assert.Zero(t, slowP.Releases)
	// And a next sale does not pick it up.
	p2 := r.create("k2", saleBody(20480, milkReceipt))
	assert.Equal(t, "committing", p2.State)
}

// TestGiveBackHeldCode: the buyer showed a code, then paid cash; the POS gives
// the code back and the next Smart Pay sale waits for its own scan.
func TestGiveBackHeldCode(t *testing.T) {
	r := newRig(t, rigOptions{})
	r.startInProcess()
	r.showCode()
	r.waitCommits(1)
	var ans struct {
		Released int `json:"released"`
	}
	// The commit's outcome is recorded just after its answer: ask until it is.
	require.Eventually(t, func() bool {
		require.Equal(t, 200, r.call("POST", "/v1/smartpay/held/release", "", "", &ans))
		return ans.Released == 1
	}, 5*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool { return r.till.Sandbox.Count(smartpay.OpCancel) == 1 }, 5*time.Second, 10*time.Millisecond)
	p := r.create("k", saleBody(20480, milkReceipt))
	assert.Equal(t, "committing", p.State, "a given-back code must not pay")
	require.Equal(t, 200, r.call("POST", "/v1/smartpay/held/release", "", "", &ans))
	assert.Zero(t, ans.Released)
}
