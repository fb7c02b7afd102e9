package fiscal

import (
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// OpKind names the document-producing operation a journal entry stands for.
type OpKind string

const (
	OpReceipt    OpKind = ""            // a receipt (entries written before kinds existed have none)
	OpCorrection OpKind = "correction"  // a correction receipt (FFD 1.2)
	OpShiftOpen  OpKind = "shift_open"  // shift-open report (FN document)
	OpShiftClose OpKind = "shift_close" // Z report (FN document)
	OpCashIn     OpKind = "cash_in"     // внесение (device document, not in the FN)
	OpCashOut    OpKind = "cash_out"    // выплата (device document, not in the FN)
)

// Cashier is who opens or closes a shift (tags 1021 and 1203).
type Cashier struct {
	Name string `json:"name"`
	INN  string `json:"inn,omitempty"` // 12 digits; optional
}

// Validate checks the cashier before anything is sent: a name is required
// (FFD 1.05+ shift documents carry tag 1021).
func (c Cashier) Validate(l Limits) error {
	if strings.TrimSpace(c.Name) == "" {
		return badField("cashier.name", "the cashier's name is required")
	}
	if err := CheckText("cashier.name", c.Name); err != nil {
		return err
	}
	if n := utf8.RuneCountInString(c.Name); l.MaxCashierLen > 0 && n > l.MaxCashierLen {
		return badField("cashier.name", "cashier name is %d characters, the device takes at most %d", n, l.MaxCashierLen)
	}
	return CheckPersonINN("cashier.inn", c.INN)
}

// CheckCash checks a cash-in/out amount (kopecks) before anything is sent.
func CheckCash(amount int64, l Limits) error {
	if amount <= 0 || amount > l.MaxAmount {
		return badField("amount", "cash amount %d out of range 1..%d", amount, l.MaxAmount)
	}
	return nil
}

// CorrectionType is tag 1173.
type CorrectionType int

const (
	CorrectionSelf    CorrectionType = 0 // самостоятельно
	CorrectionByOrder CorrectionType = 1 // по предписанию
)

// Correction is a correction receipt: the settlement that was not (or wrongly)
// registered, with its items and payments as a Receipt, the correction type and
// the base document (tag 1174: 1178 date of the corrected settlement, 1179 the
// number of the tax authority's order).
type Correction struct {
	Receipt    Receipt        `json:"receipt"`
	Type       CorrectionType `json:"type"`
	BaseDate   time.Time      `json:"base_date"`             // tag 1178; the settlement's date
	BaseNumber string         `json:"base_number,omitempty"` // tag 1179; required by order
}

// Validate checks the correction before anything is sent: the receipt as any
// receipt, the correction type, the base date (not in the future, not before
// 2017 when online registers began) and the order number when by order.
func (c Correction) Validate(l Limits, now time.Time) error {
	if err := c.Receipt.Validate(l); err != nil {
		return err
	}
	switch c.Type {
	case CorrectionSelf, CorrectionByOrder:
	default:
		return badField("type", "unknown correction type %d", c.Type)
	}
	if c.BaseDate.IsZero() {
		return badField("base_date", "the corrected settlement's date is required")
	}
	if c.BaseDate.After(now) || c.BaseDate.Year() < 2017 {
		return badField("base_date", "base date %s is not a past settlement date", c.BaseDate.Format(time.DateOnly))
	}
	if err := CheckText("base_number", c.BaseNumber); err != nil {
		return err
	}
	if n := utf8.RuneCountInString(c.BaseNumber); n > 32 {
		return badField("base_number", "order number is %d characters, at most 32", n)
	}
	if c.Type == CorrectionByOrder && strings.TrimSpace(c.BaseNumber) == "" {
		return badField("base_number", "a correction by order needs the order's number")
	}
	return nil
}

// KindMismatch is the error of an id reused for another kind of operation:
// an id names one operation, whatever it is.
func KindMismatch(id string, had, want OpKind) error {
	return &Error{Code: CodeBadReceipt, Field: "id", Text: fmt.Sprintf("id %q was used for a %s operation, not %s", id, kindName(had), kindName(want))}
}

func kindName(k OpKind) string {
	if k == OpReceipt {
		return "receipt"
	}
	return string(k)
}
