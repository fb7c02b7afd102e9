package fiscal

import (
	"errors"
	"fmt"
)

// Stable error codes. They are part of the agent's API: never rename one.
const (
	CodeUnavailable    = "register_unavailable"      // no link to the register
	CodeBusy           = "register_busy"             // still printing / busy for longer than we waited
	CodePaperOut       = "register_paper_out"        // no receipt paper
	CodeShiftExpired   = "register_shift_expired"    // shift is over 24 h, Z report needed
	CodeShiftClosed    = "register_shift_closed"     // shift is closed and auto-open is off
	CodeReceiptOpen    = "register_receipt_open"     // a receipt is open on the device
	CodeBadReceipt     = "register_bad_receipt"      // receipt rejected before anything was sent
	CodeRejected       = "register_rejected"         // the device refused a command (bad parameters, mode)
	CodeFNError        = "register_fn_error"         // the fiscal drive reported a failure
	CodeFNExhausted    = "register_fn_exhausted"     // fiscal drive lifetime over or archive full
	CodeNotSupported   = "register_not_supported"    // command not supported by this model
	CodeOutcomeUnknown = "register_outcome_unknown"  // the reply was lost and recovery could not yet tell; retry with the same id
	CodeJournal        = "register_journal"          // the write-ahead journal failed; nothing was sent
	CodeProtocol       = "register_protocol"         // malformed reply from the device
	CodeNotRegistered  = "register_not_registered"   // the register is not registered with the tax service: no fiscal receipts
	CodeIdentity       = "register_identity_unknown" // the registration or FN number could not be read; nothing was printed
)

// CodeInfo describes one stable error code.
type CodeInfo struct {
	Code        string
	Retryable   bool
	Description string
}

// Codes is the documented list of error codes this package and its drivers return.
// The agent renders it in its API documentation.
var Codes = []CodeInfo{
	{CodeUnavailable, true, "The register does not answer (cable, power, network). Retry later."},
	{CodeBusy, true, "The register is busy printing. Retry shortly."},
	{CodePaperOut, true, "No receipt paper. Load paper, then retry."},
	{CodeShiftExpired, false, "The shift is older than 24 hours; a Z report is required."},
	{CodeShiftClosed, false, "The shift is closed; open a shift first."},
	{CodeReceiptOpen, true, "A receipt is open on the register."},
	{CodeBadReceipt, false, "The receipt is invalid; nothing was sent to the register."},
	{CodeRejected, false, "The register refused the command (see device_code)."},
	{CodeFNError, false, "The fiscal drive (FN) reported an error (see device_code)."},
	{CodeFNExhausted, false, "The fiscal drive is exhausted or expired and must be replaced."},
	{CodeNotSupported, false, "The register model does not support this command."},
	{CodeOutcomeUnknown, true, "The register's answer was lost; retry with the same id to learn the outcome."},
	{CodeJournal, true, "The local fiscal journal could not be written; nothing was sent."},
	{CodeProtocol, true, "The register sent a malformed answer."},
	{CodeNotRegistered, false, "The register is not registered (no registration number); it cannot print fiscal receipts."},
	{CodeIdentity, true, "The register's registration or FN number could not be read; nothing was printed. Retry."},
}

// Error is the one error type of fiscal registers. Device is the raw device or FN
// error code (0 when the error did not come from the device).
type Error struct {
	Code    string
	Field   string // the receipt field at fault ("items[0].name"), when there is one
	Device  byte
	Command uint16 // the protocol command that failed, 0 if none
	Text    string
	Err     error // underlying cause, if any
}

func (e *Error) Error() string {
	s := e.Code
	if e.Device != 0 {
		s += fmt.Sprintf(" (device 0x%02X", e.Device)
		if e.Command != 0 {
			s += fmt.Sprintf(", command 0x%X", e.Command)
		}
		s += ")"
	}
	if e.Text != "" {
		s += ": " + e.Text
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// ErrorCode returns the stable snake_case code.
func (e *Error) ErrorCode() string { return e.Code }

// Retryable reports whether the same call may succeed later without a change of input.
func (e *Error) Retryable() bool {
	for _, c := range Codes {
		if c.Code == e.Code {
			return c.Retryable
		}
	}
	return false
}

func (e *Error) Unwrap() error { return e.Err }

// Is matches another *Error by Code, so errors.Is(err, fiscal.ErrPaperOut) works.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code && (t.Device == 0 || t.Device == e.Device)
}

// Sentinels for errors.Is.
var (
	ErrUnavailable    = &Error{Code: CodeUnavailable}
	ErrBusy           = &Error{Code: CodeBusy}
	ErrPaperOut       = &Error{Code: CodePaperOut}
	ErrShiftExpired   = &Error{Code: CodeShiftExpired}
	ErrShiftClosed    = &Error{Code: CodeShiftClosed}
	ErrReceiptOpen    = &Error{Code: CodeReceiptOpen}
	ErrBadReceipt     = &Error{Code: CodeBadReceipt}
	ErrRejected       = &Error{Code: CodeRejected}
	ErrFNError        = &Error{Code: CodeFNError}
	ErrFNExhausted    = &Error{Code: CodeFNExhausted}
	ErrNotSupported   = &Error{Code: CodeNotSupported}
	ErrOutcomeUnknown = &Error{Code: CodeOutcomeUnknown}
	ErrJournal        = &Error{Code: CodeJournal}
	ErrProtocol       = &Error{Code: CodeProtocol}
	ErrNotRegistered  = &Error{Code: CodeNotRegistered}
	ErrIdentity       = &Error{Code: CodeIdentity}
)

// CodeOf returns the stable code of err, or "" when err is not a fiscal error.
func CodeOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

// badField is a register_bad_receipt error about one field; its text starts
// with the field's name so it reads well on its own.
func badField(field, format string, a ...any) error {
	return &Error{Code: CodeBadReceipt, Field: field, Text: field + ": " + fmt.Sprintf(format, a...)}
}
