// Package sale runs the till's payments: it ties a provider's flow, the fiscal
// register and the durable store together so that no payment is taken twice, no
// receipt is printed twice or lost, and every confirmation and fiscal submission
// reaches the provider. Each step writes its recovery point to the store before the
// call it leads to; after a crash the engine resumes from there.
package sale

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"runtime/debug"
	"sort"
	"sync"
	"time"

	"kassa-agent/agent/internal/localapi"
	"kassa-agent/fiscal"
	"kassa-agent/payments"
	"kassa-agent/queue"
)

// Register is the part of the fiscal register the engine uses.
type Register interface {
	Status(ctx context.Context) (fiscal.Status, error)
	// Ready says whether a document could be printed now (Status's Ready,
	// read with as few commands as the register allows); nil when it could.
	Ready(ctx context.Context) error
	// CheckReceipt says, without sending anything, whether the register can
	// print r (its limits, its code page).
	CheckReceipt(r fiscal.Receipt) error
	PrintReceipt(ctx context.Context, id string, r fiscal.Receipt) (fiscal.Document, error)
	// Identity reads the register's registration number and fiscal drive
	// number (a fiscal submission needs both).
	Identity(ctx context.Context) (fiscal.Identity, error)
	// PrintText prints non-fiscal lines (a slip).
	PrintText(ctx context.Context, lines []string) error

	// The register's other operations the POS asks for; those that make a
	// document are exactly once per id, like PrintReceipt.
	OpenShiftAs(ctx context.Context, id string, c fiscal.Cashier) (fiscal.Document, error)
	CloseShiftAs(ctx context.Context, id string, c fiscal.Cashier) (fiscal.Document, error)
	XReport(ctx context.Context) error
	CashInOnce(ctx context.Context, id string, amount int64) (fiscal.Document, error)
	CashOutOnce(ctx context.Context, id string, amount int64) (fiscal.Document, error)
	PrintCorrection(ctx context.Context, id string, c fiscal.Correction) (fiscal.Document, error)
	PrintQR(ctx context.Context, text string) error
	// PrintCopy prints a copy of fiscal document fd (not a fiscal document).
	PrintCopy(ctx context.Context, fd uint32) error
	LastDocument(ctx context.Context) (fiscal.FoundDocument, error)
	FindDocument(ctx context.Context, fd uint32) (fiscal.FoundDocument, error)
	Info(ctx context.Context) (fiscal.Info, error)
	RecoverRegister(ctx context.Context) (fiscal.RecoveryReport, error)

	// Marked goods (FFD 1.2): every marked line's code is checked and the
	// result accepted in the FN before the receipt that sells it.
	fiscal.MarkingChecker
}

// Options configure an Engine.
type Options struct {
	Store       *queue.Store
	SmartPay    SmartPay       // nil: Smart Pay disabled
	CodePattern *regexp.Regexp // which scans are Smart Pay codes
	// Providers are the other enabled providers (hosted payment pages),
	// driven through the provider contract alone.
	Providers []payments.Provider
	// Known are providers configured off: their payments stay visible,
	// flagged provider_disabled, until they are switched on again.
	Known []string
	// PollEvery caps the wait between two status questions, per provider
	// (default PollMax).
	PollEvery map[string]time.Duration
	Register  Register // nil: no register configured
	TaxSystem fiscal.TaxSystem
	Cashier   string
	Hub       *Hub
	Logger    *slog.Logger

	PollMin      time.Duration // first status poll delay (300 ms)
	PollMax      time.Duration // poll delay cap (800 ms)
	PollDeadline time.Duration // after this the payment is flagged unconfirmed (3 min)
	SlowPoll     time.Duration // poll interval past the deadline (30 s)
	// SettleBeforeCancel: after an ambiguous release, a purchase the service
	// still reports as merely committed this long is cancelled, so that it can
	// never be charged later (10 s).
	SettleBeforeCancel time.Duration
	AbandonAfter       time.Duration // a held code unused this long is cancelled (10 min)
	FiscalRetryMin     time.Duration // first receipt retry delay (2 s)
	FiscalRetryMax     time.Duration // receipt retry cap (1 min)

	Clock queue.Clock // nil: the store's clock

	Marking MarkingPolicy
}

// MarkingPolicy is what is done with marked goods beyond what the law fixes
// (an invalid code is never sold).
type MarkingPolicy struct {
	// Unchecked is what a code the OISM did not answer for gets; Groups
	// override it per product group (an item's marking_group).
	Unchecked fiscal.OfflinePolicy
	Groups    map[string]fiscal.OfflinePolicy
	// Industry is tag 1260 for a receipt with marked lines that gives none.
	Industry []fiscal.IndustryRequisite
	// NoChecks: the register is registered below FFD 1.2; a code goes on its
	// line as tag 1162 and nothing is checked.
	NoChecks bool
}

func (o *Options) defaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.PollMin, 300*time.Millisecond)
	// Under a second between status requests: the cashier learns of a
	// payment within a second of the provider, at about 1.25 requests a second.
	def(&o.PollMax, 800*time.Millisecond)
	def(&o.PollDeadline, 3*time.Minute)
	def(&o.SlowPoll, 30*time.Second)
	def(&o.SettleBeforeCancel, 10*time.Second)
	def(&o.AbandonAfter, 10*time.Minute)
	def(&o.FiscalRetryMin, 2*time.Second)
	def(&o.FiscalRetryMax, time.Minute)
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Hub == nil {
		o.Hub = NewHub()
	}
	if o.TaxSystem == 0 {
		o.TaxSystem = fiscal.OSN
	}
	if o.Clock == nil {
		o.Clock = o.Store.Clock()
	}
}

// Engine runs payments. Create one per agent, register its outbox handlers,
// then Run it.
type Engine struct {
	o      Options
	store  *queue.Store
	log    *slog.Logger
	hub    *Hub
	payIDs *queue.Sequence
	kpIDs  *queue.Sequence
	opIDs  *queue.Sequence // fiscal operations the POS asks for
	// opsWake wakes the worker that feeds the register the POS's operations.
	opsWake chan struct{}
	tillID  string

	providers map[string]*provider
	noticeLog noticeLog

	// mu serialises every state change, so a check and the write it guards
	// (e.g. "still committed" → "releasing") see the same record.
	mu      sync.Mutex
	wake    map[string]chan struct{}
	running map[string]bool

	clock    queue.Clock
	ages     *ages
	bornAt   time.Duration // clock.Mono when this engine was made
	inflight map[string]*flight
	runCtx   context.Context
	stopping bool            // set under mu once Run winds down: no new workers
	stopped  <-chan struct{} // closed when the API shuts down: long-polls and streams end
	// released is when (monotonic) each payment's release call came back:
	// the wait before cancelling an undelivered release counts from here.
	released map[string]time.Duration
	wg       sync.WaitGroup
	scanSink ScanSink

	// markMu keeps one marking sequence (checks, accepts, the receipt that
	// binds them) whole: the register is locked per command only, and a
	// check or a clear in the middle of another's sequence would change what
	// the FN holds for it.
	markMu sync.Mutex
	// accepted is what this process has accepted in the FN since its last
	// clear, by code and planned status (under markMu).
	accepted map[markKey]fiscal.MarkingResult
	// markDirty: the FN may hold accepted codes the engine does not know of
	// (at start, after an error); the next sequence clears it first.
	markDirty bool
}

// New prepares an engine on an open store.
func New(o Options) (*Engine, error) {
	o.defaults()
	pay, err := o.Store.Sequence("payment_id", 100)
	if err != nil {
		return nil, fmt.Errorf("payment id sequence: %w", err)
	}
	// kassa_purchase_id must never repeat at this till: ids are reserved
	// durably in blocks, so a commit never waits for an fsync of its own. The
	// floor in milliseconds keeps them unique even over a store started afresh.
	kp, err := o.Store.SequenceFrom("smartpay_kassa_purchase_id", 1000, uint64(time.Now().UnixMilli()))
	if err != nil {
		return nil, fmt.Errorf("kassa_purchase_id sequence: %w", err)
	}
	ops, err := o.Store.Sequence("fiscal_operation_id", 100)
	if err != nil {
		return nil, fmt.Errorf("operation id sequence: %w", err)
	}
	tillID, err := installID(o.Store)
	if err != nil {
		return nil, err
	}
	e := &Engine{o: o, store: o.Store, log: o.Logger, hub: o.Hub, payIDs: pay, kpIDs: kp, opIDs: ops, opsWake: make(chan struct{}, 1), tillID: tillID,
		wake: map[string]chan struct{}{}, running: map[string]bool{}, clock: o.Clock, ages: newAges(o.Clock),
		bornAt: o.Clock.Mono(), inflight: map[string]*flight{}, providers: map[string]*provider{},
		released: map[string]time.Duration{}, stopped: make(chan struct{}), accepted: map[markKey]fiscal.MarkingResult{}, markDirty: true}
	e.providers[ProviderSmartPay] = e.smartPayProvider()
	for _, name := range o.Known {
		if e.providers[name] == nil {
			e.providers[name] = &provider{}
		}
	}
	for _, pr := range o.Providers {
		if e.providers[pr.Name()] != nil && e.providers[pr.Name()].Provider != nil {
			return nil, fmt.Errorf("provider %q given twice", pr.Name())
		}
		e.providers[pr.Name()] = &provider{Provider: pr, hostedPage: true, pollMax: o.PollEvery[pr.Name()]}
	}
	return e, nil
}

// provider is a provider as the saga drives it: the contract, plus what the
// saga does for it in its own transactions. Provider is nil when the
// provider is switched off.
type provider struct {
	payments.Provider
	needsCode bool // a scanned code attaches before the charge (Smart Pay)
	// hostedPage: the buyer pays on the provider's page. A declined card is
	// not the end (the buyer may try another on the same page, until it
	// lapses), and a payment confirmed there can be reverted: its status is
	// asked once more right before the receipt prints.
	hostedPage bool
	pollMax    time.Duration // longest wait between status questions (0: Options.PollMax)
	onPaid     func(tx *queue.Tx, p *Payment) error
	onReceipt  func(tx *queue.Tx, p *Payment) error
	onCancel   func(tx *queue.Tx, p *Payment, now time.Time) error
	handlers   map[string]queue.Handler
}

// cancelPurchase gives a payment that took no money back to its provider.
func (e *Engine) cancelPurchase(tx *queue.Tx, p *Payment, now time.Time) error {
	if prov := e.providers[p.Provider]; prov != nil && prov.onCancel != nil {
		return prov.onCancel(tx, p, now)
	}
	return nil
}

// installID is a random name of this till's store, made once: with the
// payment id it makes order ids unique across the merchant's tills.
func installID(s *queue.Store) (string, error) {
	var id string
	err := s.View(func(r *queue.ReadTx) error {
		b, err := r.Get(collAgent, "install_id")
		if err == nil {
			id = string(b)
		}
		return nil
	})
	if err != nil || id != "" {
		return id, err
	}
	var b [5]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	id = hex.EncodeToString(b[:])
	err = s.Update(context.Background(), func(tx *queue.Tx) error { return tx.Put(collAgent, "install_id", []byte(id)) })
	return id, err
}

// now is the wall time for records.
func (e *Engine) now() time.Time { return e.clock.Now().UTC() }

// safely runs fn and turns a panic into a log line naming what it was doing
// (a payment id, a kassa_purchase_id): one bad record must not take down the
// till's every other payment. It reports whether fn panicked.
func (e *Engine) safely(what string, attrs []any, fn func()) (panicked bool) {
	defer func() {
		if r := recover(); r != nil {
			panicked = true
			e.log.Error(what+" panicked; the agent keeps running", append(attrs, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))...)
		}
	}()
	fn()
	return false
}

// goSafe runs fn on its own goroutine under safely.
func (e *Engine) goSafe(what, id string, fn func()) {
	go e.safely(what, []any{"kassa_purchase_id", id}, fn)
}

// Hub is where the engine publishes events.
func (e *Engine) Hub() *Hub { return e.hub }

// RegisterHandlers connects every provider's outbox kinds to the dispatcher.
func (e *Engine) RegisterHandlers(d *queue.Dispatcher) {
	for _, p := range e.providers {
		for kind, h := range p.handlers {
			d.Register(kind, h)
		}
	}
}

// Run resumes every unfinished payment from its recovery point, then keeps
// payments moving until ctx ends. It returns after every worker has stopped.
func (e *Engine) Run(ctx context.Context) error {
	e.mu.Lock()
	e.runCtx = ctx
	e.mu.Unlock()
	if err := e.recover(ctx); err != nil {
		return err
	}
	if e.o.Register != nil {
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			for e.safely("fiscal operations worker", nil, func() { e.runOps(ctx) }) && ctx.Err() == nil {
				_ = sleep(ctx, 5*time.Second, nil)
			}
		}()
	}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		for e.safely("Smart Pay sweep", nil, func() { e.sweepCodes(ctx) }) && ctx.Err() == nil {
			_ = sleep(ctx, 5*time.Second, nil)
		}
	}()
	<-ctx.Done()
	e.mu.Lock()
	e.stopping = true
	e.mu.Unlock()
	e.wg.Wait()
	return nil
}

// recover resumes what a crash or a stop left: commits whose answer was
// lost, and the workers of unfinished payments.
func (e *Engine) recover(ctx context.Context) error {
	var lost []*codeRecord
	var active []string
	// Under mu, so no scan of this run slips between reading the records and
	// the in-flight set.
	e.mu.Lock()
	err := e.store.View(func(r *queue.ReadTx) error {
		var err error
		if lost, err = e.lostCommits(r); err != nil {
			return err
		}
		return r.ForEach(collPayments, func(id string, v []byte) error {
			p, err := unmarshalPayment(v)
			if err != nil {
				e.log.Error("unreadable payment record skipped; a technician must look at it", "payment_id", id, "err", err)
				return nil
			}
			if !p.State.Final() {
				active = append(active, id)
			}
			return nil
		})
	})
	e.mu.Unlock()
	if err != nil {
		return fmt.Errorf("read unfinished payments: %w", err)
	}
	e.reaskCommits(ctx, lost)
	for _, id := range active {
		e.log.Info("resuming payment after restart", "payment_id", id)
		e.start(id)
	}
	return nil
}

// start runs the payment's worker unless one is running.
func (e *Engine) start(id string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.running[id] || e.runCtx == nil || e.stopping {
		return
	}
	e.running[id] = true
	e.wake[id] = make(chan struct{}, 1)
	ctx := e.runCtx
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		// A worker that panics is logged with its payment and started again
		// after a pause: the payment is never left without one.
		for attempt := 0; e.safely("payment worker", []any{"payment_id", id}, func() { e.drive(ctx, id) }); attempt++ {
			if sleep(ctx, backoff(time.Second, time.Minute, attempt), nil) != nil {
				break
			}
		}
		e.mu.Lock()
		delete(e.running, id)
		delete(e.wake, id)
		e.mu.Unlock()
	}()
}

// poke wakes a payment's worker (a code arrived, a cancel happened).
func (e *Engine) poke(id string) {
	e.mu.Lock()
	c := e.wake[id]
	e.mu.Unlock()
	if c != nil {
		select {
		case c <- struct{}{}:
		default:
		}
	}
}

func (e *Engine) wakeChan(id string) <-chan struct{} {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.wake[id]
}

// Get returns a payment.
func (e *Engine) Get(id string) (*Payment, error) {
	var p *Payment
	err := e.store.View(func(r *queue.ReadTx) error {
		b, err := r.Get(collPayments, id)
		if err != nil {
			return err
		}
		p, err = unmarshalPayment(b)
		return err
	})
	return p, err
}

// List returns payments created after the one named by after (an id), oldest first.
func (e *Engine) List(after string, since time.Time, limit int) ([]*Payment, error) {
	var out []*Payment
	err := e.store.View(func(r *queue.ReadTx) error {
		return r.Scan(collPayments, queue.ScanOptions{After: after}, func(id string, v []byte) error {
			p, err := unmarshalPayment(v)
			if err != nil {
				return err
			}
			if !since.IsZero() && p.Updated.Before(since) {
				return nil
			}
			out = append(out, p)
			if limit > 0 && len(out) >= limit {
				return errStop
			}
			return nil
		})
	})
	if errors.Is(err, errStop) {
		err = nil
	}
	return out, err
}

var errStop = errors.New("stop")

// errNoPoint: a print's recovery point could not be written; nothing was sent.
var errNoPoint = errors.New("recovery point not recorded")

// change applies fn to the stored payment and writes it, with whatever else fn
// does in the same transaction (outbox messages, code records). fn may veto by
// returning an error; nothing is written then. The change is published after
// it is durable.
func (e *Engine) change(ctx context.Context, id string, fn func(p *Payment, tx *queue.Tx) error) (*Payment, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.changeLocked(ctx, id, fn)
}

func (e *Engine) changeLocked(ctx context.Context, id string, fn func(p *Payment, tx *queue.Tx) error) (*Payment, error) {
	var out *Payment
	var ended bool
	err := e.store.Update(ctx, func(tx *queue.Tx) error {
		b, err := tx.Get(collPayments, id)
		if err != nil {
			return err
		}
		p, err := unmarshalPayment(b)
		if err != nil {
			return err
		}
		before := p.State
		if err := fn(p, tx); err != nil {
			return err
		}
		ended = !before.Final() && p.State.Final()
		if ended {
			if err := e.endSale(tx, p, true); err != nil {
				return err
			}
		}
		p.Version++
		p.Updated = e.now()
		out = p
		return putPayment(tx, p)
	})
	if err != nil {
		return nil, err
	}
	if ended {
		e.markInFlight(saleCodes(out.ID, true), whySaleEnd)
		e.forgetPayment(out.ID)
	}
	e.publishPayment(out)
	return out, nil
}

// forgetPayment drops what is kept in memory for a finished payment. Called
// with e.mu held.
func (e *Engine) forgetPayment(id string) {
	e.ages.forget("pay:" + id)
	e.ages.forget("rel:" + id)
	delete(e.released, id)
}

func (e *Engine) publishPayment(p *Payment) {
	e.hub.Publish("payment", p)
}

func enqueueJSON(tx *queue.Tx, kind, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = tx.Enqueue(queue.Message{Kind: kind, Key: key, Payload: b})
	return err
}

// sortCodes orders code records by kassa_purchase_id (scan order).
func sortCodes(cs []*codeRecord) {
	sort.Slice(cs, func(i, j int) bool { return lessID(cs[i].ID, cs[j].ID) })
}

// lessID compares decimal ids numerically.
func lessID(a, b string) bool {
	if len(a) != len(b) {
		return len(a) < len(b)
	}
	return a < b
}

func (e *Engine) paymentLog(p *Payment) *slog.Logger {
	l := e.log.With("payment_id", p.ID, "provider", p.Provider)
	if p.Ref.ProviderID != "" {
		l = l.With("provider_id", p.Ref.ProviderID)
	}
	if p.SmartPay != nil {
		l = l.With("kassa_purchase_id", p.SmartPay.KassaPurchaseID, "purchase_id", p.SmartPay.PurchaseID)
	}
	return l
}

// sleep waits d or until ctx ends or the payment is poked.
func sleep(ctx context.Context, d time.Duration, poke <-chan struct{}) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
	case <-poke:
	}
	return nil
}

func errInfo(code string, err error) *ErrorInfo {
	var ae *localapi.Error
	if errors.As(err, &ae) && ae.Code == code {
		return &ErrorInfo{Code: code, Message: ae.Message} // the code is said once
	}
	return &ErrorInfo{Code: code, Message: err.Error()}
}

// NeedAttention lists payments a person should look at: money taken but the
// receipt not printed yet, or a payment the provider has not confirmed in time.
func (e *Engine) NeedAttention() ([]*Payment, error) {
	var out []*Payment
	err := e.store.View(func(r *queue.ReadTx) error {
		return r.Scan(collPayments, queue.ScanOptions{Reverse: true, Limit: 500}, func(id string, v []byte) error {
			p, err := unmarshalPayment(v)
			if err != nil {
				return err
			}
			owed := p.State.MoneyTaken() && p.Fiscal.State == FiscalPending && p.Fiscal.Error != nil
			unconfirmed := !p.State.Final() && p.Error != nil && p.Error.Code == "payment_unconfirmed"
			if owed || unconfirmed {
				out = append(out, p)
			}
			return nil
		})
	})
	return out, err
}
