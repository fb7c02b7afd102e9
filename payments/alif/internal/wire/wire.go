// Package wire is the ONE place that holds every name of Alif's online
// checkout (онлайн-касса) API that we assumed rather than read in the seed:
// paths, JSON field names, status words, the error body, the webhook
// header and field, and the probe. The client (payments/alif) and its
// sandbox (payments/alif/sandbox) both speak through this file, so the day
// Alif's real reference is at hand, this file is the one that changes.
//
// From Alif's online-checkout document: a session is
// created from items {name, price, amount} plus webhook_url (optional,
// https), redirect_url (https), cancel_url (https), meta (any JSON) and
// epos; total = Σ price × amount; the session lives 5 hours and takes one
// successful payment; the buyer pays on <checkout>?session_ref=<id>.
//
// Everything else is ASSUMED from public Alifpay integrations and marked so
// below.
package wire

import (
	"encoding/json"
	"strings"
	"time"
)

// Paths. Every call is POST with a JSON body. ASSUMED: the seed names no
// path; these are the invoice methods of public Alifpay integrations.
const (
	PathCreate = "/v2/invoice"       // create a session → CreateResponse
	PathStatus = "/v2/getInvoice"    // IDRequest → StatusResponse
	PathRefund = "/v2/refundInvoice" // IDRequest → StatusResponse; full refund only
)

// HeaderToken carries the merchant token, bare (not "Bearer …"). ASSUMED
// from public integrations.
const HeaderToken = "Token"

// SessionTTL is the life of a session (seed: 5 hours).
const SessionTTL = 5 * time.Hour

// ExpiryGrace is OUR margin after SessionTTL before a session that shows
// no payment is reported expired: a payment begun in the last seconds may
// still settle, and our clock started when the create answer arrived, not
// when Alif made the session.
const ExpiryGrace = 2 * time.Minute

// CheckoutParam is the query parameter of the checkout page (seed).
const CheckoutParam = "session_ref"

// Item is one line of goods (seed). Price is in TIYIN (ASSUMED: the seed
// gives no unit; every public integration sends integer tiyin, 1 sum = 100
// tiyin). Amount is the QUANTITY, an integer count of units (seed: "amount
// — количество товара"). A fractional quantity (0.5 kg) cannot be written
// as an integer: the client sends such a line as amount 1 with price = the
// line's sum (price × quantity, rounded half up to a tiyin, the rule the
// fiscal receipt uses), so Σ price × amount still equals what the buyer pays.
type Item struct {
	Name   string `json:"name"`
	Price  int64  `json:"price"`
	Amount int64  `json:"amount"`
}

// CreateRequest is the body of PathCreate (field names from the seed).
type CreateRequest struct {
	Items       []Item          `json:"items"`
	WebhookURL  string          `json:"webhook_url,omitempty"`
	RedirectURL string          `json:"redirect_url"`
	CancelURL   string          `json:"cancel_url"`
	Meta        json.RawMessage `json:"meta"`
	EPOS        string          `json:"epos"`
}

// MetaOrderID is the key the agent adds to meta with our order id, so a
// session can be matched to its payment by a person or a webhook. OUR name.
const MetaOrderID = "kassa_order_id"

// MetaPOS is the key under which a POS's meta that is not a JSON object
// (an array, a string) is kept, since our order id needs an object. OUR name.
const MetaPOS = "pos"

// CreateResponse: the seed says the id is returned; the field name "id"
// is ASSUMED (public integrations: {"id": "<uuid>"}).
type CreateResponse struct {
	ID string `json:"id"`
}

// IDRequest is the body of PathStatus and PathRefund (ASSUMED {"id"}).
type IDRequest struct {
	ID string `json:"id"`
}

// StatusResponse is the answer of PathStatus and PathRefund. ASSUMED
// shape: the session's total in Amount, and a Payment object that is
// absent or null until the buyer tries to pay.
type StatusResponse struct {
	ID      string          `json:"id"`
	Amount  *int64          `json:"amount,omitempty"` // Σ price × amount, tiyin
	Payment *Payment        `json:"payment"`
	Meta    json.RawMessage `json:"meta,omitempty"`
}

// Payment is the payment inside a session (public integrations:
// payment.status, payment.amount in tiyin).
type Payment struct {
	Status string `json:"status"`
	Amount *int64 `json:"amount,omitempty"`
}

// Status words. SUCCEEDED, PENDING, DECLINED, REVERTED and the card
// failures are seen in public integrations; EXPIRED for a lapsed session is
// ASSUMED (the seed only says a session lives 5 hours).
const (
	StatusSucceeded = "SUCCEEDED"
	StatusPending   = "PENDING"
	StatusDeclined  = "DECLINED"
	StatusReverted  = "REVERTED"
	StatusExpired   = "EXPIRED"
)

// CardFailures are the card failure words public integrations show; each
// is a declined payment.
var CardFailures = []string{"INSUFFICIENT_FUNDS", "EXPIRED_CARD", "BLOCKED_CARD",
	"INVALID_CARD", "LIMIT_EXCEEDED", "CARD_NOT_FOUND", "WRONG_OTP", "OTP_EXPIRED"}

// Meaning is what a status word means to us, independent of its spelling.
type Meaning int

// Meanings. MeaningUnknown is never success.
const (
	MeaningUnknown Meaning = iota
	MeaningPending
	MeaningSucceeded
	MeaningDeclined
	MeaningReverted
	MeaningExpired
)

// StatusMeaning classifies a status word; case and surrounding space are
// ignored, nothing else is guessed. "" (no payment yet) is pending.
func StatusMeaning(word string) Meaning {
	w := strings.ToUpper(strings.TrimSpace(word))
	switch w {
	case "", StatusPending:
		return MeaningPending
	case StatusSucceeded:
		return MeaningSucceeded
	case StatusDeclined:
		return MeaningDeclined
	case StatusReverted:
		return MeaningReverted
	case StatusExpired:
		return MeaningExpired
	}
	for _, f := range CardFailures {
		if w == f {
			return MeaningDeclined
		}
	}
	return MeaningUnknown
}

// ErrorBody is a refusal. Public integrations: business errors arrive as
// HTTP 200 with {"error": {"code", "message"}}, so 200 alone is not
// success. "field", naming the request field refused, is ASSUMED.
type ErrorBody struct {
	Error *ErrorDetail `json:"error"`
}

// ErrorDetail is the inner object of ErrorBody. Code may be a string or a
// number on the wire; Code() gives its text.
type ErrorDetail struct {
	RawCode json.RawMessage `json:"code"`
	Message string          `json:"message"`
	Field   string          `json:"field,omitempty"`
}

// CodeText is the code as text ("" when absent).
func (d ErrorDetail) CodeText() string {
	if len(d.RawCode) == 0 {
		return ""
	}
	var s string
	if json.Unmarshal(d.RawCode, &s) == nil {
		return s
	}
	var n json.Number
	if json.Unmarshal(d.RawCode, &n) == nil {
		return n.String()
	}
	return ""
}

// NewError builds an error body (the sandbox uses it).
func NewError(code, message, field string) ErrorBody {
	raw, _ := json.Marshal(code)
	return ErrorBody{Error: &ErrorDetail{RawCode: raw, Message: message, Field: field}}
}

// Error codes. ASSUMED: no public list exists. The client reads
// ErrCodesUnauthorized as refused credentials and ErrCodesNotFound as "no
// such session"; any other code is a plain refusal.
const (
	ErrUnauthorized = "unauthorized"
	ErrNotFound     = "not_found"
	ErrValidation   = "validation_error"
	ErrInvalidState = "invalid_state"
	ErrInternal     = "internal_error"
)

// ErrCodesUnauthorized are codes meaning our token is refused.
var ErrCodesUnauthorized = []string{ErrUnauthorized, "invalid_token", "token_invalid", "forbidden", "401", "403"}

// ErrCodesNotFound are codes meaning the session does not exist.
var ErrCodesNotFound = []string{ErrNotFound, "invoice_not_found", "session_not_found", "404"}

// HasCode reports whether code is one of list, ignoring case.
func HasCode(list []string, code string) bool {
	for _, c := range list {
		if strings.EqualFold(c, strings.TrimSpace(code)) {
			return true
		}
	}
	return false
}

// ProbeID is the session id the probe asks the status of. ASSUMED: with a
// valid token the status call answers not_found (HTTP 200 + error) for an
// id that cannot exist; with a bad token, HTTP 401 or an unauthorized code.
const ProbeID = "00000000-0000-0000-0000-000000000000"

// HeaderSignature carries the webhook's signature: base64 (standard
// alphabet, padded) of HMAC-SHA256(webhook secret, raw body). From public
// integrations.
const HeaderSignature = "Signature"

// Notice is the webhook body. ASSUMED: the same shape as StatusResponse,
// and "id" names the session (invoice) it is about; meta is read for our
// order id when Alif echoes it.
type Notice struct {
	ID   string          `json:"id"`
	Meta json.RawMessage `json:"meta,omitempty"`
}
