// Package wire is the ONE place that holds every name of the Smart Pay
// kassa API that we assumed rather than read in the provider's document:
// paths, JSON field names, status words, error body shape, error codes and
// the QR code pattern. The client (payments/smartpay) and its sandbox
// (payments/smartpay/sandbox) both speak through this file, so the day the
// provider's OpenAPI document arrives, this file is the one that changes.
//
// Known from the seed: the method paths /v1/auth, /v1/purchase/code/commit,
// /v1/purchase/release, /v1/purchase/status, /v1/purchase/kassa/status,
// /v1/purchase/fiscal; auth by client certificate + cookie. Everything else
// here is assumed, and marked so below.
package wire

import (
	"encoding/json"
	"net/http"
	"strings"
	"time"
)

// Paths. All calls are POST with a JSON body.
const (
	PathAuth    = "/v1/auth"
	PathCommit  = "/v1/purchase/code/commit"
	PathRelease = "/v1/purchase/release"
	PathStatus  = "/v1/purchase/status"
	PathConfirm = "/v1/purchase/kassa/status"
	PathFiscal  = "/v1/purchase/fiscal"
	PathCancel  = "/v1/purchase/cancel" // assumed to exist at all
)

// DefaultCodePattern recognises a Smart Pay QR payload among other scans.
// The seed's QR structure section is missing, so this is our choice: a
// URL-like payload on a reserved example host. Sites override it in the
// config once the real structure is known.
const DefaultCodePattern = `^https://qr\.smartpay\.example/c/[A-Za-z0-9_-]{16,64}$`

// CodePrefix is what DefaultCodePattern expects in front of the token.
const CodePrefix = "https://qr.smartpay.example/c/"

// AuthRequest is the body of POST /v1/auth (assumed empty object).
type AuthRequest struct{}

// CommitRequest fixes a scanned code for one purchase of this kassa.
type CommitRequest struct {
	Code            string `json:"code"`
	KassaPurchaseID string `json:"kassa_purchase_id"`
}

// CommitResponse carries the service-side purchase id.
type CommitResponse struct {
	PurchaseID string `json:"purchase_id"`
}

// ReleaseRequest starts the payment; Amount in kopecks.
type ReleaseRequest struct {
	PurchaseID string `json:"purchase_id"`
	Amount     int64  `json:"amount"`
}

// PurchaseRequest is the body of status and cancel.
type PurchaseRequest struct {
	PurchaseID string `json:"purchase_id"`
}

// StatusResponse is the answer of status (and release).
type StatusResponse struct {
	Status string `json:"status"`
	Reason string `json:"reason,omitempty"`
}

// ConfirmRequest tells the service the kassa finished the transaction.
type ConfirmRequest struct {
	PurchaseID string `json:"purchase_id"`
	Status     string `json:"status"`
}

// ConfirmCompleted is the status word the kassa sends in ConfirmRequest.
const ConfirmCompleted = "completed"

// FiscalRequest stores the receipt's fiscal data at the service.
type FiscalRequest struct {
	PurchaseID   string `json:"purchase_id"`
	KKTRegNumber string `json:"kkt_reg_number"`
	FiscalSign   string `json:"fiscal_sign"`
	FNNumber     string `json:"fn_number"`
	FDNumber     uint32 `json:"fd_number"`
	ReceiptTime  string `json:"receipt_time"`
	Amount       int64  `json:"amount"`
}

// ReceiptTimeLayout is how receipt_time is written (RFC 3339 with the
// till's offset).
const ReceiptTimeLayout = time.RFC3339

// ErrorBody is the assumed error shape: {"error": {"code", "message"}}.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail is the inner object of ErrorBody.
type ErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// HTTP statuses the service is assumed to use for the two refusals the
// flow must tell apart (other statuses keep their plain HTTP meaning).
const (
	HTTPCodeRejected = http.StatusUnprocessableEntity // the QR code is unknown or expired
	HTTPConflict     = http.StatusConflict            // committed elsewhere / wrong state
)

// Error codes the sandbox sends and the client recognises beyond the HTTP
// status.
const (
	ErrCodeUnknown         = "code_unknown"   // 422 on commit: no such code
	ErrCodeExpired         = "code_expired"   // 422: the code (or the commit) lapsed
	ErrCodeCommitted       = "code_committed" // 409: committed by another purchase
	ErrPurchaseNotFound    = "purchase_not_found"
	ErrInvalidState        = "invalid_state" // 409: wrong step for the purchase's state
	ErrInvalidRequest      = "invalid_request"
	ErrUnauthorized        = "unauthorized"
	ErrCertificateRequired = "client_certificate_required"
	ErrInternal            = "internal_error"
	ErrServiceUnavailable  = "service_unavailable"
)

// RepeatConflictMeansDone names the calls that, sent again after their answer
// was lost, the service is assumed to answer 409 when the first attempt was
// applied (kassa/status for a purchase already completed, fiscal data already
// stored). ASSUMED: the seed says nothing about repeats; the sandbox answers
// repeats as the first attempt unless its RepeatConflict fault is set. A 409
// to a first attempt keeps its plain meaning (wrong state), and a repeated
// commit answered 409 is not done: its purchase id is unknown, so the agent
// names it by committing again and cancels it.
func RepeatConflictMeansDone(op string) bool { return op == "confirm" || op == "fiscal" }

// CodeRejectedErrors are error codes meaning "this QR code cannot be used":
// the buyer must show a fresh one.
var CodeRejectedErrors = []string{ErrCodeUnknown, ErrCodeExpired, "code_not_found", "invalid_code", "code_invalid"}

// ParseError reads an error body. Besides the assumed nested shape it takes
// a flat {"code","message"} and the common {"detail"} / {"error": "text"}
// forms, so a differently shaped real answer still yields its words.
func ParseError(body []byte) (code, message string) {
	var nested struct {
		Error json.RawMessage `json:"error"`
		Code  json.RawMessage `json:"code"`
		Msg   string          `json:"message"`
		Det   string          `json:"detail"`
	}
	if json.Unmarshal(body, &nested) != nil {
		return "", ""
	}
	if len(nested.Error) > 0 {
		var d ErrorDetail
		if json.Unmarshal(nested.Error, &d) == nil {
			return d.Code, d.Message
		}
		var s string
		if json.Unmarshal(nested.Error, &s) == nil {
			return "", s
		}
	}
	msg := nested.Msg
	if msg == "" {
		msg = nested.Det
	}
	return scalar(nested.Code), msg
}

// scalar turns a JSON string or number into its text.
func scalar(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var n json.Number
	if json.Unmarshal(raw, &n) == nil {
		return n.String()
	}
	return ""
}

// Status words as the sandbox sends them.
const (
	StatusCommitted  = "committed"
	StatusProcessing = "processing"
	StatusSuccess    = "success"
	StatusDeclined   = "declined"
	StatusExpired    = "expired"
	StatusCanceled   = "canceled"
)

// Meaning is what a status word means to us, independent of its spelling.
type Meaning int

// Meanings of status words. MeaningUnknown is never success.
const (
	MeaningUnknown Meaning = iota
	MeaningCommitted
	MeaningProcessing
	MeaningSuccess
	MeaningDeclined
	MeaningFailed
	MeaningExpired
	MeaningCanceled
)

// statusWords maps every word the real service could plausibly send. Only
// words that unmistakably mean "money taken" map to success; doubtful words
// stay unknown, which the agent treats as "keep asking, then escalate".
var statusWords = map[string]Meaning{
	"committed":   MeaningCommitted,
	"commited":    MeaningCommitted,
	"fixed":       MeaningCommitted,
	"processing":  MeaningProcessing,
	"in_progress": MeaningProcessing,
	"inprogress":  MeaningProcessing,
	"pending":     MeaningProcessing,
	"released":    MeaningProcessing,
	"wait":        MeaningProcessing,
	"waiting":     MeaningProcessing,
	"success":     MeaningSuccess,
	"succeeded":   MeaningSuccess,
	"successful":  MeaningSuccess,
	"paid":        MeaningSuccess,
	"completed":   MeaningSuccess,
	"declined":    MeaningDeclined,
	"rejected":    MeaningDeclined,
	"denied":      MeaningDeclined,
	"failed":      MeaningFailed,
	"fail":        MeaningFailed,
	"failure":     MeaningFailed,
	"expired":     MeaningExpired,
	"canceled":    MeaningCanceled,
	"cancelled":   MeaningCanceled,
	"cancel":      MeaningCanceled,
}

// StatusMeaning classifies a status word: case and surrounding space are
// ignored, "-" and " " count as "_"; anything else is MeaningUnknown.
func StatusMeaning(word string) Meaning {
	w := strings.ToLower(strings.TrimSpace(word))
	w = strings.NewReplacer("-", "_", " ", "_").Replace(w)
	return statusWords[w]
}

// SessionCookie is the cookie name the sandbox sets. The client does not
// depend on it: it keeps whatever cookies /v1/auth sets in its jar.
const SessionCookie = "kassa_session"

// SecretFields are top-level request/response fields whose values are
// secrets and never appear in logs: the QR payload (a copy of it could be
// paid at another till until it is committed) and any token the real auth
// might return in a body.
var SecretFields = []string{"code", "token", "access_token", "refresh_token",
	"session", "session_id", "sessionid", "cookie", "password", "secret", "key", "private_key", "authorization"}
