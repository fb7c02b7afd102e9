package sale

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"kassa-agent/fiscal"
	"kassa-agent/payments"
)

// ReceiptIn is a fiscal receipt as the POS sends it. Quantities are thousandths of
// a unit (1000 = 1 piece, 500 = 0.5 kg), prices kopecks.
type ReceiptIn struct {
	Type      string   `json:"type,omitempty"` // sale (default), sale_return, purchase, purchase_return
	Items     []ItemIn `json:"items"`
	TaxSystem string   `json:"tax_system,omitempty"` // default: register.tax_system
	Buyer     string   `json:"buyer,omitempty"`      // phone or e-mail for the electronic receipt (tag 1008)
	Cashier   string   `json:"cashier,omitempty"`    // tag 1021; default: register.cashier
	// CashierINN is tag 1203 (12 digits), optional.
	CashierINN string `json:"cashier_inn,omitempty"`
	// Industry is tag 1260 for every marked line that gives none (default:
	// marking.industry).
	Industry []IndustryIn `json:"industry,omitempty"`
}

// IndustryIn is one industry requisite (tag 1260) as the POS sends it.
type IndustryIn struct {
	FOIV   string `json:"foiv"`   // 1262, 3 digits ("030")
	Date   string `json:"date"`   // 1263, YYYY-MM-DD
	Number string `json:"number"` // 1264
	Value  string `json:"value"`  // 1265
}

// FractionIn is the part of one marked pack a line sells (tag 1291).
type FractionIn struct {
	Numerator   int64 `json:"numerator"`
	Denominator int64 `json:"denominator"`
}

// ItemIn is one receipt line as the POS sends it.
type ItemIn struct {
	Name          string `json:"name"`
	Quantity      int64  `json:"quantity"`                 // thousandths
	Price         int64  `json:"price"`                    // kopecks per unit
	VAT           string `json:"vat"`                      // vat22, vat10, vat5, vat7, vat0, none, vat22_122, vat10_110, vat5_105, vat7_107
	PaymentMethod string `json:"payment_method,omitempty"` // full_payment (default), full_prepayment, …
	PaymentObject string `json:"payment_object,omitempty"` // goods (default), service, work, excise, payment, composite, other
	// MarkingCode is the code as scanned, GS (0x1D, "\u001d" in JSON) kept.
	MarkingCode string `json:"marking_code,omitempty"`
	// Measure is the quantity's unit (tag 2108): piece (default), g, kg, …
	Measure string `json:"measure,omitempty"`
	// Fraction is the part of one marked pack sold; quantity is then left
	// out (or is the fraction in thousandths, rounded half up).
	Fraction *FractionIn `json:"fraction,omitempty"`
	// MarkingGroup names the product group whose marking.groups policy
	// applies to this code.
	MarkingGroup string       `json:"marking_group,omitempty"`
	Industry     []IndustryIn `json:"industry,omitempty"`
}

// Measures are tag 2108's units by their API names.
var Measures = map[string]fiscal.Measure{"": fiscal.Pieces, "piece": fiscal.Pieces, "g": fiscal.Gram, "kg": fiscal.Kilogram,
	"t": fiscal.Ton, "cm": fiscal.Centimetre, "dm": fiscal.Decimetre, "m": fiscal.Metre, "cm2": fiscal.SqCm,
	"dm2": fiscal.SqDm, "m2": fiscal.SqM, "ml": fiscal.Millilitre, "l": fiscal.Litre, "m3": fiscal.CubicM,
	"kwh": fiscal.KWh, "gcal": fiscal.Gcal, "day": fiscal.Day, "hour": fiscal.Hour, "min": fiscal.Minute,
	"s": fiscal.Second, "kb": fiscal.KByte, "mb": fiscal.MByte, "gb": fiscal.GByte, "tb": fiscal.TByte, "other": fiscal.OtherUnit}

const measureNames = "piece, g, kg, t, cm, dm, m, cm2, dm2, m2, ml, l, m3, kwh, gcal, day, hour, min, s, kb, mb, gb, tb, other"

// quantity is the line's fiscal quantity in millionths: a part of a pack is
// its fraction exactly (2/3 is 666667), not the thousandths sent.
func (it ItemIn) quantity() int64 {
	if f := it.Fraction; f != nil && f.Denominator > 0 {
		return fiscal.Fraction{Numerator: f.Numerator, Denominator: f.Denominator}.Quantity()
	}
	return it.Quantity * 1000
}

// goods is the receipt's lines as a provider lists them, in thousandths of a
// unit: a part of a pack counts as its fraction (1/3 is 333), not as the
// quantity it leaves out.
func (r *ReceiptIn) goods() []payments.Item {
	var out []payments.Item
	for _, it := range r.Items {
		out = append(out, payments.Item{Name: it.Name, Price: it.Price, Quantity: (it.quantity() + 500) / 1000})
	}
	return out
}

// IndustryRequisites converts tag 1260's requisites; field names the list.
func IndustryRequisites(field string, in []IndustryIn) ([]fiscal.IndustryRequisite, error) {
	var out []fiscal.IndustryRequisite
	for k, q := range in {
		d, err := time.Parse(time.DateOnly, q.Date)
		if err != nil {
			return nil, fmt.Errorf("%s[%d].date %q is not a date YYYY-MM-DD", field, k, q.Date)
		}
		out = append(out, fiscal.IndustryRequisite{FOIV: q.FOIV, Date: d, Number: q.Number, Value: q.Value})
	}
	return out, nil
}

var (
	receiptTypes = map[string]fiscal.ReceiptType{"": fiscal.Sale, "sale": fiscal.Sale, "sale_return": fiscal.SaleReturn,
		"purchase": fiscal.Purchase, "purchase_return": fiscal.PurchaseReturn}
	// vat20 and vat20_120 stay known so a receipt dated before 2026 still converts;
	// from 2026-01-01 fiscal.Receipt.CheckRatesAt refuses them, naming vat22.
	vatRates = map[string]fiscal.VATRate{"vat22": fiscal.VAT22, "vat22_122": fiscal.VAT22122,
		"vat10": fiscal.VAT10, "vat10_110": fiscal.VAT10110, "vat5": fiscal.VAT5, "vat5_105": fiscal.VAT5105,
		"vat7": fiscal.VAT7, "vat7_107": fiscal.VAT7107, "vat0": fiscal.VAT0, "none": fiscal.NoVAT,
		"vat20": fiscal.VAT20, "vat20_120": fiscal.VAT20120}
	methods = map[string]fiscal.PaymentMethod{"": fiscal.FullPayment, "full_payment": fiscal.FullPayment,
		"full_prepayment": fiscal.FullPrepayment, "partial_prepayment": fiscal.PartialPrepayment,
		"advance": fiscal.Advance, "partial_payment": fiscal.PartialPayment,
		"credit_transfer": fiscal.CreditTransfer, "credit_payment": fiscal.CreditPayment}
	objects = map[string]fiscal.PaymentObject{"": fiscal.Goods, "goods": fiscal.Goods, "excise": fiscal.Excise,
		"work": fiscal.Work, "service": fiscal.Service, "payment": fiscal.PaymentObj,
		"composite": fiscal.Composite, "other": fiscal.Other}
	// TaxSystems maps the config and API words to the FN's tax system bit.
	TaxSystems = map[string]fiscal.TaxSystem{"osn": fiscal.OSN, "usn_income": fiscal.USNIncome,
		"usn_income_outcome": fiscal.USNIncomeExpense, "envd": fiscal.ENVD, "esn": fiscal.ESHN, "patent": fiscal.PSN}
)

// maxQuantityThousandths keeps the conversion to millionths from overflowing.
const maxQuantityThousandths = (1<<63 - 1) / 1000

// ProviderReceiptTypes are the receipt types of a payment taken from a buyer by
// a provider: money received is a sale (приход) and nothing else.
var ProviderReceiptTypes = []fiscal.ReceiptType{fiscal.Sale}

// AllReceiptTypes are every calculation sign, for receipts the POS itself settles
// (returns, purchases).
var AllReceiptTypes = []fiscal.ReceiptType{fiscal.Sale, fiscal.SaleReturn, fiscal.Purchase, fiscal.PurchaseReturn}

// receiptOptions are what a conversion needs beyond the POS's receipt.
type receiptOptions struct {
	tax     fiscal.TaxSystem // default tax system
	cashier string           // default cashier
	payment fiscal.PaymentKind
	paid    int64 // the whole amount, paid as payment
	// payments, when set, are the receipt's payment sums instead (receipts
	// for money the POS took itself: cash, card terminal, a mix).
	payments []fiscal.Payment
	types    []fiscal.ReceiptType       // the receipt types allowed here
	at       time.Time                  // the receipt's date, for the VAT rates in force
	industry []fiscal.IndustryRequisite // tag 1260 for marked lines when the receipt gives none
}

// toFiscal converts and validates the receipt of a provider payment; paid is the
// whole amount settled electronically by the provider. Only a sale is allowed.
func (r ReceiptIn) toFiscal(defTax fiscal.TaxSystem, defCashier string, paid int64, industry []fiscal.IndustryRequisite) (fiscal.Receipt, error) {
	return r.convert(receiptOptions{tax: defTax, cashier: defCashier, payment: fiscal.Electronic, paid: paid,
		types: ProviderReceiptTypes, at: time.Now(), industry: industry})
}

func typeNames(ts []fiscal.ReceiptType) string {
	var names []string
	for _, t := range ts {
		names = append(names, t.String())
	}
	return strings.Join(names, ", ")
}

// convert converts and validates the POS's receipt. Error messages name the
// field as the POS sent it ("receipt.items[0].name").
func (r ReceiptIn) convert(o receiptOptions) (fiscal.Receipt, error) {
	t, ok := receiptTypes[r.Type]
	allowed := false
	for _, a := range o.types {
		allowed = allowed || (ok && a == t)
	}
	if !allowed {
		if len(o.types) == 1 {
			return fiscal.Receipt{}, fmt.Errorf("receipt.type %q is not allowed here: a payment taken from a buyer prints a %s receipt only", r.Type, typeNames(o.types))
		}
		return fiscal.Receipt{}, fmt.Errorf("receipt.type %q is not one of %s", r.Type, typeNames(o.types))
	}
	out := fiscal.Receipt{Type: t, TaxSystem: o.tax, Buyer: r.Buyer, Cashier: o.cashier}
	if r.TaxSystem != "" {
		ts, ok := TaxSystems[r.TaxSystem]
		if !ok {
			return fiscal.Receipt{}, fmt.Errorf("receipt.tax_system %q is not one of osn, usn_income, usn_income_outcome, envd, esn, patent", r.TaxSystem)
		}
		out.TaxSystem = ts
	}
	if r.Cashier != "" {
		out.Cashier = r.Cashier
	}
	out.CashierINN = r.CashierINN
	ind, err := IndustryRequisites("receipt.industry", r.Industry)
	if err != nil {
		return fiscal.Receipt{}, err
	}
	out.Industry = ind
	codes := map[string]int{}
	for i, it := range r.Items {
		at := func(f string) string { return fmt.Sprintf("receipt.items[%d].%s", i, f) }
		vat, ok := vatRates[it.VAT]
		if !ok {
			return fiscal.Receipt{}, fmt.Errorf("%s %q is not one of vat22, vat10, vat5, vat7, vat0, none, vat22_122, vat10_110, vat5_105, vat7_107", at("vat"), it.VAT)
		}
		m, ok := methods[it.PaymentMethod]
		if !ok {
			return fiscal.Receipt{}, fmt.Errorf("%s %q is not a known payment method", at("payment_method"), it.PaymentMethod)
		}
		obj, ok := objects[it.PaymentObject]
		if !ok {
			return fiscal.Receipt{}, fmt.Errorf("%s %q is not a known payment object", at("payment_object"), it.PaymentObject)
		}
		measure, ok := Measures[it.Measure]
		if !ok {
			return fiscal.Receipt{}, fmt.Errorf("%s %q is not one of %s", at("measure"), it.Measure, measureNames)
		}
		var frac *fiscal.Fraction
		if f := it.Fraction; f != nil {
			frac = &fiscal.Fraction{Numerator: f.Numerator, Denominator: f.Denominator}
			if !frac.Valid() {
				return fiscal.Receipt{}, fmt.Errorf("%s: a part of a pack is 0 < numerator < denominator", at("fraction"))
			}
			if want := (frac.Quantity() + 500) / 1000; it.Quantity != 0 && it.Quantity != want {
				return fiscal.Receipt{}, fmt.Errorf("%s of a part of a pack is its fraction: leave it out or send %d", at("quantity"), want)
			}
		} else if it.Quantity <= 0 || it.Quantity > maxQuantityThousandths {
			return fiscal.Receipt{}, fmt.Errorf("%s must be a positive number of thousandths (1000 = 1 piece)", at("quantity"))
		}
		if it.Price < 0 {
			return fiscal.Receipt{}, fmt.Errorf("%s must not be negative", at("price"))
		}
		if it.MarkingCode == "" && (it.MarkingGroup != "" || len(it.Industry) > 0) {
			return fiscal.Receipt{}, fmt.Errorf("%s: marking_group and industry are for a marked item (one with a marking_code)", at("marking_code"))
		}
		if it.MarkingCode != "" {
			// One code is one pack: the FN accepts it once per receipt.
			if j, dup := codes[it.MarkingCode]; dup {
				return fiscal.Receipt{}, fmt.Errorf("%s is the code of receipt.items[%d] too: one code is one pack", at("marking_code"), j)
			}
			codes[it.MarkingCode] = i
		}
		lineInd, err := IndustryRequisites(at("industry"), it.Industry)
		if err != nil {
			return fiscal.Receipt{}, err
		}
		out.Items = append(out.Items, fiscal.Item{
			Name: it.Name, Quantity: it.quantity(), Price: it.Price,
			VAT: vat, Method: m, Object: obj, MarkingCode: it.MarkingCode,
			Measure: measure, Fraction: frac, Industry: lineInd, MarkingGroup: it.MarkingGroup,
		})
	}
	if len(out.Industry) == 0 && len(codes) > 0 {
		out.Industry = o.industry
	}
	out.Payments = []fiscal.Payment{{Kind: o.payment, Amount: o.paid}}
	if o.payments != nil {
		out.Payments = o.payments
	}
	if err := out.Validate(fiscal.DefaultLimits); err != nil {
		return fiscal.Receipt{}, receiptErr(err)
	}
	if err := out.CheckRatesAt(o.at); err != nil {
		return fiscal.Receipt{}, receiptErr(err)
	}
	return out, nil
}

// receiptErr names the field of a fiscal validation error as the POS sent it:
// fiscal says "items[0].name: …", the API "receipt.items[0].name: …".
func receiptErr(err error) error {
	var fe *fiscal.Error
	if errors.As(err, &fe) && fe.Code == fiscal.CodeBadReceipt {
		if fe.Field != "" {
			return &fieldError{msg: "receipt." + fe.Text, err: err}
		}
		return &fieldError{msg: "receipt: " + fe.Text, err: err}
	}
	return err
}

// fieldError is a fiscal validation error worded for the API; it still unwraps
// to the *fiscal.Error.
type fieldError struct {
	msg string
	err error
}

func (e *fieldError) Error() string { return e.msg }
func (e *fieldError) Unwrap() error { return e.err }
