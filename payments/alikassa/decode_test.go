package alikassa

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"kassa-agent/payments"
	"kassa-agent/payments/alikassa/internal/wire"
)

func TestStatusMapping(t *testing.T) {
	bdt := func(n int64) payments.Amount { return payments.Amount{Minor: n, Currency: payments.BDT} }
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		name    string
		body    string
		expires time.Time
		state   payments.State
		partial bool
		paid    payments.Amount
	}{
		{"paid in full", `{"order_id":"o","id":1,"payment_status":"paid","amount":"500.00","payment_amount":"500.00"}`, time.Time{}, payments.Paid, false, bdt(50000)},
		{"paid more", `{"payment_status":"paid","amount":"500.00","payment_amount":"500.01"}`, time.Time{}, payments.Paid, false, bdt(50001)},
		{"paid as numbers", `{"payment_status":"paid","amount":500,"payment_amount":500.0}`, time.Time{}, payments.Paid, false, bdt(50000)},
		{"partial", `{"payment_status":"paid","amount":"500.00","payment_amount":"200.00","is_partial_payment":true}`, time.Time{}, payments.Failed, true, bdt(20000)},
		{"wait", `{"payment_status":"wait","amount":"500.00","payment_amount":"0.00"}`, now.Add(time.Minute), payments.Processing, false, bdt(0)},
		{"wait within grace", `{"payment_status":"wait","amount":"500.00"}`, now.Add(-30 * time.Second), payments.Processing, false, payments.Amount{}},
		{"wait past lifetime", `{"payment_status":"wait","amount":"500.00","payment_amount":null}`, now.Add(-2 * time.Minute), payments.Expired, false, payments.Amount{}},
		{"wait with money past lifetime", `{"payment_status":"wait","amount":"500.00","payment_amount":"100.00"}`, now.Add(-time.Hour), payments.Processing, true, bdt(10000)},
		{"cancel", `{"payment_status":"cancel","amount":"500.00","payment_amount":"0.00"}`, time.Time{}, payments.Canceled, false, bdt(0)},
		{"fail", `{"payment_status":"fail","amount":"500.00"}`, time.Time{}, payments.Declined, false, payments.Amount{}},
		{"cancel with money", `{"payment_status":"cancel","amount":"500.00","payment_amount":"100.00"}`, time.Time{}, payments.Failed, true, bdt(10000)},
		{"unknown word", `{"payment_status":"success","amount":"500.00","payment_amount":"500.00"}`, time.Time{}, payments.Processing, false, bdt(50000)},
		{"PAID upper", `{"payment_status":"PAID","amount":"500.00","payment_amount":"500.00"}`, time.Time{}, payments.Processing, false, bdt(50000)},
	}
	for _, c := range cases {
		a, err := decodeStatus([]byte(c.body), payments.BDT)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		st := a.state(c.expires, now, time.Minute)
		if st.State != c.state || st.Partial != c.partial || (c.paid != payments.Amount{} && st.Paid != c.paid) {
			t.Errorf("%s: got %+v, want state %s partial %v paid %v", c.name, st, c.state, c.partial, c.paid)
		}
	}
	for _, bad := range []string{``, `[]`, `{}`, `{"payment_status":"paid","amount":"500.00"}`,
		`{"payment_status":"paid","payment_amount":"500.00"}`, `{"payment_status":"paid","amount":"5e2","payment_amount":"500"}`,
		`{"payment_status":"paid","amount":"500.001","payment_amount":"500.00"}`, `{"payment_status":"wait","amount":"-1"}`} {
		if _, err := decodeStatus([]byte(bad), payments.BDT); err == nil {
			t.Errorf("%s: decoded, want an error", bad)
		}
	}
}

// FuzzDecodeStatus: no answer is Paid unless its word is exactly "paid" and
// payment_amount covers amount.
func FuzzDecodeStatus(f *testing.F) {
	for _, s := range []string{
		`{"order_id":"o","id":1,"payment_status":"paid","amount":"500.00","payment_amount":"500.00"}`,
		`{"payment_status":"paid","amount":"500.00","payment_amount":"499.99"}`,
		`{"payment_status":"wait","amount":500,"payment_amount":null}`,
		`{"payment_status":"cancel","amount":"1","payment_amount":"1"}`,
		`{"payment_status":"paid","amount":"9223372036854775807.99","payment_amount":"1e9"}`,
		`{"payment_status":"x"}`, `null`, `{"payment_status":1}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		a, err := decodeStatus(body, payments.BDT)
		if err != nil {
			return
		}
		st := a.state(time.Unix(1, 0), time.Unix(1000, 0), time.Minute)
		if st.State == payments.Paid {
			if a.word != wire.StatusPaid || !a.hasPaid || a.paid.Minor < a.amount.Minor || a.amount.Minor <= 0 {
				t.Fatalf("paid from %s", body)
			}
		}
		if !st.State.Valid() {
			t.Fatalf("state %q", st.State)
		}
	})
}

var (
	fuzzKeyOnce sync.Once
	fuzzKey     *rsa.PrivateKey
)

func testKey(t testing.TB) *rsa.PrivateKey {
	fuzzKeyOnce.Do(func() {
		var err error
		if fuzzKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
	})
	return fuzzKey
}

func signedNotice(t testing.TB, key *rsa.PrivateKey, v url.Values) url.Values {
	data, err := wire.NoticeJSON(wire.NoticeFields, func(k string) (string, bool) { _, ok := v[k]; return v.Get(k), ok })
	if err != nil {
		t.Fatal(err)
	}
	sig, err := rsa.SignPKCS1v15(nil, key, crypto.SHA1, digest(crypto.SHA1, data))
	if err != nil {
		t.Fatal(err)
	}
	out := url.Values{}
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	out.Set(wire.NoticeSign, base64.StdEncoding.EncodeToString(sig))
	return out
}

func noticeValues(id, orderID, desc, amount string) url.Values {
	v := url.Values{}
	for k, val := range map[string]string{"type": "payment", "id": id, "order_id": orderID, "payment_status": "paid",
		"amount": amount, "payment_amount": amount, "commission_amount": "0.00", "is_partial_payment": "0",
		"account": "acc", "service": wire.ServiceBDT, "desc": desc} {
		v.Set(k, val)
	}
	return v
}

// FuzzVerifyNotice: a notice signed over the rebuilt bytes verifies and
// names its order; changing any signed value makes it refused.
func FuzzVerifyNotice(f *testing.F) {
	f.Add("108465371", "till/1", "Оплата / 😀", "500.00", 3)
	f.Add("1", "a", "", "0.01", 0)
	f.Add("7", "x\"y\\z", "\U0001f600\u2028", "1.00", 10)
	f.Fuzz(func(t *testing.T, id, orderID, desc, amount string, which int) {
		key := testKey(t)
		v := noticeValues(id, orderID, desc, amount)
		if _, err := wire.NoticeJSON(wire.NoticeFields, func(k string) (string, bool) { return v.Get(k), true }); err != nil || orderID == "" {
			// Values PHP could not have signed (bad id, bad UTF-8) are refused.
			if _, err := verifyNotice(&key.PublicKey, crypto.SHA1, wire.NoticeFields, "acc", v); err == nil {
				t.Fatal("unsigned notice accepted")
			}
			return
		}
		q := signedNotice(t, key, v)
		ref, err := verifyNotice(&key.PublicKey, crypto.SHA1, wire.NoticeFields, "acc", q)
		if err != nil {
			t.Fatalf("genuine notice refused: %v", err)
		}
		if ref.OrderID != orderID || ref.ProviderID != id {
			t.Fatalf("ref %+v", ref)
		}
		k := wire.NoticeFields[(which%len(wire.NoticeFields)+len(wire.NoticeFields))%len(wire.NoticeFields)]
		q.Set(k, q.Get(k)+"1")
		if _, err := verifyNotice(&key.PublicKey, crypto.SHA1, wire.NoticeFields, "", q); !errors.Is(err, ErrNoticeRefused) || !errors.Is(err, payments.ErrUnauthorized) {
			t.Fatalf("tampered %s accepted: %v", k, err)
		}
	})
}

func TestLoadPrivateKeyErrorsNameFileNotSecret(t *testing.T) {
	_, err := parsePrivateKey([]byte("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"), nil)
	if err == nil || !strings.Contains(err.Error(), "not a private key") {
		t.Fatalf("public key as private: %v", err)
	}
}

// BenchmarkVerifyNotice: rebuilding the signed bytes and one RSA-2048
// verification, the cost of each notification.
func BenchmarkVerifyNotice(b *testing.B) {
	key := testKey(b)
	q := signedNotice(b, key, noticeValues("108465371", "till7-000001", "Оплата / чай", "500.00"))
	for b.Loop() {
		if _, err := verifyNotice(&key.PublicKey, crypto.SHA1, wire.NoticeFields, "acc", q); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSign: one RSA-2048 request signature.
func BenchmarkSign(b *testing.B) {
	key := testKey(b)
	body := []byte(`{"amount":"500.00","order_id":"till7-000001","service":"payment_card_bdt_hpp","customer_ip":"203.0.113.7","customer_code":"bkash","lifetime":900}`)
	for b.Loop() {
		if _, err := sign(key, crypto.SHA1, body); err != nil {
			b.Fatal(err)
		}
	}
}
