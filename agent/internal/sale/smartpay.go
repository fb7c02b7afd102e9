package sale

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"kassa-agent/payments"
	"kassa-agent/payments/smartpay"
	"kassa-agent/queue"
)

// cancelMsg cancels a purchase at Smart Pay. A code whose purchase id never
// reached us carries only its kassa_purchase_id: the handler names the
// purchase by committing the same code with the same id again (which names
// the same purchase), then cancels it.
type cancelMsg struct {
	PurchaseID      string `json:"purchase_id,omitempty"`
	KassaPurchaseID string `json:"kassa_purchase_id,omitempty"`
}

type confirmMsg struct {
	PurchaseID string `json:"purchase_id"`
}

// fiscalMsg asks for the receipt's fiscal data to be stored at Smart Pay. The
// data is read from the payment at delivery, so a technician's retry after the
// register's identity became known sends the full data. (Messages written by
// earlier versions carry the data itself; the payment is read for them too,
// since their key is the payment id.)
type fiscalMsg struct {
	PaymentID string `json:"payment_id"`
}

// SmartPay is the part of the Smart Pay client the engine uses.
type SmartPay interface {
	Commit(ctx context.Context, code, kassaPurchaseID string) (string, error)
	Release(ctx context.Context, purchaseID string, amount int64) (smartpay.Status, error)
	Status(ctx context.Context, purchaseID string) (smartpay.Status, error)
	Confirm(ctx context.Context, purchaseID string) error
	Fiscal(ctx context.Context, d smartpay.FiscalData) error
	Cancel(ctx context.Context, purchaseID string) error
}

// Outbox message kinds the engine sends and handles.
const (
	KindSmartPayConfirm = "smartpay.confirm"
	KindSmartPayFiscal  = "smartpay.fiscal"
	KindSmartPayCancel  = "smartpay.cancel"
)

// smartPay is Smart Pay seen through the provider contract. Its charge is the
// release of a code committed at the scan (the purchase id is known before
// the charge); its scan-and-commit rules are in codes.go.
type smartPay struct{ c SmartPay }

// ProviderSmartPay is Smart Pay's name: the POS's provider value, its
// config section, the prefix of its outbox kinds.
const ProviderSmartPay = "smartpay"

func (smartPay) Name() string { return ProviderSmartPay }

func (smartPay) Check(o payments.Order) error {
	if o.Amount.Currency != payments.RUB {
		return &payments.FieldError{Field: "currency", Message: "must be \"RUB\" for Smart Pay"}
	}
	if len(o.Options) > 0 && string(o.Options) != "null" {
		return &payments.FieldError{Field: "smartpay", Message: "Smart Pay takes no options"}
	}
	return nil
}

func (s smartPay) Create(ctx context.Context, o payments.Order) (payments.Ref, error) {
	_, err := s.c.Release(ctx, o.ProviderID, o.Amount.Minor)
	return payments.Ref{OrderID: o.ID, ProviderID: o.ProviderID}, err
}

func (s smartPay) Status(ctx context.Context, r payments.Ref) (payments.Status, error) {
	st, err := s.c.Status(ctx, r.ProviderID)
	if err != nil {
		return payments.Status{}, err
	}
	out := payments.Status{Raw: st.Raw, Reason: st.Reason, State: payments.Processing}
	switch st.State {
	case smartpay.StateCommitted:
		out.State = payments.Committed
	case smartpay.StateSuccess:
		out.State = payments.Paid
	case smartpay.StateDeclined:
		out.State = payments.Declined
	case smartpay.StateFailed:
		out.State = payments.Failed
	case smartpay.StateExpired:
		out.State = payments.Expired
	case smartpay.StateCanceled:
		out.State = payments.Canceled
	}
	return out, nil
}

func (s smartPay) Cancel(ctx context.Context, r payments.Ref) error {
	return s.c.Cancel(ctx, r.ProviderID)
}

// smartPayProvider is Smart Pay as the saga drives it: a code attaches before
// the charge; the confirmation goes with "paid", the fiscal data with
// "completed", a cancel marks the code. The hooks work with Smart Pay
// switched off too (the messages then wait in the outbox).
func (e *Engine) smartPayProvider() *provider {
	p := &provider{needsCode: true,
		onPaid: func(tx *queue.Tx, q *Payment) error {
			return enqueueJSON(tx, KindSmartPayConfirm, q.ID, confirmMsg{PurchaseID: q.Ref.ProviderID})
		},
		onReceipt: func(tx *queue.Tx, q *Payment) error {
			return enqueueJSON(tx, KindSmartPayFiscal, q.ID, fiscalMsg{PaymentID: q.ID})
		},
		onCancel: e.cancelSmartPayPurchase,
		handlers: map[string]queue.Handler{
			KindSmartPayConfirm: e.handleConfirm,
			KindSmartPayFiscal:  e.handleFiscal,
			KindSmartPayCancel:  e.handleCancel,
		},
	}
	if e.o.SmartPay != nil {
		p.Provider = smartPay{c: e.o.SmartPay}
	}
	return p
}

// errProviderDisabled keeps a message waiting while Smart Pay is switched off.
var errProviderDisabled = errors.New("the smartpay provider is disabled in the configuration; the message is delivered once [smartpay] enabled = true")

// repeatDone: a call that the wire file says is answered 409 when it repeats
// one already applied (an earlier attempt's answer was lost) is done.
func repeatDone(m queue.Message, err error) bool {
	return m.Attempts > 0 && smartpay.IsAlreadyDone(err)
}

func (e *Engine) handleConfirm(ctx context.Context, m queue.Message) error {
	var c confirmMsg
	if err := json.Unmarshal(m.Payload, &c); err != nil {
		return queue.Permanent(fmt.Errorf("bad confirm message: %w", err))
	}
	if e.o.SmartPay == nil {
		return errProviderDisabled
	}
	err := e.o.SmartPay.Confirm(ctx, c.PurchaseID)
	if repeatDone(m, err) {
		e.log.Info("Smart Pay confirm was applied by an earlier attempt", "payment_id", m.Key, "purchase_id", c.PurchaseID, "message_id", m.ID)
		return nil
	}
	if err == nil {
		e.log.Info("Smart Pay confirm delivered", "payment_id", m.Key, "purchase_id", c.PurchaseID, "message_id", m.ID)
	}
	return deliveryErr(err)
}

func (e *Engine) handleFiscal(ctx context.Context, m queue.Message) error {
	if e.o.SmartPay == nil {
		return errProviderDisabled
	}
	fd, err := e.fiscalData(ctx, m.Key)
	if err != nil {
		return err
	}
	err = e.o.SmartPay.Fiscal(ctx, fd)
	if repeatDone(m, err) {
		e.log.Info("Smart Pay fiscal data was stored by an earlier attempt", "payment_id", m.Key, "purchase_id", fd.PurchaseID, "message_id", m.ID)
		return nil
	}
	if err == nil {
		e.log.Info("Smart Pay fiscal data delivered", "payment_id", m.Key, "purchase_id", fd.PurchaseID, "fd", fd.FDNumber, "message_id", m.ID)
	}
	return deliveryErr(err)
}

// errIdentityUnknown keeps a fiscal submission pending (and visible) until the
// register's identity is known.
var errIdentityUnknown = errors.New("the receipt's registration number or fiscal drive number is not known yet; the submission waits until the register answers")

// fiscalData builds the submission from the payment's printed document. A
// document recorded without the register's registration number or fiscal
// drive number (the register did not answer for them) is completed from the
// register now, if the register still runs on the fiscal drive that made it;
// until then the submission stays pending. A submission is never sent with
// an empty field.
func (e *Engine) fiscalData(ctx context.Context, id string) (smartpay.FiscalData, error) {
	p, err := e.Get(id)
	if err != nil {
		if isNoSuchRecord(err) {
			return smartpay.FiscalData{}, queue.Permanent(fmt.Errorf("fiscal submission for payment %s: no such payment", id))
		}
		return smartpay.FiscalData{}, err
	}
	doc := p.Fiscal.Document
	if p.SmartPay == nil || doc == nil {
		return smartpay.FiscalData{}, queue.Permanent(fmt.Errorf("fiscal submission for payment %s: the payment has no printed receipt", id))
	}
	if doc.RegNumber == "" || doc.FNNumber == "" {
		if e.o.Register == nil {
			return smartpay.FiscalData{}, errIdentityUnknown
		}
		id0, err := e.o.Register.Identity(ctx)
		if err != nil {
			return smartpay.FiscalData{}, fmt.Errorf("%w: %w", errIdentityUnknown, err)
		}
		if doc.FNNumber != "" && id0.FNNumber != doc.FNNumber {
			return smartpay.FiscalData{}, queue.Permanent(fmt.Errorf("the receipt (FD %d) lacks the register's registration number and the register now runs on another fiscal drive; a technician must look at it", doc.FD))
		}
		if id0.RegNumber == "" || id0.FNNumber == "" {
			return smartpay.FiscalData{}, errIdentityUnknown
		}
		fill := *doc
		fill.RegNumber, fill.FNNumber = id0.RegNumber, id0.FNNumber
		if _, err := e.change(ctx, id, func(q *Payment, tx *queue.Tx) error {
			q.Fiscal.Document = &fill
			return nil
		}); err != nil {
			return smartpay.FiscalData{}, err
		}
		doc = &fill
		e.log.Info("receipt's register identity completed from the register", "payment_id", id, "fd", doc.FD)
	}
	if doc.FP == 0 || doc.FD == 0 {
		return smartpay.FiscalData{}, queue.Permanent(fmt.Errorf("the receipt of payment %s has no fiscal sign or document number", id))
	}
	return smartpay.FiscalData{PurchaseID: p.SmartPay.PurchaseID, KKTRegNumber: doc.RegNumber,
		FiscalSign: strconv.FormatUint(uint64(doc.FP), 10), FNNumber: doc.FNNumber, FDNumber: doc.FD,
		ReceiptTime: doc.Time, Amount: doc.Total}, nil
}

func (e *Engine) handleCancel(ctx context.Context, m queue.Message) error {
	var c cancelMsg
	if err := json.Unmarshal(m.Payload, &c); err != nil {
		return queue.Permanent(fmt.Errorf("bad cancel message: %w", err))
	}
	if e.o.SmartPay == nil {
		return errProviderDisabled
	}
	if c.PurchaseID == "" {
		pid, done, err := e.namePurchase(ctx, c.KassaPurchaseID)
		if done || err != nil {
			return err
		}
		c.PurchaseID = pid
	}
	err := e.o.SmartPay.Cancel(ctx, c.PurchaseID)
	if smartpay.IsNotFound(err) || smartpay.IsConflict(err) || smartpay.IsCodeRejected(err) {
		// Unknown, already cancelled, released or lapsed: nothing left to
		// cancel, and nothing for a technician to do.
		e.log.Info("Smart Pay cancel not needed", "key", m.Key, "purchase_id", c.PurchaseID, "err", err)
		return nil
	}
	if err == nil {
		e.log.Info("Smart Pay purchase cancelled", "key", m.Key, "purchase_id", c.PurchaseID)
	}
	return deliveryErr(err)
}

// namePurchase learns the purchase id of a code whose commit answer was lost,
// by committing the same code with the same kassa_purchase_id again (which
// names the same purchase). done: there is nothing to cancel.
func (e *Engine) namePurchase(ctx context.Context, kpID string) (pid string, done bool, err error) {
	var rec *codeRecord
	err = e.store.View(func(r *queue.ReadTx) error {
		var err error
		rec, err = getCode(r, kpID)
		return err
	})
	if isNoSuchRecord(err) {
		e.log.Warn("cancel of a Smart Pay code whose record is gone; it lapses at Smart Pay by itself", "kassa_purchase_id", kpID)
		return "", true, nil
	}
	if err != nil {
		return "", false, err
	}
	if rec.PurchaseID != "" {
		return rec.PurchaseID, false, nil
	}
	pid, err = e.o.SmartPay.Commit(ctx, rec.Code, kpID)
	switch {
	case err == nil:
		return pid, false, nil
	case smartpay.IsCodeRejected(err):
		e.log.Info("Smart Pay code to cancel is unknown or lapsed there: nothing to cancel", "kassa_purchase_id", kpID)
		return "", true, nil
	case smartpay.IsConflict(err):
		// No release was ever sent for it, so nothing can be charged; it
		// lapses at Smart Pay by itself.
		e.log.Warn("Smart Pay will not name the purchase of a code to cancel; nothing was released for it and it lapses there by itself", "kassa_purchase_id", kpID, "err", err)
		return "", true, nil
	}
	return "", false, deliveryErr(err)
}
