package sale

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

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

// drive moves one payment until it is final or the engine stops.
func (e *Engine) drive(ctx context.Context, id string) {
	for ctx.Err() == nil {
		p, err := e.Get(id)
		if err != nil {
			// Never leave a payment without its worker: try again.
			e.log.Error("payment worker cannot read its payment; retrying", "payment_id", id, "err", err)
			if sleep(ctx, time.Second, nil) != nil {
				return
			}
			continue
		}
		switch p.State {
		case payments.Committed, payments.Releasing, payments.Processing:
			if e.o.SmartPay == nil {
				// Switched off with this payment under way: keep it visible and
				// untouched; it resumes when Smart Pay is enabled again.
				e.providerDisabled(ctx, p)
				return
			}
		}
		switch p.State {
		case payments.Committing:
			// Waiting for a scan; a commit or a cancel pokes us.
			if sleep(ctx, time.Minute, e.wakeChan(id)) != nil {
				return
			}
		case payments.Committed:
			e.release(ctx, p)
		case payments.Releasing, payments.Processing:
			e.poll(ctx, p)
		case payments.Paid, payments.Fiscalizing:
			e.fiscalize(ctx, p)
		default:
			return
		}
	}
}

const codeProviderDisabled = "provider_disabled"

// providerDisabled flags a payment whose provider is switched off.
func (e *Engine) providerDisabled(ctx context.Context, p *Payment) {
	if p.Error != nil && p.Error.Code == codeProviderDisabled {
		return
	}
	_, err := e.change(ctx, p.ID, func(q *Payment, tx *queue.Tx) error {
		q.Error = &ErrorInfo{Code: codeProviderDisabled, Message: "Smart Pay is switched off in the configuration while this payment is under way (" +
			string(q.State) + "); nothing more is sent until [smartpay] enabled = true and the agent restarts. Do not take another payment for these goods"}
		return nil
	})
	if err == nil {
		e.paymentLog(p).Error("payment under way but its provider is disabled; it waits until the provider is enabled", "state", p.State)
	}
}

// registerBlocks says why the receipt could not be printed now, or "" when it
// can. No money is taken while it cannot.
func (e *Engine) registerBlocks(ctx context.Context, p *Payment) string {
	if p.Receipt == nil || e.o.Register == nil {
		return ""
	}
	sctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	st, err := e.o.Register.Status(sctx)
	switch {
	case err != nil:
		return "the fiscal register does not answer (" + err.Error() + ")"
	case st.Ready != nil:
		return "the register cannot print now: " + st.Ready.Error()
	}
	return ""
}

// release sends the amount exactly once. The recovery point "releasing" is
// durable before the request leaves; from there on only the status decides.
func (e *Engine) release(ctx context.Context, p *Payment) {
	log := e.paymentLog(p)
	// The buyer may have scanned minutes after the POS asked: look at the
	// register again, and keep the money untouched while it cannot print.
	if why := e.registerBlocks(ctx, p); why != "" {
		log.Warn("not releasing: the receipt could not be printed", "reason", why)
		_, _ = e.change(ctx, p.ID, func(q *Payment, tx *queue.Tx) error {
			if q.State != payments.Committed || (q.Error != nil && q.Error.Message == why+"; no money was taken yet") {
				return errUnchanged
			}
			q.Error = &ErrorInfo{Code: "register_not_ready", Message: why + "; no money was taken yet"}
			return nil
		})
		_ = sleep(ctx, 2*time.Second, e.wakeChan(p.ID))
		return
	}
	abandoned := false
	p, err := e.change(ctx, p.ID, func(q *Payment, tx *queue.Tx) error {
		if q.State != payments.Committed {
			return errUnchanged // cancelled meanwhile
		}
		// The age is checked in the very change that would lead to the
		// release: past abandon_after the buyer has gone, and nothing is
		// released for this payment ever after.
		if e.tooOld(q) {
			abandoned = true
			return e.abandon(tx, q, e.now())
		}
		q.State, q.NextAction, q.Released, q.Error = payments.Releasing, ActionWait, e.now(), nil
		return nil
	})
	if err != nil {
		if !errors.Is(err, errUnchanged) {
			log.Error("cannot record the release recovery point; not releasing", "err", err)
			_ = sleep(ctx, time.Second, nil)
		}
		return
	}
	if abandoned {
		log.Warn("payment did not reach release within abandon_after; cancelled, nothing was charged")
		return
	}
	e.ages.born("rel:" + p.ID)
	for attempt := 0; ; attempt++ {
		st, err := e.o.SmartPay.Release(ctx, p.SmartPay.PurchaseID, p.Amount)
		switch {
		case err == nil:
			e.releaseReturned(p.ID)
			log.Info("amount released", "amount", p.Amount, "provider_status", st.Raw)
			_, _ = e.change(context.WithoutCancel(ctx), p.ID, func(q *Payment, tx *queue.Tx) error {
				if q.State != payments.Releasing {
					return errUnchanged
				}
				q.State = payments.Processing
				q.SmartPay.ProviderStatus = st.Raw
				return nil
			})
			return
		case smartpay.IsUnavailable(err) && ctx.Err() == nil && e.ages.of("rel:"+p.ID, p.Released) < e.o.PollDeadline:
			// Certainly not applied: sending it again is safe.
			log.Warn("release not delivered; sending again", "err", err, "attempt", attempt+1)
			if sleep(ctx, backoff(e.o.PollMin, e.o.PollMax, attempt), nil) != nil {
				return
			}
			continue
		case smartpay.IsAmbiguous(err) || ctx.Err() != nil || smartpay.IsUnavailable(err):
			// No answer is not a "no": never send it again, ask the status.
			// (A request that certainly never left, past the poll deadline,
			// also ends here: the status then says it is still committed.)
			e.releaseReturned(p.ID)
			log.Warn("release outcome unknown; asking the status, never releasing again", "err", err)
			return
		case smartpay.IsCodeRejected(err):
			e.finish(ctx, p, payments.CodeExpired, ActionFreshCode, &ErrorInfo{Code: "code_expired",
				Message: "the buyer's Smart Pay code expired before payment; start a new payment and ask for a fresh code"}, true)
			return
		default:
			e.finish(ctx, p, payments.Failed, ActionSeeCashier, errInfo("release_refused", err), true)
			return
		}
	}
}

// releaseReturned notes (on the monotonic clock) when a release call whose
// status is asked next came back. A refused release is not noted: nothing
// follows it, and the note would never be dropped.
func (e *Engine) releaseReturned(id string) {
	e.mu.Lock()
	e.released[id] = e.clock.Mono()
	e.mu.Unlock()
}

// settled reports whether the wait before cancelling an undelivered release
// is over. It counts from when the release call came back in this process,
// or from this process's start (a release from before a crash died with its
// connection).
func (e *Engine) settled(p *Payment) bool {
	e.mu.Lock()
	from, ok := e.released[p.ID]
	e.mu.Unlock()
	if !ok {
		from = e.bornAt
	}
	return e.clock.Mono()-from >= e.o.SettleBeforeCancel
}

// poll asks the status until the payment is decided.
func (e *Engine) poll(ctx context.Context, p *Payment) {
	log := e.paymentLog(p)
	start := p.Released
	if start.IsZero() {
		start = p.Updated
	}
	age := func() time.Duration { return e.ages.of("rel:"+p.ID, start) }
	delay := e.o.PollMin
	flagged := p.Error != nil && p.Error.Code == "payment_unconfirmed"
	cancelSent := false
	var lastErr error
	defer func() {
		e.mu.Lock()
		delete(e.released, p.ID)
		e.mu.Unlock()
	}()
	for ctx.Err() == nil {
		st, err := e.o.SmartPay.Status(ctx, p.SmartPay.PurchaseID)
		if err != nil {
			if lastErr == nil {
				log.Warn("status poll failed; will keep asking", "err", err)
			}
			lastErr = err
		} else {
			lastErr = nil
			switch st.State {
			case smartpay.StateSuccess:
				e.markPaid(ctx, p, st)
				return
			case smartpay.StateDeclined:
				e.finish(ctx, p, payments.Declined, ActionSeeCashier, &ErrorInfo{Code: "declined", Message: "the payment was declined: " + orDash(st.Reason)}, false)
				return
			case smartpay.StateFailed:
				e.finish(ctx, p, payments.Failed, ActionSeeCashier, &ErrorInfo{Code: "provider_failed", Message: "the provider reports the payment failed: " + orDash(st.Reason)}, false)
				return
			case smartpay.StateExpired:
				e.finish(ctx, p, payments.Expired, ActionSeeCashier, &ErrorInfo{Code: "expired", Message: "the payment expired at the provider before the buyer confirmed it"}, false)
				return
			case smartpay.StateCanceled:
				if cancelSent {
					log.Warn("release did not reach Smart Pay; purchase cancelled, nothing was charged")
					e.finish(ctx, p, payments.Failed, ActionSeeCashier, &ErrorInfo{Code: "release_not_delivered",
						Message: "the amount did not reach Smart Pay and the purchase was cancelled; nothing was charged. Start a new payment"}, false)
				} else {
					e.finish(ctx, p, payments.Canceled, ActionSeeCashier, &ErrorInfo{Code: "canceled_by_provider", Message: "the provider reports the purchase cancelled"}, false)
				}
				return
			case smartpay.StateCommitted:
				// The release did not arrive. Once the connection that carried it
				// is long gone, cancel the purchase: after that no late release
				// can charge the buyer. The status, not the cancel's answer, then
				// says how it ended.
				if p.State == payments.Releasing && !cancelSent && e.settled(p) {
					if err := e.o.SmartPay.Cancel(ctx, p.SmartPay.PurchaseID); err != nil {
						log.Warn("could not cancel a purchase whose release did not arrive; still asking the status", "err", err)
					} else {
						cancelSent = true
						log.Warn("release did not arrive at Smart Pay; purchase cancelled, waiting for the status to say so")
						continue // ask again at once
					}
				}
			case smartpay.StateProcessing:
				if p.State == payments.Releasing {
					p, _ = e.change(ctx, p.ID, func(q *Payment, tx *queue.Tx) error {
						if q.State != payments.Releasing {
							return errUnchanged
						}
						q.State = payments.Processing
						q.SmartPay.ProviderStatus = st.Raw
						return nil
					})
					if p == nil {
						return
					}
				}
			}
		}
		if !flagged && age() > e.o.PollDeadline {
			flagged = true
			log.Warn("payment not confirmed within the deadline; still asking", "deadline", e.o.PollDeadline)
			if q, err := e.change(ctx, p.ID, func(q *Payment, tx *queue.Tx) error {
				q.Error = &ErrorInfo{Code: "payment_unconfirmed", Message: "the provider has not confirmed the payment yet; the agent keeps asking. Ask the buyer to check their bank app; do not take another payment for these goods yet"}
				return nil
			}); err == nil {
				p = q
			}
		}
		d := delay
		if flagged {
			d = e.o.SlowPoll
		}
		if sleep(ctx, d, nil) != nil {
			return
		}
		delay = min(delay*2, e.o.PollMax)
	}
}

func orDash(s string) string {
	if s == "" {
		return "no reason given"
	}
	return s
}

// markPaid records the money as taken and, in the same transaction, the
// confirmation for the provider. The money has moved: the record is made even
// while the agent is stopping.
func (e *Engine) markPaid(ctx context.Context, p *Payment, st smartpay.Status) {
	q, err := e.change(context.WithoutCancel(ctx), p.ID, func(q *Payment, tx *queue.Tx) error {
		if q.State != payments.Releasing && q.State != payments.Processing {
			return errUnchanged
		}
		q.State, q.NextAction, q.Error = payments.Paid, ActionHandOver, nil
		q.SmartPay.ProviderStatus = st.Raw
		return enqueueJSON(tx, KindSmartPayConfirm, q.ID, confirmMsg{PurchaseID: q.SmartPay.PurchaseID})
	})
	if err == nil {
		e.paymentLog(q).Info("payment paid; goods may be handed over")
	}
}

// finish ends a payment in a final state. cancelPurchase also gives the
// purchase back to Smart Pay (through the outbox) when no money moved and the
// service would otherwise keep it committed until it lapses.
func (e *Engine) finish(ctx context.Context, p *Payment, st payments.State, action string, info *ErrorInfo, cancelPurchase bool) {
	q, err := e.change(context.WithoutCancel(ctx), p.ID, func(q *Payment, tx *queue.Tx) error {
		if q.State.Final() || q.State.MoneyTaken() {
			return errUnchanged
		}
		q.State, q.NextAction, q.Error = st, action, info
		if q.Fiscal.State == FiscalPending {
			q.Fiscal.State = FiscalNone // no money, no receipt
		}
		if cancelPurchase {
			return e.cancelPurchase(tx, q, e.now())
		}
		return nil
	})
	if err == nil {
		e.paymentLog(q).Info("payment ended", "state", st, "reason", info.Message)
	}
}

// fiscalize prints the receipt exactly once (the register's journal makes a
// repeat with the same id return the same document), then records the fiscal
// data for the provider in the same transaction as "completed".
func (e *Engine) fiscalize(ctx context.Context, p *Payment) {
	log := e.paymentLog(p)
	if p.Receipt == nil {
		_, _ = e.change(ctx, p.ID, func(q *Payment, tx *queue.Tx) error {
			q.State = payments.Completed
			return nil
		})
		return
	}
	if e.o.Register == nil {
		// The receipt is owed but no register is configured (it was turned
		// off after the money was taken): keep it owed and visible.
		_, _ = e.change(ctx, p.ID, func(q *Payment, tx *queue.Tx) error {
			if q.Fiscal.Error != nil && q.Fiscal.Error.Code == "register_unavailable" {
				return errUnchanged
			}
			q.State, q.Fiscal.State = payments.Paid, FiscalPending
			q.Fiscal.Error = &ErrorInfo{Code: "register_unavailable", Message: "the receipt is owed but no fiscal register is configured; enable [register] and restart"}
			return nil
		})
		log.Error("a receipt is owed but no register is configured")
		_ = sleep(ctx, time.Minute, nil)
		return
	}
	for attempt := 0; ctx.Err() == nil; attempt++ {
		var err error
		p, err = e.change(ctx, p.ID, func(q *Payment, tx *queue.Tx) error {
			q.State = payments.Fiscalizing
			q.Fiscal.Attempts++
			return nil
		})
		if err != nil {
			log.Error("cannot record the printing recovery point", "err", err)
			if sleep(ctx, time.Second, nil) != nil {
				return
			}
			continue
		}
		doc, err := e.o.Register.PrintReceipt(ctx, p.ID, *p.Receipt)
		if err == nil {
			// The receipt exists now: record it even while the agent is stopping.
			q, err := e.change(context.WithoutCancel(ctx), p.ID, func(q *Payment, tx *queue.Tx) error {
				q.State, q.NextAction = payments.Completed, ActionHandOver
				q.Fiscal = FiscalInfo{State: FiscalPrinted, Document: &doc, Attempts: q.Fiscal.Attempts}
				return enqueueJSON(tx, KindSmartPayFiscal, q.ID, fiscalMsg{PaymentID: q.ID})
			})
			if err == nil {
				e.paymentLog(q).Info("receipt printed", "fd", doc.FD, "fn", doc.FNNumber, "recovered", doc.Recovered)
				return
			}
			log.Error("receipt printed but not yet recorded; retrying the record (printing again returns the same document)", "err", err, "fd", doc.FD)
		} else {
			log.Error("receipt not printed; the payment stays paid and the receipt is retried", "err", err, "attempt", attempt+1)
			code := "register_error"
			var c interface{ ErrorCode() string }
			if errors.As(err, &c) {
				code = c.ErrorCode()
			}
			_, _ = e.change(ctx, p.ID, func(q *Payment, tx *queue.Tx) error {
				q.State = payments.Paid
				q.Fiscal.State = FiscalPending
				q.Fiscal.Error = errInfo(code, err)
				return nil
			})
		}
		if sleep(ctx, backoff(e.o.FiscalRetryMin, e.o.FiscalRetryMax, attempt), e.wakeChan(p.ID)) != nil {
			return
		}
	}
}

// backoff doubles from base to limit.
func backoff(base, limit time.Duration, attempt int) time.Duration {
	d := base
	for i := 0; i < attempt && d < limit; i++ {
		d *= 2
	}
	return min(d, limit)
}

// Outbox handlers. A definite refusal parks the message (a technician sees it);
// anything else is retried with backoff.
func deliveryErr(err error) error {
	if err == nil {
		return nil
	}
	if smartpay.IsRejected(err) {
		return queue.Permanent(err)
	}
	return err
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
