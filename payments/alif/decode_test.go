package alif

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"kassa-agent/payments"
	"kassa-agent/payments/alif/internal/wire"
)

func TestStatusMeaning(t *testing.T) {
	cases := map[string]wire.Meaning{
		"SUCCEEDED": wire.MeaningSucceeded, "succeeded": wire.MeaningSucceeded, " SUCCEEDED\n": wire.MeaningSucceeded,
		"PENDING": wire.MeaningPending, "": wire.MeaningPending,
		"DECLINED": wire.MeaningDeclined, "INSUFFICIENT_FUNDS": wire.MeaningDeclined, "EXPIRED_CARD": wire.MeaningDeclined,
		"BLOCKED_CARD": wire.MeaningDeclined, "REVERTED": wire.MeaningReverted, "EXPIRED": wire.MeaningExpired,
		// Never guessed.
		"SUCCESS": wire.MeaningUnknown, "PAID": wire.MeaningUnknown, "SUCCEEDED_PARTIALLY": wire.MeaningUnknown,
		"SUCCEE DED": wire.MeaningUnknown, "SUCCEEDED.": wire.MeaningUnknown, "null": wire.MeaningUnknown,
		"REFUNDED": wire.MeaningUnknown, "CANCELED": wire.MeaningUnknown, "1": wire.MeaningUnknown,
	}
	for w, want := range cases {
		if got := wire.StatusMeaning(w); got != want {
			t.Errorf("%q → %v, want %v", w, got, want)
		}
	}
}

func TestDecodeStatus(t *testing.T) {
	exp := time.Date(2026, 12, 1, 15, 0, 0, 0, time.UTC)
	before, after := exp.Add(-time.Minute), exp.Add(wire.ExpiryGrace)
	cases := []struct {
		body  string
		now   time.Time
		state payments.State
		paid  int64
	}{
		{`{"id":"a","amount":100,"payment":null}`, before, payments.Processing, 0},
		{`{"id":"a","amount":100}`, after, payments.Expired, 0},
		{`{"id":"a","amount":100,"payment":{"status":"PENDING"}}`, after, payments.Expired, 0},
		{`{"id":"a","amount":100,"payment":{"status":"SUCCEEDED","amount":100}}`, after, payments.Paid, 100},
		{`{"id":"a","payment":{"status":"SUCCEEDED","amount":100}}`, before, payments.Paid, 100},
		{`{"id":"a","amount":100,"payment":{"status":"SUCCEEDED","amount":99}}`, before, payments.Failed, 99},
		{`{"id":"a","amount":100,"payment":{"status":"DECLINED"}}`, before, payments.Declined, 0},
		{`{"id":"a","amount":100,"payment":{"status":"REVERTED","amount":100}}`, before, payments.Canceled, 100},
		{`{"id":"a","amount":100,"payment":{"status":"WHO_KNOWS"}}`, after, payments.Processing, 0},
	}
	for _, c := range cases {
		st, err := decodeStatus([]byte(c.body), "a", exp, c.now)
		if err != nil || st.State != c.state || st.Paid.Minor != c.paid {
			t.Errorf("%s: %+v %v, want %v paid %d", c.body, st, err, c.state, c.paid)
		}
	}
	for _, bad := range []string{``, `[]`, `{"payment":{"status":"SUCCEEDED","amount":-1}}`, `{"payment":{"status":"SUCCEEDED","amount":"100"}}`,
		`{"payment":{"status":"SUCCEEDED","amount":1.5}}`, `{"payment":"SUCCEEDED"}`, `{"id":"b","payment":{"status":"SUCCEEDED"}}`} {
		if st, err := decodeStatus([]byte(bad), "a", exp, before); err == nil {
			t.Errorf("%s accepted as %+v", bad, st)
		}
	}
}

func TestErrorFromResponse(t *testing.T) {
	cases := []struct {
		status int
		body   string
		class  Class
		field  string
	}{
		{200, `{"id":"x"}`, 0, ""},
		{200, `{"id":"x","error":null}`, 0, ""},
		{200, `{"id":"x","error":false}`, 0, ""},
		{200, `{"id":"x","error":{}}`, 0, ""},
		{200, `not json`, 0, ""}, // the decoder makes it ambiguous
		{200, `{"error":{"code":"x","message":"m"}}`, ClassRejected, ""},
		{200, `{"error":{"code":42}}`, ClassRejected, ""},
		{200, `{"error":"text"}`, ClassRejected, ""},
		{200, `{"error":[1]}`, ClassRejected, ""},
		{200, `{"error":{"code":"invalid_token"}}`, ClassUnauthorized, ""},
		{200, `{"error":{"code":"validation_error","field":"cancel_url"}}`, ClassRejected, "alif.cancel_url"},
		{200, `{"error":{"code":"validation_error","field":"items[3].amount"}}`, ClassRejected, "receipt.items[3].quantity"},
		{200, `{"error":{"code":"validation_error","field":"token"}}`, ClassRejected, ""},
		{401, ``, ClassUnauthorized, ""},
		{403, `{"error":{"code":"forbidden"}}`, ClassUnauthorized, ""},
		{404, `{}`, ClassRejected, ""},
		{408, ``, ClassUnavailable, ""},
		{429, ``, ClassUnavailable, ""},
		{500, `{"error":{"code":"validation_error","field":"epos"}}`, ClassAmbiguous, ""},
		{502, `<html>`, ClassAmbiguous, ""},
		{302, ``, ClassRejected, ""},
	}
	for _, c := range cases {
		e := errorFromResponse(OpCreate, c.status, []byte(c.body))
		if c.class == 0 {
			if e != nil {
				t.Errorf("%d %s: %v, want success", c.status, c.body, e)
			}
			continue
		}
		if e == nil || e.Class != c.class {
			t.Errorf("%d %s: %v, want %v", c.status, c.body, e, c.class)
			continue
		}
		var fe *payments.FieldError
		if got := errors.As(e, &fe); got != (c.field != "") || (got && fe.Field != c.field) {
			t.Errorf("%d %s: field error %v, want %q", c.status, c.body, fe, c.field)
		}
	}
	if e := errorFromResponse(OpStatus, 200, []byte(`{"error":{"code":"invoice_not_found"}}`)); !errors.Is(e, payments.ErrNotFound) {
		t.Errorf("not found: %v", e)
	}
}

func TestDecodeOptions(t *testing.T) {
	o, set, err := decodeOptions(json.RawMessage(` {"epos":"x","meta":{"a":[1,2]},"webhook_url":""} `))
	if err != nil || o.EPOS != "x" || string(o.Meta) != `{"a":[1,2]}` || !set["webhook_url"] || set["redirect_url"] {
		t.Fatalf("%+v %v %v", o, set, err)
	}
	for raw, field := range map[string]string{
		`{"epos":1}`: "alif.epos", `{"epos":"a"} {}`: "alif", `{"epos":"a"`: "alif", `"x"`: "alif",
		`{"EPOS":"a"}`: "alif.EPOS", `{"meta":1,"meta":2}`: "alif.meta", `{"x":1}`: "alif.x", `{"epos":null}`: "alif.epos",
	} {
		var fe *payments.FieldError
		if _, _, err := decodeOptions(json.RawMessage(raw)); !errors.As(err, &fe) || fe.Field != field {
			t.Errorf("%s: %v, want field %s", raw, err, field)
		}
	}
}

func TestWireLineRounding(t *testing.T) {
	cases := []struct {
		price, qty     int64
		wprice, amount int64
	}{
		{3000, 3000, 3000, 3},
		{12001, 500, 6001, 1}, // 6000.5 → 6001, half up
		{12001, 499, 5988, 1}, // 5988.499 → 5988
		{100, 1, 0, 1},        // 0.1 tiyin → 0
		{0, 1500, 0, 1},
	}
	for _, c := range cases {
		got, err := wireLine(payments.Item{Price: c.price, Quantity: c.qty})
		if err != nil || got.Price != c.wprice || got.Amount != c.amount {
			t.Errorf("%d × %d: %+v %v", c.price, c.qty, got, err)
		}
	}
}

func FuzzDecodeStatus(f *testing.F) {
	for _, s := range []string{
		`{"id":"a","amount":100,"payment":null}`,
		`{"id":"a","amount":100,"payment":{"status":"SUCCEEDED","amount":100}}`,
		`{"id":"a","amount":100,"payment":{"status":"SUCCEEDED","amount":99}}`,
		`{"id":"a","payment":{"status":"INSUFFICIENT_FUNDS"}}`,
		`{"payment":{"status":"REVERTED"}}`, `{"payment":{"status":"succeeded "}}`, `{"payment":{"status":"EXPIRED"}}`,
		`{"payment":{"status":"SUCCEEDED","amount":-5}}`, `{"payment":{"status":"SUCCEEDED","amount":1e3}}`,
		`{"amount":9223372036854775807,"payment":{"status":"SUCCEEDED","amount":9223372036854775807}}`,
		`null`, `[]`, ``, `{"payment":{"status":"\u0000SUCCEEDED"}}`,
	} {
		f.Add([]byte(s))
	}
	exp := time.Date(2026, 12, 1, 15, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, now := range []time.Time{exp.Add(-time.Hour), exp.Add(time.Hour)} {
			st, err := decodeStatus(body, "a", exp, now)
			if err != nil {
				continue
			}
			if !st.State.Valid() || st.Paid.Minor < 0 || !utf8.ValidString(st.Raw) && utf8.ValidString(string(body)) {
				t.Fatalf("%q → %+v", body, st)
			}
			var r wire.StatusResponse
			json.Unmarshal(body, &r)
			word := ""
			if r.Payment != nil {
				word = r.Payment.Status
			}
			// Money is taken only on the one word, and only for the whole sum.
			if st.State.MoneyTaken() {
				if wire.StatusMeaning(word) != wire.MeaningSucceeded {
					t.Fatalf("%q paid on word %q", body, word)
				}
				if r.Amount != nil && r.Payment.Amount != nil && *r.Amount != *r.Payment.Amount {
					t.Fatalf("%q paid with a different sum", body)
				}
			}
		}
	})
}

func FuzzErrorFromResponse(f *testing.F) {
	for _, s := range []string{`{"id":"x"}`, `{"error":null}`, `{"error":{"code":"x","message":"m","field":"items[0].name"}}`,
		`{"error":{"code":1}}`, `{"error":"t"}`, `{"error":{"code":"invalid_token"}}`, `{"error":{"code":"not_found"}}`, `x`} {
		for _, st := range []int{200, 201, 302, 400, 401, 404, 429, 500} {
			f.Add(st, []byte(s))
		}
	}
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		e := errorFromResponse(OpCreate, status, body)
		if status >= 200 && status <= 299 {
			_, refused := parseError(body)
			if (e != nil) != refused {
				t.Fatalf("%d %q: %v, refused %v", status, body, e, refused)
			}
		} else if e == nil {
			t.Fatalf("%d %q: success", status, body)
		}
		if e == nil {
			return
		}
		if e.Class < ClassAmbiguous || e.Class > ClassRejected || len(e.Code) > 400 || len(e.Message) > 1400 {
			t.Fatalf("%d %q: %+v", status, body, e)
		}
		if status >= 500 && e.Class != ClassAmbiguous {
			t.Fatalf("%d answered %v", status, e.Class)
		}
		var fe *payments.FieldError
		if errors.As(e, &fe) && !strings.HasPrefix(fe.Field, "alif.") && !strings.HasPrefix(fe.Field, "receipt.items") {
			t.Fatalf("field %q", fe.Field)
		}
	})
}

func FuzzDecodeOptions(f *testing.F) {
	for _, s := range []string{``, `null`, `{}`, `{"epos":"x"}`, `{"meta":{"a":1},"redirect_url":"https://a.example/"}`,
		`{"epos":"a","epos":"b"}`, `{"Epos":"a"}`, `{"meta":[1,"x"]}`, `{"meta":{"kassa_order_id":1}}`, `[`, `{"webhook_url":"https://x.example"} x`} {
		f.Add([]byte(s))
	}
	c := &Client{defaults: Config{EPOS: "d", RedirectURL: "https://shop.example/ok", CancelURL: "https://shop.example/back"}}
	f.Fuzz(func(t *testing.T, raw []byte) {
		o := payments.Order{ID: "o-1", Amount: payments.Tiyin(300), Items: []payments.Item{{Name: "a", Price: 100, Quantity: 3000}}, Options: raw}
		req, err := c.buildCreate(o)
		if err != nil {
			var fe *payments.FieldError
			if !errors.As(err, &fe) || !strings.HasPrefix(fe.Field, "alif") {
				t.Fatalf("%q: %v", raw, err)
			}
			return
		}
		if !json.Valid(raw) && len(strings.TrimSpace(string(raw))) > 0 {
			t.Fatalf("invalid JSON %q accepted", raw)
		}
		var meta map[string]json.RawMessage
		if json.Unmarshal(req.Meta, &meta) != nil || string(meta[wire.MetaOrderID]) != `"o-1"` {
			t.Fatalf("%q: meta %s", raw, req.Meta)
		}
		for _, u := range []string{req.RedirectURL, req.CancelURL} {
			if !strings.HasPrefix(u, "https://") {
				t.Fatalf("%q: url %q", raw, u)
			}
		}
	})
}

func FuzzVerifyNotice(f *testing.F) {
	dir := f.TempDir()
	tok, sec := filepath.Join(dir, "t"), filepath.Join(dir, "s")
	os.WriteFile(tok, []byte("tok"), 0o600)
	os.WriteFile(sec, []byte("secret"), 0o600)
	c, err := New(Config{APIURL: "https://api.alifpay.uz", CheckoutURL: "https://checkout.alifpay.uz", TokenFile: tok, WebhookSecretFile: sec})
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{`{"id":"abc","payment":{"status":"SUCCEEDED"},"meta":{"kassa_order_id":"o-1"}}`, `{"id":""}`,
		`{"id":"x","meta":"s"}`, `{"id":"x","meta":{"kassa_order_id":5}}`, `{}`, `x`} {
		f.Add([]byte(s), true)
		f.Add([]byte(s), false)
	}
	f.Fuzz(func(t *testing.T, body []byte, signed bool) {
		h := http.Header{}
		if signed {
			m := hmac.New(sha256.New, []byte("secret"))
			m.Write(body)
			h.Set("Signature", base64.StdEncoding.EncodeToString(m.Sum(nil)))
		} else {
			h.Set("Signature", base64.StdEncoding.EncodeToString(body))
		}
		ref, err := c.VerifyNotice(h, nil, body)
		if !signed {
			if !errors.Is(err, payments.ErrUnauthorized) {
				t.Fatalf("unsigned %q: %v", body, err)
			}
			return
		}
		if err != nil {
			if !errors.Is(err, payments.ErrRejected) {
				t.Fatalf("signed %q: %v", body, err)
			}
			return
		}
		if ref.ProviderID == "" || len(ref.OrderID) > 64 {
			t.Fatalf("%q → %+v", body, ref)
		}
	})
}
