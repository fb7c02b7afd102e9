// Package fiscal is the till's fiscal register (54-FZ ККТ) seen from the agent: the
// Register interface, the receipt model with its validation, the documents a register
// produces, the stable error codes, and the write-ahead Journal that makes printing a
// receipt happen exactly once across lost replies and crashes.
//
// Units: money is int64 kopecks; quantity is int64 millionths of a unit
// (1 piece = 1_000_000, 0.5 kg = 500_000), the precision the Shtrih-M FF46h command
// carries.
package fiscal

import (
	"context"
	"fmt"
	"math/bits"
	"strings"
	"time"
	"unicode/utf8"
)

// QuantityOne is the quantity of one whole unit (quantities are millionths).
const QuantityOne int64 = 1_000_000

// ReceiptType is the calculation sign (tag 1054).
type ReceiptType int

const (
	Sale           ReceiptType = 1 // приход
	SaleReturn     ReceiptType = 2 // возврат прихода
	Purchase       ReceiptType = 3 // расход
	PurchaseReturn ReceiptType = 4 // возврат расхода
)

func (t ReceiptType) String() string {
	switch t {
	case Sale:
		return "sale"
	case SaleReturn:
		return "sale_return"
	case Purchase:
		return "purchase"
	case PurchaseReturn:
		return "purchase_return"
	}
	return "unknown"
}

// VATRate is the item's VAT rate. 1..6 are numbered as rows 1..6 of Shtrih-M
// table 6 (and stored so in journals: never renumber); the rates added since keep
// the numbers of the rows that hold them on Shtrih-M firmware (see the driver).
type VATRate int

const (
	VAT20    VATRate = 1  // 20% (until 2025-12-31)
	VAT10    VATRate = 2  // 10%
	VAT0     VATRate = 3  // 0%
	NoVAT    VATRate = 4  // без НДС
	VAT20120 VATRate = 5  // 20/120 (until 2025-12-31)
	VAT10110 VATRate = 6  // 10/110
	VAT5     VATRate = 7  // 5% (УСН, since 2025)
	VAT7     VATRate = 8  // 7% (УСН, since 2025)
	VAT5105  VATRate = 9  // 5/105
	VAT7107  VATRate = 10 // 7/107
	VAT22    VATRate = 11 // 22% (since 2026-01-01)
	VAT22122 VATRate = 12 // 22/122 (since 2026-01-01)
)

// PaymentMethod is tag 1214 (признак способа расчета).
type PaymentMethod int

const (
	FullPrepayment    PaymentMethod = 1
	PartialPrepayment PaymentMethod = 2
	Advance           PaymentMethod = 3
	FullPayment       PaymentMethod = 4
	PartialPayment    PaymentMethod = 5
	CreditTransfer    PaymentMethod = 6
	CreditPayment     PaymentMethod = 7
)

// PaymentObject is tag 1212 (признак предмета расчета).
type PaymentObject int

const (
	Goods      PaymentObject = 1
	Excise     PaymentObject = 2
	Work       PaymentObject = 3
	Service    PaymentObject = 4
	PaymentObj PaymentObject = 10 // платеж
	Composite  PaymentObject = 11
	Other      PaymentObject = 13
)

// PaymentKind selects one of the 16 payment sums of a receipt.
type PaymentKind int

const (
	Cash          PaymentKind = 1  // наличные
	Electronic    PaymentKind = 2  // безналичные (SBP, card, …)
	Prepayment    PaymentKind = 14 // предварительная оплата (аванс)
	Credit        PaymentKind = 15 // постоплата (кредит)
	Consideration PaymentKind = 16 // встречное предоставление
)

// TaxSystem is tag 1055, one bit.
type TaxSystem int

const (
	OSN              TaxSystem = 1 << 0
	USNIncome        TaxSystem = 1 << 1
	USNIncomeExpense TaxSystem = 1 << 2
	ENVD             TaxSystem = 1 << 3
	ESHN             TaxSystem = 1 << 4
	PSN              TaxSystem = 1 << 5
)

// Item is one receipt line.
type Item struct {
	Name       string
	Quantity   int64 // millionths of a unit
	Price      int64 // kopecks per unit
	VAT        VATRate
	Method     PaymentMethod // 0 = FullPayment
	Object     PaymentObject // 0 = Goods
	Department int           // 0..16, 0 = 1
	// MarkingCode is the product's marking code as scanned, GS (0x1D) kept. On
	// an FFD 1.2 register the line is bound to the code's accepted check
	// (MarkingChecker); below FFD 1.2 it goes as tag 1162.
	MarkingCode string
	// MarkingResult is the code's check as CheckMarking returned it and the
	// caller accepted it: required for a marked line on an FFD 1.2 register.
	MarkingResult *MarkingResult
	Measure       Measure   // tag 2108; 0 = pieces
	Fraction      *Fraction // tag 1291: a part of an opened marked pack
	// Industry is tag 1260 for this line; Receipt.Industry applies to every
	// marked line that has none.
	Industry []IndustryRequisite
	// MarkingGroup is the agent's product group of a marked line, for its
	// policy on codes the OISM did not answer for; no register is sent it.
	MarkingGroup string
}

// Sum is the line total in kopecks: price × quantity, rounded half up.
func (it Item) Sum() int64 {
	hi, lo := bits.Mul64(uint64(it.Price), uint64(it.Quantity))
	q, r := bits.Div64(hi%uint64(QuantityOne), lo, uint64(QuantityOne))
	if r*2 >= uint64(QuantityOne) {
		q++
	}
	return int64(q)
}

// Payment is one payment sum of the receipt.
type Payment struct {
	Kind   PaymentKind
	Amount int64 // kopecks
}

// Receipt is what the caller asks the register to print.
type Receipt struct {
	Type      ReceiptType
	Items     []Item
	Payments  []Payment
	TaxSystem TaxSystem
	Buyer     string // phone (+7…) or e-mail, tag 1008; optional
	Cashier   string // tag 1021; optional
	// CashierINN is tag 1203, the cashier's own INN (12 digits); optional.
	CashierINN string
	// Industry is tag 1260 (the permissive mode's industry requisites) sent with
	// every marked line that has no Item.Industry of its own.
	Industry []IndustryRequisite
}

// Change is what the buyer gets back: the payments over the total. Validate
// allows it only from cash.
func (r Receipt) Change() int64 {
	var paid int64
	for _, p := range r.Payments {
		paid += p.Amount
	}
	if c := paid - r.Total(); c > 0 {
		return c
	}
	return 0
}

// Total is the sum of the item sums in kopecks.
func (r Receipt) Total() int64 {
	var t int64
	for _, it := range r.Items {
		t += it.Sum()
	}
	return t
}

// Limits are what a device accepts; drivers pass theirs to Validate.
type Limits struct {
	MaxNameLen     int   // characters in an item name (single-byte device encoding)
	MaxQuantity    int64 // millionths
	MaxAmount      int64 // kopecks, any single sum
	MaxItems       int
	MaxBuyerLen    int
	MaxCashierLen  int
	MaxMarkingCode int
}

// DefaultLimits fit Shtrih-M: 128-byte names, 6-byte quantities, 5-byte sums.
var DefaultLimits = Limits{
	MaxNameLen:     128,
	MaxQuantity:    1<<48 - 1,
	MaxAmount:      1<<40 - 1,
	MaxItems:       1000,
	MaxBuyerLen:    64,
	MaxCashierLen:  64,
	MaxMarkingCode: 256,
}

// Validate checks the receipt before anything is sent. Every failure is a
// register_bad_receipt *Error saying what is wrong; Field names the offending
// field ("items[0].name", "buyer", …) when there is one.
func (r Receipt) Validate(l Limits) error {
	switch r.Type {
	case Sale, SaleReturn, Purchase, PurchaseReturn:
	default:
		return badField("type", "unknown receipt type %d", r.Type)
	}
	if len(r.Items) == 0 {
		return badField("items", "receipt has no items")
	}
	if l.MaxItems > 0 && len(r.Items) > l.MaxItems {
		return badField("items", "receipt has %d items, the device takes at most %d", len(r.Items), l.MaxItems)
	}
	if r.TaxSystem != 0 && (r.TaxSystem&(r.TaxSystem-1) != 0 || r.TaxSystem > PSN || r.TaxSystem < 0) {
		return badField("tax_system", "tax system must be exactly one of the known systems")
	}
	var total int64
	for i, it := range r.Items {
		at := func(f string) string { return fmt.Sprintf("items[%d].%s", i, f) }
		name := strings.TrimSpace(it.Name)
		if name == "" {
			return badField(at("name"), "empty name")
		}
		if err := CheckText(at("name"), it.Name); err != nil {
			return err
		}
		if n := utf8.RuneCountInString(it.Name); l.MaxNameLen > 0 && n > l.MaxNameLen {
			return badField(at("name"), "name is %d characters, the device takes at most %d", n, l.MaxNameLen)
		}
		if it.Quantity <= 0 {
			return badField(at("quantity"), "quantity must be positive")
		}
		if it.Quantity > l.MaxQuantity {
			return badField(at("quantity"), "quantity %d overflows the device field", it.Quantity)
		}
		if it.Price < 0 || it.Price > l.MaxAmount {
			return badField(at("price"), "price %d out of range", it.Price)
		}
		if hi, _ := bits.Mul64(uint64(it.Price), uint64(it.Quantity)); hi >= uint64(QuantityOne) {
			return badField(at("price"), "price × quantity overflows")
		}
		s := it.Sum()
		if s > l.MaxAmount {
			return badField(at("price"), "sum %d overflows the device field", s)
		}
		if it.VAT < VAT20 || it.VAT > VAT22122 {
			return badField(at("vat"), "unknown VAT rate %d", it.VAT)
		}
		if it.Method < 0 || it.Method > CreditPayment {
			return badField(at("payment_method"), "unknown payment method %d", it.Method)
		}
		if it.Object < 0 || (it.Object > 26 && (it.Object < 30 || it.Object > 33)) {
			return badField(at("payment_object"), "unknown payment object %d", it.Object)
		}
		if it.Department < 0 || it.Department > 16 {
			return badField(at("department"), "department %d out of range 0..16", it.Department)
		}
		if len(it.MarkingCode) > l.MaxMarkingCode {
			return badField(at("marking_code"), "marking code too long")
		}
		// A marking code carries GS (0x1D) between its application identifiers;
		// nothing else unprintable belongs in it.
		if err := CheckText(at("marking_code"), strings.ReplaceAll(it.MarkingCode, "\x1d", "")); err != nil {
			return err
		}
		if err := validateMarking(r.Type, it, at, r.Industry); err != nil {
			return err
		}
		total += s
		if total > l.MaxAmount {
			return badField("items", "receipt total overflows the device field")
		}
	}
	if total == 0 {
		return badField("items", "receipt total is zero")
	}
	var paid, cash int64
	seen := map[PaymentKind]bool{}
	for i, p := range r.Payments {
		if p.Kind < 1 || p.Kind > 16 {
			return badField(fmt.Sprintf("payments[%d].kind", i), "unknown payment kind %d", p.Kind)
		}
		if seen[p.Kind] {
			return badField(fmt.Sprintf("payments[%d].kind", i), "payment kind %d given twice", p.Kind)
		}
		seen[p.Kind] = true
		if p.Amount < 0 || p.Amount > l.MaxAmount {
			return badField(fmt.Sprintf("payments[%d].amount", i), "payment %d out of range", p.Amount)
		}
		paid += p.Amount
		if p.Kind == Cash {
			cash = p.Amount
		}
	}
	if paid < total {
		return badField("payments", "payments %d are less than the total %d", paid, total)
	}
	if paid-cash > total {
		return badField("payments", "non-cash payments %d exceed the total %d (change is given only from cash)", paid-cash, total)
	}
	if err := CheckText("buyer", r.Buyer); err != nil {
		return err
	}
	if n := utf8.RuneCountInString(r.Buyer); n > l.MaxBuyerLen {
		return badField("buyer", "buyer contact too long")
	}
	if r.Buyer != "" && !strings.Contains(r.Buyer, "@") && !isPhone(r.Buyer) {
		return badField("buyer", "buyer contact must be a phone (+7…) or an e-mail")
	}
	if err := CheckText("cashier", r.Cashier); err != nil {
		return err
	}
	if n := utf8.RuneCountInString(r.Cashier); n > l.MaxCashierLen {
		return badField("cashier", "cashier name too long")
	}
	return CheckPersonINN("cashier_inn", r.CashierINN)
}

// CheckPersonINN refuses an INN of a natural person (tag 1203) that is not 12
// digits; empty is allowed (the tag is optional).
func CheckPersonINN(field, inn string) error {
	if inn == "" {
		return nil
	}
	if len(inn) != 12 || strings.Trim(inn, "0123456789") != "" {
		return badField(field, "a person's INN is 12 digits")
	}
	return nil
}

// CheckText refuses text bound for the register that holds a control character
// (C0, DEL or C1): the register would print it raw into the fiscal document, or
// act on it. field names the text in the error.
func CheckText(field, s string) error {
	for i, c := range s {
		if c == utf8.RuneError {
			if _, n := utf8.DecodeRuneInString(s[i:]); n <= 1 {
				return badField(field, "is not valid UTF-8")
			}
		}
		if c < 0x20 || (c >= 0x7F && c <= 0x9F) {
			return badField(field, "contains control character U+%04X", c)
		}
	}
	return nil
}

// VAT22From is the first day of 22 % (Federal Law 425-FZ): from then on 20 % and
// 20/120 are wrong on a receipt, and before it 22 % is.
var VAT22From = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// Percent is the rate in percent; -1 for NoVAT.
func (v VATRate) Percent() int64 {
	switch v {
	case VAT20, VAT20120:
		return 20
	case VAT10, VAT10110:
		return 10
	case VAT0:
		return 0
	case VAT5, VAT5105:
		return 5
	case VAT7, VAT7107:
		return 7
	case VAT22, VAT22122:
		return 22
	}
	return -1
}

// Tax is the VAT included in a line sum (prices include VAT):
// round_half_up(sum × rate / (100 + rate)); 0 for 0 % and no VAT.
func (v VATRate) Tax(sum int64) int64 {
	p := v.Percent()
	if p <= 0 {
		return 0
	}
	return (2*sum*p + 100 + p) / (2 * (100 + p))
}

// CheckRatesAt refuses a rate not in force on the till's local date of at: 20 %
// and 20/120 from 2026-01-01, 22 % and 22/122 before it.
func (r Receipt) CheckRatesAt(at time.Time) error {
	day := time.Date(at.Year(), at.Month(), at.Day(), 0, 0, 0, 0, time.UTC)
	for i, it := range r.Items {
		field := fmt.Sprintf("items[%d].vat", i)
		switch {
		case (it.VAT == VAT20 || it.VAT == VAT20120) && !day.Before(VAT22From):
			return badField(field, "20 %% VAT ended on 2025-12-31; use vat22 (or vat22_122 for 20/120)")
		case (it.VAT == VAT22 || it.VAT == VAT22122) && day.Before(VAT22From):
			return badField(field, "22 %% VAT applies from 2026-01-01; use vat20 (or vat20_120) before then")
		}
	}
	return nil
}

func isPhone(s string) bool {
	s = strings.TrimPrefix(s, "+")
	if len(s) < 5 || len(s) > 19 {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// Document is a fiscal document the register produced (a printed receipt).
type Document struct {
	FD            uint32      `json:"fd"`             // fiscal document number
	FP            uint32      `json:"fp"`             // fiscal sign (ФП / ФПД)
	FNNumber      string      `json:"fn_number"`      // fiscal drive serial number
	RegNumber     string      `json:"reg_number"`     // registration number (РН ККТ)
	Shift         int         `json:"shift"`          // shift number
	ReceiptNumber int         `json:"receipt_number"` // receipt number in the shift (0 when unknown after recovery)
	Time          time.Time   `json:"time"`           // the FN's date-time of the document (minute precision)
	Total         int64       `json:"total"`          // kopecks
	Type          ReceiptType `json:"type"`
	Kind          OpKind      `json:"kind,omitempty"`       // what made it; "" for a receipt
	DocNumber     int         `json:"doc_number,omitempty"` // cash in/out: the device's document number (not an FN document)
	Change        int64       `json:"change,omitempty"`     // kopecks handed back from cash (FF45h's reply)
	QR            string      `json:"qr,omitempty"`         // the receipt's QR code text (QRString)
	Recovered     bool        `json:"recovered,omitempty"`  // learned from the FN after a lost reply
}

// QRString is the text of a receipt's QR code in the FNS format:
// t=YYYYMMDDTHHMM&s=RUB.KK&fn=FN&i=FD&fp=FP&n=type, the time as the register's
// wall clock (doc.Time's own zone), n the calculation sign (tag 1054).
func QRString(doc Document, r ReceiptType) string {
	return fmt.Sprintf("t=%s&s=%d.%02d&fn=%s&i=%d&fp=%d&n=%d", doc.Time.Format("20060102T1504"),
		doc.Total/100, doc.Total%100, doc.FNNumber, doc.FD, doc.FP, int(r))
}

// FoundDocument is a document read back from the FN archive by number.
type FoundDocument struct {
	FD        uint32
	FP        uint32
	Kind      int // FN document type: 1 registration, 2 shift open, 3 receipt, 5 shift close, 31 correction, …
	Shift     int // shift open / close reports: the shift number
	Time      time.Time
	Operation ReceiptType // receipts only
	Total     int64       // receipts only
	SentToOFD bool
}

// Status is the register's state as the payment flow needs it before money is taken.
type Status struct {
	Model        string
	Serial       string
	Firmware     string
	INN          string
	FNNumber     string
	FNExpiry     time.Time
	FNPhase      int
	RegNumber    string
	Mode         int // device mode (low nibble of the status byte)
	Submode      int
	ShiftOpen    bool
	ShiftNumber  int
	ShiftExpired bool // open for more than 24 h: a Z report is needed
	ReceiptOpen  bool
	PaperOut     bool
	LastFD       uint32
	FNWarnings   FNWarnings // the FN's warning flags (FF01h)
	OFDBacklog   int
	OFDOldest    time.Time // date-time of the oldest document not yet sent to the OFD; zero when none
	// Ready is nil when a receipt can be printed now (possibly after an automatic
	// shift open / Z report the driver is configured to do), else the reason.
	Ready error
}

// Identity is what names the register in a fiscal document the OFD and payment
// providers accept: the registration number (РН ККТ), the FN's serial number and
// the user's INN.
type Identity struct {
	RegNumber string `json:"reg_number"`
	FNNumber  string `json:"fn_number"`
	INN       string `json:"inn"`
}

// Complete is true when nothing a fiscal submission needs is missing.
func (id Identity) Complete() bool { return id.RegNumber != "" && id.FNNumber != "" }

// Register is a fiscal register. Implementations serialise calls internally.
type Register interface {
	Status(ctx context.Context) (Status, error)
	// Identity reads the registration number, the FN number and the INN. It fails
	// (register_identity_unknown, retryable) rather than return an incomplete one;
	// an unregistered register is register_not_registered.
	Identity(ctx context.Context) (Identity, error)
	OpenShift(ctx context.Context) error
	CloseShift(ctx context.Context) error // Z report
	XReport(ctx context.Context) error
	// PrintReceipt prints r exactly once for id: calling again with the same id
	// (after a lost reply, an error or a crash) returns the same document.
	PrintReceipt(ctx context.Context, id string, r Receipt) (Document, error)
	CancelOpenReceipt(ctx context.Context) error
	CashIn(ctx context.Context, amount int64) error
	CashOut(ctx context.Context, amount int64) error
	FindDocument(ctx context.Context, fd uint32) (FoundDocument, error)
	PrintText(ctx context.Context, lines []string) error
	Cut(ctx context.Context) error
	// Recover resolves what a crash left behind: pending journal entries and a
	// receipt left open on the device. Call it at start-up.
	Recover(ctx context.Context) (RecoveryReport, error)
	// RecoverRegister is Recover usable at any time: it also reports the mode
	// found, paper out, and what it did in words.
	RecoverRegister(ctx context.Context) (RecoveryReport, error)

	// The operations below are exactly-once for a caller-given id, as
	// PrintReceipt: a repeat with the same id returns the same document, and
	// an id names one operation whatever its kind.
	OpenShiftAs(ctx context.Context, id string, c Cashier) (Document, error)
	CloseShiftAs(ctx context.Context, id string, c Cashier) (Document, error)
	CashInOnce(ctx context.Context, id string, amount int64) (Document, error)
	CashOutOnce(ctx context.Context, id string, amount int64) (Document, error)
	PrintCorrection(ctx context.Context, id string, c Correction) (Document, error)

	// LastDocument reads the FN's last document.
	LastDocument(ctx context.Context) (FoundDocument, error)
	// PrintLastCopy prints a copy of the last document (no fiscal effect).
	PrintLastCopy(ctx context.Context) error
	// PrintQR prints a QR code of text on the receipt tape (non-fiscal).
	PrintQR(ctx context.Context, text string) error
	// Info reads everything about the register for diagnostics and the POS.
	Info(ctx context.Context) (Info, error)

	Close() error
}

// RecoveryReport says what Recover found.
type RecoveryReport struct {
	Completed      []string // ids whose documents were found in the FN and recorded
	NotPrinted     []string // ids proved not printed (journal entry dropped; print again with the same id)
	CancelledOpen  bool     // a receipt open on the device was cancelled
	ContinuedPrint bool     // printing was continued after paper out (B0h)
	// Mode and Submode are the device's as found, before anything was done.
	Mode    int `json:"mode"`
	Submode int `json:"submode"`
	// PaperOut: no paper now; printing continues (B0h) once it is loaded.
	PaperOut bool `json:"paper_out,omitempty"`
	// Found says in words what was found and done, for the operator.
	Found []string `json:"found,omitempty"`
}
