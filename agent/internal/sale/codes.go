package sale

// Smart Pay's scan-and-commit rules. The buyer may show the QR code before,
// during or after the ring-up, and the code is committed the moment it is
// scanned. Which sale a code then pays for is decided here, by one rule:
//
//	A code pays only for the sale it was shown for.
//
//   - Scanned while a payment waits for a code (or has one it has not
//     released yet): it is that payment's code. When two arrive for one
//     payment, the newest pays and the other is cancelled.
//   - Scanned while another payment is paying (its code released, the sale
//     not finished): it is the paying buyer's refreshed code. Cancelled.
//   - Scanned while no payment is open: held for the next payment, for
//     abandon_after at most.
//   - Still held, or still on the wire, when a sale ends (completed, failed,
//     cancelled) or when the POS gives held codes back: cancelled, also when
//     its commit is answered later.
//
// Every way a code is given up cancels it at Smart Pay through the outbox.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
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
	// Note says why a scan that looks like a payment code was not committed.
	Note string `json:"note,omitempty"`
}

// CommitEvent reports the outcome of a Smart Pay commit.
type CommitEvent struct {
	KassaPurchaseID string `json:"kassa_purchase_id"`
	State           string `json:"state"` // held, used, rejected, canceled, lost
	PaymentID       string `json:"payment_id,omitempty"`
	Error           string `json:"error,omitempty"`
}

// flight is a commit on the wire in this run. Its fate may be decided before
// its answer comes (its sale ended, the POS gave held codes back); the answer
// then carries that decision out.
type flight struct {
	forPayment string // the payment open when it was scanned ("" none)
	giveUp     string // why it must be cancelled when answered ("" keep)
}

// Reasons a code is given up.
const (
	whyPaying   = "scanned while another payment was being paid: the paying buyer's refreshed code"
	whySaleEnd  = "its sale ended before the code was used"
	whyGivenUp  = "given back by the POS"
	whyReplaced = "replaced by a newer scan for the same sale"
	whyUnused   = "not used by any payment in time"
	whyNewer    = "a newer scan was committed first"
)

// lostCommits are the commits of an earlier run whose answer never reached
// the store. Called with e.mu held: a scan of this run is in e.inflight.
func (e *Engine) lostCommits(r *queue.ReadTx) ([]*codeRecord, error) {
	var lost []*codeRecord
	err := r.ForEach(collCodes, func(id string, v []byte) error {
		var c codeRecord
		if err := json.Unmarshal(v, &c); err != nil {
			// One unreadable record must not stop every other payment
			// from resuming; it is left for a technician.
			e.log.Error("unreadable Smart Pay code record skipped", "kassa_purchase_id", id, "err", err)
			return nil
		}
		if c.State == CodeCommitting && e.inflight[c.ID] == nil {
			lost = append(lost, &c)
		}
		return nil
	})
	return lost, err
}

// reaskCommits asks each lost commit again with the same kassa_purchase_id,
// which names the same purchase: its id comes back and the code's fate is
// decided like any other's. When the service cannot say, the code is marked
// lost (and cancelled through the outbox); the buyer shows it again.
func (e *Engine) reaskCommits(ctx context.Context, lost []*codeRecord) {
	for _, c := range lost {
		if e.o.SmartPay == nil {
			e.markLost(ctx, c)
			continue
		}
		e.mu.Lock()
		e.wg.Add(1)
		e.mu.Unlock()
		e.goSafe("Smart Pay commit asked again", c.ID, func() {
			defer e.wg.Done()
			cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			pid, err := e.commit(cctx, c.Code, c.ID)
			if err != nil && (smartpay.IsAmbiguous(err) || smartpay.IsUnavailable(err) || ctx.Err() != nil) {
				e.markLost(ctx, c)
				return
			}
			e.log.Info("a Smart Pay commit interrupted by a restart was asked again", "kassa_purchase_id", c.ID, "ok", err == nil)
			e.recordCommit(ctx, c, pid, err)
		})
	}
}

// markLost gives up a commit whose answer was lost in a restart. The code may
// be committed at Smart Pay all the same: the outbox names its purchase and
// cancels it.
func (e *Engine) markLost(ctx context.Context, c *codeRecord) {
	c.State, c.Error, c.Updated = CodeLost, "the agent stopped before the commit's answer was recorded; scan the code again", e.now()
	if err := e.store.Update(context.WithoutCancel(ctx), func(tx *queue.Tx) error {
		if err := putCode(tx, c); err != nil {
			return err
		}
		return enqueueJSON(tx, KindSmartPayCancel, "code:"+c.ID, cancelMsg{KassaPurchaseID: c.ID})
	}); err != nil {
		e.log.Error("cannot mark a lost Smart Pay commit", "kassa_purchase_id", c.ID, "err", err)
		return
	}
	e.log.Warn("a Smart Pay commit's answer was lost in a restart; the buyer must scan again", "kassa_purchase_id", c.ID)
}

// normalizeCode trims what scanners add around a code and case-folds a URL's
// scheme and host, which are case-insensitive; the rest is kept byte for byte.
func normalizeCode(s string) string {
	s = strings.TrimSpace(s)
	i := strings.Index(s, "://")
	if i <= 0 {
		return s
	}
	end := len(s)
	if j := strings.IndexAny(s[i+3:], "/?#"); j >= 0 {
		end = i + 3 + j
	}
	return strings.ToLower(s[:end]) + s[end:]
}

// classify says whether text is a Smart Pay code (to commit), looks like one
// without matching (never published, never committed), or is another scan.
func (e *Engine) classify(text string) (code string, isCode, looksLike bool) {
	if e.o.SmartPay == nil || e.o.CodePattern == nil {
		return text, false, false
	}
	n := normalizeCode(text)
	if e.o.CodePattern.MatchString(n) {
		return n, true, false
	}
	if prefix, _ := e.o.CodePattern.LiteralPrefix(); len(prefix) >= 8 {
		if u, err := url.Parse(prefix); err == nil && u.Host != "" {
			// The pattern's scheme and host: anything on that host is the
			// provider's, whatever follows.
			prefix = u.Scheme + "://" + u.Host
		}
		if strings.HasPrefix(strings.ToLower(n), strings.ToLower(prefix)) {
			return n, false, true
		}
	}
	return text, false, false
}

// OnScan takes a code from the scanner (or the POS) and returns once a Smart
// Pay code's commit has been answered and recorded.
func (e *Engine) OnScan(ctx context.Context, text, source string, at time.Time) {
	e.Scan(ctx, text, source, at)()
}

// Scan takes a code from the scanner. A Smart Pay code is committed at once —
// before any amount is known — so a copy cannot be used at another till. The
// code's kassa_purchase_id is taken here, in scan order, and the sale it was
// shown for is noted; the commit runs in the background, so the next scan
// never waits for this one's fsync. The returned function waits for the
// outcome to be recorded.
func (e *Engine) Scan(ctx context.Context, text, source string, at time.Time) (wait func()) {
	code, isSP, looks := e.classify(text)
	ev := ScanEvent{Source: source, At: at.UTC(), SmartPay: isSP || looks}
	switch {
	case looks:
		ev.Note = "looks like a Smart Pay code but does not match smartpay.code_pattern; not committed"
		e.log.Warn("a scan looked like a Smart Pay code but did not match the configured pattern; not committed and not published", "length", len(text))
		e.hub.Publish("scan", ev)
		return func() {}
	case !isSP:
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
	fl := &flight{}
	fl.forPayment, fl.giveUp = e.openSale()
	e.inflight[id] = fl
	e.wg.Add(1)
	e.mu.Unlock()
	e.goSafe("commit", id, func() {
		defer e.wg.Done()
		defer close(done)
		e.commitScan(context.WithoutCancel(ctx), id, code, at, fl.forPayment, ev)
	})
	return func() { <-done }
}

// openSale is the sale a code scanned now is for: the newest unfinished
// payment decides. Waiting for a code, or holding one not yet released: that
// payment. Paying: none (the code is given up). Called with e.mu held.
func (e *Engine) openSale() (forPayment, giveUp string) {
	_ = e.store.View(func(r *queue.ReadTx) error {
		return r.Scan(collPayments, queue.ScanOptions{Reverse: true, Limit: 16}, func(id string, v []byte) error {
			p, err := unmarshalPayment(v)
			if err != nil || p.Provider != "smartpay" || p.State.Final() || e.tooOld(p) {
				return nil
			}
			switch p.State {
			case payments.Committing, payments.Committed:
				forPayment = p.ID
			default:
				giveUp = whyPaying
			}
			return errStop
		})
	})
	return forPayment, giveUp
}

func (e *Engine) commitScan(ctx context.Context, id, text string, at time.Time, forPayment string, ev ScanEvent) {
	log := e.log.With("kassa_purchase_id", id)
	// The record of the commit is written while the commit is on the wire: a
	// commit carries no amount, and one lost in a crash costs only a fresh
	// scan, since its id can never be handed out again.
	rec := &codeRecord{ID: id, Code: text, State: CodeCommitting, ScannedAt: at.UTC(), Updated: e.now(), For: forPayment}
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
	e.recordCommit(ctx, rec, purchaseID, cerr)
}

// errRepeatRefused: a commit sent again after a lost answer was refused as a
// conflict. The first one was most likely applied, so the code is ours at
// Smart Pay, but its purchase id never reached us.
var errRepeatRefused = errors.New("the repeated commit was refused by Smart Pay; the first one was probably applied")

// commit sends the commit, and after an answer that was lost or never sent,
// sends it again with the same kassa_purchase_id: a repeat of the same code and
// id names the same purchase, whereas a fresh id would find the code taken.
func (e *Engine) commit(ctx context.Context, code, id string) (string, error) {
	var err error
	for attempt := 0; attempt < 4; attempt++ {
		var pid string
		pid, err = e.o.SmartPay.Commit(ctx, code, id)
		if attempt > 0 && smartpay.IsConflict(err) {
			return "", fmt.Errorf("%w: %w", errRepeatRefused, err)
		}
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

// recordCommit stores a commit's outcome and decides the code's fate by the
// rule at the top of this file.
func (e *Engine) recordCommit(ctx context.Context, rec *codeRecord, purchaseID string, cerr error) {
	id := rec.ID
	log := e.log.With("kassa_purchase_id", id)
	now := e.now()
	var c *codeRecord
	var touched []*Payment
	var already bool
	var fate string // what happened, for the log
	e.mu.Lock()
	fl := e.inflight[id]
	err := e.store.Update(context.WithoutCancel(ctx), func(tx *queue.Tx) error {
		touched, already, fate = nil, false, ""
		c = &codeRecord{ID: id, Code: rec.Code, ScannedAt: rec.ScannedAt, Updated: now, PurchaseID: purchaseID, For: rec.For}
		if prev, err := getCode(tx, id); err == nil {
			// An outcome is recorded once: a second answer for the same id
			// must not undo what the first one did (held, used, cancelled).
			if prev.State != CodeCommitting && prev.State != CodeLost {
				already = true
				return nil
			}
			c.For, c.GiveUp = prev.For, prev.GiveUp
		}
		if fl != nil {
			c.For = fl.forPayment
			if fl.giveUp != "" {
				c.GiveUp = fl.giveUp
			}
		}
		switch {
		case errors.Is(cerr, errRepeatRefused):
			// Ours at Smart Pay, id unknown: the outbox names it by a
			// repeated commit and cancels it.
			c.State, c.Error = CodeLost, cerr.Error()
			fate = "lost"
			if err := e.tellWaiting(tx, c, cerr, now, &touched); err != nil {
				return err
			}
			if err := putCode(tx, c); err != nil {
				return err
			}
			return enqueueJSON(tx, KindSmartPayCancel, "code:"+c.ID, cancelMsg{KassaPurchaseID: c.ID})
		case cerr != nil:
			c.State, c.Error = CodeRejected, cerr.Error()
			fate = "rejected"
			if err := e.tellWaiting(tx, c, cerr, now, &touched); err != nil {
				return err
			}
			return putCode(tx, c)
		case c.GiveUp != "":
			fate = "given up: " + c.GiveUp
			return cancelCode(tx, c, now, c.GiveUp)
		}
		var target *Payment
		if c.For != "" {
			p, err := getPayment(tx, c.For)
			if err != nil && !errors.Is(err, queue.ErrNotFound) {
				return err
			}
			if p == nil || p.State.Final() || e.tooOld(p) {
				fate = "its sale ended"
				return cancelCode(tx, c, now, whySaleEnd)
			}
			target = p
		} else {
			p, err := e.openPayment(tx)
			if err != nil {
				return err
			}
			target = p
		}
		if target == nil {
			return e.hold(tx, c, now, &fate)
		}
		switch target.State {
		case payments.Committing:
			attachCode(target, c, now)
			touched = append(touched, target)
			fate = "attached"
			if err := touchPayment(tx, target, now); err != nil {
				return err
			}
			return putCode(tx, c)
		case payments.Committed:
			// Two codes for one payment that has released neither: the
			// newest pays.
			old := target.codeID()
			if old != "" && lessID(c.ID, old) {
				fate = "an older code for a sale that has a newer one"
				return cancelCode(tx, c, now, whyReplaced)
			}
			if prev, err := getCode(tx, old); err == nil {
				if err := cancelCode(tx, prev, now, whyReplaced); err != nil {
					return err
				}
			}
			attachCode(target, c, now)
			touched = append(touched, target)
			fate = "replaced the payment's older code"
			if err := touchPayment(tx, target, now); err != nil {
				return err
			}
			return putCode(tx, c)
		default:
			fate = "another payment is being paid"
			return cancelCode(tx, c, now, whyPaying)
		}
	})
	if err == nil {
		delete(e.inflight, id)
	}
	e.mu.Unlock()
	if err != nil {
		log.Error("could not record the outcome of a Smart Pay commit", "err", err)
		return
	}
	if already {
		log.Info("Smart Pay commit outcome was recorded already")
		return
	}
	if cerr != nil {
		log.Warn("Smart Pay commit not usable", "err", cerr, "state", c.State)
	} else {
		log.Info("Smart Pay code committed", "purchase_id", purchaseID, "payment_id", c.PaymentID, "state", c.State, "fate", fate)
	}
	e.hub.Publish("commit", CommitEvent{KassaPurchaseID: id, State: c.State, PaymentID: c.PaymentID, Error: c.Error})
	for _, p := range touched {
		e.publishPayment(p)
		e.poke(p.ID)
	}
}

// admitNew runs in the transaction that creates q, a payment that needs a
// code: it is the sale at the till now, so a payment still waiting for a code
// is one the POS gave up on (replaced), and a code held for the next sale is
// q's.
func (e *Engine) admitNew(tx *queue.Tx, q *Payment, now time.Time) (attached *codeRecord, replaced []*Payment, err error) {
	older, err := waitingPayments(tx)
	if err != nil {
		return nil, nil, err
	}
	for _, o := range older {
		if err := e.giveUpWaiting(tx, o, now, "replaced", "a newer payment ("+q.ID+") was started at this till before a code was scanned"); err != nil {
			return nil, nil, err
		}
		replaced = append(replaced, o)
	}
	held, err := e.heldCode(tx)
	if err != nil || held == nil {
		return nil, replaced, err
	}
	attachCode(q, held, now)
	if err := putCode(tx, held); err != nil {
		return nil, nil, err
	}
	return held, replaced, nil
}

// hold keeps a code for the next payment: a newer scan replaces older held
// codes, and a code answered after a newer scan is cancelled itself.
func (e *Engine) hold(tx *queue.Tx, c *codeRecord, now time.Time, fate *string) error {
	newer, err := newerLiveCode(tx, c.ID)
	if err != nil {
		return err
	}
	if newer {
		*fate = "a newer scan exists"
		return cancelCode(tx, c, now, whyNewer)
	}
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
	}
	c.State, *fate = CodeHeld, "held for the next payment"
	e.ages.born("code:" + c.ID)
	return putCode(tx, c)
}

// tellWaiting tells the payment the code was for why it did not work; the
// payment keeps waiting for a fresh scan.
func (e *Engine) tellWaiting(tx *queue.Tx, c *codeRecord, cerr error, now time.Time, touched *[]*Payment) error {
	var p *Payment
	var err error
	if c.For != "" {
		p, err = getPayment(tx, c.For)
		if errors.Is(err, queue.ErrNotFound) {
			return nil
		}
	} else {
		p, err = e.waitingPayment(tx)
	}
	if err != nil || p == nil || p.State != payments.Committing {
		return err
	}
	p.Error = commitError(cerr)
	*touched = append(*touched, p)
	return touchPayment(tx, p, now)
}

// commitError is what a waiting payment shows when its code's commit failed.
func commitError(err error) *ErrorInfo {
	switch {
	case errors.Is(err, errRepeatRefused):
		return &ErrorInfo{Code: "commit_unanswered", Message: "Smart Pay did not confirm the commit of this code; ask the buyer for a fresh code and scan it"}
	case smartpay.IsCodeRejected(err):
		return &ErrorInfo{Code: "code_rejected", Message: "the buyer's Smart Pay code is unknown or expired; ask for a fresh code and scan it"}
	case smartpay.IsConflict(err):
		return &ErrorInfo{Code: "code_used_elsewhere", Message: "this Smart Pay code is already used at another till; ask for a fresh code"}
	case smartpay.IsAmbiguous(err) || smartpay.IsUnavailable(err):
		return &ErrorInfo{Code: "commit_unanswered", Message: "Smart Pay did not answer the commit; ask the buyer for a fresh code and scan it"}
	default:
		return &ErrorInfo{Code: "commit_failed", Message: "the Smart Pay code could not be committed (" + err.Error() + "); ask the buyer for a fresh code"}
	}
}

// ReleaseHeld gives back every committed code no payment has taken, e.g. when
// the buyer who showed it paid another way, and every code still on the wire
// (cancelled when its answer comes). It returns how many were given back,
// both kinds.
func (e *Engine) ReleaseHeld(ctx context.Context) (int, error) {
	now := e.now()
	var ids []string
	e.mu.Lock()
	defer e.mu.Unlock()
	err := e.store.Update(ctx, func(tx *queue.Tx) error {
		ids = ids[:0]
		held, err := heldCodes(tx)
		if err != nil {
			return err
		}
		for _, h := range held {
			if err := cancelCode(tx, h, now, whyGivenUp); err != nil {
				return err
			}
			ids = append(ids, h.ID)
		}
		return e.giveUpInFlight(tx, func(*flight) bool { return true }, whyGivenUp)
	})
	if err != nil {
		return 0, mapStoreErr(err)
	}
	n := e.markInFlight(func(*flight) bool { return true }, whyGivenUp)
	for _, id := range ids {
		e.log.Info("held Smart Pay code given back at the POS's request", "kassa_purchase_id", id)
	}
	if n > 0 {
		e.log.Info("Smart Pay codes still being committed given back at the POS's request; each is cancelled when its commit is answered", "count", n)
	}
	return len(ids) + n, nil
}

// endSale runs in the transaction that makes p final: commits on the wire
// for this sale are marked so their answer cancels them. A live sale (it
// ended at the till: paid, refused, cancelled by the POS) also takes the
// commits scanned for no sale yet: they were shown for it. A sale given up
// because it was stale or replaced does not: a scan now is for the next one.
// Codes are never held while a sale is open (they attach or are cancelled),
// so no held code belongs to p. Called with e.mu held; markInFlight follows
// once the transaction is durable.
func (e *Engine) endSale(tx *queue.Tx, p *Payment, live bool) error {
	return e.giveUpInFlight(tx, saleCodes(p.ID, live), whySaleEnd)
}

// saleCodes matches the commits on the wire that belong to sale id.
func saleCodes(id string, live bool) func(*flight) bool {
	return func(f *flight) bool { return f.forPayment == id || (live && f.forPayment == "") }
}

// giveUpInFlight writes the give-up onto the records of matching commits on
// the wire, so a crash before their answer still cancels them.
func (e *Engine) giveUpInFlight(tx *queue.Tx, match func(*flight) bool, why string) error {
	for id, f := range e.inflight {
		if !match(f) || f.giveUp != "" {
			continue
		}
		c, err := getCode(tx, id)
		if errors.Is(err, queue.ErrNotFound) {
			continue // not written yet: the in-memory mark is enough in this run
		}
		if err != nil {
			return err
		}
		if c.State == CodeCommitting {
			c.GiveUp = why
			if err := putCode(tx, c); err != nil {
				return err
			}
		}
	}
	return nil
}

// markInFlight marks matching commits on the wire as given up and says how
// many it marked. Called with e.mu held.
func (e *Engine) markInFlight(match func(*flight) bool, why string) int {
	n := 0
	for _, f := range e.inflight {
		if match(f) && f.giveUp == "" {
			f.giveUp = why
			n++
		}
	}
	return n
}

// newerLiveCode reports whether a code scanned after id is still in play.
func newerLiveCode(tx storeReader, id string) (bool, error) {
	found := false
	err := tx.ForEach(collCodes, func(k string, v []byte) error {
		if found || !lessID(id, k) {
			return nil
		}
		var c codeRecord
		if err := json.Unmarshal(v, &c); err != nil {
			return nil
		}
		switch c.State {
		case CodeCommitting, CodeHeld, CodeUsed:
			found = true
		}
		return nil
	})
	return found, err
}

// cancelCode gives up a committed code that no payment will use and, in the same
// transaction, tells Smart Pay through the outbox.
func cancelCode(tx *queue.Tx, c *codeRecord, now time.Time, why string) error {
	c.State, c.Updated, c.Error = CodeCanceled, now, why
	if err := putCode(tx, c); err != nil {
		return err
	}
	return enqueueJSON(tx, KindSmartPayCancel, "code:"+c.ID, cancelMsg{PurchaseID: c.PurchaseID, KassaPurchaseID: c.ID})
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
	p.Ref.ProviderID, p.ProviderPaymentID = c.PurchaseID, c.PurchaseID
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

// heldCode is the newest held code young enough to pay, if any.
func (e *Engine) heldCode(tx *queue.Tx) (*codeRecord, error) {
	cs, err := heldCodes(tx)
	if err != nil || len(cs) == 0 {
		return nil, err
	}
	c := cs[len(cs)-1]
	if e.ages.of("code:"+c.ID, c.Updated) >= e.o.AbandonAfter {
		return nil, nil // the sweep cancels it
	}
	return c, nil
}

// tooOld reports whether p has passed abandon_after without reaching release.
func (e *Engine) tooOld(p *Payment) bool {
	switch p.State {
	case payments.Committing, payments.Committed:
		return e.ages.of("pay:"+p.ID, p.Created) >= e.o.AbandonAfter
	}
	return false
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
// buyer's code and charge its own amount, nor one past abandon_after (the
// buyer has gone; yesterday's payment must not take this morning's code).
func (e *Engine) waitingPayment(tx *queue.Tx) (*Payment, error) {
	ps, err := waitingPayments(tx)
	if err != nil || len(ps) == 0 || e.tooOld(ps[0]) {
		return nil, err
	}
	return ps[0], nil
}

// openPayment is the newest unfinished Smart Pay payment young enough to
// matter, or nil.
func (e *Engine) openPayment(tx storeReader) (*Payment, error) {
	var out *Payment
	err := tx.Scan(collPayments, queue.ScanOptions{Reverse: true, Limit: 16}, func(id string, v []byte) error {
		p, err := unmarshalPayment(v)
		if err != nil {
			return err
		}
		if p.Provider != "smartpay" || p.State.Final() || e.tooOld(p) {
			return nil
		}
		out = p
		return errStop
	})
	if errors.Is(err, errStop) {
		err = nil
	}
	return out, err
}

func getPayment(r storeReader, id string) (*Payment, error) {
	b, err := r.Get(collPayments, id)
	if err != nil {
		return nil, err
	}
	return unmarshalPayment(b)
}

// giveUpWaiting ends a payment that waited for a code in vain; nothing was
// committed for it, so nothing is owed to anyone.
func (e *Engine) giveUpWaiting(tx *queue.Tx, p *Payment, now time.Time, code, msg string) error {
	p.State, p.NextAction = payments.Canceled, ActionSeeCashier
	p.Error = &ErrorInfo{Code: code, Message: msg}
	p.noReceipt()
	if err := e.endSale(tx, p, false); err != nil {
		return err
	}
	return touchPayment(tx, p, now)
}

// codeRetention is how long a finished code record is kept for a technician.
// It is measured on the wall clock (records outlive the run); a step of the
// clock only prunes finished records a little early or late.
const codeRetention = 7 * 24 * time.Hour

// sweepCodes cancels held codes nobody used, ends payments that did not reach
// release within abandon_after, and prunes old code records. It writes only
// when there is something to do.
func (e *Engine) sweepCodes(ctx context.Context) {
	every := min(e.o.AbandonAfter/10, 5*time.Second)
	var lastPrune time.Duration = -time.Hour
	for sleep(ctx, every, nil) == nil {
		prune := e.clock.Mono()-lastPrune >= time.Hour
		var due bool
		_ = e.store.View(func(r *queue.ReadTx) error {
			held, err := heldCodes(r)
			if err != nil {
				return err
			}
			for _, h := range held {
				due = due || e.ages.of("code:"+h.ID, h.Updated) >= e.o.AbandonAfter
			}
			return r.Scan(collPayments, queue.ScanOptions{Reverse: true, Limit: 200}, func(id string, v []byte) error {
				if p, err := unmarshalPayment(v); err == nil && e.tooOld(p) {
					due = true
				}
				return nil
			})
		})
		if !due && !prune {
			continue
		}
		var stale []string
		var ended []*Payment
		var pruned int
		now := e.now()
		e.mu.Lock()
		err := e.store.Update(ctx, func(tx *queue.Tx) error {
			stale, ended, pruned = stale[:0], ended[:0], 0
			var old []*Payment
			if err := tx.Scan(collPayments, queue.ScanOptions{Reverse: true, Limit: 200}, func(id string, v []byte) error {
				if p, err := unmarshalPayment(v); err == nil && e.tooOld(p) {
					old = append(old, p)
				}
				return nil
			}); err != nil {
				return err
			}
			for _, p := range old {
				if err := e.abandon(tx, p, now); err != nil {
					return err
				}
				ended = append(ended, p)
			}
			held, err := heldCodes(tx)
			if err != nil {
				return err
			}
			for _, h := range held {
				if e.ages.of("code:"+h.ID, h.Updated) < e.o.AbandonAfter {
					continue
				}
				if err := cancelCode(tx, h, now, whyUnused); err != nil {
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
		if err == nil {
			for _, p := range ended {
				e.markInFlight(saleCodes(p.ID, false), whySaleEnd)
			}
		}
		e.mu.Unlock()
		if err != nil {
			if ctx.Err() == nil {
				e.log.Error("cannot sweep abandoned Smart Pay codes and payments", "err", err)
			}
			continue
		}
		if prune {
			lastPrune = e.clock.Mono()
		}
		if pruned > 0 {
			e.log.Info("old Smart Pay code records pruned", "count", pruned, "older_than", codeRetention)
		}
		for _, id := range stale {
			e.log.Info("abandoned Smart Pay code cancelled", "kassa_purchase_id", id)
		}
		for _, p := range ended {
			e.paymentLog(p).Info("payment did not reach release within abandon_after; cancelled, nothing was charged", "reason", p.Error.Code)
			e.ages.forget("pay:" + p.ID)
			e.publishPayment(p)
			e.poke(p.ID)
		}
	}
}

// abandon ends a payment that did not reach release within abandon_after:
// the buyer has gone. A code it holds is cancelled at Smart Pay, so nothing
// can be released for it later, across restarts too.
func (e *Engine) abandon(tx *queue.Tx, p *Payment, now time.Time) error {
	if p.State == payments.Committing {
		return e.giveUpWaiting(tx, p, now, "no_code_scanned",
			"no Smart Pay code was scanned in time; start a new payment when the buyer is ready")
	}
	if err := e.giveUpWaiting(tx, p, now, "abandoned",
		"the payment did not reach release within abandon_after (the buyer has likely left); nothing was charged. Start a new payment with a fresh code"); err != nil {
		return err
	}
	return e.cancelPurchase(tx, p, now)
}

// cancelSmartPayPurchase cancels the payment's purchase at Smart Pay through
// the outbox, and marks its code given up.
func (e *Engine) cancelSmartPayPurchase(tx *queue.Tx, p *Payment, now time.Time) error {
	if p.SmartPay == nil || p.SmartPay.PurchaseID == "" {
		return nil
	}
	if c, err := getCode(tx, p.SmartPay.KassaPurchaseID); err == nil {
		c.State, c.Updated = CodeCanceled, now
		if err := putCode(tx, c); err != nil {
			return err
		}
	}
	return enqueueJSON(tx, KindSmartPayCancel, p.ID, cancelMsg{PurchaseID: p.SmartPay.PurchaseID})
}

// pruneCodes deletes finished code records past their retention. The newest
// record always stays: it orders later commits.
func pruneCodes(tx *queue.Tx, now time.Time) (int, error) {
	var newest string
	if err := tx.ForEach(collCodes, func(id string, _ []byte) error {
		if newest == "" || lessID(newest, id) {
			newest = id
		}
		return nil
	}); err != nil {
		return 0, err
	}
	var old []string
	err := tx.ForEach(collCodes, func(id string, v []byte) error {
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
