package sale

import (
	"fmt"

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
}

// ItemIn is one receipt line as the POS sends it.
type ItemIn struct {
	Name          string `json:"name"`
	Quantity      int64  `json:"quantity"`                 // thousandths
	Price         int64  `json:"price"`                    // kopecks per unit
	VAT           string `json:"vat"`                      // vat20, vat10, vat0, none, vat20_120, vat10_110
	PaymentMethod string `json:"payment_method,omitempty"` // full_payment (default), full_prepayment, …
	PaymentObject string `json:"payment_object,omitempty"` // goods (default), service, work, excise, payment, composite, other
	MarkingCode   string `json:"marking_code,omitempty"`
}

var (
	receiptTypes = map[string]fiscal.ReceiptType{"": fiscal.Sale, "sale": fiscal.Sale, "sale_return": fiscal.SaleReturn,
		"purchase": fiscal.Purchase, "purchase_return": fiscal.PurchaseReturn}
	vatRates = map[string]fiscal.VATRate{"vat20": fiscal.VAT20, "vat10": fiscal.VAT10, "vat0": fiscal.VAT0,
		"none": fiscal.NoVAT, "vat20_120": fiscal.VAT20120, "vat10_110": fiscal.VAT10110}
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

// toFiscal converts and validates the POS's receipt; paid is the whole amount
// settled electronically by the provider.
func (r ReceiptIn) toFiscal(defTax fiscal.TaxSystem, defCashier string, paid int64) (fiscal.Receipt, error) {
	t, ok := receiptTypes[r.Type]
	if !ok {
		return fiscal.Receipt{}, fmt.Errorf("receipt.type %q is not one of sale, sale_return, purchase, purchase_return", r.Type)
	}
	out := fiscal.Receipt{Type: t, TaxSystem: defTax, Buyer: r.Buyer, Cashier: defCashier}
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
	for i, it := range r.Items {
		at := func(f string) string { return fmt.Sprintf("receipt.items[%d].%s", i, f) }
		vat, ok := vatRates[it.VAT]
		if !ok {
			return fiscal.Receipt{}, fmt.Errorf("%s %q is not one of vat20, vat10, vat0, none, vat20_120, vat10_110", at("vat"), it.VAT)
		}
		m, ok := methods[it.PaymentMethod]
		if !ok {
			return fiscal.Receipt{}, fmt.Errorf("%s %q is not a known payment method", at("payment_method"), it.PaymentMethod)
		}
		o, ok := objects[it.PaymentObject]
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
			VAT: vat, Method: m, Object: o, MarkingCode: it.MarkingCode,
		})
	}
	out.Payments = []fiscal.Payment{{Kind: fiscal.Electronic, Amount: paid}}
	if err := out.Validate(fiscal.DefaultLimits); err != nil {
		return fiscal.Receipt{}, err
	}
	return out, nil
}
