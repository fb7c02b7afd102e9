package alif

import (
	"errors"
	"fmt"
	"strings"

	"kassa-agent/payments"
)

// Op names a call of the checkout API; it appears in errors, logs and the
// sandbox's fault injection.
type Op string

// The calls.
const (
	OpCreate Op = "create"
	OpStatus Op = "status"
	OpRefund Op = "refund"
	// OpNotice names VerifyNotice in its errors; it makes no call.
	OpNotice Op = "notice"
)

// Ops lists every call to Alif (not OpNotice).
func Ops() []Op { return []Op{OpCreate, OpStatus, OpRefund} }

// Class says what a failed call means for the payment.
type Class int

// Error classes; each matches one class of package payments.
const (
	// ClassAmbiguous: the call may have been applied (timeout after the
	// request was written, reset, EOF before the answer, 5xx, an
	// unreadable 2xx). Never create again; a person decides (no Finder).
	ClassAmbiguous Class = iota + 1
	// ClassUnavailable: certainly not applied (no connection, request never
	// written, 408, 429).
	ClassUnavailable
	// ClassUnauthorized: the token was refused.
	ClassUnauthorized
	// ClassRejected: a definite refusal (HTTP 200 + error, other 4xx, a
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
	case ClassRejected:
		return "rejected"
	}
	return fmt.Sprintf("class(%d)", int(c))
}

// Error is every error of a call to Alif.
type Error struct {
	Op         Op
	Class      Class
	HTTPStatus int    // 0 when no HTTP answer arrived
	Code       string // Alif's error code, if any
	Message    string // Alif's message, or ours
	NotFound   bool   // Alif says there is no such session
	Err        error  // the transport error or a *payments.FieldError, if any
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "alif %s: %s", e.Op, e.Class)
	if e.HTTPStatus != 0 {
		fmt.Fprintf(&b, " (HTTP %d", e.HTTPStatus)
		if e.Code != "" {
			fmt.Fprintf(&b, " %s", e.Code)
		}
		b.WriteString(")")
	}
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	if e.Err != nil {
		b.WriteString(": " + e.Err.Error())
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// Is makes the error match the classes of package payments.
func (e *Error) Is(target error) bool {
	switch target {
	case payments.ErrAmbiguous:
		return e.Class == ClassAmbiguous
	case payments.ErrUnavailable:
		return e.Class == ClassUnavailable
	case payments.ErrUnauthorized:
		return e.Class == ClassUnauthorized
	case payments.ErrRejected:
		return e.Class == ClassRejected
	case payments.ErrNotFound:
		return e.NotFound
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

// clean keeps a provider's text printable and short for errors and logs.
func clean(s string, max int) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if r := []rune(s); len(r) > max {
		return string(r[:max]) + "…"
	}
	return s
}
