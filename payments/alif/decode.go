package alif

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"time"

	"kassa-agent/payments"
	"kassa-agent/payments/alif/internal/wire"
)

// errorFromResponse classifies an answer: nil for a 2xx without an error
// object. Alif sends business refusals as HTTP 200 + {"error": …}, so a 200
// is looked into before it counts as success.
func errorFromResponse(op Op, status int, body []byte) *Error {
	detail, refused := parseError(body)
	if status >= 200 && status <= 299 && !refused {
		return nil
	}
	e := &Error{Op: op, HTTPStatus: status}
	e.Code = clean(detail.CodeText(), 100)
	e.Message = clean(detail.Message, 300)
	e.NotFound = wire.HasCode(wire.ErrCodesNotFound, e.Code)
	switch {
	case status >= 200 && status <= 299:
		e.Class = ClassRejected
		if wire.HasCode(wire.ErrCodesUnauthorized, e.Code) {
			e.Class = ClassUnauthorized
		}
		if f := posField(detail.Field); f != "" && e.Class == ClassRejected {
			msg := e.Message
			if msg == "" {
				msg = "refused by Alif (" + e.Code + ")"
			}
			e.Err = &payments.FieldError{Field: f, Message: msg}
		} else if detail.Field != "" {
			e.Message += " [field " + clean(detail.Field, 60) + "]"
		}
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		e.Class = ClassUnauthorized
	case status == http.StatusRequestTimeout || status == http.StatusTooManyRequests:
		e.Class = ClassUnavailable
	case status >= 500:
		e.Class = ClassAmbiguous
	default: // other 4xx, 1xx and 3xx: Alif did not take the call as sent
		e.Class = ClassRejected
		if e.Message == "" {
			e.Message = fmt.Sprintf("unexpected HTTP %d", status)
		}
	}
	return e
}

// parseError finds the error object of an answer. Any "error" member that
// is not null is a refusal, whatever its shape: an object (wire.ErrorDetail)
// or a bare string (then the message); any other shape is a refusal too.
func parseError(body []byte) (wire.ErrorDetail, bool) {
	var top struct {
		Error json.RawMessage `json:"error"`
	}
	if json.Unmarshal(body, &top) != nil {
		return wire.ErrorDetail{}, false
	}
	raw := bytes.TrimSpace(top.Error)
	// null, false and {} are read as "no error": some APIs always send the member.
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) || bytes.Equal(raw, []byte("false")) {
		return wire.ErrorDetail{}, false
	}
	var d wire.ErrorDetail
	if json.Unmarshal(raw, &d) == nil {
		if d.CodeText() == "" && d.Message == "" && d.Field == "" {
			return d, false
		}
		return d, true
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return wire.ErrorDetail{Message: s}, true
	}
	return wire.ErrorDetail{Message: "unreadable error object"}, true
}

var itemField = regexp.MustCompile(`^items\[(\d{1,4})\]\.(name|price|amount)$`)

// posField names a field of Alif's refusal as the POS sent it, "" when it
// is none we send.
func posField(f string) string {
	for _, o := range optionFields {
		if f == o {
			return optField(f)
		}
	}
	if f == "items" {
		return "receipt.items"
	}
	if m := itemField.FindStringSubmatch(f); m != nil {
		name := m[2]
		if name == "amount" {
			name = "quantity" // Alif's amount is the POS's quantity
		}
		return "receipt.items[" + m[1] + "]." + name
	}
	return ""
}

// decodeStatus reads a status (or refund) answer. Only SUCCEEDED is paid,
// and only when the paid amount, if given, equals the session's total; a
// word we do not know is Processing (keep asking), never Paid. A session
// still pending after its five hours (and our grace) is Expired.
func decodeStatus(body []byte, id string, expiresAt, now time.Time) (payments.Status, error) {
	var r wire.StatusResponse
	if err := json.Unmarshal(body, &r); err != nil {
		return payments.Status{}, err
	}
	if r.ID != "" && r.ID != id {
		return payments.Status{}, fmt.Errorf("the answer is about session %q, not %q", clean(r.ID, 80), id)
	}
	var st payments.Status
	word := ""
	var paid *int64
	if r.Payment != nil {
		word, paid = r.Payment.Status, r.Payment.Amount
	}
	st.Raw = clean(word, 100)
	for _, v := range []*int64{paid, r.Amount} {
		if v != nil && *v < 0 {
			return payments.Status{}, errors.New("negative amount in the answer")
		}
	}
	if paid != nil {
		st.Paid = payments.Tiyin(*paid)
	}
	switch wire.StatusMeaning(word) {
	case wire.MeaningPending:
		st.State = payments.Processing
		if !expiresAt.IsZero() && !now.Before(expiresAt.Add(wire.ExpiryGrace)) {
			st.State, st.Reason = payments.Expired, "the session's five hours are over"
		}
	case wire.MeaningSucceeded:
		st.State = payments.Paid
		if paid != nil && r.Amount != nil && *paid != *r.Amount {
			// Money moved, but not what was asked: a person settles it.
			st.State = payments.Failed
			st.Partial = *paid < *r.Amount
			st.Reason = fmt.Sprintf("Alif reports %s paid of %s", st.Paid, payments.Tiyin(*r.Amount))
		}
	case wire.MeaningDeclined:
		// Only a success closes a session: the buyer may try another card.
		st.State, st.Reason, st.Retry = payments.Declined, "declined: "+st.Raw, true
	case wire.MeaningReverted:
		st.State, st.Reason = payments.Canceled, "refunded (reverted)"
	case wire.MeaningExpired:
		st.State, st.Reason = payments.Expired, "the session lapsed"
	default:
		st.State, st.Reason = payments.Processing, "unknown status word "+fmt.Sprintf("%q", st.Raw)
	}
	return st, nil
}

// decodeNotice reads a verified webhook body: the session it names and,
// when Alif echoes our meta, our order id.
func decodeNotice(body []byte) (payments.Ref, error) {
	var n wire.Notice
	if err := json.Unmarshal(body, &n); err != nil {
		return payments.Ref{}, err
	}
	if n.ID == "" || len(n.ID) > 256 {
		return payments.Ref{}, errors.New("the notice names no session id")
	}
	ref := payments.Ref{ProviderID: n.ID}
	if m := bytes.TrimSpace(n.Meta); len(m) > 0 && m[0] == '{' {
		var meta map[string]json.RawMessage
		if json.Unmarshal(m, &meta) == nil {
			var id string
			if json.Unmarshal(meta[wire.MetaOrderID], &id) == nil && len(id) <= 64 {
				ref.OrderID = id
			}
		}
	}
	return ref, nil
}
