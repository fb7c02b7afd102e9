package localapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
)

// Error is the one error shape of the local API. Code is stable: POS integrators
// switch on it, so a code is never renamed or reused. Every code is listed in Codes.
type Error struct {
	Status     int    `json:"-"`
	Code       string `json:"code"`
	Message    string `json:"message"`
	Retryable  bool   `json:"retryable"`
	DeviceCode string `json:"device_code,omitempty"`
	err        error
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }
func (e *Error) Unwrap() error { return e.err }

// CodeInfo documents one error code.
type CodeInfo struct {
	Code      string
	Status    int
	Retryable bool
	Meaning   string
}

// Codes is the documented list of error codes the API answers with. The README
// and the OpenAPI document are generated from, or checked against, this table.
var Codes = []CodeInfo{
	{"bad_request", 400, false, "The request is malformed: bad JSON, a missing or invalid field. The message names the field."},
	{"unknown_field", 400, false, "The JSON body has a field the API does not know; names are case-sensitive (check the spelling)."},
	{"idempotency_key_missing", 400, false, "A creating call was sent without an Idempotency-Key header."},
	{"idempotency_key_invalid", 400, false, "The Idempotency-Key header is present but empty, or longer than 255 bytes."},
	{"unauthorized", 401, false, "No or wrong bearer token. The token is in the agent's data directory (api-token)."},
	{"forbidden_host", 403, false, "The Host header is not 127.0.0.1, localhost or [::1] with the agent's port."},
	{"forbidden_origin", 403, false, "The request carries an Origin header: browser pages may not drive the till."},
	{"not_found", 404, false, "No such endpoint or resource."},
	{"method_not_allowed", 405, false, "The endpoint exists but not with this method."},
	{"conflict", 409, false, "The resource is in a state that does not allow this operation."},
	{"body_too_large", 413, false, "The request body is larger than 1 MiB."},
	{"unsupported_media_type", 415, false, "The body must be sent with Content-Type: application/json."},
	{"idempotency_key_reused", 422, false, "The Idempotency-Key was already used with a different request (compared by meaning: whitespace and key order do not count)."},
	{"validation_failed", 422, false, "The request is well-formed but its values are not acceptable (the message says which)."},
	{"provider_disabled", 422, false, "The payment provider is not enabled in this agent's configuration."},
	{"register_unavailable", 503, true, "The fiscal register does not answer or is not configured; no money was taken."},
	{"register_not_ready", 409, false, "The register cannot print now (shift, paper, FN state); no money was taken. The message says what to do."},
	{"register_paper_out", 409, true, "The register is out of paper; load paper and try again."},
	{"register_shift_expired", 409, false, "The register's shift is over 24 hours: close it with a Z report (POST /v1/shift/close), then try again. Nothing was sent."},
	{"register_shift_closed", 409, false, "The operation needs an open shift and the shift is closed: open one (POST /v1/shift/open), then try again (for a Z report: the shift is already closed). Nothing was sent."},
	{"register_fn_exhausted", 409, false, "The fiscal drive (FN) is past its expiry or full: it makes no more fiscal documents and must be replaced. Nothing was sent."},
	{"marking_refused", 422, false, "A marked item's code may not be sold: the FN or Честный ЗНАК refused it (invalid, sale suspended), or it was not checked online and marking.unchecked refuses that. The message names the field (receipt.items[i].marking_code) and says why in the cashier's words. Nothing was printed and no money was taken."},
	{"marking_unsupported", 409, false, "Marking codes are checked on an FFD 1.2 register only (register.ffd = \"1.2\"). Nothing was sent."},
	{"register_error", 502, false, "The register refused the command; device_code carries its raw code."},
	{"provider_unavailable", 503, true, "The payment provider cannot be reached; no new payment was started."},
	{"provider_error", 502, false, "The payment provider refused the request."},
	{"refund_not_supported", 422, false, "The payment's provider offers no refund; the message says how to return the money another way."},
	{"store_unavailable", 503, true, "The agent's store cannot be written; nothing was changed."},
	{"busy", 503, true, "The agent has as many connections or event streams open as it serves; close ones the POS no longer uses and retry."},
	{"shutting_down", 503, true, "The agent is stopping; retry after it restarts."},
	{"internal", 500, true, "An unexpected error; the agent's log has the details."},
}

var codeIndex = func() map[string]CodeInfo {
	m := make(map[string]CodeInfo, len(Codes))
	for _, c := range Codes {
		m[c.Code] = c
	}
	return m
}()

// Errorf builds an API error with a code from Codes. An unknown code is a
// programming error and becomes "internal", so the documented list stays true.
func Errorf(code, message string) *Error {
	info, ok := codeIndex[code]
	if !ok {
		info = codeIndex["internal"]
	}
	return &Error{Status: info.Status, Code: info.Code, Message: message, Retryable: info.Retryable}
}

// Wrap is Errorf that keeps err as the cause for errors.Is/As and the log.
func Wrap(code, message string, err error) *Error {
	e := Errorf(code, message)
	e.err = err
	return e
}

// coded is what domain errors (register, providers, store) offer so the API can
// answer with their stable code without knowing their packages.
type coded interface {
	error
	ErrorCode() string
}

type retryable interface{ Retryable() bool }

type deviceCoded interface{ DeviceCode() string }

// AsError turns any error into the API's shape.
func AsError(err error) *Error {
	var ae *Error
	if errors.As(err, &ae) {
		return ae
	}
	if errors.Is(err, context.Canceled) {
		return Wrap("shutting_down", "the request was cancelled", err)
	}
	var c coded
	if errors.As(err, &c) {
		info, ok := codeIndex[c.ErrorCode()]
		if !ok {
			info = CodeInfo{Code: c.ErrorCode(), Status: http.StatusBadGateway}
		}
		e := &Error{Status: info.Status, Code: info.Code, Message: err.Error(), Retryable: info.Retryable, err: err}
		var r retryable
		if errors.As(err, &r) {
			e.Retryable = r.Retryable()
		}
		var d deviceCoded
		if errors.As(err, &d) {
			e.DeviceCode = d.DeviceCode()
		}
		return e
	}
	return Wrap("internal", "internal error; see the agent log", err)
}

// WriteError answers with the error body.
func WriteError(w http.ResponseWriter, err error) {
	e := AsError(err)
	WriteJSON(w, e.Status, struct {
		Error *Error `json:"error"`
	}{e})
}

// WriteJSON answers with v as JSON.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
