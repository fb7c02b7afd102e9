package fiscal_test

import (
	"errors"
	"strings"
	"testing"
	"time"
	"unicode"

	"kassa-agent/fiscal"
	"kassa-agent/fiscal/fiscaltest"
)

func TestFileJournalContract(t *testing.T) {
	dir := t.TempDir()
	fiscaltest.JournalContract(t, func(t *testing.T, reopen bool) fiscal.Journal {
		j, err := fiscal.OpenFileJournal(dir)
		if err != nil {
			t.Fatal(err)
		}
		return j
	})
}

func good() fiscal.Receipt {
	return fiscal.Receipt{Type: fiscal.Sale, Items: []fiscal.Item{{Name: "Хлеб", Quantity: 1_500_000, Price: 4599, VAT: fiscal.VAT10}},
		Payments: []fiscal.Payment{{Kind: fiscal.Cash, Amount: 10000}}}
}

func TestValidate(t *testing.T) {
	if err := good().Validate(fiscal.DefaultLimits); err != nil {
		t.Fatal(err)
	}
	if s := good().Items[0].Sum(); s != 6899 { // 45.99 × 1.5 = 68.985 → 68.99
		t.Fatalf("Sum = %d", s)
	}
	for name, mod := range map[string]func(*fiscal.Receipt){
		"empty":             func(r *fiscal.Receipt) { r.Items = nil },
		"zero total":        func(r *fiscal.Receipt) { r.Items[0].Price = 0 },
		"payments less":     func(r *fiscal.Receipt) { r.Payments = []fiscal.Payment{{Kind: fiscal.Electronic, Amount: 6898}} },
		"non-cash over":     func(r *fiscal.Receipt) { r.Payments = []fiscal.Payment{{Kind: fiscal.Electronic, Amount: 7000}} },
		"name too long":     func(r *fiscal.Receipt) { r.Items[0].Name = strings.Repeat("ж", 129) },
		"blank name":        func(r *fiscal.Receipt) { r.Items[0].Name = "  " },
		"quantity overflow": func(r *fiscal.Receipt) { r.Items[0].Quantity = 1 << 50 },
		"price overflow":    func(r *fiscal.Receipt) { r.Items[0].Price = 1 << 41 },
		"product overflow":  func(r *fiscal.Receipt) { r.Items[0].Price, r.Items[0].Quantity = 1<<39, 1<<47 },
		"sum overflow":      func(r *fiscal.Receipt) { r.Items[0].Price, r.Items[0].Quantity = 1<<39, 1<<22 },
		"negative quantity": func(r *fiscal.Receipt) { r.Items[0].Quantity = -1 },
		"bad vat":           func(r *fiscal.Receipt) { r.Items[0].VAT = 13 },
		"bad type":          func(r *fiscal.Receipt) { r.Type = 7 },
		"two tax systems":   func(r *fiscal.Receipt) { r.TaxSystem = fiscal.OSN | fiscal.PSN },
		"bad buyer":         func(r *fiscal.Receipt) { r.Buyer = "call me" },
		"dup payment":       func(r *fiscal.Receipt) { r.Payments = append(r.Payments, r.Payments[0]) },
	} {
		r := good()
		r.Items = append([]fiscal.Item(nil), r.Items...)
		mod(&r)
		err := r.Validate(fiscal.DefaultLimits)
		var fe *fiscal.Error
		if !errors.As(err, &fe) || fe.Code != fiscal.CodeBadReceipt || fe.Text == "" || fe.Retryable() || !errors.Is(err, fiscal.ErrBadReceipt) {
			t.Errorf("%s: %v", name, err)
		}
	}
	r := good()
	r.Buyer, r.TaxSystem = "+79161234567", fiscal.USNIncome
	if err := r.Validate(fiscal.DefaultLimits); err != nil {
		t.Fatal(err)
	}
}

func TestErrorCodesDocumented(t *testing.T) {
	seen := map[string]bool{}
	for _, c := range fiscal.Codes {
		if seen[c.Code] || !strings.HasPrefix(c.Code, "register_") || c.Description == "" {
			t.Errorf("bad code entry %+v", c)
		}
		seen[c.Code] = true
	}
	e := &fiscal.Error{Code: fiscal.CodePaperOut, Device: 0x6B, Command: 0xFF46, Text: "no receipt paper"}
	if !e.Retryable() || e.ErrorCode() != "register_paper_out" || !errors.Is(e, fiscal.ErrPaperOut) || errors.Is(e, fiscal.ErrBusy) ||
		e.Error() != "register_paper_out (device 0x6B, command 0xFF46): no receipt paper" {
		t.Fatalf("%v", e)
	}
}

// TestValidateRefusesControlCharacters: no C0, DEL or C1 character reaches the
// register in any text field; marking codes keep their GS (0x1D) separators.
func TestValidateRefusesControlCharacters(t *testing.T) {
	bad := []string{"\x00", "\x1b[2J", "\r\n", "\a", "\x7f", "\u0085", "\u009b", "\t"}
	for _, c := range bad {
		for field, mod := range map[string]func(*fiscal.Receipt){
			"items[0].name":         func(r *fiscal.Receipt) { r.Items[0].Name = "Хлеб" + c + "x" },
			"buyer":                 func(r *fiscal.Receipt) { r.Buyer = "a" + c + "@b.ru" },
			"cashier":               func(r *fiscal.Receipt) { r.Cashier = "Иванова" + c },
			"items[0].marking_code": func(r *fiscal.Receipt) { r.Items[0].MarkingCode = "0104601234567890" + c + "21abc" },
		} {
			r := good()
			r.Items = append([]fiscal.Item(nil), r.Items...)
			mod(&r)
			err := r.Validate(fiscal.DefaultLimits)
			if !errors.Is(err, fiscal.ErrBadReceipt) || !strings.Contains(err.Error(), field) {
				t.Errorf("%s with %q: %v", field, c, err)
			}
		}
	}
	r := good()
	r.Items[0].MarkingCode = "010460406000600021N4N57RSCBUZTQ\x1d2403004002910161218"
	if err := r.Validate(fiscal.DefaultLimits); err != nil {
		t.Fatalf("GS in a marking code: %v", err)
	}
}

// FuzzValidateText: whatever the text fields hold, a receipt Validate accepts
// carries no control character to the register (a marking code: none but GS).
func FuzzValidateText(f *testing.F) {
	f.Add("Хлеб", "+79161234567", "Иванова А.", "0104601234567890215abc\x1d93dGVz")
	f.Add("\x1b[2J", "a@b.ru\r\n", "\a", "\x7f")
	f.Add("x\u0085", "", "\u009b", "\x1d\x1d")
	f.Add("\xff\xfe", "@", "\x00", "")
	f.Fuzz(func(t *testing.T, name, buyer, cashier, marking string) {
		r := good()
		r.Items = append([]fiscal.Item(nil), r.Items...)
		r.Items[0].Name, r.Items[0].MarkingCode, r.Buyer, r.Cashier = name, marking, buyer, cashier
		if r.Validate(fiscal.DefaultLimits) != nil {
			return
		}
		for _, s := range []string{name, buyer, cashier, strings.ReplaceAll(marking, "\x1d", "")} {
			for _, c := range s {
				if unicode.IsControl(c) {
					t.Fatalf("accepted %U in %q", c, s)
				}
			}
		}
	})
}

// TestValidatePaymentFields: every payment-split failure names the payment at
// fault, so the POS can point at it.
func TestValidatePaymentFields(t *testing.T) {
	for name, c := range map[string]struct {
		mod   func(*fiscal.Receipt)
		field string
	}{
		"unknown kind":       {func(r *fiscal.Receipt) { r.Payments = []fiscal.Payment{{Kind: 17, Amount: 7000}} }, "payments[0].kind"},
		"duplicate kind":     {func(r *fiscal.Receipt) { r.Payments = append(r.Payments, fiscal.Payment{Kind: fiscal.Cash, Amount: 1}) }, "payments[1].kind"},
		"negative amount":    {func(r *fiscal.Receipt) { r.Payments = []fiscal.Payment{{Kind: fiscal.Cash, Amount: -1}} }, "payments[0].amount"},
		"less than total":    {func(r *fiscal.Receipt) { r.Payments = []fiscal.Payment{{Kind: fiscal.Cash, Amount: 6898}} }, "payments"},
		"change w/o cash":    {func(r *fiscal.Receipt) { r.Payments = []fiscal.Payment{{Kind: fiscal.Prepayment, Amount: 7000}} }, "payments"},
		"cashier INN short":  {func(r *fiscal.Receipt) { r.CashierINN = "12345" }, "cashier_inn"},
		"cashier INN letter": {func(r *fiscal.Receipt) { r.CashierINN = "77012345678X" }, "cashier_inn"},
	} {
		r := good()
		c.mod(&r)
		err := r.Validate(fiscal.DefaultLimits)
		var fe *fiscal.Error
		if !errors.As(err, &fe) || fe.Field != c.field {
			t.Errorf("%s: %v (field %q), want field %q", name, err, fieldOf(fe), c.field)
		}
	}
	// Every kind of split that is right passes.
	r := good() // total 68.99
	for _, ps := range [][]fiscal.Payment{
		{{Kind: fiscal.Cash, Amount: 10000}},
		{{Kind: fiscal.Cash, Amount: 5000}, {Kind: fiscal.Electronic, Amount: 1899}},
		{{Kind: fiscal.Cash, Amount: 5000}, {Kind: fiscal.Electronic, Amount: 1899}, {Kind: fiscal.Prepayment, Amount: 1}},
		{{Kind: fiscal.Prepayment, Amount: 3000}, {Kind: fiscal.Credit, Amount: 3000}, {Kind: fiscal.Consideration, Amount: 899}},
		{{Kind: fiscal.Cash, Amount: 100000}, {Kind: fiscal.Credit, Amount: 6899}},
	} {
		r.Payments, r.CashierINN = ps, "770123456789"
		if err := r.Validate(fiscal.DefaultLimits); err != nil {
			t.Errorf("%+v: %v", ps, err)
		}
	}
	if c := (fiscal.Receipt{Items: good().Items, Payments: []fiscal.Payment{{Kind: fiscal.Cash, Amount: 10000}, {Kind: fiscal.Electronic, Amount: 1000}}}).Change(); c != 10000+1000-6899 {
		t.Errorf("Change = %d", c)
	}
}

func fieldOf(fe *fiscal.Error) string {
	if fe == nil {
		return ""
	}
	return fe.Field
}

func TestQRString(t *testing.T) {
	msk := time.FixedZone("MSK", 3*3600)
	for _, c := range []struct {
		doc  fiscal.Document
		typ  fiscal.ReceiptType
		want string
	}{
		{fiscal.Document{FD: 12, FP: 3826176301, FNNumber: "9999078902012345", Time: time.Date(2026, 1, 1, 12, 30, 59, 0, msk), Total: 12345},
			fiscal.Sale, "t=20260101T1230&s=123.45&fn=9999078902012345&i=12&fp=3826176301&n=1"},
		{fiscal.Document{FD: 7, FP: 42, FNNumber: "7380440700076549", Time: time.Date(2026, 11, 30, 9, 5, 0, 0, msk), Total: 5},
			fiscal.SaleReturn, "t=20261130T0905&s=0.05&fn=7380440700076549&i=7&fp=42&n=2"},
		{fiscal.Document{FD: 1000000, FP: 1, FNNumber: "1", Time: time.Date(2026, 3, 8, 23, 59, 0, 0, msk), Total: 100},
			fiscal.Purchase, "t=20260308T2359&s=1.00&fn=1&i=1000000&fp=1&n=3"},
		{fiscal.Document{FD: 3, FP: 9, FNNumber: "2", Time: time.Date(2026, 3, 8, 0, 0, 0, 0, msk), Total: 1234567890},
			fiscal.PurchaseReturn, "t=20260308T0000&s=12345678.90&fn=2&i=3&fp=9&n=4"},
	} {
		if got := fiscal.QRString(c.doc, c.typ); got != c.want {
			t.Errorf("QRString = %q, want %q", got, c.want)
		}
	}
}
