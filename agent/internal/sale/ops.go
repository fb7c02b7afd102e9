package sale

// Fiscal operations the POS asks for directly (the agent owns the register's
// port, so the POS cannot reach it any other way): receipts for money taken
// outside the agent, to begin with. Each operation is a durable resource: its
// request, its recovery point and its result are in the store, so a retry
// with the same Idempotency-Key — after a timeout, a crash or a restart — gets
// the same result and never prints again. One worker feeds the register, in
// the order the POS asked; the register's journal makes each document
// exactly-once (the operation id is its key).

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"kassa-agent/agent/internal/localapi"
	"kassa-agent/fiscal"
	"kassa-agent/queue"
)

const collOps = "fiscal_operations"

// collOpsOpen indexes the operations not yet settled (id → nothing), so the
// register's worker finds its next one without reading the settled ones a
// till keeps for weeks. putOp keeps it in the same transaction as the
// operation; indexOpenOps rebuilds it for a store written before it existed.
const collOpsOpen = "fiscal_operations_open"

// opOpen: the worker still has something to do for an operation in state.
func opOpen(state string) bool {
	switch state {
	case OpQueued, OpPrinting, OpRefunding, OpRefunded:
		return true
	}
	return false
}

// Operation states.
const (
	OpQueued   = "queued"   // stored; the register has not been asked yet (or it could not print: error says why; retried)
	OpPrinting = "printing" // recovery point: the register may have the document
	OpDone     = "done"     // the document exists; result below
	OpFailed   = "failed"   // the register refused it; nothing was printed
	// A refund's own steps: the provider is being asked (recovery point:
	// the refund may be applied; asking again reads its status first), and
	// the provider has given the money back (the return receipt or slip is
	// next).
	OpRefunding = "refunding"
	OpRefunded  = "refunded"
)

// Operation is a fiscal operation the POS asked for: the resource it sees and
// the record the store keeps.
type Operation struct {
	ID      string         `json:"id"`
	Kind    string         `json:"kind"` // receipt, refund
	State   string         `json:"state"`
	Receipt *ReceiptResult `json:"receipt,omitempty"`
	Refund  *RefundInfo    `json:"refund,omitempty"`
	// Document is what a register operation made (shift open, Z, cash in or
	// out, a correction); Recovery what recovering the register found.
	Document *fiscal.Document `json:"document,omitempty"`
	Recovery *RecoveryAnswer  `json:"recovery,omitempty"`
	Error    *ErrorInfo       `json:"error,omitempty"`
	Attempts int              `json:"attempts,omitempty"`
	Created  time.Time        `json:"created_at"`
	Updated  time.Time        `json:"updated_at"`
	Version  uint64           `json:"version"`

	request  *fiscal.Receipt
	args     json.RawMessage // a register operation's request
	progress int             // a print's parts already on the tape (its lines, then its QR code)
}

// ReceiptResult is what a printed receipt left: the FN's document and the
// change the register gave from cash.
type ReceiptResult struct {
	Document fiscal.Document `json:"document"`
	Change   int64           `json:"change"`
}

// RefundInfo is a refund of an agent payment: at the provider, then a return
// receipt (a payment in rubles) or a slip (a payment that had one).
type RefundInfo struct {
	PaymentID      string `json:"payment_id"`
	Amount         int64  `json:"amount"`
	Currency       string `json:"currency"`
	ProviderStatus string `json:"provider_status,omitempty"`
	SlipPrinted    bool   `json:"slip_printed,omitempty"`
}

type storedOp struct {
	Operation
	Request  *fiscal.Receipt `json:"request,omitempty"`
	Args     json.RawMessage `json:"args,omitempty"`
	Progress int             `json:"progress,omitempty"`
}

func putOp(tx *queue.Tx, op *Operation) error {
	b, err := json.Marshal(storedOp{Operation: *op, Request: op.request, Args: op.args, Progress: op.progress})
	if err != nil {
		return err
	}
	if err := tx.Put(collOps, op.ID, b); err != nil {
		return err
	}
	if opOpen(op.State) {
		return tx.Put(collOpsOpen, op.ID, nil)
	}
	return tx.Delete(collOpsOpen, op.ID)
}

func decodeOp(b []byte) (*Operation, error) {
	var s storedOp
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("decode operation: %w", err)
	}
	op := s.Operation
	op.request, op.args, op.progress = s.Request, s.Args, s.Progress
	return &op, nil
}

// PaymentsIn is how a receipt was paid, in minor units per kind. Change is
// given from cash only.
type PaymentsIn struct {
	Cash          int64 `json:"cash,omitempty"`
	Electronic    int64 `json:"electronic,omitempty"`
	Prepayment    int64 `json:"prepayment,omitempty"`
	Credit        int64 `json:"credit,omitempty"`
	Consideration int64 `json:"consideration,omitempty"`
}

// ReceiptRequest is the body of POST /v1/receipts: a receipt for money the POS
// took itself (cash, a card terminal, a mix).
type ReceiptRequest struct {
	Receipt  ReceiptIn  `json:"receipt"`
	Payments PaymentsIn `json:"payments"`
}

// fiscalPayments checks the split against the total and turns it into the
// register's payment sums.
func (p PaymentsIn) fiscalPayments(total int64) ([]fiscal.Payment, error) {
	kinds := []struct {
		field string
		v     int64
		kind  fiscal.PaymentKind
	}{{"cash", p.Cash, fiscal.Cash}, {"electronic", p.Electronic, fiscal.Electronic}, {"prepayment", p.Prepayment, fiscal.Prepayment},
		{"credit", p.Credit, fiscal.Credit}, {"consideration", p.Consideration, fiscal.Consideration}}
	var out []fiscal.Payment
	var others int64
	for _, k := range kinds {
		if k.v < 0 || k.v > maxAmount {
			return nil, fmt.Errorf("payments.%s must be from 0 to %d minor units", k.field, int64(maxAmount))
		}
		if k.v > 0 {
			out = append(out, fiscal.Payment{Kind: k.kind, Amount: k.v})
		}
		if k.kind != fiscal.Cash {
			others += k.v
		}
	}
	switch {
	case len(out) == 0:
		return nil, errors.New("payments: say how the receipt was paid (cash, electronic, prepayment, credit, consideration)")
	case others > total:
		return nil, fmt.Errorf("payments: the non-cash payments (%s) exceed the total %s; change is given from cash only", kopecks(others), kopecks(total))
	case p.Cash+others < total:
		return nil, fmt.Errorf("payments: %s paid is less than the total %s", kopecks(p.Cash+others), kopecks(total))
	}
	return out, nil
}

// CreateReceipt stores a receipt operation exactly once per idempotency key
// and hands it to the register's worker. created is false for a replay.
func (e *Engine) CreateReceipt(ctx context.Context, key string, req ReceiptRequest) (*Operation, bool, error) {
	if len(key) > localapi.MaxIdempotencyKey {
		return nil, false, localapi.Errorf("idempotency_key_invalid", fmt.Sprintf("Idempotency-Key is longer than %d bytes", localapi.MaxIdempotencyKey))
	}
	hash, err := canonicalHash("receipt", req)
	if err != nil {
		return nil, false, localapi.Wrap("bad_request", "the receipt cannot be read", err)
	}
	if op, err := e.replayOp(key, hash); op != nil || err != nil {
		return op, false, err
	}
	if e.o.Register == nil {
		return nil, false, localapi.Errorf("register_unavailable", "no fiscal register is configured ([register] enabled = true)")
	}
	bad := func(err error) error { return localapi.Errorf("validation_failed", err.Error()) }
	var total int64
	for _, it := range req.Receipt.Items {
		total += fiscal.Item{Quantity: it.quantity(), Price: it.Price}.Sum()
	}
	pays, err := req.Payments.fiscalPayments(total)
	if err != nil {
		return nil, false, bad(err)
	}
	r, err := req.Receipt.convert(receiptOptions{tax: e.o.TaxSystem, cashier: e.o.Cashier, payments: pays,
		types: AllReceiptTypes, at: e.now(), industry: e.o.Marking.Industry})
	if err != nil {
		return nil, false, bad(err)
	}
	if err := e.o.Register.CheckReceipt(checkable(r)); err != nil {
		return nil, false, cannotPrint(err)
	}
	// Behind other operations the receipt meets the register as they leave
	// it (a shift open sent just before), so it is judged there, not now.
	if !e.queuedAhead() {
		if err := e.readyFor(ctx, "Nothing was sent"); err != nil {
			return nil, false, err
		}
	}
	op, err := e.newOp(ctx, "receipt")
	if err != nil {
		return nil, false, err
	}
	// Marked lines are checked now, so a code that may not be sold is refused
	// while nothing is stored; the worker prints with the accepted codes (or
	// checks them again if the FN no longer holds them).
	if err := e.checkReceiptCodes(ctx, &r, e.log.With("op_id", op.ID)); err != nil {
		return nil, false, err
	}
	op.request = &r
	if replayed, err := e.storeOp(ctx, key, hash, op, nil); replayed != nil || err != nil {
		return replayed, false, err
	}
	e.log.Info("receipt operation queued", "op_id", op.ID, "type", r.Type, "total", kopecks(r.Total()))
	e.hub.Publish("receipt", op)
	e.pokeOps()
	return op, true, nil
}

// newOp makes a queued operation with a fresh id.
func (e *Engine) newOp(ctx context.Context, kind string) (*Operation, error) {
	n, err := e.opIDs.Next(ctx)
	if err != nil {
		return nil, localapi.Wrap("store_unavailable", "cannot reserve an operation id", err)
	}
	now := e.now()
	return &Operation{ID: fmt.Sprintf("op_%012d", n), Kind: kind, State: OpQueued, Created: now, Updated: now, Version: 1}, nil
}

// storeOp writes op and its idempotency record in one transaction, with
// whatever also does there; the key is checked again inside it, so two
// racing retries make one operation. A key that already names an operation
// returns that one (replayed) and writes nothing.
func (e *Engine) storeOp(ctx context.Context, key string, hash []byte, op *Operation, also func(tx *queue.Tx) error) (replayed *Operation, err error) {
	err = e.store.Update(ctx, func(tx *queue.Tx) error {
		replayed = nil
		prev, err := tx.CheckIdempotency(key, hash)
		if err != nil && !errors.Is(err, queue.ErrNotFound) {
			return err
		}
		if prev != nil {
			b, err := tx.Get(collOps, prev.ResourceID)
			if err != nil {
				return err
			}
			replayed, err = decodeOp(b)
			return err
		}
		if also != nil {
			if err := also(tx); err != nil {
				return err
			}
		}
		if err := putOp(tx, op); err != nil {
			return err
		}
		return tx.PutIdempotency(key, queue.IdempotencyRecord{RequestHash: hash, ResourceID: op.ID, Status: 201})
	})
	if err != nil {
		return nil, mapStoreErr(err)
	}
	return replayed, nil
}

func (e *Engine) replayOp(key string, hash []byte) (*Operation, error) {
	var op *Operation
	err := e.store.View(func(r *queue.ReadTx) error {
		prev, err := r.CheckIdempotency(key, hash)
		if err != nil || prev == nil {
			return err
		}
		b, err := r.Get(collOps, prev.ResourceID)
		if err != nil {
			return err
		}
		op, err = decodeOp(b)
		return err
	})
	if errors.Is(err, queue.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, mapStoreErr(err)
	}
	return op, nil
}

// GetOp returns an operation.
func (e *Engine) GetOp(id string) (*Operation, error) {
	var op *Operation
	err := e.store.View(func(r *queue.ReadTx) error {
		b, err := r.Get(collOps, id)
		if err != nil {
			return err
		}
		op, err = decodeOp(b)
		return err
	})
	return op, err
}

// ListOps returns operations after the one named by after, oldest first.
func (e *Engine) ListOps(after string, limit int) ([]*Operation, error) {
	var out []*Operation
	err := e.store.View(func(r *queue.ReadTx) error {
		return r.Scan(collOps, queue.ScanOptions{After: after, Limit: limit}, func(id string, v []byte) error {
			op, err := decodeOp(v)
			if err != nil {
				return err
			}
			out = append(out, op)
			return nil
		})
	})
	return out, err
}

func (e *Engine) pokeOps() {
	select {
	case e.opsWake <- struct{}{}:
	default:
	}
}

// changeOp applies fn to the stored operation and publishes it.
func (e *Engine) changeOp(ctx context.Context, id string, fn func(op *Operation) error) (*Operation, error) {
	var out *Operation
	err := e.store.Update(ctx, func(tx *queue.Tx) error {
		b, err := tx.Get(collOps, id)
		if err != nil {
			return err
		}
		op, err := decodeOp(b)
		if err != nil {
			return err
		}
		if err := fn(op); err != nil {
			return err
		}
		op.Version++
		op.Updated = e.now()
		out = op
		return putOp(tx, op)
	})
	if err != nil {
		return nil, err
	}
	e.hub.Publish("receipt", out)
	return out, nil
}

// markPrinting records an operation's recovery point: from here the
// register may have its document.
func (e *Engine) markPrinting(ctx context.Context, id string) (*Operation, error) {
	return e.changeOp(ctx, id, func(q *Operation) error {
		q.State = OpPrinting
		q.Attempts++
		return nil
	})
}

// runOps is the worker that feeds the register the POS's operations, oldest
// first, until ctx ends. An operation the register cannot take now (paper,
// link) stays queued with the reason and is tried again with backoff; one it
// refuses fails; one interrupted by a crash is resumed with the same id, so
// the register's journal returns the document it already made.
func (e *Engine) runOps(ctx context.Context) {
	for ctx.Err() == nil {
		err := e.indexOpenOps(ctx)
		if err == nil {
			break
		}
		e.log.Error("cannot index the queued fiscal operations; retrying", "err", err)
		if sleep(ctx, time.Second, nil) != nil {
			return
		}
	}
	for attempt := 0; ctx.Err() == nil; {
		op, err := e.nextOp()
		if err != nil {
			e.log.Error("cannot read the queued fiscal operations; retrying", "err", err)
		}
		if op == nil {
			if sleep(ctx, time.Minute, e.opsWake) != nil {
				return
			}
			continue
		}
		if e.runOp(ctx, op) {
			attempt = 0
			continue
		}
		if sleep(ctx, backoff(e.o.FiscalRetryMin, e.o.FiscalRetryMax, attempt), e.opsWake) != nil {
			return
		}
		attempt++
	}
}

// nextOp is the oldest operation not yet done or failed.
func (e *Engine) nextOp() (*Operation, error) {
	var op *Operation
	err := e.store.View(func(r *queue.ReadTx) error {
		return r.Scan(collOpsOpen, queue.ScanOptions{}, func(id string, _ []byte) error {
			v, err := r.Get(collOps, id)
			if errors.Is(err, queue.ErrNotFound) {
				return nil
			}
			if err != nil {
				return err
			}
			o, err := decodeOp(v)
			if err != nil {
				e.log.Error("unreadable fiscal operation skipped; a technician must look at it", "op_id", id, "err", err)
				return nil
			}
			if opOpen(o.State) {
				op = o
				return errStop
			}
			return nil
		})
	})
	if errors.Is(err, errStop) {
		err = nil
	}
	return op, err
}

// queuedAhead: an operation is queued that the register has not settled, so
// a new one will meet the register as that one leaves it. A store that
// cannot be read counts as queued: the register then judges the operation.
func (e *Engine) queuedAhead() bool {
	ahead, err := e.nextOp()
	return err != nil || ahead != nil
}

// indexOpenOps brings the open-operations index up to date with the
// operations themselves: once when the worker starts, for a store whose
// operations were written before the index existed (or by a newer agent
// that was rolled back). An unreadable operation is left out; nextOp logs it.
func (e *Engine) indexOpenOps(ctx context.Context) error {
	return e.store.Update(ctx, func(tx *queue.Tx) error {
		return reindex(tx, collOps, collOpsOpen, func(_ string, v []byte) (bool, error) {
			o, err := decodeOp(v)
			return err == nil && opOpen(o.State), nil
		})
	})
}

// reindex makes index (ids of coll whose record is open) agree with coll.
func reindex(tx *queue.Tx, coll, index string, open func(id string, v []byte) (bool, error)) error {
	want := map[string]bool{}
	if err := tx.ForEach(coll, func(id string, v []byte) error {
		ok, err := open(id, v)
		if ok {
			want[id] = true
		}
		return err
	}); err != nil {
		return err
	}
	var stale []string
	if err := tx.ForEach(index, func(id string, _ []byte) error {
		if !want[id] {
			stale = append(stale, id)
		}
		delete(want, id)
		return nil
	}); err != nil {
		return err
	}
	for _, id := range stale {
		if err := tx.Delete(index, id); err != nil {
			return err
		}
	}
	for id := range want {
		if err := tx.Put(index, id, nil); err != nil {
			return err
		}
	}
	return nil
}

// runOp makes one attempt at op; it reports whether op is settled (done or failed).
func (e *Engine) runOp(ctx context.Context, op *Operation) bool {
	switch op.Kind {
	case "refund":
		return e.runRefund(ctx, op)
	case "receipt":
	default:
		return e.runRegisterOp(ctx, op)
	}
	log := e.log.With("op_id", op.ID, "kind", op.Kind)
	if op.request == nil {
		_, _ = e.changeOp(context.WithoutCancel(ctx), op.ID, func(q *Operation) error {
			q.State, q.Error = OpFailed, &ErrorInfo{Code: "internal", Message: "the operation's request is missing from the store"}
			return nil
		})
		return true
	}
	// The recovery point is the journal's Begin, which also marks the
	// operation printing and counts the attempt (journal.go); Finish records
	// it done. A marked receipt's check results are stored with its request
	// first, so an attempt after a crash sends the same lines.
	resumed := op.Attempts > 0
	doc, err := e.printReceipt(ctx, op.ID, *op.request, resumed, func(r fiscal.Receipt) error {
		if !hasMarked(r) {
			return nil
		}
		var err error
		op, err = e.changeOp(ctx, op.ID, func(q *Operation) error {
			q.request = &r
			return nil
		})
		if err != nil {
			log.Error("cannot record the receipt's marking checks", "err", err)
			return errNoPoint
		}
		return nil
	}, log)
	if errors.Is(err, errNoPoint) {
		return false
	}
	if err == nil {
		res := receiptResult(op.request, doc)
		// The document exists: record it even while the agent is stopping.
		// Finish usually has, in its own transaction; a document settled
		// from an earlier attempt's journal entry has not.
		if _, err := e.changeOp(context.WithoutCancel(ctx), op.ID, func(q *Operation) error {
			if q.State == OpDone && q.Receipt != nil && sameDocument(q.Receipt.Document, doc) {
				return errUnchanged
			}
			q.State, q.Receipt, q.Error = OpDone, res, nil
			return nil
		}); errors.Is(err, errUnchanged) {
			if op, gerr := e.GetOp(op.ID); gerr == nil {
				e.hub.Publish("receipt", op)
			}
		} else if err != nil {
			log.Error("receipt printed but not yet recorded; retrying (printing again returns the same document)", "err", err, "fd", doc.FD)
			return false
		}
		log.Info("receipt printed", "fd", doc.FD, "fp", doc.FP, "recovered", doc.Recovered)
		return true
	}
	code, permanent := "register_error", false
	var fe *fiscal.Error
	var ae *localapi.Error
	switch {
	case errors.As(err, &ae):
		// The marking flow's refusals: nothing was printed.
		code, permanent = ae.Code, !ae.Retryable
	case errors.As(err, &fe):
		code = fe.Code
		permanent = fe.Code == fiscal.CodeBadReceipt || cashierMustAct(fe.Code)
	}
	_, _ = e.changeOp(context.WithoutCancel(ctx), op.ID, func(q *Operation) error {
		q.State, q.Error = OpQueued, errInfo(code, err)
		if cashierMustAct(code) {
			q.Error.Message = mustActMessage(code, err)
		}
		if permanent {
			q.State = OpFailed
		}
		return nil
	})
	if permanent {
		log.Warn("the register refused the receipt; nothing was printed: print it again with a new Idempotency-Key once the register can", "err", err)
		return true
	}
	log.Warn("receipt not printed yet; it stays queued and is retried", "err", err)
	return false
}

// receiptResult is what a printed receipt leaves: the document and the change
// given from cash.
func receiptResult(r *fiscal.Receipt, doc fiscal.Document) *ReceiptResult {
	var paid int64
	for _, p := range r.Payments {
		paid += p.Amount
	}
	return &ReceiptResult{Document: doc, Change: paid - r.Total()}
}

// sameDocument: the stored result names the document the register returned.
func sameDocument(a, b fiscal.Document) bool {
	return a.FD == b.FD && a.FP == b.FP && a.FNNumber == b.FNNumber && a.RegNumber == b.RegNumber &&
		a.Shift == b.Shift && a.ReceiptNumber == b.ReceiptNumber && a.QR == b.QR
}

// canonicalHash binds an Idempotency-Key to a request's meaning (the decoded
// request encoded again), scoped by the kind of request.
func canonicalHash(scope string, v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	h := sha256.Sum256(append([]byte("kassa-agent/"+scope+"/v1\n"), b...))
	return h[:], nil
}
