// Package wire is the ONE place that holds every name of the AliKassa
// merchant API the client (payments/alikassa) and its sandbox
// (payments/alikassa/sandbox) speak: paths, headers, JSON field names and
// their order, status words, the error body, the notification field list
// and the PHP json_encode byte rules the notification signature is made
// over.
//
// Read in AliKassa's payment document: POST /v1/payment,
// the Account and Sign headers, the create fields and their limits, the
// create answer {url, payment_status, id, uuid, success_redirect_url}, the
// 400 body {"message", "errors"}, the BDT service and bank codes. From the
// provider's published API: /v1/payment/status, /v1/account/info,
// the status answer fields, the status words, the notification fields.
// ASSUMED (marked so below): the shape of "no such order", the HTTP codes of
// a refused signature, the body of account/info, the duplicate order_id
// refusal.
package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"unicode/utf8"
)

// Paths. Every call is POST with a JSON body.
const (
	PathCreate      = "/v1/payment"
	PathStatus      = "/v1/payment/status"
	PathAccountInfo = "/v1/account/info"
)

// Request headers.
const (
	HeaderAccount = "Account"
	HeaderSign    = "Sign"
)

// Create request fields, in the order they are sent (the seed's table
// order; the signature is over the bytes, so any order is valid, but one
// fixed order keeps requests comparable).
const (
	FieldAmount             = "amount"
	FieldOrderID            = "order_id"
	FieldService            = "service"
	FieldCustomerIP         = "customer_ip"
	FieldCustomerCode       = "customer_code"
	FieldSuccessRedirectID  = "success_redirect_id"
	FieldFailRedirectID     = "fail_redirect_id"
	FieldNotificationID     = "notification_endpoint_id"
	FieldSuccessRedirectURL = "success_redirect_url"
	FieldFailRedirectURL    = "fail_redirect_url"
	FieldNotificationURL    = "notification_endpoint_url"
	FieldDesc               = "desc"
	FieldLifetime           = "lifetime"
)

// CreateFieldOrder lists the create fields in sending order.
var CreateFieldOrder = []string{FieldAmount, FieldOrderID, FieldService, FieldCustomerIP,
	FieldCustomerCode, FieldSuccessRedirectID, FieldFailRedirectID, FieldNotificationID,
	FieldSuccessRedirectURL, FieldFailRedirectURL, FieldNotificationURL, FieldDesc, FieldLifetime}

// Limits from the seed and the spec.
const (
	MaxOrderID      = 128
	MaxService      = 100
	MaxCustomerCode = 100
	MaxURL          = 255
	MaxDesc         = 128
	MinLifetime     = 900  // seconds
	MaxLifetime     = 3600 // seconds
	// MaxAmountMinor is decimal(11.2): at most 9 integer digits.
	MaxAmountMinor = 99_999_999_999
)

// ServiceBDT is the seed's Bangladesh card/wallet page service and its bank
// codes (customer_code).
const ServiceBDT = "payment_card_bdt_hpp"

// BankCodesBDT are the deposit bank codes the seed lists for ServiceBDT.
var BankCodesBDT = []string{"nagad", "bkash", "rocket"}

// Field is one key and value of a JSON object written in order.
type Field struct {
	Key   string
	Value any
}

// Object writes a compact JSON object with the fields in the given order.
// HTML characters are not escaped: the bytes are signed and sent as they
// are, and plain bytes are easier to compare with the provider's logs.
func Object(fields []Field) ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, f := range fields {
		if i > 0 {
			b.WriteByte(',')
		}
		if err := encodeCompact(&b, f.Key); err != nil {
			return nil, err
		}
		b.WriteByte(':')
		if err := encodeCompact(&b, f.Value); err != nil {
			return nil, fmt.Errorf("field %s: %w", f.Key, err)
		}
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

func encodeCompact(b *bytes.Buffer, v any) error {
	var tmp bytes.Buffer
	enc := json.NewEncoder(&tmp)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return err
	}
	b.Write(bytes.TrimSuffix(tmp.Bytes(), []byte("\n")))
	return nil
}

// CreateResponse is the 200 answer to create (seed).
type CreateResponse struct {
	URL           string          `json:"url"`
	PaymentStatus string          `json:"payment_status"`
	ID            json.RawMessage `json:"id"` // a number in the seed's example; strings are taken too
	UUID          string          `json:"uuid"`
}

// StatusRequest asks for a payment by our order id (the spec allows "id" as
// well; we always have the order id).
type StatusRequest struct {
	OrderID string `json:"order_id"`
}

// StatusResponse is the answer to status (spec). Amounts are decimal
// strings; numbers are taken too, since PHP services drift between them.
type StatusResponse struct {
	OrderID          string          `json:"order_id"`
	ID               json.RawMessage `json:"id"`
	UUID             string          `json:"uuid"`
	URL              string          `json:"url"`
	PaymentStatus    string          `json:"payment_status"`
	Amount           json.RawMessage `json:"amount"`
	PaymentAmount    json.RawMessage `json:"payment_amount"`
	CommissionAmount json.RawMessage `json:"commission_amount"`
	IsPartialPayment json.RawMessage `json:"is_partial_payment"`
	CardMask         string          `json:"card_mask"`
	ServiceCode      string          `json:"service_code"`
}

// Status words (spec): wait while the buyer has not finished, then one of
// the final three. Any other word is unknown: keep asking, never paid.
const (
	StatusWait   = "wait"
	StatusPaid   = "paid"
	StatusCancel = "cancel"
	StatusFail   = "fail"
)

// ErrorBody is a 400 answer (seed): a message and, for invalid data, the
// refused fields, each with its messages (Laravel's validation shape).
type ErrorBody struct {
	Message string              `json:"message"`
	Errors  map[string][]string `json:"errors,omitempty"`
}

// ParseError reads an error body; anything unreadable gives empty values.
func ParseError(body []byte) ErrorBody {
	var e ErrorBody
	if json.Unmarshal(body, &e) != nil {
		return ErrorBody{}
	}
	return e
}

// ASSUMED: the message of a validation refusal (Laravel's default, as in
// the seed's example).
const MessageInvalid = "The given data was invalid."

// ASSUMED: a refused Account or Sign is HTTP 401 (403 is read the same).
const MessageUnauthenticated = "Unauthenticated."

// ASSUMED: a create repeating an order_id the account already has is
// refused as a validation error on order_id (Laravel "unique"), HTTP 400.
const MessageOrderIDTaken = "The order id has already been taken."

// ASSUMED: "no such order" on status is HTTP 404, or HTTP 400 whose errors
// name order_id (Laravel "exists": "The selected order id is invalid."). The
// sandbox answers the 400 form. Both mean ErrNotFound to the client, and
// nothing else does: a 400 naming other fields is a plain refusal.
const MessageOrderIDUnknown = "The selected order id is invalid."

// AccountInfoRequest is the body of account/info. ASSUMED: an empty object
// (the call takes no parameters).
type AccountInfoRequest struct{}

// AccountInfoResponse is the part of the account/info answer the probe
// reads (spec). is_allowed_payment may be a bool or 0/1.
type AccountInfoResponse struct {
	IsAllowedPayment json.RawMessage `json:"is_allowed_payment"`
	IsAllowedPayout  json.RawMessage `json:"is_allowed_payout"`
}

// Truthy reads a PHP-style flag: true, 1, "1", "true".
func Truthy(raw json.RawMessage) bool {
	switch string(bytes.TrimSpace(raw)) {
	case "true", "1", `"1"`, `"true"`:
		return true
	}
	return false
}

// Notification query parameters (spec).
const (
	NoticeType             = "type"
	NoticeID               = "id"
	NoticeOrderID          = "order_id"
	NoticePaymentStatus    = "payment_status"
	NoticeAmount           = "amount"
	NoticePaymentAmount    = "payment_amount"
	NoticeCommissionAmount = "commission_amount"
	NoticeIsPartialPayment = "is_partial_payment"
	NoticeAccount          = "account"
	NoticeService          = "service"
	NoticeDesc             = "desc"
	NoticeSign             = "sign"
)

// NoticeFields are the signed notification keys in the order the signed
// JSON has them (spec). The list has changed over time: config overrides it.
var NoticeFields = []string{NoticeType, NoticeID, NoticeOrderID, NoticePaymentStatus,
	NoticeAmount, NoticePaymentAmount, NoticeCommissionAmount, NoticeIsPartialPayment,
	NoticeAccount, NoticeService, NoticeDesc}

// NoticeNumericFields are written as JSON numbers; every other value is a
// string (spec: id is a number).
var NoticeNumericFields = []string{NoticeID}

// Errors of NoticeJSON.
var (
	ErrNoticeMissing = errors.New("notification field missing")
	ErrNoticeValue   = errors.New("notification field value unusable")
)

// NoticeJSON rebuilds the bytes PHP json_encode gives for the notification
// array: a compact object with the keys in order, the numeric keys as
// numbers and every other value as a string, escaped as PHP does by default
// (see PHPString). get returns a value and whether it is present. A missing
// key is an error: the sender signed it, so without it the bytes cannot be
// rebuilt.
func NoticeJSON(keys []string, get func(string) (string, bool)) ([]byte, error) {
	var b []byte
	b = append(b, '{')
	for i, k := range keys {
		v, ok := get(k)
		if !ok {
			return nil, fmt.Errorf("%w: %s", ErrNoticeMissing, k)
		}
		if i > 0 {
			b = append(b, ',')
		}
		var err error
		if b, err = AppendPHPString(b, k); err != nil {
			return nil, fmt.Errorf("%w: key %s: %w", ErrNoticeValue, k, err)
		}
		b = append(b, ':')
		if slices.Contains(NoticeNumericFields, k) {
			if !canonicalInt(v) {
				return nil, fmt.Errorf("%w: %s is not an integer", ErrNoticeValue, k)
			}
			b = append(b, v...)
			continue
		}
		if b, err = AppendPHPString(b, v); err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrNoticeValue, k, err)
		}
	}
	return append(b, '}'), nil
}

// canonicalInt reports whether s is exactly how PHP prints an int: within
// int64, no plus sign, no leading zero, no "-0".
func canonicalInt(s string) bool {
	n, err := strconv.ParseInt(s, 10, 64)
	return err == nil && strconv.FormatInt(n, 10) == s
}

// ErrInvalidUTF8 is what PHP json_encode fails on (it returns false).
var ErrInvalidUTF8 = errors.New("invalid UTF-8")

// AppendPHPString appends s as PHP json_encode writes a string with its
// default flags: `"` and `\` escaped, `/` as `\/`, \b \f \n \r \t by name,
// other control characters and every non-ASCII character as \u00xx /
// \uxxxx with lowercase hex, characters beyond the BMP as a UTF-16
// surrogate pair. DEL (0x7f) stays as it is. Go's json.Marshal differs (it
// keeps `/` and non-ASCII, escapes <>&), hence this function.
func AppendPHPString(b []byte, s string) ([]byte, error) {
	const hex = "0123456789abcdef"
	u := func(b []byte, r rune) []byte {
		return append(b, '\\', 'u', hex[r>>12&0xf], hex[r>>8&0xf], hex[r>>4&0xf], hex[r&0xf])
	}
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch c {
			case '"':
				b = append(b, '\\', '"')
			case '\\':
				b = append(b, '\\', '\\')
			case '/':
				b = append(b, '\\', '/')
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				if c < 0x20 {
					b = u(b, rune(c))
				} else {
					b = append(b, c)
				}
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			return nil, ErrInvalidUTF8
		}
		if r > 0xffff {
			r -= 0x10000
			b = u(b, 0xd800+(r>>10))
			b = u(b, 0xdc00+(r&0x3ff))
		} else {
			b = u(b, r)
		}
		i += size
	}
	return append(b, '"'), nil
}
