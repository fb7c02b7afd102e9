package sale

// Refunds of agent payments: at the provider, through its contract (only a
// provider that implements payments.Refunder can), then a return receipt
// (payments in rubles with a fiscal receipt) or a refund slip (payments that
// had a slip), exactly once at both ends. A refund is an operation like a
// receipt: durable, keyed by the POS's Idempotency-Key, fed to the provider
// and the register by the same worker, resumed after a crash from its
// recovery point.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"kassa-agent/agent/internal/localapi"
	"kassa-agent/fiscal"
	"kassa-agent/payments"
	"kassa-agent/queue"
)

// RefundRequest is the body of POST /v1/payments/{id}/refunds.
type RefundRequest struct {
	// Amount to give back, minor units; 0 means what is left.
	Amount int64 `json:"amount,omitempty"`
}

// PaymentRefund is a refund as the payment shows it.
type PaymentRefund struct {
	ID     string `json:"id"` // the operation: GET /v1/refunds/{id}
	Amount int64  `json:"amount"`
	State  string `json:"state"`
}

// CreateRefund stores a refund of payment id exactly once per key.
func (e *Engine) CreateRefund(ctx context.Context, key, id string, req RefundRequest) (*Operation, bool, error) {
	hash, err := canonicalHash("refund", struct {
		Payment string
		RefundRequest
	}{id, req})
	if err != nil {
		return nil, false, localapi.Wrap("bad_request", "the refund cannot be read", err)
	}
	if op, err := e.replayOp(key, hash); op != nil || err != nil {
		return op, false, err
	}
	p, err := e.Get(id)
	if isNoSuchRecord(err) {
		return nil, false, localapi.Errorf("not_found", "no payment "+id)
	}
	if err != nil {
		return nil, false, mapStoreErr(err)
	}
	if p.State != payments.Completed {
		return nil, false, localapi.Errorf("conflict", fmt.Sprintf("payment %s is %s: only a completed payment can be refunded", p.ID, p.State))
	}
	prov := e.providers[p.Provider]
	if prov == nil || prov.Provider == nil {
		return nil, false, localapi.Errorf("provider_disabled", "provider "+p.Provider+" is not enabled in this agent's configuration")
	}
	rf, ok := prov.Provider.(payments.Refunder)
	if !ok {
		return nil, false, localapi.Errorf("refund_not_supported", p.Provider+" publishes no refund: return the money to the buyer another way, then print the return receipt with POST /v1/receipts (\"type\": \"sale_return\")")
	}
	left := p.Amount
	for _, r := range p.Refunds {
		if r.State != OpFailed {
			left -= r.Amount
		}
	}
	amount := req.Amount
	if amount == 0 {
		amount = left
	}
	switch {
	case amount < 0 || amount > left:
		return nil, false, localapi.Errorf("validation_failed", fmt.Sprintf("amount must be from 1 to %d (what is left to refund of the payment)", left))
	case left == 0:
		return nil, false, localapi.Errorf("conflict", "payment "+p.ID+" is refunded in full already")
	case rf.FullRefundOnly() && amount != p.Amount:
		return nil, false, localapi.Errorf("validation_failed", fmt.Sprintf("amount: %s refunds the whole payment only (%d)", p.Provider, p.Amount))
	}
	if p.Receipt != nil || p.Fiscal.State == FiscalSlipPrinted {
		if err := e.registerReady(ctx); err != nil {
			return nil, false, err
		}
	}
	op, err := e.newOp(ctx, "refund")
	if err != nil {
		return nil, false, err
	}
	op.Refund = &RefundInfo{PaymentID: p.ID, Amount: amount, Currency: p.Currency}
	if p.Receipt != nil {
		// The return receipt: the payment's lines, paid back electronically.
		if amount != p.Amount {
			return nil, false, localapi.Errorf("validation_failed", "amount: a part refund of a payment with a fiscal receipt needs the returned lines; refund the whole payment, or print the return receipt with POST /v1/receipts")
		}
		ret := returned(*p.Receipt)
		ret.Payments = []fiscal.Payment{{Kind: fiscal.Electronic, Amount: amount}}
		// The codes are checked for the return before the money goes back.
		if err := e.checkReceiptCodes(ctx, &ret, e.log.With("op_id", op.ID, "payment_id", p.ID)); err != nil {
			return nil, false, err
		}
		op.request = &ret
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	replayed, err := e.storeOp(ctx, key, hash, op, func(tx *queue.Tx) error {
		q, err := getPayment(tx, p.ID)
		if err != nil {
			return err
		}
		q.Refunds = append(q.Refunds, PaymentRefund{ID: op.ID, Amount: amount, State: OpQueued})
		return touchPayment(tx, q, op.Created)
	})
	if replayed != nil || err != nil {
		return replayed, false, err
	}
	e.paymentLog(p).Info("refund queued", "op_id", op.ID, "amount", amount)
	e.hub.Publish("refund", op)
	e.pokeOps()
	return op, true, nil
}

// setRefundState records a refund's state on its operation and on its
// payment, in one transaction.
func (e *Engine) setRefundState(ctx context.Context, op *Operation, fn func(q *Operation)) (*Operation, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out *Operation
	now := e.now()
	err := e.store.Update(ctx, func(tx *queue.Tx) error {
		b, err := tx.Get(collOps, op.ID)
		if err != nil {
			return err
		}
		q, err := decodeOp(b)
		if err != nil {
			return err
		}
		fn(q)
		q.Version++
		q.Updated = now
		out = q
		if err := putOp(tx, q); err != nil {
			return err
		}
		p, err := getPayment(tx, q.Refund.PaymentID)
		if err != nil {
			return err
		}
		for i := range p.Refunds {
			if p.Refunds[i].ID == q.ID {
				p.Refunds[i].State = q.State
			}
		}
		return touchPayment(tx, p, now)
	})
	if err != nil {
		return nil, err
	}
	e.hub.Publish("refund", out)
	return out, nil
}

// runRefund makes one attempt at a refund; it reports whether it is settled.
func (e *Engine) runRefund(ctx context.Context, op *Operation) bool {
	log := e.log.With("op_id", op.ID, "kind", op.Kind, "payment_id", op.Refund.PaymentID)
	p, err := e.Get(op.Refund.PaymentID)
	if err != nil {
		log.Error("refund of a payment that cannot be read", "err", err)
		return false
	}
	switch op.State {
	case OpQueued, OpRefunding:
		prov := e.providers[p.Provider]
		var rf payments.Refunder
		if prov != nil && prov.Provider != nil {
			rf, _ = prov.Provider.(payments.Refunder)
		}
		if rf == nil {
			_, _ = e.setRefundState(ctx, op, func(q *Operation) {
				q.Error = &ErrorInfo{Code: codeProviderDisabled, Message: "provider " + p.Provider + " is switched off; the refund waits until it is enabled"}
			})
			return false
		}
		// Recovery point: from here the refund may be applied. The
		// provider's Refund reads the status first, so asking again after
		// a crash or a lost answer never refunds twice.
		if op, err = e.setRefundState(ctx, op, func(q *Operation) { q.State = OpRefunding; q.Attempts++ }); err != nil {
			return false
		}
		st, err := rf.Refund(ctx, p.Ref, payments.Amount{Minor: op.Refund.Amount, Currency: payments.Currency(p.Currency)})
		switch {
		case err == nil:
			op, err = e.setRefundState(context.WithoutCancel(ctx), op, func(q *Operation) {
				q.State, q.Error, q.Refund.ProviderStatus = OpRefunded, nil, st.Raw
			})
			if err != nil {
				return false
			}
			log.Info("refunded at the provider", "provider_status", st.Raw)
		case errors.Is(err, payments.ErrRejected):
			_, _ = e.setRefundState(context.WithoutCancel(ctx), op, func(q *Operation) {
				q.State, q.Error = OpFailed, errInfo("refund_refused", err)
			})
			log.Warn("the provider refused the refund; nothing was given back", "err", err)
			return true
		default:
			_, _ = e.setRefundState(context.WithoutCancel(ctx), op, func(q *Operation) { q.Error = errInfo("refund_unanswered", err) })
			log.Warn("refund outcome unknown; asking again (the provider's status decides, nothing is refunded twice)", "err", err)
			return false
		}
		fallthrough
	case OpRefunded:
		return e.refundReceipt(ctx, op, p)
	}
	return true
}

// refundReceipt prints what the refund leaves on paper: the return receipt
// (exactly once: the register's journal is keyed by the operation id) or a
// refund slip (at most once).
func (e *Engine) refundReceipt(ctx context.Context, op *Operation, p *Payment) bool {
	switch {
	case op.request != nil:
		log := e.log.With("op_id", op.ID, "payment_id", p.ID)
		doc, err := e.printReceipt(ctx, op.ID, *op.request, op.Attempts > 0, func(r fiscal.Receipt) error {
			q, err := e.setRefundState(ctx, op, func(q *Operation) { q.request = &r; q.Attempts++ })
			if err != nil {
				return errNoPoint
			}
			op = q
			return nil
		}, log)
		if err != nil {
			code := errCode(err)
			_, _ = e.setRefundState(context.WithoutCancel(ctx), op, func(q *Operation) { q.Error = errInfo(code, err) })
			return false
		}
		_, err = e.setRefundState(context.WithoutCancel(ctx), op, func(q *Operation) {
			q.State, q.Error, q.Receipt = OpDone, nil, &ReceiptResult{Document: doc}
		})
		return err == nil
	case p.Fiscal.State == FiscalSlipPrinted && !op.Refund.SlipPrinted:
		// Marked first: a slip is not a fiscal document, and one lost in a
		// crash is better than one printed twice.
		op, err := e.setRefundState(ctx, op, func(q *Operation) { q.Refund.SlipPrinted = true })
		if err != nil {
			return false
		}
		amount := payments.Amount{Minor: op.Refund.Amount, Currency: payments.Currency(p.Currency)}
		lines := []string{"NOT A FISCAL RECEIPT", "REFUND " + p.Provider, "Amount " + amount.String(), "Order " + p.Ref.OrderID,
			"Provider id " + p.Ref.ProviderID, "Time " + e.now().In(time.Local).Format("2006-01-02 15:04")}
		perr := e.o.Register.PrintText(ctx, lines)
		_, _ = e.setRefundState(context.WithoutCancel(ctx), op, func(q *Operation) {
			q.State = OpDone
			if perr != nil {
				q.Error = errInfo("slip_not_printed", perr)
			}
		})
		return true
	}
	_, err := e.setRefundState(context.WithoutCancel(ctx), op, func(q *Operation) { q.State = OpDone })
	return err == nil
}
