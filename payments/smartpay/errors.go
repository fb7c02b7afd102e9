package smartpay

import (
	"errors"
	"fmt"
	"strings"

	"kassa-agent/payments"
	"kassa-agent/payments/smartpay/internal/wire"
)

// Op names a call of the kassa API; it appears in errors, logs and the
// sandbox's fault injection.
type Op string

// The calls.
const (
	OpAuth    Op = "auth"
	OpCommit  Op = "commit"
	OpRelease Op = "release"
	OpStatus  Op = "status"
	OpConfirm Op = "confirm"
	OpFiscal  Op = "fiscal"
	OpCancel  Op = "cancel"
)

// Ops lists every call.
func Ops() []Op { return []Op{OpAuth, OpCommit, OpRelease, OpStatus, OpConfirm, OpFiscal, OpCancel} }

// Class says what a failed call means for the purchase.
type Class int

// Error classes.
const (
	// ClassAmbiguous: the call may or may not have been applied: timeout
	// after the request was written, connection reset, EOF before the
	// answer, 5xx, a 2xx with an unreadable body. Never resend a release;
	// ask status.
	ClassAmbiguous Class = iota + 1
	// ClassUnavailable: the call certainly was not applied (could not
	// connect, request never written, 408/429); sending it again is safe.
	ClassUnavailable
	// ClassUnauthorized: credentials refused: 401 after one re-auth and one
	// retry, 403, auth refused, or the TLS handshake refusing our certificate.
	ClassUnauthorized
	// ClassCodeRejected: the QR code is unknown or expired (422 on commit, or
	// a code error on a later call): ask the buyer for a fresh code.
	ClassCodeRejected
	// ClassConflict: 409: the code is committed elsewhere, or the purchase is
	// in a state where this call does not fit.
	ClassConflict
	// ClassNotFound: 404: the service does not know the purchase.
	ClassNotFound
	// ClassRejected: any other refusal (400, other 4xx, a redirect, invalid
	// arguments caught before sending): not applied; resending the same call
	// will not help.
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
	case ClassCodeRejected:
		return "code_rejected"
	case ClassConflict:
		return "conflict"
	case ClassNotFound:
		return "not_found"
	case ClassRejected:
		return "rejected"
	}
	return fmt.Sprintf("class(%d)", int(c))
}

// Error is every error the client returns from a call.
type Error struct {
	Op         Op
	Class      Class
	HTTPStatus int    // 0 when no HTTP answer arrived
	Code       string // the service's error code from the body, if any
	Message    string // the service's message, or ours
	Err        error  // the transport error, if any
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "smartpay %s: %s", e.Op, e.Class)
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

// Is makes the error match the provider-independent class in package
// payments, e.g. errors.Is(err, payments.ErrAmbiguous).
func (e *Error) Is(target error) bool {
	switch target {
	case payments.ErrAmbiguous:
		return e.Class == ClassAmbiguous
	case payments.ErrUnavailable:
		return e.Class == ClassUnavailable
	case payments.ErrUnauthorized:
		return e.Class == ClassUnauthorized
	case payments.ErrLapsed:
		return e.Class == ClassCodeRejected
	case payments.ErrRejected:
		switch e.Class {
		case ClassCodeRejected, ClassConflict, ClassNotFound, ClassRejected:
			return true
		}
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

// IsAmbiguous: the call may have been applied. Do not resend a release;
// ask Status until the outcome is known.
func IsAmbiguous(err error) bool { return ClassOf(err) == ClassAmbiguous }

// IsUnavailable: the call was certainly not applied; it may be sent again.
func IsUnavailable(err error) bool { return ClassOf(err) == ClassUnavailable }

// IsUnauthorized: the service refused our certificate or session, even
// after re-authenticating once.
func IsUnauthorized(err error) bool { return ClassOf(err) == ClassUnauthorized }

// IsCodeRejected: the QR code is unknown or expired; the buyer must show a
// fresh one.
func IsCodeRejected(err error) bool { return ClassOf(err) == ClassCodeRejected }

// IsConflict: the code is committed elsewhere, or the purchase's state does
// not allow the call.
func IsConflict(err error) bool { return ClassOf(err) == ClassConflict }

// IsAlreadyDone: a 409 to a call that, repeated after its answer was lost,
// the service is assumed to refuse as a conflict although the first attempt
// was applied (the wire file names which calls). Only a repeat may be read so.
func IsAlreadyDone(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Class == ClassConflict && wire.RepeatConflictMeansDone(string(e.Op))
}

// IsNotFound: the service does not know the purchase.
func IsNotFound(err error) bool { return ClassOf(err) == ClassNotFound }

// IsRejected: the service refused the call for any definite reason (code
// rejected, conflict, not found, bad request): it was not applied.
func IsRejected(err error) bool { return errors.Is(err, payments.ErrRejected) }
