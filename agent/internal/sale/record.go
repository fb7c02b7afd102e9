package sale

import (
	"encoding/json"
	"fmt"
	"time"

	"kassa-agent/fiscal"
	"kassa-agent/payments"
	"kassa-agent/queue"
)

// Collections in the store.
const (
	collPayments      = "payments"
	collCodes         = "smartpay_codes"
	collProviderIndex = "provider_index" // "<provider>:<provider's id>" → payment id
	collAgent         = "agent"          // this till's own facts (install id)
)

// Next actions the POS shows the cashier.
const (
	ActionScanCode   = "scan_code"   // ask the buyer to show the Smart Pay QR code
	ActionShowURL    = "show_url"    // show the buyer checkout.url (or a QR code of checkout.qr_text)
	ActionWait       = "wait"        // the buyer confirms in their bank app
	ActionHandOver   = "hand_over"   // paid: give the goods
	ActionFreshCode  = "fresh_code"  // the code lapsed: start a new payment with a fresh code
	ActionNone       = ""            // nothing to do
	ActionSeeCashier = "see_message" // ended in an error; read error.message
)

// Fiscal states of a payment's receipt.
const (
	FiscalNone    = "none"    // no receipt was asked for
	FiscalPending = "pending" // owed: printing has not succeeded yet (retried)
	FiscalPrinted = "printed" // in the FN; document below
	// A non-fiscal slip instead (payments in a currency the register
	// cannot fiscalize): pending, being printed (the recovery point: it is
	// never printed twice), printed.
	FiscalSlipPending  = "slip_pending"
	FiscalSlipPrinting = "slip_printing"
	FiscalSlipPrinted  = "slip_printed"
)

// Payment is the resource the POS sees and the record the store keeps.
type Payment struct {
	ID         string         `json:"id"`
	Provider   string         `json:"provider"`
	State      payments.State `json:"state"`
	NextAction string         `json:"next_action,omitempty"`
	Amount     int64          `json:"amount"`
	Currency   string         `json:"currency"`
	OrderRef   string         `json:"order_ref,omitempty"`
	// OrderID is our own id of the payment as the provider knows it (AliKassa
	// order_id, Alif meta.kassa_order_id): unique across the merchant's tills.
	OrderID  string        `json:"order_id,omitempty"`
	SmartPay *SmartPayInfo `json:"smartpay,omitempty"`
	// The provider's payment page, for providers whose buyer pays on one
	// (next_action show_url): its address, the text for a QR code of it,
	// and when the provider gives it up.
	CheckoutURL       string    `json:"checkout_url,omitempty"`
	QRText            string    `json:"qr_text,omitempty"`
	CheckoutExpiresAt time.Time `json:"checkout_expires_at,omitzero"`
	// ProviderPaymentID is the provider's own id of the payment.
	ProviderPaymentID string     `json:"provider_payment_id,omitempty"`
	Fiscal            FiscalInfo `json:"fiscal"`
	// Refunds of this payment (POST /v1/payments/{id}/refunds).
	Refunds []PaymentRefund `json:"refunds,omitempty"`
	Error   *ErrorInfo      `json:"error,omitempty"`
	Created time.Time       `json:"created_at"`
	Updated time.Time       `json:"updated_at"`
	// Version grows with every change; long-polls wait for it to move.
	Version uint64 `json:"version"`

	// Internal, kept in the store but not shown to the POS.
	Receipt  *fiscal.Receipt `json:"-"`
	Released time.Time       `json:"-"`
	// Ref names the payment at its provider (our order id first of all,
	// persisted before the first call); Options are the provider's own
	// request fields as the POS sent them.
	Ref            payments.Ref    `json:"-"`
	Options        json.RawMessage `json:"-"`
	Goods          []payments.Item `json:"-"` // the POS's items, for the provider's page
	providerStatus string
}

// noReceipt drops a receipt or slip still owed: a payment that ends without
// money taken gets neither.
func (p *Payment) noReceipt() {
	switch p.Fiscal.State {
	case FiscalPending, FiscalSlipPending:
		p.Fiscal.State = FiscalNone
	}
}

// ProviderStatus is the provider's last word on the payment.
func (p *Payment) ProviderStatus() string { return p.providerStatus }

func (p *Payment) setProviderStatus(raw string) {
	p.providerStatus = raw
	if p.SmartPay != nil {
		p.SmartPay.ProviderStatus = raw
	}
}

// SmartPayInfo are the provider's ids for the POS and the technician.
type SmartPayInfo struct {
	KassaPurchaseID string    `json:"kassa_purchase_id,omitempty"`
	PurchaseID      string    `json:"purchase_id,omitempty"`
	CodeScannedAt   time.Time `json:"code_scanned_at,omitzero"`
	ProviderStatus  string    `json:"provider_status,omitempty"`
}

// FiscalInfo is the receipt's state and, once printed, its document.
type FiscalInfo struct {
	State    string           `json:"state"`
	Document *fiscal.Document `json:"document,omitempty"`
	Error    *ErrorInfo       `json:"error,omitempty"`
	Attempts int              `json:"attempts,omitempty"`
}

// ErrorInfo is why a payment (or its receipt) is not where the POS hoped.
type ErrorInfo struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// stored is the record as kept: the public resource plus internals.
type stored struct {
	Payment
	ReceiptData *fiscal.Receipt `json:"receipt_data,omitempty"`
	ReleasedAt  time.Time       `json:"released_at,omitzero"`
	CodeID      string          `json:"code_id,omitempty"`
	// RefData is absent in records of earlier versions (Smart Pay only):
	// the ref is then made from the Smart Pay ids.
	RefData        *payments.Ref   `json:"ref,omitempty"`
	OptionsData    json.RawMessage `json:"options,omitempty"`
	GoodsData      []payments.Item `json:"goods,omitempty"`
	ProviderStatus string          `json:"provider_status_raw,omitempty"`
}

func (p *Payment) marshal() ([]byte, error) {
	ref := p.Ref
	return json.Marshal(stored{Payment: *p, ReceiptData: p.Receipt, ReleasedAt: p.Released, CodeID: p.codeID(),
		RefData: &ref, OptionsData: p.Options, GoodsData: p.Goods, ProviderStatus: p.providerStatus})
}

func (p *Payment) codeID() string {
	if p.SmartPay == nil {
		return ""
	}
	return p.SmartPay.KassaPurchaseID
}

func unmarshalPayment(b []byte) (*Payment, error) {
	var s stored
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("decode payment: %w", err)
	}
	p := s.Payment
	p.Receipt = s.ReceiptData
	p.Released = s.ReleasedAt
	p.Options, p.Goods = s.OptionsData, s.GoodsData
	p.providerStatus = s.ProviderStatus
	if s.RefData != nil {
		p.Ref = *s.RefData
	} else if p.SmartPay != nil {
		p.Ref = payments.Ref{OrderID: p.SmartPay.KassaPurchaseID, ProviderID: p.SmartPay.PurchaseID}
	}
	return &p, nil
}

func putPayment(tx *queue.Tx, p *Payment) error {
	b, err := p.marshal()
	if err != nil {
		return err
	}
	return tx.Put(collPayments, p.ID, b)
}

// Code states: a scanned Smart Pay code's life at this till.
const (
	CodeCommitting = "committing" // commit sent, answer not yet recorded
	CodeHeld       = "held"       // committed, waiting for a payment
	CodeUsed       = "used"       // attached to a payment
	CodeCanceled   = "canceled"   // replaced by a newer scan, abandoned, or its payment cancelled
	CodeRejected   = "rejected"   // the service refused the commit
	CodeLost       = "lost"       // the agent crashed before the commit's answer was recorded
)

// codeRecord is a scanned Smart Pay code. The raw code text is kept (it is
// needed for nothing after the commit, but a technician may need to match a
// complaint); it is never logged.
type codeRecord struct {
	ID         string    `json:"id"` // kassa_purchase_id
	Code       string    `json:"code"`
	State      string    `json:"state"`
	PurchaseID string    `json:"purchase_id,omitempty"`
	PaymentID  string    `json:"payment_id,omitempty"`
	ScannedAt  time.Time `json:"scanned_at"`
	Updated    time.Time `json:"updated_at"`
	Error      string    `json:"error,omitempty"`
	// For is the payment open when the code was scanned ("" none: the code
	// is for the next sale).
	For string `json:"for_payment,omitempty"`
	// GiveUp, on a commit still on the wire, is why it is cancelled when
	// its answer comes.
	GiveUp string `json:"give_up,omitempty"`
}

func putCode(tx *queue.Tx, c *codeRecord) error {
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	return tx.Put(collCodes, c.ID, b)
}

// storeReader is what reading code and payment records needs; both a read
// transaction and a write transaction have it.
type storeReader interface {
	Get(coll, id string) ([]byte, error)
	ForEach(coll string, fn func(id string, v []byte) error) error
	Scan(coll string, opts queue.ScanOptions, fn func(id string, v []byte) error) error
}

func getCode(r storeReader, id string) (*codeRecord, error) {
	b, err := r.Get(collCodes, id)
	if err != nil {
		return nil, err
	}
	var c codeRecord
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("decode code %s: %w", id, err)
	}
	return &c, nil
}
