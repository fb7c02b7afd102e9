package wire

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

// The expected bytes are written by hand from PHP's json_encode rules
// (default flags), not produced by this package: `/` → `\/`, Cyrillic as
// lowercase \uXXXX, an emoji as a surrogate pair, `"` and `\` escaped, id
// as a bare number. PHP 8: json_encode(["type"=>"payment","id"=>108465371,
// ...]) gives exactly this line.
func TestNoticeJSONMatchesPHPJSONEncode(t *testing.T) {
	q := map[string]string{
		"type":               "payment",
		"id":                 "108465371",
		"order_id":           "till-07/2026-12-01/000042",
		"payment_status":     "paid",
		"amount":             "500.00",
		"payment_amount":     "500.00",
		"commission_amount":  "10.00",
		"is_partial_payment": "0",
		"account":            "bd291fe1-5c19-4113-ae62-a2d3c4d01d20",
		"service":            "payment_card_bdt_hpp",
		"desc":               "Оплата №5 \"чай\" \\ 😀\tend",
	}
	want := `{"type":"payment","id":108465371,"order_id":"till-07\/2026-12-01\/000042",` +
		`"payment_status":"paid","amount":"500.00","payment_amount":"500.00",` +
		`"commission_amount":"10.00","is_partial_payment":"0",` +
		`"account":"bd291fe1-5c19-4113-ae62-a2d3c4d01d20","service":"payment_card_bdt_hpp",` +
		`"desc":"\u041e\u043f\u043b\u0430\u0442\u0430 \u21165 \"\u0447\u0430\u0439\" \\ \ud83d\ude00\tend"}`
	got, err := NoticeJSON(NoticeFields, func(k string) (string, bool) { v, ok := q[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Fatalf("bytes differ from PHP json_encode\n got: %s\nwant: %s", got, want)
	}
}

func TestPHPStringControlAndDEL(t *testing.T) {
	got, err := AppendPHPString(nil, "a\x01\x1f\x7f\b\f\n\r<&>'")
	if err != nil {
		t.Fatal(err)
	}
	// PHP: control characters as \u00XX lowercase, DEL and <>&' as they are.
	if want := `"a\u0001\u001f` + "\x7f" + `\b\f\n\r<&>'"`; string(got) != want {
		t.Fatalf("got %s want %s", got, want)
	}
	if _, err := AppendPHPString(nil, "a\xffb"); !errors.Is(err, ErrInvalidUTF8) {
		t.Fatalf("invalid UTF-8: err %v, want ErrInvalidUTF8 (PHP json_encode fails)", err)
	}
}

func TestNoticeJSONRefusesMissingAndNonNumericID(t *testing.T) {
	all := func(k string) (string, bool) { return "1", true }
	if _, err := NoticeJSON([]string{"id", "desc"}, func(k string) (string, bool) {
		if k == "desc" {
			return "", false
		}
		return "1", true
	}); !errors.Is(err, ErrNoticeMissing) {
		t.Fatalf("missing desc: %v", err)
	}
	for _, id := range []string{"", "01", "+1", "1.0", "1e3", "-", "-0", "-00", "-01", " 1", "99999999999999999999"} {
		if _, err := NoticeJSON([]string{"id"}, func(string) (string, bool) { return id, true }); !errors.Is(err, ErrNoticeValue) {
			t.Errorf("id %q: %v, want ErrNoticeValue", id, err)
		}
	}
	if _, err := NoticeJSON([]string{"id"}, all); err != nil {
		t.Fatal(err)
	}
}

// FuzzNoticeJSON: whatever the values, the bytes are ASCII JSON that
// decodes back to exactly the values, with id a number.
func FuzzNoticeJSON(f *testing.F) {
	f.Add("108465371", "till/1", "Оплата / 😀", "500.00")
	f.Add("0", "", "\x00\x7f\"\\", "")
	f.Add("12", "a\u2028b", "\U0010ffff", "1")
	f.Fuzz(func(t *testing.T, id, orderID, desc, amount string) {
		q := map[string]string{"id": id, "order_id": orderID, "desc": desc, "amount": amount}
		keys := []string{"id", "order_id", "amount", "desc"}
		b, err := NoticeJSON(keys, func(k string) (string, bool) { return q[k], true })
		if err != nil {
			if errors.Is(err, ErrNoticeValue) {
				return
			}
			t.Fatal(err)
		}
		for _, c := range b {
			if c >= utf8.RuneSelf {
				t.Fatalf("non-ASCII byte in %q", b)
			}
		}
		if strings.Contains(string(b), "/") && !strings.Contains(string(b), `\/`) {
			t.Fatalf("bare / in %s", b)
		}
		var back map[string]any
		d := json.NewDecoder(strings.NewReader(string(b)))
		d.UseNumber()
		if err := d.Decode(&back); err != nil {
			t.Fatalf("not JSON: %s: %v", b, err)
		}
		if n, ok := back["id"].(json.Number); !ok || n.String() != id {
			t.Fatalf("id %v, want number %s", back["id"], id)
		}
		for _, k := range keys[1:] {
			if back[k] != q[k] {
				t.Fatalf("%s: %q back as %q", k, q[k], back[k])
			}
		}
	})
}
