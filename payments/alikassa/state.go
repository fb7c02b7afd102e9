package alikassa

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"kassa-agent/payments"
	"kassa-agent/payments/alikassa/internal/wire"
)

// answer is a decoded status answer.
type answer struct {
	orderID, id, url, word string
	amount, paid           payments.Amount
	hasPaid                bool // payment_amount was present
}

// decodeStatus reads a status answer. A body it cannot read is an error
// (the caller makes it ambiguous: ask again), never a state.
func decodeStatus(body []byte, cur payments.Currency) (answer, error) {
	var w wire.StatusResponse
	if err := json.Unmarshal(body, &w); err != nil {
		return answer{}, err
	}
	if w.PaymentStatus == "" {
		return answer{}, errors.New("no payment_status")
	}
	// is_partial_payment is not read: payment_amount against amount decides.
	a := answer{orderID: w.OrderID, id: idText(w.ID), url: w.URL, word: w.PaymentStatus}
	var err error
	if a.amount, _, err = decodeMoney(w.Amount, cur); err != nil {
		return answer{}, fmt.Errorf("amount: %w", err)
	}
	if a.paid, a.hasPaid, err = decodeMoney(w.PaymentAmount, cur); err != nil {
		return answer{}, fmt.Errorf("payment_amount: %w", err)
	}
	if a.word == wire.StatusPaid && (!a.hasPaid || a.amount.IsZero()) {
		// Paid is decided on what was really paid against what was asked:
		// without both, we cannot tell a full payment from a partial one.
		return answer{}, errors.New("paid without amount and payment_amount")
	}
	return a, nil
}

// decodeMoney reads a decimal string (or a JSON number) into an amount;
// absent or null is zero and not present.
func decodeMoney(raw json.RawMessage, cur payments.Currency) (payments.Amount, bool, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return payments.Amount{Currency: cur}, false, nil
	}
	var s string
	if raw[0] == '"' {
		if err := json.Unmarshal(raw, &s); err != nil {
			return payments.Amount{}, false, err
		}
	} else {
		s = string(raw) // a JSON number's text; ParseDecimal refuses exponents
	}
	a, err := payments.ParseDecimal(s, cur)
	if err != nil {
		return payments.Amount{}, false, err
	}
	return a, true, nil
}

// state maps the answer to the common words. Paid only when the word is
// paid and payment_amount covers amount; money taken short of the amount
// (or under any other word) is Failed with Partial set and Paid showing it,
// for a person. A wait past expires (plus grace) is Expired.
func (a answer) state(expires, now time.Time, grace time.Duration) payments.Status {
	st := payments.Status{Raw: a.word}
	if a.hasPaid {
		st.Paid = a.paid
	}
	short := a.hasPaid && a.paid.Minor < a.amount.Minor
	switch a.word {
	case wire.StatusPaid:
		if !short {
			st.State = payments.Paid
			return st
		}
		st.State, st.Partial = payments.Failed, true
		st.Reason = fmt.Sprintf("partial payment: %s of %s", a.paid, a.amount)
		return st
	case wire.StatusCancel, wire.StatusFail:
		st.State = payments.Canceled
		if a.word == wire.StatusFail {
			st.State = payments.Declined
		}
		if a.paid.Minor > 0 {
			// Some money moved although the payment ended unpaid.
			st.State, st.Partial = payments.Failed, short
			st.Reason = fmt.Sprintf("%s with %s paid of %s", a.word, a.paid, a.amount)
		}
		return st
	case wire.StatusWait:
		st.State = payments.Processing
		st.Partial = a.paid.Minor > 0 && short
		if a.paid.Minor == 0 && !expires.IsZero() && now.After(expires.Add(grace)) {
			st.State = payments.Expired
			st.Reason = "the payment page's lifetime has passed"
		}
		return st
	}
	// A word we do not know: keep asking, never paid.
	st.State = payments.Processing
	st.Reason = "unknown status word"
	return st
}
