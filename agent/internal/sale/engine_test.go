package sale

import (
	"context"
	"encoding/json"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kassa-agent/payments"
	"kassa-agent/payments/alikassa"
	alikassasandbox "kassa-agent/payments/alikassa/sandbox"
	"kassa-agent/payments/smartpay"
	"kassa-agent/payments/smartpay/sandbox"
	"kassa-agent/queue"
)

// bench is an engine over a real store file and the Smart Pay sandbox on
// loopback, with no register (payments without a receipt).
type bench struct {
	t     *testing.T
	e     *Engine
	srv   *sandbox.Server
	store *queue.Store
	clock *queue.TestClock
}

func newBench(t *testing.T, tune func(*Options)) *bench {
	t.Helper()
	srv, err := sandbox.Start(sandbox.Options{ProcessingDelay: sandbox.Immediate})
	require.NoError(t, err)
	t.Cleanup(func() { srv.Close() })
	cl, err := smartpay.New(srv.ClientConfig())
	require.NoError(t, err)
	t.Cleanup(cl.Close)
	st, err := queue.Open(filepath.Join(t.TempDir(), "kassa.db"), queue.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	clock := queue.NewTestClock(time.Now())
	o := Options{Store: st, SmartPay: cl, CodePattern: regexp.MustCompile(smartpay.DefaultCodePattern), Clock: clock,
		PollMin: 10 * time.Millisecond, PollMax: 50 * time.Millisecond, SettleBeforeCancel: 300 * time.Millisecond,
		AbandonAfter: time.Second}
	if tune != nil {
		tune(&o)
	}
	e, err := New(o)
	require.NoError(t, err)
	d := queue.NewDispatcher(st, queue.DispatcherOptions{BaseDelay: 20 * time.Millisecond, MaxDelay: 100 * time.Millisecond})
	e.RegisterHandlers(d)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	go func() { _ = e.Run(ctx); done <- struct{}{} }()
	go func() { _ = d.Run(ctx); done <- struct{}{} }()
	t.Cleanup(func() { cancel(); <-done; <-done })
	// Run must have started before a payment is created.
	require.Eventually(t, func() bool { e.mu.Lock(); defer e.mu.Unlock(); return e.runCtx != nil }, time.Second, time.Millisecond)
	return &bench{t: t, e: e, srv: srv, store: st, clock: clock}
}

func (b *bench) create(key string, amount int64) *Payment {
	b.t.Helper()
	body := []byte(`{"provider":"smartpay","amount":` + jsonInt(amount) + `,"currency":"RUB"}`)
	p, _, err := b.e.Create(context.Background(), key, body, CreateRequest{Provider: "smartpay", Amount: amount, Currency: "RUB"})
	require.NoError(b.t, err)
	return p
}

func jsonInt(v int64) string { b, _ := json.Marshal(v); return string(b) }

func (b *bench) scan() string {
	code := b.srv.NewCode()
	b.e.OnScan(context.Background(), code, "api", time.Now())
	return code
}

func (b *bench) codeState(code string) string {
	var state string
	_ = b.store.View(func(r *queue.ReadTx) error {
		return r.ForEach(collCodes, func(id string, v []byte) error {
			var c codeRecord
			if json.Unmarshal(v, &c) == nil && c.Code == code {
				state = c.State
			}
			return nil
		})
	})
	return state
}

func (b *bench) payment(id string) *Payment {
	p, err := b.e.Get(id)
	require.NoError(b.t, err)
	return p
}

// TestWallClockStepsDoNotMoveAges: a held code and a waiting payment age on
// the monotonic clock. The wall clock jumping two hours ahead (NTP at boot)
// must not cancel them early; jumping two hours back must not keep them
// forever.
func TestWallClockStepsDoNotMoveAges(t *testing.T) {
	t.Run("forward", func(t *testing.T) {
		b := newBench(t, nil)
		code := b.scan()
		require.Equal(t, CodeHeld, b.codeState(code))
		b.clock.StepWall(2 * time.Hour)
		time.Sleep(400 * time.Millisecond) // several sweeps
		assert.Equal(t, CodeHeld, b.codeState(code), "a wall step forward cancelled a fresh code")

		b = newBench(t, nil)
		lone := b.create("k", 100)
		b.clock.StepWall(2 * time.Hour)
		time.Sleep(400 * time.Millisecond)
		assert.Equal(t, payments.Committing, b.payment(lone.ID).State, "a wall step forward gave up a fresh payment")
	})
	t.Run("back", func(t *testing.T) {
		b := newBench(t, nil)
		code := b.scan()
		require.Equal(t, CodeHeld, b.codeState(code))
		b.clock.StepWall(-2 * time.Hour)
		b.clock.Advance(time.Second) // abandon_after passes
		require.Eventually(t, func() bool { return b.codeState(code) == CodeCanceled }, 5*time.Second, 20*time.Millisecond,
			"a wall step back kept a held code past abandon_after")
		lone := b.create("k", 100)
		b.clock.StepWall(-2 * time.Hour)
		b.clock.Advance(time.Second)
		require.Eventually(t, func() bool { return b.payment(lone.ID).State == payments.Canceled }, 5*time.Second, 20*time.Millisecond,
			"a wall step back kept a waiting payment past abandon_after")
	})
	t.Run("time passing", func(t *testing.T) {
		b := newBench(t, func(o *Options) { o.AbandonAfter = time.Hour })
		code := b.scan()
		b.clock.Advance(time.Hour)
		require.Eventually(t, func() bool { return b.codeState(code) == CodeCanceled }, 10*time.Second, 20*time.Millisecond)
	})
}

// TestSettleWaitOnTheMonotonicClock: after a release whose outcome is
// unknown and a status that says "committed", the purchase is cancelled only
// after settle_before_cancel has passed on the monotonic clock, whatever the
// wall clock does.
func TestSettleWaitOnTheMonotonicClock(t *testing.T) {
	for _, step := range []time.Duration{2 * time.Hour, -2 * time.Hour} {
		t.Run(step.String(), func(t *testing.T) {
			b := newBench(t, func(o *Options) { o.SettleBeforeCancel = 700 * time.Millisecond })
			require.NoError(t, b.srv.Inject(sandbox.Fault{Op: smartpay.OpRelease, Kind: sandbox.ServerError}))
			code := b.scan()
			b.clock.StepWall(step)
			p := b.create("k", 100)
			require.Eventually(t, func() bool { return b.payment(p.ID).State == payments.Releasing }, 5*time.Second, 10*time.Millisecond)
			time.Sleep(500 * time.Millisecond) // the engine polls the status many times meanwhile
			require.Equal(t, payments.Releasing, b.payment(p.ID).State, "cancelled before the settle wait had passed")
			b.clock.Advance(700 * time.Millisecond)
			require.Eventually(t, func() bool { return b.payment(p.ID).State.Final() }, 10*time.Second, 10*time.Millisecond)
			assert.Equal(t, payments.Failed, b.payment(p.ID).State)
			require.Eventually(t, func() bool {
				pur, _ := b.srv.PurchaseByKassaID(b.payment(p.ID).SmartPay.KassaPurchaseID)
				return pur.Cancels == 1
			}, 5*time.Second, 10*time.Millisecond)
			_ = code
		})
	}
}

// TestRefusedReleaseLeavesNothingInMemory: a refused release is followed by
// no status poll; nothing about it stays in the engine's memory.
func TestRefusedReleaseLeavesNothingInMemory(t *testing.T) {
	b := newBench(t, nil)
	for i := range 3 {
		require.NoError(t, b.srv.Inject(sandbox.Fault{Op: smartpay.OpRelease, Kind: sandbox.CodeExpired}))
		b.scan()
		p := b.create("k"+jsonInt(int64(i)), 100)
		require.Eventually(t, func() bool { return b.payment(p.ID).State == payments.CodeExpired }, 5*time.Second, 10*time.Millisecond)
	}
	b.e.mu.Lock()
	defer b.e.mu.Unlock()
	assert.Empty(t, b.e.released, "refused releases left entries behind")
}

// TestLostCreateAnswerDoesNotSpin: the answer to creating an AliKassa page is
// lost (the page exists) and the first look-up by our order id fails too;
// the status then finds the page by our order id alone and the payment moves
// to processing without the provider's id. The engine must take the id on
// the next look-up and go on polling at its pace, not ask the provider in a
// tight loop (a crash-matrix round found it asking every 2 ms).
func TestLostCreateAnswerDoesNotSpin(t *testing.T) {
	srv, err := alikassasandbox.Start(alikassasandbox.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { srv.Close() })
	cfg := srv.ClientConfig()
	cfg.Service, cfg.CustomerCode, cfg.CustomerIP = "payment_card_bdt_hpp", "bkash", "203.0.113.7"
	cl, err := alikassa.New(cfg)
	require.NoError(t, err)
	st, err := queue.Open(filepath.Join(t.TempDir(), "kassa.db"), queue.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	e, err := New(Options{Store: st, Providers: []payments.Provider{cl}, PollMin: 20 * time.Millisecond,
		PollMax: 200 * time.Millisecond, SettleBeforeCancel: 10 * time.Second})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = e.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	require.Eventually(t, func() bool { e.mu.Lock(); defer e.mu.Unlock(); return e.runCtx != nil }, time.Second, time.Millisecond)

	require.NoError(t, srv.Inject(alikassasandbox.Fault{Op: alikassa.OpCreate, Kind: alikassasandbox.ReplyLost}))
	require.NoError(t, srv.Inject(alikassasandbox.Fault{Op: alikassa.OpStatus, Kind: alikassasandbox.ServerError}))
	body := `{"provider":"alikassa","amount":50000,"currency":"BDT"}`
	p, _, err := e.Create(ctx, "k", []byte(body), CreateRequest{Provider: "alikassa", Amount: 50000, Currency: "BDT"})
	require.NoError(t, err)
	statuses := func() int {
		n := 0
		for _, r := range srv.Requests() {
			if r.Op == alikassa.OpStatus {
				n++
			}
		}
		return n
	}
	time.Sleep(500 * time.Millisecond)
	before := statuses()
	time.Sleep(time.Second)
	asked := statuses() - before
	assert.LessOrEqual(t, asked, 10, "the provider was asked %d times in a second", asked)
	q, err := e.Get(p.ID)
	require.NoError(t, err)
	assert.Equal(t, payments.Processing, q.State)
	assert.NotEmpty(t, q.Ref.ProviderID, "the provider's id was not taken from the page found by our order id")
}
