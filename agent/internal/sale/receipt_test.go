package sale

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode"

	"kassa-agent/agent/internal/localapi"
	"kassa-agent/fiscal"
	"kassa-agent/payments"
)

var testEnv = checkEnv{providers: map[string]payments.Provider{ProviderSmartPay: smartPay{}}, register: true, tax: fiscal.OSN}

func payment(r ReceiptIn) CreateRequest {
	var total int64
	for _, it := range r.Items {
		total += it.Price * it.Quantity / 1000
	}
	return CreateRequest{Provider: "smartpay", Amount: total, Currency: "RUB", Receipt: &r}
}

func line(name, vat string) ItemIn { return ItemIn{Name: name, Quantity: 1000, Price: 10000, VAT: vat} }

// refused checks a 422 validation_failed whose message names field.
func refused(t *testing.T, what string, req CreateRequest, field string) {
	t.Helper()
	_, err := validateRequest(req, testEnv)
	var ae *localapi.Error
	if !errors.As(err, &ae) || ae.Code != "validation_failed" || !strings.Contains(ae.Message, field) {
		t.Errorf("%s: %v, want validation_failed naming %s", what, err, field)
	}
}

// TestProviderPaymentPrintsSaleOnly: money taken from a buyer is a sale (приход);
// a return or purchase receipt for it would be a false fiscal document.
func TestProviderPaymentPrintsSaleOnly(t *testing.T) {
	for _, typ := range []string{"sale_return", "purchase", "purchase_return", "bogus"} {
		refused(t, typ, payment(ReceiptIn{Type: typ, Items: []ItemIn{line("Хлеб", "vat10")}}), "receipt.type")
	}
	for _, typ := range []string{"", "sale"} {
		if _, err := validateRequest(payment(ReceiptIn{Type: typ, Items: []ItemIn{line("Хлеб", "vat10")}}), testEnv); err != nil {
			t.Errorf("type %q: %v", typ, err)
		}
	}
	// The other types stay available to the POS receipts endpoint.
	r, err := ReceiptIn{Type: "sale_return", Items: []ItemIn{line("Хлеб", "vat10")}}.convert(receiptOptions{
		tax: fiscal.OSN, payment: fiscal.Cash, paid: 10000, types: AllReceiptTypes, at: time.Now()})
	if err != nil || r.Type != fiscal.SaleReturn {
		t.Fatalf("sale_return for the receipts endpoint: %+v %v", r, err)
	}
}

// TestReceiptControlCharacters: NUL, ESC, CR LF, BEL, DEL and C1 characters in text
// that reaches the register are refused, naming the field; GS stays allowed in a
// marking code.
func TestReceiptControlCharacters(t *testing.T) {
	for _, c := range []string{"\x00", "\x1b[2J", "\r\n", "\a", "\x7f", "\u0085", "\u009b"} {
		refused(t, "name", payment(ReceiptIn{Items: []ItemIn{line("Хлеб", "vat10"), line("Мыло"+c, "vat22")}}), "receipt.items[1].name")
		refused(t, "buyer", payment(ReceiptIn{Buyer: "a" + c + "@b.ru", Items: []ItemIn{line("Хлеб", "vat10")}}), "receipt.buyer")
		refused(t, "cashier", payment(ReceiptIn{Cashier: "Иванова" + c, Items: []ItemIn{line("Хлеб", "vat10")}}), "receipt.cashier")
		it := line("Туфли", "vat22")
		it.MarkingCode = "0104601234567890" + c + "21abc"
		refused(t, "marking", payment(ReceiptIn{Items: []ItemIn{it}}), "receipt.items[0].marking_code")
	}
	it := line("Туфли", "vat22")
	it.MarkingCode = "010460406000600021N4N57RSCBUZTQ\x1d2403004002910161218"
	if _, err := validateRequest(payment(ReceiptIn{Items: []ItemIn{it}}), testEnv); err != nil {
		t.Fatalf("GS in a marking code: %v", err)
	}
}

// TestReceiptVATNames: every current rate is accepted; 20 % on a receipt dated
// 2026 or later is refused naming vat22, 22 % before 2026 is refused too.
func TestReceiptVATNames(t *testing.T) {
	want := map[string]fiscal.VATRate{"vat22": fiscal.VAT22, "vat22_122": fiscal.VAT22122, "vat10": fiscal.VAT10,
		"vat10_110": fiscal.VAT10110, "vat5": fiscal.VAT5, "vat5_105": fiscal.VAT5105, "vat7": fiscal.VAT7,
		"vat7_107": fiscal.VAT7107, "vat0": fiscal.VAT0, "none": fiscal.NoVAT}
	y2026 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for name, rate := range want {
		r, err := ReceiptIn{Items: []ItemIn{line("Товар", name)}}.convert(receiptOptions{payment: fiscal.Electronic, paid: 10000,
			types: ProviderReceiptTypes, at: y2026})
		if err != nil || r.Items[0].VAT != rate {
			t.Errorf("%s: %+v %v", name, r.Items, err)
		}
	}
	for _, name := range []string{"vat20", "vat20_120"} {
		_, err := ReceiptIn{Items: []ItemIn{line("Товар", name)}}.convert(receiptOptions{payment: fiscal.Electronic, paid: 10000,
			types: ProviderReceiptTypes, at: y2026})
		if err == nil || !strings.Contains(err.Error(), "vat22") || !strings.Contains(err.Error(), "receipt.items[0].vat") {
			t.Errorf("%s in 2026: %v", name, err)
		}
		r, err := ReceiptIn{Items: []ItemIn{line("Товар", name)}}.convert(receiptOptions{payment: fiscal.Electronic, paid: 10000,
			types: ProviderReceiptTypes, at: y2026.Add(-time.Minute)})
		if err != nil || (r.Items[0].VAT != fiscal.VAT20 && r.Items[0].VAT != fiscal.VAT20120) {
			t.Errorf("%s in 2025: %+v %v", name, r, err)
		}
	}
	_, err := ReceiptIn{Items: []ItemIn{line("Товар", "vat22")}}.convert(receiptOptions{payment: fiscal.Electronic, paid: 10000,
		types: ProviderReceiptTypes, at: y2026.Add(-time.Minute)})
	if err == nil || !strings.Contains(err.Error(), "receipt.items[0].vat") {
		t.Errorf("vat22 in 2025: %v", err)
	}
	refused(t, "unknown", payment(ReceiptIn{Items: []ItemIn{line("Товар", "vat18")}}), "receipt.items[0].vat")
}

func hasControl(s string) bool {
	for _, r := range s {
		if unicode.IsControl(r) {
			return true
		}
	}
	return false
}

// FuzzReceiptText: whatever the text, an accepted receipt carries no control
// character to the register (marking codes: none but GS).
func FuzzReceiptText(f *testing.F) {
	for _, s := range [][4]string{
		{"Молоко 3,2%", "", "", ""},
		{"\x1b[2J", "a@b.ru", "Иванова", "01046\x1d93"},
		{"x\r\ny", "+79161234567\x00", "\a", "\x7f"},
		{"\u0085\u009b", "", "Кассир\u200b", "0104601234567890215abc\x1d93dGVz"},
	} {
		f.Add(s[0], s[1], s[2], s[3])
	}
	f.Fuzz(func(t *testing.T, name, buyer, cashier, marking string) {
		req := payment(ReceiptIn{Buyer: buyer, Cashier: cashier, Items: []ItemIn{{Name: name, Quantity: 1000, Price: 100, VAT: "vat22", MarkingCode: marking}}})
		body, err := json.Marshal(req)
		if err != nil {
			t.Skip()
		}
		var back CreateRequest
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if dec.Decode(&back) != nil {
			return
		}
		r, err := validateRequest(back, testEnv)
		if err != nil {
			return
		}
		if hasControl(r.Items[0].Name) || hasControl(r.Buyer) || hasControl(r.Cashier) ||
			hasControl(strings.ReplaceAll(r.Items[0].MarkingCode, "\x1d", "")) {
			t.Fatalf("accepted control characters: %+v", r)
		}
	})
}

// TestGoodsCountFractions: a provider's goods list counts part of a marked
// pack as its fraction; the line's own quantity is left out then (it was
// listed as 0).
func TestGoodsCountFractions(t *testing.T) {
	r := &ReceiptIn{Items: []ItemIn{
		{Name: "Сигареты (пачка из блока)", Price: 2000, Fraction: &FractionIn{Numerator: 1, Denominator: 3}},
		{Name: "Сыр", Price: 120000, Quantity: 512},
	}}
	got := r.goods()
	if len(got) != 2 || got[0].Quantity != 333 || got[1].Quantity != 512 {
		t.Fatalf("goods %+v", got)
	}
}
