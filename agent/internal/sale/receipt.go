package sale

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"kassa-agent/fiscal"
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
}

// ItemIn is one receipt line as the POS sends it.
type ItemIn struct {
	Name          string `json:"name"`
	Quantity      int64  `json:"quantity"`                 // thousandths
	Price         int64  `json:"price"`                    // kopecks per unit
	VAT           string `json:"vat"`                      // vat22, vat10, vat5, vat7, vat0, none, vat22_122, vat10_110, vat5_105, vat7_107
	PaymentMethod string `json:"payment_method,omitempty"` // full_payment (default), full_prepayment, …
	PaymentObject string `json:"payment_object,omitempty"` // goods (default), service, work, excise, payment, composite, other
	MarkingCode   string `json:"marking_code,omitempty"`
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
	types    []fiscal.ReceiptType // the receipt types allowed here
	at       time.Time            // the receipt's date, for the VAT rates in force
}

// toFiscal converts and validates the receipt of a provider payment; paid is the
// whole amount settled electronically by the provider. Only a sale is allowed.
func (r ReceiptIn) toFiscal(defTax fiscal.TaxSystem, defCashier string, paid int64) (fiscal.Receipt, error) {
	return r.convert(receiptOptions{tax: defTax, cashier: defCashier, payment: fiscal.Electronic, paid: paid,
		types: ProviderReceiptTypes, at: time.Now()})
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
		if it.Quantity <= 0 || it.Quantity > maxQuantityThousandths {
			return fiscal.Receipt{}, fmt.Errorf("%s must be a positive number of thousandths (1000 = 1 piece)", at("quantity"))
		}
		if it.Price < 0 {
			return fiscal.Receipt{}, fmt.Errorf("%s must not be negative", at("price"))
		}
		out.Items = append(out.Items, fiscal.Item{
			Name: it.Name, Quantity: it.Quantity * 1000, Price: it.Price,
			VAT: vat, Method: m, Object: obj, MarkingCode: it.MarkingCode,
		})
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
