package smartpay

import (
	"encoding/json"
	"errors"

	"kassa-agent/payments"
	"kassa-agent/payments/smartpay/internal/wire"
)

// State is a purchase's state as the service reports it, in our words.
type State string

// Service states. StateUnknown is any word we do not recognise: it is never
// success and never final; the caller keeps asking and escalates at its
// deadline.
const (
	StateCommitted  State = "committed"
	StateProcessing State = "processing"
	StateSuccess    State = "success"
	StateDeclined   State = "declined"
	StateFailed     State = "failed"
	StateExpired    State = "expired"
	StateCanceled   State = "canceled"
	StateUnknown    State = "unknown"
)

// Final reports whether the service will not change the state any more.
func (s State) Final() bool {
	switch s {
	case StateSuccess, StateDeclined, StateFailed, StateExpired, StateCanceled:
		return true
	}
	return false
}

// Payment maps the state to the common payment state. StateExpired maps to
// payments.Expired; a caller that has not released yet should read it as
// payments.CodeExpired. StateUnknown has no mapping (ok false).
func (s State) Payment() (payments.State, bool) {
	switch s {
	case StateCommitted:
		return payments.Committed, true
	case StateProcessing:
		return payments.Processing, true
	case StateSuccess:
		return payments.Paid, true
	case StateDeclined:
		return payments.Declined, true
	case StateFailed:
		return payments.Failed, true
	case StateExpired:
		return payments.Expired, true
	case StateCanceled:
		return payments.Canceled, true
	}
	return "", false
}

// Status is the answer of Status (and Release).
type Status struct {
	State  State
	Reason string // the service's reason text, e.g. why it declined
	Raw    string // the status word exactly as the service sent it
}

func stateOf(word string) State {
	switch wire.StatusMeaning(word) {
	case wire.MeaningCommitted:
		return StateCommitted
	case wire.MeaningProcessing:
		return StateProcessing
	case wire.MeaningSuccess:
		return StateSuccess
	case wire.MeaningDeclined:
		return StateDeclined
	case wire.MeaningFailed:
		return StateFailed
	case wire.MeaningExpired:
		return StateExpired
	case wire.MeaningCanceled:
		return StateCanceled
	}
	return StateUnknown
}

var errNoStatus = errors.New("response has no status")

// decodeStatus reads a status (or release) response body.
func decodeStatus(body []byte) (Status, error) {
	var r wire.StatusResponse
	if err := json.Unmarshal(body, &r); err != nil {
		return Status{}, err
	}
	if r.Status == "" {
		return Status{}, errNoStatus
	}
	return Status{State: stateOf(r.Status), Reason: clean(r.Reason, 500), Raw: clean(r.Status, 100)}, nil
}

// clean keeps text from the service printable and short, for errors and logs.
func clean(s string, max int) string {
	out := make([]rune, 0, min(len(s), max))
	for _, r := range s {
		if len(out) >= max {
			out = append(out, '…')
			break
		}
		if r < 0x20 || r == 0x7f || r == 0xfffd {
			r = ' '
		}
		out = append(out, r)
	}
	return string(out)
}
