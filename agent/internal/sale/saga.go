package sale

// The payment saga, one for every provider:
//
//	committing (waiting for the buyer's code: providers that need one)
//	→ committed (ready to charge)
//	→ releasing (recovery point: the charge is on the wire)
//	→ processing (the buyer pays: in the bank app, or on the provider's page)
//	→ paid → fiscalizing → completed
//
// plus the failure states. It drives a provider only through payments.Provider
// and the optional interfaces, and never names one.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"kassa-agent/fiscal"
	"kassa-agent/payments"
	"kassa-agent/queue"
)

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
		prov := e.providers[p.Provider]
		switch p.State {
		case payments.Committed, payments.Releasing, payments.Processing:
			if prov == nil || prov.Provider == nil {
				// Switched off with this payment under way: keep it visible and
				// untouched; it resumes when the provider is enabled again.
				e.providerDisabled(ctx, p)
				return
			}
			if p.Error != nil && p.Error.Code == codeProviderDisabled {
				e.clearError(ctx, p, codeProviderDisabled)
			}
		}
		switch p.State {
		case payments.Committing:
			// Waiting for the buyer's code; a commit or a cancel pokes us.
			if sleep(ctx, time.Minute, e.wakeChan(id)) != nil {
				return
			}
			continue
		case payments.Committed:
			e.charge(ctx, prov, p)
		case payments.Releasing, payments.Processing:
			e.poll(ctx, prov, p)
		case payments.Paid, payments.Fiscalizing:
			e.fiscalize(ctx, prov, p)
		default:
			return
		}
		// A step that changed nothing is not run again at once: whatever
		// made it return early, the till must not ask the provider or the
		// register in a tight loop.
		if q, err := e.Get(id); err == nil && q.Version == p.Version {
			if sleep(ctx, e.o.PollMin, e.wakeChan(id)) != nil {
				return
			}
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
		q.Error = &ErrorInfo{Code: codeProviderDisabled, Message: "provider " + q.Provider + " is switched off in the configuration while this payment is under way (" +
			string(q.State) + "); nothing more is sent until [" + q.Provider + "] enabled = true and the agent restarts. Do not take another payment for these goods"}
		return nil
	})
	if err == nil {
		e.paymentLog(p).Error("payment under way but its provider is disabled; it waits until the provider is enabled", "state", p.State)
	}
}

// clearError drops an error of the given code that no longer applies.
func (e *Engine) clearError(ctx context.Context, p *Payment, code string) {
	if q, err := e.change(ctx, p.ID, func(q *Payment, tx *queue.Tx) error {
		if q.Error == nil || q.Error.Code != code {
			return errUnchanged
		}
		q.Error = nil
		return nil
	}); err == nil {
		*p = *q
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

// order is what the provider is asked to charge.
func (p *Payment) order() payments.Order {
	o := payments.Order{ID: p.Ref.OrderID, Amount: payments.Amount{Minor: p.Amount, Currency: payments.Currency(p.Currency)},
		ProviderID: p.Ref.ProviderID, Desc: p.OrderRef, Options: p.Options}
	o.Items = p.Goods
	if o.Items == nil && p.Receipt != nil { // records of earlier versions
		for _, it := range p.Receipt.Items {
			o.Items = append(o.Items, payments.Item{Name: it.Name, Price: it.Price, Quantity: it.Quantity / 1000})
		}
	}
	return o
}

// charge asks the provider to take the money exactly once. The recovery point
// "releasing" is durable before the request leaves; from there on only the
// status decides.
func (e *Engine) charge(ctx context.Context, prov *provider, p *Payment) {
	log := e.paymentLog(p)
	// The buyer may have scanned minutes after the POS asked: look at the
	// register again, and keep the money untouched while it cannot print.
	if why := e.registerBlocks(ctx, p); why != "" {
		log.Warn("not charging: the receipt could not be printed", "reason", why)
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
		// charge: past abandon_after the buyer has gone, and nothing is
		// charged for this payment ever after.
		if e.tooOld(q) {
			abandoned = true
			return e.abandon(tx, q, e.now())
		}
		q.State, q.NextAction, q.Released, q.Error = payments.Releasing, ActionWait, e.now(), nil
		return nil
	})
	if err != nil {
		if !errors.Is(err, errUnchanged) {
			log.Error("cannot record the charge's recovery point; not charging", "err", err)
			_ = sleep(ctx, time.Second, nil)
		}
		return
	}
	if abandoned {
		log.Warn("payment did not reach its charge within abandon_after; cancelled, nothing was charged")
		return
	}
	e.ages.born("rel:" + p.ID)
	for attempt := 0; ; attempt++ {
		ref, err := prov.Create(ctx, p.order())
		switch {
		case err == nil:
			e.releaseReturned(p.ID)
			log.Info("charge sent", "amount", p.Amount, "provider_id", ref.ProviderID)
			q, err := e.change(context.WithoutCancel(ctx), p.ID, func(q *Payment, tx *queue.Tx) error {
				if q.State != payments.Releasing {
					return errUnchanged
				}
				q.State = payments.Processing
				if err := e.setRef(tx, q, ref); err != nil {
					return err
				}
				if ref.CheckoutURL != "" {
					q.NextAction = ActionShowURL
				}
				return nil
			})
			if err == nil && q.CheckoutURL != "" {
				e.paymentLog(q).Info("payment page ready for the buyer", "expires_at", q.CheckoutExpiresAt)
			}
			return
		case errors.Is(err, payments.ErrUnavailable) && ctx.Err() == nil && e.ages.of("rel:"+p.ID, p.Released) < e.o.PollDeadline:
			// Certainly not applied: sending it again is safe.
			log.Warn("charge not delivered; sending again", "err", err, "attempt", attempt+1)
			if sleep(ctx, backoff(e.o.PollMin, e.o.PollMax, attempt), nil) != nil {
				return
			}
			continue
		case errors.Is(err, payments.ErrAmbiguous) || ctx.Err() != nil || errors.Is(err, payments.ErrUnavailable):
			// No answer is not a "no": never send it again, ask the status.
			// (A request that certainly never left, past the poll deadline,
			// also ends here: the status then says nothing was charged.)
			e.releaseReturned(p.ID)
			log.Warn("charge outcome unknown; asking the status, never charging again", "err", err)
			return
		case errors.Is(err, payments.ErrLapsed):
			e.finish(ctx, p, payments.CodeExpired, ActionFreshCode, &ErrorInfo{Code: "code_expired",
				Message: "the buyer's code expired before payment; start a new payment and ask for a fresh code"}, true)
			return
		default:
			e.finish(ctx, p, payments.Failed, ActionSeeCashier, chargeRefused(err), true)
			return
		}
	}
}

// chargeRefused is the error of a charge the provider refused.
func chargeRefused(err error) *ErrorInfo {
	var fe *payments.FieldError
	if errors.As(err, &fe) {
		return &ErrorInfo{Code: "release_refused", Message: "the provider refused the payment: " + fe.Error()}
	}
	return errInfo("release_refused", err)
}

// setRef stores what the provider answered, and indexes the payment by the
// provider's id so a notification finds it at once.
func (e *Engine) setRef(tx *queue.Tx, p *Payment, ref payments.Ref) error {
	if ref.OrderID == "" {
		ref.OrderID = p.Ref.OrderID
	}
	p.Ref, p.ProviderPaymentID = ref, ref.ProviderID
	p.CheckoutURL, p.QRText, p.CheckoutExpiresAt = ref.CheckoutURL, ref.QRText, ref.ExpiresAt
	if ref.ProviderID == "" {
		return nil
	}
	return tx.Put(collProviderIndex, p.Provider+":"+ref.ProviderID, []byte(p.ID))
}

// releaseReturned notes (on the monotonic clock) when a charge call whose
// status is asked next came back. A refused charge is not noted: nothing
// follows it, and the note would never be dropped.
func (e *Engine) releaseReturned(id string) {
	e.mu.Lock()
	e.released[id] = e.clock.Mono()
	e.mu.Unlock()
}

// settled reports whether the wait before cancelling an undelivered charge
// is over. It counts from when the charge call came back in this process,
// or from this process's start (a call from before a crash died with its
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

// poll asks the status until the payment is decided. A poke (a verified
// notification, a cancel) makes it ask at once.
func (e *Engine) poll(ctx context.Context, prov *provider, p *Payment) {
	log := e.paymentLog(p)
	start := p.Released
	if start.IsZero() {
		start = p.Updated
	}
	age := func() time.Duration { return e.ages.of("rel:"+p.ID, start) }
	// The first question comes poll_min after the charge, then one every
	// poll cap (under a second): the cashier learns of the buyer's payment
	// within a second, at about 1.25 questions a second.
	delay := prov.pollCap(e.o.PollMax)
	flagged := p.Error != nil && p.Error.Code == "payment_unconfirmed"
	cancelSent := false
	var lastErr error
	defer func() {
		e.mu.Lock()
		delete(e.released, p.ID)
		e.mu.Unlock()
	}()
	// A charge that has just been answered is not asked about at once: it
	// has only begun. After a restart the status is asked straight away.
	e.mu.Lock()
	_, fresh := e.released[p.ID]
	e.mu.Unlock()
	if fresh && p.State == payments.Processing && sleep(ctx, e.o.PollMin, e.wakeChan(p.ID)) != nil {
		return
	}
	for ctx.Err() == nil {
		if p.Ref.ProviderID == "" && !e.findOrder(ctx, prov, p) {
			return
		}
		st, err := prov.Status(ctx, p.Ref)
		if err != nil {
			if lastErr == nil {
				log.Warn("status poll failed; will keep asking", "err", err)
			}
			lastErr = err
		} else {
			lastErr = nil
			switch st.State {
			case payments.Paid:
				e.markPaid(ctx, prov, p, st)
				return
			case payments.Declined:
				if st.Retry && e.now().Before(p.CheckoutExpiresAt) {
					// The page stays open: the buyer may pay with another
					// card. Ending the payment now would miss that payment.
					if p.Error == nil || p.Error.Code != "declined_retry" {
						if q, err := e.change(ctx, p.ID, func(q *Payment, tx *queue.Tx) error {
							q.Error = &ErrorInfo{Code: "declined_retry", Message: "the buyer's payment was declined (" + orDash(st.Reason) +
								"); they may try another card on the same page until " + p.CheckoutExpiresAt.Local().Format("15:04") + ". The agent keeps watching it; do not take another payment for these goods meanwhile"}
							return nil
						}); err == nil {
							p = q
						}
					}
					break
				}
				e.finish(ctx, p, payments.Declined, ActionSeeCashier, &ErrorInfo{Code: "declined", Message: "the payment was declined: " + orDash(st.Reason)}, false)
				return
			case payments.Failed:
				info := &ErrorInfo{Code: "provider_failed", Message: "the provider reports the payment failed: " + orDash(st.Reason)}
				if st.Partial {
					info = &ErrorInfo{Code: "partially_paid", Message: fmt.Sprintf("the buyer paid %s of %s; the payment is not complete and no receipt is printed. Settle the difference with the buyer and the provider",
						st.Paid, payments.Amount{Minor: p.Amount, Currency: payments.Currency(p.Currency)})}
				}
				e.finish(ctx, p, payments.Failed, ActionSeeCashier, info, false)
				return
			case payments.Expired:
				e.finish(ctx, p, payments.Expired, ActionSeeCashier, &ErrorInfo{Code: "expired", Message: "the payment expired at the provider before the buyer paid"}, false)
				return
			case payments.Canceled:
				if cancelSent {
					log.Warn("the charge did not reach the provider; payment cancelled there, nothing was charged")
					e.finish(ctx, p, payments.Failed, ActionSeeCashier, &ErrorInfo{Code: "release_not_delivered",
						Message: "the amount did not reach the provider and the purchase was cancelled; nothing was charged. Start a new payment"}, false)
				} else {
					e.finish(ctx, p, payments.Canceled, ActionSeeCashier, &ErrorInfo{Code: "canceled_by_provider", Message: "the provider reports the purchase cancelled"}, false)
				}
				return
			case payments.Committed:
				// The charge did not arrive. Once the connection that carried
				// it is long gone, cancel the purchase: after that no late
				// charge can take the buyer's money. The status, not the
				// cancel's answer, then says how it ended.
				c, ok := prov.Provider.(payments.Canceler)
				if p.State == payments.Releasing && ok && !cancelSent && e.settled(p) {
					if err := c.Cancel(ctx, p.Ref); err != nil {
						log.Warn("could not cancel a purchase whose charge did not arrive; still asking the status", "err", err)
					} else {
						cancelSent = true
						log.Warn("the charge did not arrive at the provider; purchase cancelled, waiting for the status to say so")
						continue // ask again at once
					}
				}
			case payments.Processing:
				if p.State == payments.Releasing || (p.ProviderStatus() != st.Raw && st.Raw != "") {
					p, _ = e.change(ctx, p.ID, func(q *Payment, tx *queue.Tx) error {
						if q.State != payments.Releasing && q.State != payments.Processing {
							return errUnchanged
						}
						q.State = payments.Processing
						q.setProviderStatus(st.Raw)
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
				q.Error = &ErrorInfo{Code: "payment_unconfirmed", Message: "the provider has not confirmed the payment yet; the agent keeps asking. Ask the buyer to check their payment app; do not take another payment for these goods yet"}
				return nil
			}); err == nil {
				p = q
			}
		}
		d := delay
		if flagged {
			d = e.o.SlowPoll
		}
		if sleep(ctx, d, e.wakeChan(p.ID)) != nil {
			return
		}
	}
}

// pollCap is the longest wait between two status questions for p.
func (p *provider) pollCap(def time.Duration) time.Duration {
	if p.pollMax > 0 {
		return p.pollMax
	}
	return def
}

// findOrder learns the provider's id of a payment whose create answer was
// lost. With a Finder the provider is asked by our order id: found, the
// payment goes on; not there (after the settle wait), it is created again,
// which the order id makes safe. Without one the payment page never reached
// the buyer, so nothing can have been paid on it: the payment ends, and a
// new one is a new order. It reports whether polling can go on.
func (e *Engine) findOrder(ctx context.Context, prov *provider, p *Payment) bool {
	f, ok := prov.Provider.(payments.Finder)
	if !ok {
		e.finish(ctx, p, payments.Failed, ActionSeeCashier, &ErrorInfo{Code: "create_unanswered",
			Message: "the provider did not answer the creation of the payment; its page never reached the buyer, so nothing was charged. Start a new payment"}, false)
		return false
	}
	ref, _, err := f.Find(ctx, p.Ref.OrderID)
	switch {
	case err == nil:
		// Found: the payment goes on with the provider's id. (The status may
		// have moved it to processing already, by our order id alone.)
		q, err := e.change(ctx, p.ID, func(q *Payment, tx *queue.Tx) error {
			if q.State != payments.Releasing && q.State != payments.Processing {
				return errUnchanged
			}
			q.State = payments.Processing
			if ref.CheckoutURL != "" {
				q.NextAction = ActionShowURL
			}
			return e.setRef(tx, q, ref)
		})
		if err != nil {
			return errors.Is(err, errUnchanged) && !p.State.Final()
		}
		*p = *q
		e.paymentLog(p).Info("payment whose create answer was lost found at the provider by its order id", "provider_id", ref.ProviderID)
		return true
	case errors.Is(err, payments.ErrNotFound) && e.settled(p):
		_, _ = e.change(ctx, p.ID, func(q *Payment, tx *queue.Tx) error {
			if q.State != payments.Releasing {
				return errUnchanged
			}
			q.State = payments.Committed
			return nil
		})
		e.paymentLog(p).Warn("the provider has no payment under this order id: it was never created; creating it now")
		return false
	}
	_ = sleep(ctx, e.o.PollMin, e.wakeChan(p.ID))
	return true
}

func orDash(s string) string {
	if s == "" {
		return "no reason given"
	}
	return s
}

// markPaid records the money as taken and, in the same transaction, what the
// provider wants told (its paid hook). The money has moved: the record is
// made even while the agent is stopping.
func (e *Engine) markPaid(ctx context.Context, prov *provider, p *Payment, st payments.Status) {
	q, err := e.change(context.WithoutCancel(ctx), p.ID, func(q *Payment, tx *queue.Tx) error {
		if q.State != payments.Releasing && q.State != payments.Processing {
			return errUnchanged
		}
		q.State, q.NextAction, q.Error = payments.Paid, ActionHandOver, nil
		q.setProviderStatus(st.Raw)
		if prov.onPaid != nil {
			return prov.onPaid(tx, q)
		}
		return nil
	})
	if err == nil {
		e.paymentLog(q).Info("payment paid; goods may be handed over")
	}
}

// finish ends a payment in a final state. cancelPurchase also gives the
// purchase back to the provider (through the outbox) when no money moved and
// the provider would otherwise keep it until it lapses.
func (e *Engine) finish(ctx context.Context, p *Payment, st payments.State, action string, info *ErrorInfo, cancelPurchase bool) {
	q, err := e.change(context.WithoutCancel(ctx), p.ID, func(q *Payment, tx *queue.Tx) error {
		if q.State.Final() || q.State.MoneyTaken() {
			return errUnchanged
		}
		q.State, q.NextAction, q.Error = st, action, info
		q.noReceipt() // no money, no receipt
		if cancelPurchase {
			return e.cancelPurchase(tx, q, e.now())
		}
		return nil
	})
	if err == nil {
		e.paymentLog(q).Info("payment ended", "state", st, "reason", info.Message)
	}
}

// recheckPaid asks once more, right before printing, whether the money is
// still there (a hosted page's payment can be reverted). It reports whether
// to print now; a status that cannot be read does not stop the receipt of a
// payment the provider already confirmed.
func (e *Engine) recheckPaid(ctx context.Context, prov *provider, p *Payment) bool {
	if !prov.hostedPage || p.Fiscal.Attempts > 0 {
		return true
	}
	st, err := prov.Status(ctx, p.Ref)
	if err != nil || st.State == payments.Paid || st.State == payments.Processing {
		return true
	}
	e.paymentLog(p).Error("the provider no longer reports the payment paid; the receipt is held for a person", "provider_status", st.Raw)
	_, _ = e.change(ctx, p.ID, func(q *Payment, tx *queue.Tx) error {
		q.Fiscal.State = FiscalPending
		q.Fiscal.Error = &ErrorInfo{Code: "payment_reverted", Message: "the provider reports the payment as " + st.Raw + " after confirming it; the receipt is not printed. Check the payment with the provider"}
		q.Fiscal.Attempts++
		return nil
	})
	return false
}

// fiscalize prints the receipt exactly once (the register's journal makes a
// repeat with the same id return the same document), then records what the
// provider wants told (its receipt hook) in the same transaction as "completed".
func (e *Engine) fiscalize(ctx context.Context, prov *provider, p *Payment) {
	log := e.paymentLog(p)
	switch p.Fiscal.State {
	case FiscalSlipPending, FiscalSlipPrinting:
		e.printSlip(ctx, p)
		return
	}
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
	if prov != nil && prov.Provider != nil && !e.recheckPaid(ctx, prov, p) {
		_ = sleep(ctx, time.Minute, e.wakeChan(p.ID))
		return
	}
	for attempt := 0; ctx.Err() == nil; attempt++ {
		resumed := p.Fiscal.Attempts > 0
		doc, err := e.printReceipt(ctx, p.ID, *p.Receipt, resumed, func(r fiscal.Receipt) error {
			q, err := e.change(ctx, p.ID, func(q *Payment, tx *queue.Tx) error {
				q.State, q.Receipt = payments.Fiscalizing, &r
				q.Fiscal.Attempts++
				return nil
			})
			if err != nil {
				log.Error("cannot record the printing recovery point", "err", err)
				return errNoPoint
			}
			p = q
			return nil
		}, log)
		if errors.Is(err, errNoPoint) {
			if sleep(ctx, time.Second, nil) != nil {
				return
			}
			continue
		}
		if err == nil {
			// The receipt exists now: record it even while the agent is stopping.
			q, err := e.change(context.WithoutCancel(ctx), p.ID, func(q *Payment, tx *queue.Tx) error {
				q.State, q.NextAction = payments.Completed, ActionHandOver
				q.Fiscal = FiscalInfo{State: FiscalPrinted, Document: &doc, Attempts: q.Fiscal.Attempts}
				if prov != nil && prov.onReceipt != nil {
					return prov.onReceipt(tx, q)
				}
				return nil
			})
			if err == nil {
				e.paymentLog(q).Info("receipt printed", "fd", doc.FD, "fn", doc.FNNumber, "recovered", doc.Recovered)
				return
			}
			log.Error("receipt printed but not yet recorded; retrying the record (printing again returns the same document)", "err", err, "fd", doc.FD)
		} else {
			log.Error("receipt not printed; the payment stays paid and the receipt is retried", "err", err, "attempt", attempt+1)
			code := errCode(err)
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

// printSlip prints a payment's non-fiscal slip at most once: "printing" is
// recorded before the first line goes out, and a slip found "printing" after
// a crash is not printed again (the cashier is told to check).
func (e *Engine) printSlip(ctx context.Context, p *Payment) {
	if p.Fiscal.State == FiscalSlipPrinting {
		_, _ = e.change(context.WithoutCancel(ctx), p.ID, func(q *Payment, tx *queue.Tx) error {
			q.State, q.Fiscal.State = payments.Completed, FiscalSlipPrinted
			q.Fiscal.Error = &ErrorInfo{Code: "slip_unconfirmed", Message: "the agent stopped while the slip was printing; it is not printed again. Check the register's paper"}
			return nil
		})
		return
	}
	if e.o.Register == nil {
		_ = sleep(ctx, time.Minute, nil)
		return
	}
	q, err := e.change(ctx, p.ID, func(q *Payment, tx *queue.Tx) error {
		q.Fiscal.State = FiscalSlipPrinting
		q.Fiscal.Attempts++
		return nil
	})
	if err != nil {
		_ = sleep(ctx, time.Second, nil)
		return
	}
	amount := payments.Amount{Minor: q.Amount, Currency: payments.Currency(q.Currency)}
	lines := []string{"NOT A FISCAL RECEIPT", "Payment " + q.Provider, "Amount " + amount.String(),
		"Order " + q.Ref.OrderID, "Provider id " + q.Ref.ProviderID, "Time " + q.Updated.In(time.Local).Format("2006-01-02 15:04")}
	err = e.o.Register.PrintText(ctx, lines)
	_, _ = e.change(context.WithoutCancel(ctx), p.ID, func(q *Payment, tx *queue.Tx) error {
		q.State, q.Fiscal.State, q.NextAction = payments.Completed, FiscalSlipPrinted, ActionHandOver
		if err != nil {
			q.Fiscal.Error = errInfo("slip_not_printed", err)
		}
		return nil
	})
	if err != nil {
		e.paymentLog(p).Warn("the payment's slip did not print; it is not tried again (it is not a fiscal document)", "err", err)
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

// deliveryErr: a definite refusal parks the message (a technician sees it);
// anything else is retried with backoff.
func deliveryErr(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, payments.ErrRejected) {
		return queue.Permanent(err)
	}
	return err
}
