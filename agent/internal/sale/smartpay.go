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

// ScanEvent is published for every code the scanner reads. The text of a Smart
// Pay code is the buyer's payment token: it is not published, only that one was read.
type ScanEvent struct {
	Source   string    `json:"source"` // serial or api
	At       time.Time `json:"at"`
	SmartPay bool      `json:"smartpay"`
	Text     string    `json:"text,omitempty"` // other codes (goods, marking, loyalty): the text as read
	// KassaPurchaseID names the commit a Smart Pay scan started.
	KassaPurchaseID string `json:"kassa_purchase_id,omitempty"`
}

// CommitEvent reports the outcome of a Smart Pay commit.
type CommitEvent struct {
	KassaPurchaseID string `json:"kassa_purchase_id"`
	State           string `json:"state"` // held, used, rejected
	PaymentID       string `json:"payment_id,omitempty"`
	Error           string `json:"error,omitempty"`
}

// OnScan takes a code from the scanner (or the POS) and returns once a Smart
// Pay code's commit has been answered and recorded.
func (e *Engine) OnScan(ctx context.Context, text, source string, at time.Time) {
	e.Scan(ctx, text, source, at)()
}

// Scan takes a code from the scanner. A Smart Pay code is committed at once —
// before any amount is known — so a copy cannot be used at another till. The
// code's kassa_purchase_id is taken here, in scan order; the commit runs in
// the background, so the next scan never waits for this one's fsync. The
// returned function waits for the outcome to be recorded.
func (e *Engine) Scan(ctx context.Context, text, source string, at time.Time) (wait func()) {
	isSP := e.o.SmartPay != nil && e.o.CodePattern != nil && e.o.CodePattern.MatchString(text)
	ev := ScanEvent{Source: source, At: at.UTC(), SmartPay: isSP}
	if !isSP {
		ev.Text = text
		e.hub.Publish("scan", ev)
		return func() {}
	}
	n, err := e.kpIDs.Next(ctx)
	if err != nil {
		e.log.Error("cannot reserve a kassa_purchase_id; the Smart Pay code was not committed", "err", err)
		e.hub.Publish("scan", ev)
		return func() {}
	}
	id := strconv.FormatUint(n, 10)
	ev.KassaPurchaseID = id
	done := make(chan struct{})
	e.mu.Lock()
	if e.stopping {
		e.mu.Unlock()
		e.log.Warn("agent stopping; Smart Pay code not committed", "kassa_purchase_id", id)
		return func() {}
	}
	e.wg.Add(1)
	e.mu.Unlock()
	go func() {
		defer e.wg.Done()
		defer close(done)
		e.commitScan(context.WithoutCancel(ctx), id, text, at, ev)
	}()
	return func() { <-done }
}

func (e *Engine) commitScan(ctx context.Context, id, text string, at time.Time, ev ScanEvent) {
	log := e.log.With("kassa_purchase_id", id)
	// The record of the commit is written while the commit is on the wire: a
	// commit carries no amount, and one lost in a crash costs only a fresh
	// scan, since its id can never be handed out again.
	rec := &codeRecord{ID: id, Code: text, State: CodeCommitting, ScannedAt: at.UTC(), Updated: time.Now().UTC()}
	written := make(chan error, 1)
	go func() {
		written <- e.store.Update(ctx, func(tx *queue.Tx) error {
			if _, err := tx.Get(collCodes, id); err == nil {
				return nil // the outcome got there first
			}
			return putCode(tx, rec)
		})
	}()
	e.hub.Publish("scan", ev)
	purchaseID, cerr := e.commit(ctx, text, id)
	if err := <-written; err != nil {
		log.Error("could not record a Smart Pay commit", "err", err)
	}
	e.recordCommit(ctx, id, text, at, purchaseID, cerr)
}

// commit sends the commit, and after an answer that was lost or never sent,
// sends it again with the same kassa_purchase_id: a repeat of the same code and
// id names the same purchase, whereas a fresh id would find the code taken.
func (e *Engine) commit(ctx context.Context, code, id string) (string, error) {
	var err error
	for attempt := 0; attempt < 4; attempt++ {
		var pid string
		pid, err = e.o.SmartPay.Commit(ctx, code, id)
		if err == nil || !(smartpay.IsAmbiguous(err) || smartpay.IsUnavailable(err)) || ctx.Err() != nil {
			return pid, err
		}
		e.log.Warn("Smart Pay commit got no clear answer; sending it again with the same id", "kassa_purchase_id", id, "err", err, "attempt", attempt+1)
		if sleep(ctx, backoff(100*time.Millisecond, time.Second, attempt), nil) != nil {
			break
		}
	}
	return "", err
}

// recordCommit stores a commit's outcome and hands the code to the payment
// waiting for one, or holds it for the next payment.
func (e *Engine) recordCommit(ctx context.Context, id, text string, at time.Time, purchaseID string, cerr error) {
	log := e.log.With("kassa_purchase_id", id)
	now := time.Now().UTC()
	c := &codeRecord{ID: id, Code: text, ScannedAt: at.UTC(), Updated: now, PurchaseID: purchaseID}
	var cancelOwn bool
	var attachedTo *Payment
	var replaced []string
	if cerr != nil {
		c.State, c.Error = CodeRejected, cerr.Error()
	} else {
		c.State = CodeHeld
	}
	e.mu.Lock()
	var already bool
	err := e.store.Update(context.WithoutCancel(ctx), func(tx *queue.Tx) error {
		attachedTo, replaced, cancelOwn, already = nil, nil, false, false
		// An outcome is recorded once: a second answer for the same id must
		// not undo what the first one did (held, used, cancelled).
		if prev, err := getCode(tx, id); err == nil && prev.State != CodeCommitting && prev.State != CodeLost {
			already = true
			return nil
		}
		c.State, c.PaymentID = CodeHeld, ""
		if cerr != nil {
			c.State = CodeRejected
			// Tell a waiting payment why its code did not work; it keeps waiting.
			if p, err := waitingPayment(tx); err == nil && p != nil {
				p.Error = &ErrorInfo{Code: commitErrorCode(cerr), Message: commitMessage(cerr)}
				if err := touchPayment(tx, p, now); err != nil {
					return err
				}
				attachedTo = p
			}
			return putCode(tx, c)
		}
		// A newer scan replaces an older held code. A commit whose answer
		// comes after a newer scan was taken (held, used or anything else) is
		// not the code the buyer is paying with now: it is cancelled itself.
		newest, err := newestCodeID(tx)
		if err != nil {
			return err
		}
		if newest != "" && lessID(c.ID, newest) {
			cancelOwn = true
		} else {
			held, err := heldCodes(tx)
			if err != nil {
				return err
			}
			for _, h := range held {
				if h.ID == c.ID {
					continue // this very commit, recorded already (asked again after a restart)
				}
				if err := cancelCode(tx, h, now, "replaced by a newer scan"); err != nil {
					return err
				}
				replaced = append(replaced, h.ID)
			}
		}
		if cancelOwn {
			return cancelCode(tx, c, now, "a newer scan was committed first")
		}
		p, err := waitingPayment(tx)
		if err != nil {
			return err
		}
		if p != nil {
			attachCode(p, c, now)
			if err := touchPayment(tx, p, now); err != nil {
				return err
			}
			attachedTo = p
		}
		return putCode(tx, c)
	})
	e.mu.Unlock()
	if err != nil {
		log.Error("could not record the outcome of a Smart Pay commit", "err", err)
		return
	}
	if already {
		log.Info("Smart Pay commit outcome was recorded already")
		return
	}
	ev := CommitEvent{KassaPurchaseID: id, State: c.State, PaymentID: c.PaymentID, Error: c.Error}
	switch {
	case cerr != nil:
		log.Warn("Smart Pay commit refused", "err", cerr)
	case cancelOwn:
		log.Info("Smart Pay code committed after a newer one; cancelling it")
	default:
		log.Info("Smart Pay code committed", "purchase_id", purchaseID, "payment_id", c.PaymentID, "replaced", replaced)
	}
	e.hub.Publish("commit", ev)
	if attachedTo != nil {
		e.publishPayment(attachedTo)
		e.poke(attachedTo.ID)
	}
}

func commitErrorCode(err error) string {
	switch {
	case smartpay.IsCodeRejected(err):
		return "code_rejected"
	case smartpay.IsConflict(err):
		return "code_used_elsewhere"
	case smartpay.IsAmbiguous(err) || smartpay.IsUnavailable(err):
		return "commit_unanswered"
	default:
		return "commit_failed"
	}
}

func commitMessage(err error) string {
	switch {
	case smartpay.IsCodeRejected(err):
		return "the buyer's Smart Pay code is unknown or expired; ask for a fresh code and scan it"
	case smartpay.IsConflict(err):
		return "this Smart Pay code is already used at another till; ask for a fresh code"
	case smartpay.IsAmbiguous(err) || smartpay.IsUnavailable(err):
		return "Smart Pay did not answer the commit; ask the buyer for a fresh code and scan it"
	default:
		return "the Smart Pay code could not be committed (" + err.Error() + "); ask the buyer for a fresh code"
	}
}

// ReleaseHeld gives back every committed code no payment has taken, e.g. when
// the buyer who showed it paid another way. It returns how many were given back.
func (e *Engine) ReleaseHeld(ctx context.Context) (int, error) {
	now := time.Now().UTC()
	var ids []string
	e.mu.Lock()
	err := e.store.Update(ctx, func(tx *queue.Tx) error {
		ids = ids[:0]
		held, err := heldCodes(tx)
		if err != nil {
			return err
		}
		for _, h := range held {
			if err := cancelCode(tx, h, now, "given back by the POS"); err != nil {
				return err
			}
			ids = append(ids, h.ID)
		}
		return nil
	})
	e.mu.Unlock()
	if err != nil {
		return 0, mapStoreErr(err)
	}
	for _, id := range ids {
		e.log.Info("held Smart Pay code given back at the POS's request", "kassa_purchase_id", id)
	}
	return len(ids), nil
}

// newestCodeID is the largest kassa_purchase_id recorded: the latest scan.
func newestCodeID(tx storeReader) (string, error) {
	var newest string
	err := tx.ForEach(collCodes, func(id string, _ []byte) error {
		if newest == "" || lessID(newest, id) {
			newest = id
		}
		return nil
	})
	return newest, err
}

// cancelCode gives up a committed code that no payment will use and, in the same
// transaction, tells Smart Pay through the outbox.
func cancelCode(tx *queue.Tx, c *codeRecord, now time.Time, why string) error {
	c.State, c.Updated, c.Error = CodeCanceled, now, why
	if err := putCode(tx, c); err != nil {
		return err
	}
	return enqueueJSON(tx, KindSmartPayCancel, "code:"+c.ID, cancelMsg{PurchaseID: c.PurchaseID})
}

// touchPayment writes a payment changed outside Engine.change.
func touchPayment(tx *queue.Tx, p *Payment, now time.Time) error {
	p.Version++
	p.Updated = now
	return putPayment(tx, p)
}

// attachCode gives a committed code to a payment.
func attachCode(p *Payment, c *codeRecord, now time.Time) {
	c.State, c.PaymentID, c.Updated = CodeUsed, p.ID, now
	p.SmartPay = &SmartPayInfo{KassaPurchaseID: c.ID, PurchaseID: c.PurchaseID, CodeScannedAt: c.ScannedAt}
	p.State, p.NextAction, p.Error = payments.Committed, ActionWait, nil
}

func heldCodes(r storeReader) ([]*codeRecord, error) {
	var out []*codeRecord
	err := r.ForEach(collCodes, func(id string, v []byte) error {
		var c codeRecord
		if err := json.Unmarshal(v, &c); err != nil {
			return fmt.Errorf("code %s: %w", id, err)
		}
		if c.State == CodeHeld {
			out = append(out, &c)
		}
		return nil
	})
	sortCodes(out)
	return out, err
}

// heldCode is the newest held code, if any.
func heldCode(tx *queue.Tx) (*codeRecord, error) {
	cs, err := heldCodes(tx)
	if err != nil || len(cs) == 0 {
		return nil, err
	}
	return cs[len(cs)-1], nil
}

// waitingPayments are the Smart Pay payments still waiting for a code, newest
// first. A till serves one buyer at a time, so normally there is at most one.
func waitingPayments(tx storeReader) ([]*Payment, error) {
	var out []*Payment
	err := tx.Scan(collPayments, queue.ScanOptions{Reverse: true, Limit: 200}, func(id string, v []byte) error {
		p, err := unmarshalPayment(v)
		if err != nil {
			return err
		}
		if p.Provider == "smartpay" && p.State == payments.Committing {
			out = append(out, p)
		}
		return nil
	})
	return out, err
}

// waitingPayment is the newest payment waiting for a code: the sale at the till
// now. An older one left waiting (the POS gave up on it) must never take a new
// buyer's code and charge its own amount.
func waitingPayment(tx *queue.Tx) (*Payment, error) {
	ps, err := waitingPayments(tx)
	if err != nil || len(ps) == 0 {
		return nil, err
	}
	return ps[0], nil
}

// giveUpWaiting ends a payment that waited for a code in vain; nothing was
// committed for it, so nothing is owed to anyone.
func giveUpWaiting(tx *queue.Tx, p *Payment, now time.Time, code, msg string) error {
	p.State, p.NextAction = payments.Canceled, ActionSeeCashier
	p.Error = &ErrorInfo{Code: code, Message: msg}
	if p.Fiscal.State == FiscalPending {
		p.Fiscal.State = FiscalNone
	}
	return touchPayment(tx, p, now)
}

type cancelMsg struct {
	PurchaseID string `json:"purchase_id"`
}

type confirmMsg struct {
	PurchaseID string `json:"purchase_id"`
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
	p, err := e.change(ctx, p.ID, func(q *Payment, tx *queue.Tx) error {
		if q.State != payments.Committed {
			return errUnchanged // cancelled meanwhile
		}
		q.State, q.NextAction, q.Released, q.Error = payments.Releasing, ActionWait, time.Now().UTC(), nil
		return nil
	})
	if err != nil {
		if !errors.Is(err, errUnchanged) {
			log.Error("cannot record the release recovery point; not releasing", "err", err)
			_ = sleep(ctx, time.Second, nil)
		}
		return
	}
	defer e.releaseReturned(p.ID)
	for attempt := 0; ; attempt++ {
		st, err := e.o.SmartPay.Release(ctx, p.SmartPay.PurchaseID, p.Amount)
		switch {
		case err == nil:
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
		case smartpay.IsUnavailable(err) && ctx.Err() == nil && time.Since(p.Released) < e.o.PollDeadline:
			// Certainly not applied: sending it again is safe.
			log.Warn("release not delivered; sending again", "err", err, "attempt", attempt+1)
			if sleep(ctx, backoff(e.o.PollMin, e.o.PollMax, attempt), nil) != nil {
				return
			}
			continue
		case smartpay.IsAmbiguous(err) || ctx.Err() != nil || smartpay.IsUnavailable(err):
			// No answer is not a "no": never send it again, ask the status.
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

// releaseReturned notes when a release call came back, however it ended.
func (e *Engine) releaseReturned(id string) {
	e.mu.Lock()
	e.released[id] = time.Now()
	e.mu.Unlock()
}

// settleFrom is when the wait before cancelling an undelivered release starts:
// after the release call came back in this process, or after this process
// started (a release from before a crash died with its connection).
func (e *Engine) settleFrom(p *Payment) time.Time {
	e.mu.Lock()
	back := e.released[p.ID]
	e.mu.Unlock()
	t := p.Released
	for _, c := range []time.Time{back, e.born} {
		if c.After(t) {
			t = c
		}
	}
	return t
}

// poll asks the status until the payment is decided.
func (e *Engine) poll(ctx context.Context, p *Payment) {
	log := e.paymentLog(p)
	start := p.Released
	if start.IsZero() {
		start = p.Updated
	}
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
				if p.State == payments.Releasing && !cancelSent && time.Since(e.settleFrom(p)) >= e.o.SettleBeforeCancel {
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
		if !flagged && time.Since(start) > e.o.PollDeadline {
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
		if cancelPurchase && q.SmartPay != nil && q.SmartPay.PurchaseID != "" {
			return enqueueJSON(tx, KindSmartPayCancel, q.ID, cancelMsg{PurchaseID: q.SmartPay.PurchaseID})
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
			fd := smartpay.FiscalData{PurchaseID: p.SmartPay.PurchaseID, KKTRegNumber: doc.RegNumber,
				FiscalSign: strconv.FormatUint(uint64(doc.FP), 10), FNNumber: doc.FNNumber, FDNumber: doc.FD,
				ReceiptTime: doc.Time, Amount: doc.Total}
			// The receipt exists now: record it even while the agent is stopping.
			q, err := e.change(context.WithoutCancel(ctx), p.ID, func(q *Payment, tx *queue.Tx) error {
				q.State, q.NextAction = payments.Completed, ActionHandOver
				q.Fiscal = FiscalInfo{State: FiscalPrinted, Document: &doc, Attempts: q.Fiscal.Attempts}
				return enqueueJSON(tx, KindSmartPayFiscal, q.ID, fd)
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

// sweepCodes cancels held codes nobody used.
// codeRetention is how long a finished code record is kept for a technician.
const codeRetention = 7 * 24 * time.Hour

// sweepCodes cancels held codes nobody used, gives up payments nobody scanned
// for, and prunes old code records. It writes only when there is something to do.
func (e *Engine) sweepCodes(ctx context.Context) {
	every := min(e.o.AbandonAfter/10, 5*time.Second)
	var lastPrune time.Time
	for sleep(ctx, every, nil) == nil {
		now := time.Now().UTC()
		prune := now.Sub(lastPrune) >= time.Hour
		var due bool
		_ = e.store.View(func(r *queue.ReadTx) error {
			held, err := heldCodes(r)
			if err != nil {
				return err
			}
			waiting, err := waitingPayments(r)
			if err != nil {
				return err
			}
			for _, h := range held {
				due = due || now.Sub(h.Updated) >= e.o.AbandonAfter
			}
			for _, p := range waiting {
				due = due || now.Sub(p.Created) >= e.o.AbandonAfter
			}
			return nil
		})
		if !due && !prune {
			continue
		}
		var stale []string
		var expired []*Payment
		var pruned int
		e.mu.Lock()
		err := e.store.Update(ctx, func(tx *queue.Tx) error {
			stale, expired, pruned = stale[:0], expired[:0], 0
			held, err := heldCodes(tx)
			if err != nil {
				return err
			}
			waiting, err := waitingPayments(tx)
			if err != nil {
				return err
			}
			for _, p := range waiting {
				if now.Sub(p.Created) < e.o.AbandonAfter {
					continue
				}
				if err := giveUpWaiting(tx, p, now, "no_code_scanned",
					"no Smart Pay code was scanned in time; start a new payment when the buyer is ready"); err != nil {
					return err
				}
				expired = append(expired, p)
			}
			for _, h := range held {
				if now.Sub(h.Updated) < e.o.AbandonAfter {
					continue
				}
				if err := cancelCode(tx, h, now, "not used by any payment in time"); err != nil {
					return err
				}
				stale = append(stale, h.ID)
			}
			if prune {
				n, err := pruneCodes(tx, now)
				pruned = n
				return err
			}
			return nil
		})
		e.mu.Unlock()
		if err != nil {
			if ctx.Err() == nil {
				e.log.Error("cannot sweep abandoned Smart Pay codes", "err", err)
			}
			continue
		}
		if prune {
			lastPrune = now
		}
		if pruned > 0 {
			e.log.Info("old Smart Pay code records pruned", "count", pruned, "older_than", codeRetention)
		}
		for _, id := range stale {
			e.log.Info("abandoned Smart Pay code cancelled", "kassa_purchase_id", id)
		}
		for _, p := range expired {
			e.paymentLog(p).Info("payment waited for a Smart Pay code in vain; cancelled")
			e.publishPayment(p)
			e.poke(p.ID)
		}
	}
}

// pruneCodes deletes finished code records past their retention. The newest
// record always stays: it orders later commits (newestCodeID).
func pruneCodes(tx *queue.Tx, now time.Time) (int, error) {
	newest, err := newestCodeID(tx)
	if err != nil {
		return 0, err
	}
	var old []string
	err = tx.ForEach(collCodes, func(id string, v []byte) error {
		var c codeRecord
		if json.Unmarshal(v, &c) != nil || id == newest {
			return nil
		}
		switch c.State {
		case CodeUsed, CodeCanceled, CodeRejected, CodeLost:
			if now.Sub(c.Updated) > codeRetention {
				old = append(old, id)
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	for _, id := range old {
		if err := tx.Delete(collCodes, id); err != nil {
			return 0, err
		}
	}
	return len(old), nil
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

func (e *Engine) handleConfirm(ctx context.Context, m queue.Message) error {
	var c confirmMsg
	if err := json.Unmarshal(m.Payload, &c); err != nil {
		return queue.Permanent(fmt.Errorf("bad confirm message: %w", err))
	}
	err := e.o.SmartPay.Confirm(ctx, c.PurchaseID)
	if err == nil {
		e.log.Info("Smart Pay confirm delivered", "payment_id", m.Key, "purchase_id", c.PurchaseID, "message_id", m.ID)
	}
	return deliveryErr(err)
}

func (e *Engine) handleFiscal(ctx context.Context, m queue.Message) error {
	var fd smartpay.FiscalData
	if err := json.Unmarshal(m.Payload, &fd); err != nil {
		return queue.Permanent(fmt.Errorf("bad fiscal message: %w", err))
	}
	err := e.o.SmartPay.Fiscal(ctx, fd)
	if err == nil {
		e.log.Info("Smart Pay fiscal data delivered", "payment_id", m.Key, "purchase_id", fd.PurchaseID, "fd", fd.FDNumber, "message_id", m.ID)
	}
	return deliveryErr(err)
}

func (e *Engine) handleCancel(ctx context.Context, m queue.Message) error {
	var c cancelMsg
	if err := json.Unmarshal(m.Payload, &c); err != nil {
		return queue.Permanent(fmt.Errorf("bad cancel message: %w", err))
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
