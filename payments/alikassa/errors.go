package alikassa

import (
	"errors"
	"fmt"
	"strings"

	"kassa-agent/payments"
)

// Op names a call of the AliKassa API, in errors and the sandbox's faults.
type Op string

// The calls.
const (
	OpCreate      Op = "create"
	OpStatus      Op = "status"
	OpAccountInfo Op = "account_info"
)

// Ops lists every call.
func Ops() []Op { return []Op{OpCreate, OpStatus, OpAccountInfo} }

// Class says what a failed call means.
type Class int

// Error classes; each matches one class of package payments.
const (
	// ClassAmbiguous: the call may have been applied (timeout or reset
	// after the request was written, EOF before the answer, 5xx, an
	// unreadable 2xx). Never create again; ask status by order_id.
	ClassAmbiguous Class = iota + 1
	// ClassUnavailable: certainly not applied (no connection, request
	// never written, 408, 429).
	ClassUnavailable
	// ClassUnauthorized: Account or Sign refused (401, 403).
	ClassUnauthorized
	// ClassNotFound: the service has no payment under the order id.
	ClassNotFound
	// ClassRejected: any other definite refusal (400 and other 4xx, a
	// redirect, a value refused before sending).
	ClassRejected
)

func (c Class) String() string {
	switch c {
	case ClassAmbiguous:
		return "ambiguous"
	case ClassUnavailable:
		return "unavailable"
	case ClassUnauthorized:
		return "unauthorized"
	case ClassNotFound:
		return "not_found"
	case ClassRejected:
		return "rejected"
	}
	return fmt.Sprintf("class(%d)", int(c))
}

// Error is every error a call returns.
type Error struct {
	Op         Op
	Class      Class
	HTTPStatus int    // 0 when no HTTP answer arrived
	Message    string // the service's message, or ours
	// Field is set when the service's refusal names a request field.
	Field *payments.FieldError
	Err   error // the transport or decoding error, if any
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "alikassa %s: %s", e.Op, e.Class)
	if e.HTTPStatus != 0 {
		fmt.Fprintf(&b, " (HTTP %d)", e.HTTPStatus)
	}
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	if e.Field != nil {
		b.WriteString(": " + e.Field.Error())
	}
	if e.Err != nil {
		b.WriteString(": " + e.Err.Error())
	}
	return b.String()
}

// Unwrap gives the field error (so errors.As finds a *payments.FieldError)
// and the transport error.
func (e *Error) Unwrap() []error {
	var errs []error
	if e.Field != nil {
		errs = append(errs, e.Field)
	}
	if e.Err != nil {
		errs = append(errs, e.Err)
	}
	return errs
}

// Is matches the provider-independent classes of package payments.
func (e *Error) Is(target error) bool {
	switch target {
	case payments.ErrAmbiguous:
		return e.Class == ClassAmbiguous
	case payments.ErrUnavailable:
		return e.Class == ClassUnavailable
	case payments.ErrUnauthorized:
		return e.Class == ClassUnauthorized
	case payments.ErrNotFound:
		return e.Class == ClassNotFound
	case payments.ErrRejected:
		return e.Class == ClassRejected || e.Class == ClassNotFound
	}
	return false
}

// ClassOf returns the class of a client error, 0 for any other error.
func ClassOf(err error) Class {
	var e *Error
	if errors.As(err, &e) {
		return e.Class
	}
	return 0
}
