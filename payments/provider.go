package payments

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"time"
)

// The provider contract. The payment saga (agent/internal/sale) drives every
// provider through these interfaces and never names one. The core is
// Provider; what only some providers can do is an optional interface on the
// same value, found by type assertion where it is needed (as database/sql
// finds a driver's optional interfaces), so a provider that cannot refund
// simply does not implement Refunder.

// Order is one payment as the saga asks a provider to take it.
type Order struct {
	// ID is our own id for the payment, persisted before the first call and
	// unique across every till of the merchant (the provider keys the
	// payment by it: AliKassa order_id, Alif meta).
	ID     string
	Amount Amount
	// Items are the goods, for providers whose page shows them (Alif).
	Items []Item
	// Desc is a short text for the buyer's payment page; optional.
	Desc string
	// ProviderID is the provider's id of the payment when it is known
	// before the charge (Smart Pay: the purchase its code was committed to).
	ProviderID string
	// Options are the provider's own request fields as the POS sent them
	// under the provider's name (e.g. "alif": {"redirect_url": …}); the
	// provider decodes them strictly in Check and Create.
	Options json.RawMessage
}

// Item is one line of goods.
type Item struct {
	Name     string
	Price    int64 // minor units per unit
	Quantity int64 // thousandths of a unit: 1000 = 1 piece, 500 = 0.5 kg
}

// Ref names a payment at its provider. The saga stores it on the payment.
type Ref struct {
	OrderID     string    `json:"order_id"`
	ProviderID  string    `json:"provider_id,omitempty"`  // the provider's own id
	CheckoutURL string    `json:"checkout_url,omitempty"` // the page the buyer pays on
	QRText      string    `json:"qr_text,omitempty"`      // text for a QR code the POS or the register shows
	ExpiresAt   time.Time `json:"expires_at,omitzero"`    // the provider gives the payment up after this
}

// Status is where a payment is at its provider, in the common words.
type Status struct {
	// State is Processing while the buyer has not paid, Paid once the
	// money is taken, or a final failure: Declined, Expired, Canceled,
	// Failed. A word the provider's client does not know is Processing
	// (keep asking), never Paid.
	State State
	Raw   string // the provider's own word, for people
	// Paid is what the provider says was really paid, when it says so
	// (AliKassa payment_amount); zero when unknown. Partial is set when
	// it is less than asked: such a payment is not Paid.
	Paid    Amount
	Partial bool
	Reason  string
	// Retry marks a decline the buyer may retry on the same page (a hosted
	// session that only a success closes): the payment is not over until
	// the page lapses.
	Retry bool
}

// FieldError is a request value a provider cannot take, found before
// anything was sent (Check) or named by the provider's refusal (Create).
// Field names the value as the POS sent it, e.g. "alif.redirect_url" or
// "receipt.items[2].name". It is a rejection: errors.Is(err, ErrRejected).
type FieldError struct {
	Field   string
	Message string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Message }

// Is makes a FieldError a rejection.
func (e *FieldError) Is(target error) bool { return target == ErrRejected }

// ErrNotFound: the provider has no payment under that id.
var ErrNotFound = errors.New("payments: no such payment at the provider")

// Provider is what every provider implements.
type Provider interface {
	// Name is the provider's name: the POS's "provider" value, the
	// config section, the key of its data on a payment, the prefix of its
	// outbox kinds.
	Name() string
	// Check validates an order before anything is stored or sent. Its
	// errors are *FieldError (or wrap one).
	Check(o Order) error
	// Create starts the payment, keyed by o.ID. An error matching
	// ErrAmbiguous means it may exist: the saga never calls Create again
	// for the order; it asks Finder, or a person.
	Create(ctx context.Context, o Order) (Ref, error)
	// Status asks where the payment is.
	Status(ctx context.Context, r Ref) (Status, error)
}

// Finder looks a payment up by our own order id, after a create whose
// outcome is unknown. It answers ErrNotFound when the provider has none.
type Finder interface {
	Find(ctx context.Context, orderID string) (Ref, Status, error)
}

// Canceler gives up a payment that took no money.
type Canceler interface {
	Cancel(ctx context.Context, r Ref) error
}

// Refunder gives money back for a paid payment.
type Refunder interface {
	// Refund returns amount of the payment's money. Full reports whether
	// only the whole amount can be refunded.
	Refund(ctx context.Context, r Ref, amount Amount) (Status, error)
	FullRefundOnly() bool
}

// Verifier checks a notification (webhook, callback) the provider sent, as
// it arrived, and names the payment it is about. A verified notice is only a
// hint to ask the status now; it never changes a payment by itself.
type Verifier interface {
	VerifyNotice(h http.Header, query url.Values, body []byte) (Ref, error)
}

// Prober makes a harmless authenticated call (diagnostics, warm-up).
type Prober interface {
	Probe(ctx context.Context) error
}
