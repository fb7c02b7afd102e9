package sale

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"kassa-agent/agent/internal/localapi"
	"kassa-agent/fiscal"
	"kassa-agent/payments"
	"kassa-agent/queue"
)

// CreateRequest is the body of POST /v1/payments.
type CreateRequest struct {
	Provider string     `json:"provider"`
	Amount   int64      `json:"amount"`   // minor units (kopecks)
	Currency string     `json:"currency"` // ISO 4217, e.g. RUB
	Receipt  *ReceiptIn `json:"receipt,omitempty"`
	// Slip asks, instead of a fiscal receipt, for a non-fiscal slip
	// (provider, amount, ids, time), printed once: for payments in a
	// currency the register cannot fiscalize. The receipt's items still
	// go to the provider's page.
	Slip     bool   `json:"slip,omitempty"`
	OrderRef string `json:"order_ref,omitempty"` // the POS's own reference, echoed back
	// The provider's own fields, under the provider's name; only the
	// chosen provider's may be given.
	Alif     json.RawMessage `json:"alif,omitempty"`
	AliKassa json.RawMessage `json:"alikassa,omitempty"`
}

// options are the chosen provider's own fields; fields given for another
// provider are refused.
func (r CreateRequest) options() (json.RawMessage, error) {
	var out json.RawMessage
	for name, v := range map[string]json.RawMessage{"alif": r.Alif, "alikassa": r.AliKassa} {
		if len(v) == 0 {
			continue
		}
		if name != r.Provider {
			return nil, &payments.FieldError{Field: name, Message: "is for provider " + name + ", not " + r.Provider}
		}
		out = v
	}
	return out, nil
}

// maxAmount keeps sums inside what the register and providers carry (5-byte sums).
const maxAmount = 1<<40 - 1

// Create starts a payment, exactly once per idempotency key. created is false
// when the key was seen before and the stored payment is returned.
func (e *Engine) Create(ctx context.Context, key string, body []byte, req CreateRequest) (p *Payment, created bool, err error) {
	if len(key) == 0 {
		return nil, false, localapi.Errorf("idempotency_key_missing", "send an Idempotency-Key header (a fresh unique value per new payment, the same value when retrying)")
	}
	if len(key) > localapi.MaxIdempotencyKey {
		return nil, false, localapi.Errorf("idempotency_key_invalid", fmt.Sprintf("Idempotency-Key is longer than %d bytes", localapi.MaxIdempotencyKey))
	}
	hash := e.requestHash(key, body, req)

	// A replay is answered before anything else is checked: the first answer
	// stands even if the register has since run out of paper.
	if p, err := e.replay(key, hash[:]); p != nil || err != nil {
		return p, false, err
	}

	rec, err := e.validate(req)
	if err != nil {
		return nil, false, err
	}
	if rec != nil {
		if err := e.o.Register.CheckReceipt(checkable(*rec)); err != nil {
			return nil, false, cannotPrint(err)
		}
		if err := e.registerReady(ctx); err != nil {
			return nil, false, err
		}
	}

	n, err := e.payIDs.Next(ctx)
	if err != nil {
		return nil, false, localapi.Wrap("store_unavailable", "cannot reserve a payment id", err)
	}
	now := e.now()
	prov := e.providers[req.Provider]
	opts, _ := req.options() // checked in validate
	id := fmt.Sprintf("pay_%012d", n)
	if rec != nil {
		// Marked lines: the codes are checked before any money is taken; a
		// refused one refuses the payment while nothing has happened.
		if err := e.checkReceiptCodes(ctx, rec, e.log.With("payment_id", id, "provider", req.Provider)); err != nil {
			return nil, false, err
		}
	}
	p = &Payment{
		ID: id, Provider: req.Provider, State: payments.Committed,
		NextAction: ActionWait, Amount: req.Amount, Currency: req.Currency, OrderRef: req.OrderRef,
		Fiscal: FiscalInfo{State: FiscalNone}, Created: now, Updated: now, Version: 1, Receipt: rec,
		// Our order id, unique across the merchant's tills, is in the record
		// before the provider ever hears of the payment.
		Ref: payments.Ref{OrderID: e.tillID + "-" + id}, OrderID: e.tillID + "-" + id, Options: opts,
	}
	if req.Receipt != nil {
		p.Goods = req.Receipt.goods()
	}
	if req.Slip {
		p.Fiscal.State = FiscalSlipPending
	}
	if prov.needsCode {
		p.State, p.NextAction = payments.Committing, ActionScanCode
	}
	if rec != nil {
		p.Fiscal.State = FiscalPending
	}
	e.ages.born("pay:" + p.ID)

	e.mu.Lock()
	var replayed *Payment
	var attached *codeRecord
	var replaced []*Payment
	err = e.store.Update(ctx, func(tx *queue.Tx) error {
		replayed, attached, replaced = nil, nil, nil
		// The key is checked again inside the transaction: two retries of one
		// request racing must create one payment.
		prev, err := tx.CheckIdempotency(key, hash[:])
		if err != nil && !errors.Is(err, queue.ErrNotFound) {
			return err
		}
		if prev != nil {
			b, err := tx.Get(collPayments, prev.ResourceID)
			if err != nil {
				return err
			}
			replayed, err = unmarshalPayment(b)
			return err
		}
		q := *p
		if prov.needsCode {
			if attached, replaced, err = e.admitNew(tx, &q, now); err != nil {
				return err
			}
		}
		*p = q
		if err := putPayment(tx, p); err != nil {
			return err
		}
		return tx.PutIdempotency(key, queue.IdempotencyRecord{RequestHash: hash[:], ResourceID: p.ID, Status: 201})
	})
	if err == nil {
		for _, o := range replaced {
			e.markInFlight(saleCodes(o.ID, false), whySaleEnd)
			e.forgetPayment(o.ID)
		}
	}
	e.mu.Unlock()
	if err != nil {
		return nil, false, mapStoreErr(err)
	}
	if replayed != nil {
		return replayed, false, nil
	}
	for _, o := range replaced {
		e.paymentLog(o).Info("payment still waiting for a code replaced by a newer one", "newer", p.ID)
		e.publishPayment(o)
		e.poke(o.ID)
	}
	l := e.paymentLog(p)
	l.Info("payment created", "amount", p.Amount, "currency", p.Currency, "receipt", rec != nil, "code_attached", attached != nil)
	e.publishPayment(p)
	e.start(p.ID)
	return p, true, nil
}

func (e *Engine) replay(key string, hash []byte) (*Payment, error) {
	var p *Payment
	err := e.store.View(func(r *queue.ReadTx) error {
		prev, err := r.CheckIdempotency(key, hash)
		if err != nil || prev == nil {
			return err
		}
		b, err := r.Get(collPayments, prev.ResourceID)
		if err != nil {
			return err
		}
		p, err = unmarshalPayment(b)
		return err
	})
	if errors.Is(err, queue.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, mapStoreErr(err)
	}
	return p, nil
}

func mapStoreErr(err error) error {
	var ae *localapi.Error
	if errors.As(err, &ae) {
		return err
	}
	if errors.Is(err, queue.ErrIdempotencyMismatch) {
		return localapi.Wrap("idempotency_key_reused", "this Idempotency-Key was used for a different request; use a new key for a new payment", err)
	}
	return localapi.Wrap("store_unavailable", "the agent could not record the payment; nothing was started", err)
}

// validate checks the request and converts its receipt; nothing is stored yet.
func (e *Engine) validate(req CreateRequest) (*fiscal.Receipt, error) {
	env := checkEnv{providers: map[string]payments.Provider{}, known: map[string]bool{}, register: e.o.Register != nil,
		tax: e.o.TaxSystem, cashier: e.o.Cashier, industry: e.o.Marking.Industry}
	for name, p := range e.providers {
		env.known[name] = true
		if p.Provider != nil {
			env.providers[name] = p.Provider
		}
	}
	return validateRequest(req, env)
}

// checkEnv is what a request is checked against: which parts this agent has.
type checkEnv struct {
	providers map[string]payments.Provider // enabled
	known     map[string]bool              // configured, enabled or not
	register  bool
	tax       fiscal.TaxSystem
	cashier   string
	industry  []fiscal.IndustryRequisite // marking.industry
}

// enabledNames lists the enabled providers, for messages.
func (env checkEnv) enabledNames() string {
	names := make([]string, 0, len(env.providers))
	for n := range env.providers {
		names = append(names, n)
	}
	sort.Strings(names)
	if len(names) == 0 {
		return "none is enabled"
	}
	return strings.Join(names, ", ")
}

func validateRequest(req CreateRequest, env checkEnv) (*fiscal.Receipt, error) {
	bad := func(format string, a ...any) error {
		return localapi.Errorf("validation_failed", fmt.Sprintf(format, a...))
	}
	prov := env.providers[req.Provider]
	switch {
	case req.Provider == "":
		return nil, bad("provider is required: %s", env.enabledNames())
	case prov == nil && env.known[req.Provider]:
		return nil, localapi.Errorf("provider_disabled", fmt.Sprintf("provider %s is not enabled in this agent's configuration ([%s] enabled = true)", req.Provider, req.Provider))
	case prov == nil:
		return nil, bad("provider %q is not known; enabled: %s", req.Provider, env.enabledNames())
	}
	if !payments.Currency(req.Currency).Valid() {
		return nil, bad("currency %q is not one the agent knows (RUB, UZS, BDT)", req.Currency)
	}
	if req.Amount <= 0 {
		return nil, bad("amount must be a positive number of minor units (kopecks, tiyin, paisa): 12345 is 123.45")
	}
	if req.Amount > maxAmount {
		return nil, bad("amount %d is larger than the register and the provider can carry", req.Amount)
	}
	if len(req.OrderRef) > 128 {
		return nil, bad("order_ref is longer than 128 characters")
	}
	opts, err := req.options()
	if err != nil {
		return nil, bad("%v", err)
	}
	order := payments.Order{ID: "check", Amount: payments.Amount{Minor: req.Amount, Currency: payments.Currency(req.Currency)},
		Desc: req.OrderRef, Options: opts}
	if req.Receipt != nil {
		order.Items = req.Receipt.goods()
	}
	if err := prov.Check(order); err != nil {
		return nil, bad("%v", err)
	}
	if req.Slip && !env.register {
		return nil, localapi.Errorf("register_unavailable", "a slip was asked for but no register is configured ([register] enabled = true); no money was taken")
	}
	if req.Receipt == nil || req.Slip {
		return nil, nil
	}
	if req.Currency != string(payments.RUB) {
		return nil, bad("receipt: the register fiscalizes in rubles under 54-FZ; a payment in %s cannot carry a fiscal receipt (send \"slip\": true for a non-fiscal slip)", req.Currency)
	}
	if !env.register {
		return nil, localapi.Errorf("register_unavailable", "a receipt was given but no fiscal register is configured ([register] enabled = true); no money was taken")
	}
	r, err := req.Receipt.toFiscal(env.tax, env.cashier, req.Amount, env.industry)
	if err != nil {
		return nil, bad("%v", err)
	}
	if t := r.Total(); t != req.Amount {
		return nil, bad("receipt total %s does not equal amount %s", kopecks(t), kopecks(req.Amount))
	}
	return &r, nil
}

func kopecks(v int64) string {
	return strconv.FormatInt(v/100, 10) + "." + fmt.Sprintf("%02d", v%100)
}

// registerReady refuses a payment whose receipt could not be printed now.
func (e *Engine) registerReady(ctx context.Context) error {
	return e.readyFor(ctx, "No money was taken")
}

// readyFor asks the register whether it can print a document now; a refusal
// names the state's code and what to do, ending with tail (what was not done).
func (e *Engine) readyFor(ctx context.Context, tail string) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	return readyError(e.o.Register.Ready(ctx), tail)
}

// readyError is the API's answer for err, the register's reason it cannot
// print now (nil: it can): the state's own code and what to do, then tail.
func readyError(err error, tail string) error {
	if err == nil {
		return nil
	}
	var fe *fiscal.Error
	if !errors.As(err, &fe) || fe.Code == fiscal.CodeUnavailable || fe.Code == fiscal.CodeProtocol {
		return localapi.Wrap("register_unavailable", "the fiscal register does not answer ("+err.Error()+"). "+tail, err)
	}
	switch fe.Code {
	case fiscal.CodePaperOut:
		return localapi.Wrap("register_paper_out", "the register is out of paper; load paper and try again. "+tail, err)
	case fiscal.CodeShiftExpired:
		return localapi.Wrap("register_shift_expired", "the shift is over 24 hours: close it with a Z report (POST /v1/shift/close), then try again. "+tail, err)
	case fiscal.CodeShiftClosed:
		return localapi.Wrap("register_shift_closed", "the shift is closed: open one (POST /v1/shift/open), then try again. "+tail, err)
	case fiscal.CodeFNExhausted:
		return localapi.Wrap("register_fn_exhausted", err.Error()+": the fiscal drive makes no more fiscal documents and must be replaced. "+tail, err)
	}
	return localapi.Wrap("register_not_ready", "the register cannot print now: "+err.Error()+". "+tail, err)
}

// Cancel abandons a payment before its amount was released. After release only
// the provider can refuse or revert; the answer is conflict.
func (e *Engine) Cancel(ctx context.Context, id string) (*Payment, error) {
	p, err := e.change(ctx, id, func(p *Payment, tx *queue.Tx) error {
		switch p.State {
		case payments.Canceled:
			return errUnchanged
		case payments.Committing, payments.Committed:
		default:
			return localapi.Errorf("conflict", fmt.Sprintf("payment %s is %s: it can be cancelled only before the amount is released", p.ID, p.State))
		}
		p.State, p.NextAction = payments.Canceled, ActionNone
		p.noReceipt() // no money, no receipt
		return e.cancelPurchase(tx, p, e.now())
	})
	if errors.Is(err, errUnchanged) {
		return e.Get(id)
	}
	if isNoSuchRecord(err) {
		return nil, localapi.Errorf("not_found", "no payment "+id)
	}
	if err != nil {
		return nil, mapStoreErr(err)
	}
	e.paymentLog(p).Info("payment cancelled by the POS")
	e.poke(id)
	return p, nil
}

var errUnchanged = errors.New("unchanged")

// isNoSuchRecord: the id names no record (or could name none: empty, too long).
func isNoSuchRecord(err error) bool {
	return errors.Is(err, queue.ErrNotFound) || errors.Is(err, queue.ErrInvalidName)
}
