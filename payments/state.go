package payments

import (
	"errors"
	"fmt"
)

// State is where a payment is, in words common to every provider. Each
// provider package maps its own status words into these.
type State string

// The common payment states, roughly in the order a sale passes them.
const (
	Committing  State = "committing"   // a scanned code is being fixed at the provider
	Committed   State = "committed"    // the code is ours; no amount yet
	Releasing   State = "releasing"    // the amount is being sent
	Processing  State = "processing"   // the provider is taking the money
	Paid        State = "paid"         // the money is taken; goods may be handed over
	Fiscalizing State = "fiscalizing"  // the receipt is being printed / reported
	Completed   State = "completed"    // paid and the receipt done
	CodeExpired State = "code_expired" // the buyer's code lapsed before payment: ask for a fresh one
	Declined    State = "declined"     // the provider or the bank refused the payment
	Expired     State = "expired"      // the payment lapsed at the provider
	Canceled    State = "canceled"     // abandoned before any money moved, or reverted
	Failed      State = "failed"       // ended in an error that needs a person
)

var allStates = []State{Committing, Committed, Releasing, Processing, Paid,
	Fiscalizing, Completed, CodeExpired, Declined, Expired, Canceled, Failed}

// States lists every common state.
func States() []State { return append([]State(nil), allStates...) }

// Valid reports whether s is one of the common states.
func (s State) Valid() bool {
	for _, v := range allStates {
		if s == v {
			return true
		}
	}
	return false
}

// Final reports whether nothing more will happen to the payment.
// Paid and Fiscalizing are not final: the receipt is still owed.
func (s State) Final() bool {
	switch s {
	case Completed, CodeExpired, Declined, Expired, Canceled, Failed:
		return true
	}
	return false
}

// MoneyTaken reports whether the buyer's money has been taken, so goods may
// be handed over and a receipt is owed.
func (s State) MoneyTaken() bool {
	switch s {
	case Paid, Fiscalizing, Completed:
		return true
	}
	return false
}

// Error classes shared by the provider packages. A provider's typed error
// answers errors.Is for the class it belongs to, so the agent can decide
// what to do without knowing the provider.
var (
	// ErrAmbiguous: the call may or may not have been applied (timeout,
	// reset, lost reply, 5xx). Never resend a money-moving call; ask status.
	ErrAmbiguous = errors.New("payments: outcome unknown")
	// ErrUnavailable: the call certainly was not applied (could not connect,
	// asked to come back later); sending it again is safe.
	ErrUnavailable = errors.New("payments: provider unavailable, call not applied")
	// ErrRejected: the provider refused the call; it was not applied and
	// sending the same call again will not help.
	ErrRejected = errors.New("payments: rejected by provider")
	// ErrLapsed: the buyer's token or the payment lapsed before it was
	// charged (a Smart Pay code expired): ask the buyer for a fresh one.
	// It is a rejection too.
	ErrLapsed = fmt.Errorf("payments: lapsed before the charge: %w", ErrRejected)
	// ErrUnauthorized: the provider refused our credentials.
	ErrUnauthorized = errors.New("payments: unauthorized")
)
