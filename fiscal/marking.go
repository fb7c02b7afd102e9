package fiscal

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// Marked goods (Честный ЗНАК) under FFD 1.2: before a marked item is sold or
// taken back, its code is checked through the FN (and online, when the OISM
// answers), the cashier's software accepts or declines the result, and only an
// accepted code may be bound to a receipt line. Tag numbers below are FFD 1.2's.

// PlannedStatus is tag 2003, the status the item is to take.
type PlannedStatus int

const (
	PieceSold        PlannedStatus = 1 // штучный товар реализован
	MeasuredSold     PlannedStatus = 2 // мерный товар в стадии реализации (weighed, or part of an opened pack)
	PieceReturned    PlannedStatus = 3 // штучный товар возвращен
	MeasuredReturned PlannedStatus = 4 // часть товара возвращена
)

func (p PlannedStatus) String() string {
	switch p {
	case PieceSold:
		return "piece_sold"
	case MeasuredSold:
		return "measured_sold"
	case PieceReturned:
		return "piece_returned"
	case MeasuredReturned:
		return "measured_returned"
	}
	return "unknown"
}

// Measure is tag 2108, the unit of the item's quantity.
type Measure int

const (
	Pieces     Measure = 0  // штуки (default)
	Gram       Measure = 10 // грамм
	Kilogram   Measure = 11 // килограмм
	Ton        Measure = 12
	Centimetre Measure = 20
	Decimetre  Measure = 21
	Metre      Measure = 22
	SqCm       Measure = 30
	SqDm       Measure = 31
	SqM        Measure = 32
	Millilitre Measure = 40 // миллилитр
	Litre      Measure = 41 // литр
	CubicM     Measure = 42
	KWh        Measure = 50
	Gcal       Measure = 51
	Day        Measure = 70
	Hour       Measure = 71
	Minute     Measure = 72
	Second     Measure = 73
	KByte      Measure = 80
	MByte      Measure = 81
	GByte      Measure = 82
	TByte      Measure = 83
	OtherUnit  Measure = 255
)

// Valid is true for a code tag 2108 defines.
func (m Measure) Valid() bool {
	switch m {
	case Pieces, Gram, Kilogram, Ton, Centimetre, Decimetre, Metre, SqCm, SqDm, SqM, Millilitre, Litre, CubicM,
		KWh, Gcal, Day, Hour, Minute, Second, KByte, MByte, GByte, TByte, OtherUnit:
		return true
	}
	return false
}

// Marked payment objects (tag 1212, FFD 1.2): a line carrying a marking code is
// one of these two.
const (
	MarkedExcise PaymentObject = 31 // подакцизный товар, подлежащий маркировке, с кодом маркировки
	MarkedGoods  PaymentObject = 33 // товар, подлежащий маркировке, с кодом маркировки
)

// Fraction is tag 1291 (дробное количество маркированного товара): the part
// of one marked pack sold, 1293 numerator over 1294 denominator (e.g. 2 of 10
// blisters is 2/10).
type Fraction struct {
	Numerator   int64 // 1293
	Denominator int64 // 1294
}

// Quantity is the fraction in millionths of a unit, rounded half up.
// Valid: a part of a pack, 0 < numerator < denominator (within 1293/1294's range).
func (f Fraction) Valid() bool {
	return f.Denominator >= 2 && f.Numerator >= 1 && f.Numerator < f.Denominator && f.Denominator <= 1<<32
}

func (f Fraction) Quantity() int64 {
	return (2*f.Numerator*QuantityOne + f.Denominator) / (2 * f.Denominator)
}

// IndustryRequisite is tag 1260 (отраслевой реквизит предмета расчета): the
// permissive mode's reference to the OISM check (e.g. FOIV "030", date
// 21.11.2023, number 1944, value "UUID=…&Time=…").
type IndustryRequisite struct {
	FOIV   string    `json:"foiv"`   // 1262, the federal body's id, 3 digits
	Date   time.Time `json:"date"`   // 1263, the founding document's date (printed dd.mm.yyyy)
	Number string    `json:"number"` // 1264, the founding document's number
	Value  string    `json:"value"`  // 1265
}

// CheckResult is tag 2106 (результат проверки сведений о товаре), as the FN
// reports it for a code.
type CheckResult uint8

const (
	CheckedByFN  CheckResult = 1 << 0 // the FN checked the code's crypto tail
	FNResultOK   CheckResult = 1 << 1 // … and it was right
	CheckedByOIS CheckResult = 1 << 2 // the OISM (Честный ЗНАК) answered
	OISResultOK  CheckResult = 1 << 3 // … that the planned status is correct
)

// Verdict is what a check means for the sale.
type Verdict int

const (
	// NotChecked: the OISM did not answer (offline, timeout); only the FN's own
	// check, if any, was done. Selling is a matter of policy.
	NotChecked Verdict = iota
	// Valid: the OISM confirmed the planned status.
	Valid
	// Invalid: the FN or the OISM refused the code: do not sell.
	Invalid
)

func (v Verdict) String() string {
	switch v {
	case Valid:
		return "valid"
	case Invalid:
		return "invalid"
	}
	return "not_checked"
}

// MarkingRequest asks the register to check one code before it is sold.
type MarkingRequest struct {
	// Code is the code as the scanner read it, GS (0x1D) separators kept.
	Code   string
	Status PlannedStatus // 2003
	// Quantity in millionths of the Measure (the line's fiscal quantity):
	// sent for measured statuses only.
	Quantity int64
	Measure  Measure   // 2108
	Fraction *Fraction // 1291, an opened pack
}

// MarkingResult is the register's answer to a check.
type MarkingResult struct {
	Code   string        `json:"code"`
	Status PlannedStatus `json:"planned_status"`
	// Local is tag 2004 (the FN's own check: bit 0 done, bit 1 positive);
	// LocalReason says why it was not done (0 = it was).
	Local       CheckResult `json:"local"`
	LocalReason int         `json:"local_reason"`
	CodeType    int         `json:"code_type"` // 2100
	// Online is true when the OISM answered; FNCode is the FN's answer code to
	// the online request (0 ok; 0xFF no answer within the timeout).
	Online bool        `json:"online"`
	FNCode int         `json:"fn_code"`
	Result CheckResult `json:"result"` // 2106
	// OISM answer requisites, -1 when absent: 2109 item status (1 correct,
	// 2 incorrect, 3 sale suspended), 2105 request processing code, 2005
	// request processing results.
	ItemStatus     int    `json:"item_status"`
	ProcessingCode int    `json:"processing_code"`
	Processing     int    `json:"processing"`
	ServerTLV      []byte `json:"server_tlv,omitempty"`
}

// Verdict reads the result: the FN's negative crypto check or a negative
// OISM answer is Invalid; a positive OISM answer is Valid; otherwise the code
// was not checked online.
func (r MarkingResult) Verdict() Verdict {
	switch {
	case r.Local&CheckedByFN != 0 && r.Local&FNResultOK == 0:
		return Invalid
	case r.Online && r.Result&CheckedByOIS != 0 && r.Result&OISResultOK != 0 && r.ItemStatus != 2 && r.ItemStatus != 3:
		return Valid
	case r.Online && r.Result&CheckedByOIS != 0:
		return Invalid
	}
	return NotChecked
}

// Message is what the cashier is told, in Russian as on the till.
func (r MarkingResult) Message() string {
	switch {
	case r.Local&CheckedByFN != 0 && r.Local&FNResultOK == 0:
		return "Код маркировки не прошёл проверку ФН (поддельный или повреждён): продажа запрещена"
	case r.Verdict() == Valid:
		return "Код маркировки проверен: можно продавать"
	case r.Online && r.ItemStatus == 3:
		return "Оборот товара приостановлен Честным ЗНАКом: продажа запрещена"
	case r.Online && r.ItemStatus < 0:
		return "Код маркировки не найден в Честном ЗНАКе: продажа запрещена"
	case r.Online:
		return "Честный ЗНАК: статус товара не позволяет эту операцию: продажа запрещена"
	case r.Local&FNResultOK != 0:
		return "Честный ЗНАК не ответил: код проверен только ФН"
	}
	return "Честный ЗНАК не ответил, код не проверен"
}

// OfflinePolicy says what is done with a code the OISM did not answer for.
type OfflinePolicy int

const (
	// SellUnchecked accepts a not-checked code (the FN's check was not negative):
	// the receipt says so (2106) and the FN reports the code later.
	SellUnchecked OfflinePolicy = iota
	// RefuseUnchecked declines it: nothing is sold without the OISM's answer.
	RefuseUnchecked
)

// Acceptable says whether a result may be accepted under p, and if not why.
func (r MarkingResult) Acceptable(p OfflinePolicy) error {
	switch r.Verdict() {
	case Valid:
		return nil
	case Invalid:
		return badField("marking_code", "%s", r.Message())
	}
	if p == RefuseUnchecked {
		return badField("marking_code", "%s; продажа без проверки запрещена настройкой", r.Message())
	}
	return nil
}

// MarkingChecker is a register that checks marking codes (FFD 1.2). A caller
// checks a code, then accepts or declines the result before the next check; an
// accepted code is bound to the receipt line that carries it (Item.MarkingCode
// with Item.MarkingResult).
type MarkingChecker interface {
	CheckMarking(ctx context.Context, req MarkingRequest) (MarkingResult, error)
	// AcceptMarking accepts the last check (of r.Code); refused without
	// sending anything when r is not acceptable under the register's policy.
	AcceptMarking(ctx context.Context, r MarkingResult) error
	// DeclineMarking declines the last check.
	DeclineMarking(ctx context.Context) error
	// ClearMarking drops every accepted code not yet sold (a sale abandoned):
	// they must be checked again.
	ClearMarking(ctx context.Context) error
}

// Marked is true for a line carrying a marking code.
func (it Item) Marked() bool { return it.MarkingCode != "" }

// PlannedStatusFor is the status a marked line of a receipt of type t asks for.
func PlannedStatusFor(t ReceiptType, it Item) PlannedStatus {
	measured := it.Measure != Pieces || it.Fraction != nil
	switch {
	case t == SaleReturn && measured:
		return MeasuredReturned
	case t == SaleReturn:
		return PieceReturned
	case measured:
		return MeasuredSold
	}
	return PieceSold
}

// MarkingRequestFor is the check request for a marked line of a receipt of
// type t: what the line will sell must be what was checked.
func MarkingRequestFor(t ReceiptType, it Item) MarkingRequest {
	return MarkingRequest{Code: it.MarkingCode, Status: PlannedStatusFor(t, it), Quantity: it.Quantity, Measure: it.Measure, Fraction: it.Fraction}
}

// Validate checks a request before anything is sent.
func (q MarkingRequest) Validate() error {
	if q.Code == "" {
		return badField("marking_code", "empty marking code")
	}
	if err := CheckText("marking_code", strings.ReplaceAll(q.Code, "\x1d", "")); err != nil {
		return err
	}
	if q.Status < PieceSold || q.Status > MeasuredReturned {
		return badField("planned_status", "unknown planned status %d", q.Status)
	}
	if !q.Measure.Valid() {
		return badField("measure", "unknown measure %d", q.Measure)
	}
	if q.Fraction != nil {
		if err := checkFraction("fraction", *q.Fraction, q.Measure); err != nil {
			return err
		}
	}
	measured := q.Status == MeasuredSold || q.Status == MeasuredReturned
	if measured && q.Quantity <= 0 {
		return badField("quantity", "a measured item needs its quantity")
	}
	if !measured && (q.Measure != Pieces || q.Fraction != nil) {
		return badField("planned_status", "a weighed item or a part of a pack is measured_sold or measured_returned")
	}
	return nil
}

func checkFraction(field string, f Fraction, m Measure) error {
	if !f.Valid() {
		return badField(field, "a fraction of a pack is 0 < numerator < denominator")
	}
	if m != Pieces {
		return badField(field, "a part of a pack is counted in pieces (measure 0)")
	}
	return nil
}

// validateMarking checks what a marked line needs; at names the field.
func validateMarking(t ReceiptType, it Item, at func(string) string, industry []IndustryRequisite) error {
	if !it.Measure.Valid() {
		return badField(at("measure"), "unknown measure %d", it.Measure)
	}
	for k, q := range it.Industry {
		if err := q.Validate(at(fmt.Sprintf("industry[%d]", k))); err != nil {
			return err
		}
	}
	if !it.Marked() {
		if it.Fraction != nil {
			return badField(at("fraction"), "only a marked item has a fractional quantity")
		}
		if it.MarkingResult != nil {
			return badField(at("marking_result"), "a check result without a marking code")
		}
		return nil
	}
	switch it.Object {
	case 0, Goods, Excise, MarkedGoods, MarkedExcise:
	default:
		return badField(at("payment_object"), "a marked item is goods (33) or excise goods (31)")
	}
	if it.Fraction != nil {
		if err := checkFraction(at("fraction"), *it.Fraction, it.Measure); err != nil {
			return err
		}
		if it.Quantity != it.Fraction.Quantity() {
			return badField(at("quantity"), "the quantity of a part of a pack is its fraction %d/%d of one piece", it.Fraction.Numerator, it.Fraction.Denominator)
		}
	}
	if r := it.MarkingResult; r != nil {
		if r.Code != it.MarkingCode {
			return badField(at("marking_result"), "the check result is of another code")
		}
		if r.Status != PlannedStatusFor(t, it) {
			return badField(at("marking_result"), "the code was checked for %s, the line is %s", r.Status, PlannedStatusFor(t, it))
		}
		if r.Verdict() == Invalid {
			return badField(at("marking_code"), "%s", r.Message())
		}
	}
	for k, q := range industry {
		if err := q.Validate(fmt.Sprintf("industry[%d]", k)); err != nil {
			return err
		}
	}
	return nil
}

// Validate checks one requisite; field names it (e.g. "industry[0]"), and an
// error names the part of it that is wrong.
func (q IndustryRequisite) Validate(field string) error {
	if len(q.FOIV) != 3 || strings.Trim(q.FOIV, "0123456789") != "" {
		return badField(field+".foiv", "the FOIV id (1262) is 3 digits")
	}
	if q.Date.IsZero() {
		return badField(field+".date", "the document date (1263) is required")
	}
	if q.Number == "" || len(q.Number) > 32 {
		return badField(field+".number", "the document number (1264) is 1..32 characters")
	}
	if q.Value == "" || len(q.Value) > 256 {
		return badField(field+".value", "the value (1265) is 1..256 characters")
	}
	for f, s := range map[string]string{".number": q.Number, ".value": q.Value} {
		if err := CheckText(field+f, s); err != nil {
			return err
		}
	}
	return nil
}

// ValidateFFD12 adds to Validate what an FFD 1.2 register requires of marked
// lines: sale or sale_return only, one piece per code, and every marked line
// bound to an accepted check of its code for the status the line sells.
func (r Receipt) ValidateFFD12() error {
	for i, it := range r.Items {
		if !it.Marked() {
			continue
		}
		at := func(f string) string { return fmt.Sprintf("items[%d].%s", i, f) }
		if r.Type != Sale && r.Type != SaleReturn {
			return badField(at("marking_code"), "marked goods are sold or returned only in sale and sale_return receipts")
		}
		if it.Fraction == nil && it.Measure == Pieces && it.Quantity != QuantityOne {
			// One code is one pack: more packs are more lines.
			return badField(at("quantity"), "a marked piece item is one piece per code")
		}
		if it.MarkingResult == nil {
			return badField(at("marking_result"), "the marking code was not checked: check it (and accept the result) before the receipt")
		}
	}
	return nil
}
