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

// FNWarnings are the FN's warning flags (FF01h).
type FNWarnings struct {
	ReplaceUrgently bool `json:"replace_urgently"` // bit 0: the FN's key expires within 3 days
	ReplaceSoon     bool `json:"replace_soon"`     // bit 1: the FN's key expires within 30 days
	MemoryFull      bool `json:"memory_full"`      // bit 2: the archive is 99 % full
	OFDTimeout      bool `json:"ofd_timeout"`      // bit 3: the OFD has not answered for too long
	Critical        bool `json:"critical"`         // bit 7: critical FN error
}

// Any is true when any warning is set.
func (w FNWarnings) Any() bool {
	return w.ReplaceUrgently || w.ReplaceSoon || w.MemoryFull || w.OFDTimeout || w.Critical
}

// Info is everything the register says about itself, for diagnostics and the POS.
type Info struct {
	Model      string     `json:"model"`
	Serial     string     `json:"serial"`
	Firmware   string     `json:"firmware"`
	FFD        string     `json:"ffd"` // configured FFD version (see the driver)
	FNNumber   string     `json:"fn_number"`
	FNPhase    int        `json:"fn_phase"`
	FNExpiry   time.Time  `json:"fn_expiry"`
	FNDaysLeft int        `json:"fn_days_left"`
	FNWarnings FNWarnings `json:"fn_warnings"`
	RegNumber  string     `json:"reg_number"`
	INN        string     `json:"inn"`
	TaxSystems TaxSystem  `json:"tax_systems"` // bit set of the registered systems
	LastFD     uint32     `json:"last_fd"`

	Mode         int           `json:"mode"`
	Submode      int           `json:"submode"`
	ShiftOpen    bool          `json:"shift_open"`
	ShiftNumber  int           `json:"shift_number"`
	ShiftOpened  time.Time     `json:"shift_opened"`  // zero when closed or not found
	ShiftAge     time.Duration `json:"shift_age"`     // since ShiftOpened
	ShiftExpired bool          `json:"shift_expired"` // over 24 h: Z report needed
	PaperOut     bool          `json:"paper_out"`

	OFDBacklog  int       `json:"ofd_backlog"`
	OFDOldestFD uint32    `json:"ofd_oldest_fd"`
	OFDOldest   time.Time `json:"ofd_oldest"`

	Clock      time.Time     `json:"clock"`       // the register's date-time
	ClockDrift time.Duration `json:"clock_drift"` // register minus host; whole seconds
}
