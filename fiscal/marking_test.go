package fiscal_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"kassa-agent/fiscal"
)

func markedGood() fiscal.Receipt {
	res := fiscal.MarkingResult{Code: "0104650118041019215'WCKI\x1d93Zdh1", Status: fiscal.PieceSold, Local: 3, Online: true, Result: 0x0F, ItemStatus: 1}
	r := fiscal.Receipt{Type: fiscal.Sale, Items: []fiscal.Item{
		{Name: "Хлеб", Quantity: 1_500_000, Price: 4599, VAT: fiscal.VAT10},
		{Name: "Молоко", Quantity: fiscal.QuantityOne, Price: 8990, VAT: fiscal.VAT10, MarkingCode: res.Code, MarkingResult: &res},
	}}
	r.Payments = []fiscal.Payment{{Kind: fiscal.Cash, Amount: r.Total()}}
	return r
}

// TestValidateMarking: every rule of a marked line names its field.
func TestValidateMarking(t *testing.T) {
	if err := markedGood().Validate(fiscal.DefaultLimits); err != nil {
		t.Fatal(err)
	}
	if err := markedGood().ValidateFFD12(); err != nil {
		t.Fatal(err)
	}
	ind := fiscal.IndustryRequisite{FOIV: "030", Date: time.Date(2023, 11, 21, 0, 0, 0, 0, time.UTC), Number: "1944", Value: "UUID=x&Time=1"}
	for field, mod := range map[string]func(r *fiscal.Receipt){
		"items[1].measure":          func(r *fiscal.Receipt) { r.Items[1].Measure = 13 },
		"items[1].payment_object":   func(r *fiscal.Receipt) { r.Items[1].Object = fiscal.Service },
		"items[1].fraction":         func(r *fiscal.Receipt) { r.Items[1].Fraction = &fiscal.Fraction{Numerator: 3, Denominator: 2} },
		"items[1].quantity":         func(r *fiscal.Receipt) { r.Items[1].Fraction = &fiscal.Fraction{Numerator: 1, Denominator: 2} },
		"items[0].fraction":         func(r *fiscal.Receipt) { r.Items[0].Fraction = &fiscal.Fraction{Numerator: 1, Denominator: 2} },
		"items[0].marking_result":   func(r *fiscal.Receipt) { r.Items[0].MarkingResult = r.Items[1].MarkingResult },
		"items[1].marking_result":   func(r *fiscal.Receipt) { r.Items[1].MarkingCode += "x" },
		"items[1].marking_code":     func(r *fiscal.Receipt) { x := *r.Items[1].MarkingResult; x.Local = 1; r.Items[1].MarkingResult = &x },
		"items[1].industry[0].foiv": func(r *fiscal.Receipt) { i := ind; i.FOIV = "30"; r.Items[1].Industry = []fiscal.IndustryRequisite{i} },
		"industry[0].date":          func(r *fiscal.Receipt) { i := ind; i.Date = time.Time{}; r.Industry = []fiscal.IndustryRequisite{i} },
		"industry[0].value":         func(r *fiscal.Receipt) { i := ind; i.Value = "a\x1db"; r.Industry = []fiscal.IndustryRequisite{i} },
	} {
		r := markedGood()
		mod(&r)
		if err := r.Validate(fiscal.DefaultLimits); !errors.Is(err, fiscal.ErrBadReceipt) || !strings.Contains(err.Error(), field) {
			t.Errorf("%s: %v", field, err)
		}
	}
	for field, mod := range map[string]func(r *fiscal.Receipt){
		"items[1].quantity":       func(r *fiscal.Receipt) { r.Items[1].Quantity = 2 * fiscal.QuantityOne },
		"items[1].marking_code":   func(r *fiscal.Receipt) { r.Type = fiscal.Purchase },
		"items[1].marking_result": func(r *fiscal.Receipt) { r.Items[1].MarkingResult = nil },
	} {
		r := markedGood()
		mod(&r)
		if err := r.ValidateFFD12(); !errors.Is(err, fiscal.ErrBadReceipt) || !strings.Contains(err.Error(), field) {
			t.Errorf("FFD 1.2 %s: %v", field, err)
		}
	}
}

// TestMarkingVerdicts: the 2106 bits and the FN's own check read as the
// sale needs them; the policy decides only a code not checked online.
func TestMarkingVerdicts(t *testing.T) {
	for _, tc := range []struct {
		r    fiscal.MarkingResult
		want fiscal.Verdict
	}{
		{fiscal.MarkingResult{Local: 3, Online: true, Result: 0x0F, ItemStatus: 1}, fiscal.Valid},
		{fiscal.MarkingResult{Local: 3, Online: true, Result: 0x0F, ItemStatus: 3}, fiscal.Invalid}, // sale suspended
		{fiscal.MarkingResult{Local: 1, Online: true, Result: 0x05, ItemStatus: 2}, fiscal.Invalid},
		{fiscal.MarkingResult{Local: 3, Online: true, Result: 0x07, ItemStatus: -1}, fiscal.Invalid},
		{fiscal.MarkingResult{Local: 1, Result: 0x01}, fiscal.Invalid}, // FN's crypto check failed, offline
		{fiscal.MarkingResult{Local: 3, Result: 0x03}, fiscal.NotChecked},
		{fiscal.MarkingResult{Local: 0, FNCode: 0xFF}, fiscal.NotChecked},
	} {
		if v := tc.r.Verdict(); v != tc.want {
			t.Errorf("%+v: %s, want %s", tc.r, v, tc.want)
		}
		err := tc.r.Acceptable(fiscal.SellUnchecked)
		if (err == nil) != (tc.want != fiscal.Invalid) {
			t.Errorf("%+v sell-unchecked: %v", tc.r, err)
		}
		err = tc.r.Acceptable(fiscal.RefuseUnchecked)
		if (err == nil) != (tc.want == fiscal.Valid) {
			t.Errorf("%+v refuse-unchecked: %v", tc.r, err)
		}
	}
}
