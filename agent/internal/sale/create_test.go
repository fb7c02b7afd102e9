package sale

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"

	"kassa-agent/agent/internal/localapi"
	"kassa-agent/fiscal"
	"kassa-agent/payments"
)

// FuzzCreateRequest feeds POST /v1/payments bodies through the same strict
// decoding and checks as the API. Whatever is accepted must be a payment the
// register and the provider can carry: a positive amount in range and, with a
// receipt, items and an electronic payment that add up to exactly the amount.
// Whatever is refused must be refused with a documented code.
func FuzzCreateRequest(f *testing.F) {
	f.Add([]byte(`{"provider":"smartpay","amount":20480,"currency":"RUB","receipt":{"items":[{"name":"Молоко 3,2%","quantity":2000,"price":7990,"vat":"vat10"},{"name":"Хлеб","quantity":1000,"price":4500,"vat":"vat22"}]}}`))
	f.Add([]byte(`{"provider":"smartpay","amount":1,"currency":"RUB"}`))
	f.Add([]byte(`{"provider":"smartpay","amount":9223372036854775807,"currency":"RUB","receipt":{"items":[{"name":"x","quantity":9223372036854775,"price":9223372036854775807,"vat":"vat22"}]}}`))
	f.Add([]byte(`{"provider":"smartpay","amount":500,"currency":"RUB","receipt":{"type":"sale_return","tax_system":"usn_income","buyer":"a@b.ru","items":[{"name":"y","quantity":500,"price":1000,"vat":"none","payment_method":"advance","payment_object":"service","marking_code":"0104601234567890215abc\u001d93dGVz"}]}}`))
	f.Add([]byte(`{"provider":"alif","amount":-5}`))
	f.Add([]byte(`[]`))
	env := checkEnv{providers: map[string]payments.Provider{ProviderSmartPay: smartPay{}}, register: true, tax: fiscal.OSN}
	f.Fuzz(func(t *testing.T, body []byte) {
		var req CreateRequest
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if dec.Decode(&req) != nil {
			return
		}
		r, err := validateRequest(req, env)
		if err != nil {
			var ae *localapi.Error
			if !errors.As(err, &ae) || (ae.Code != "validation_failed" && ae.Code != "provider_disabled") {
				t.Fatalf("refused with an undocumented error: %v", err)
			}
			return
		}
		if req.Amount <= 0 || req.Amount > maxAmount {
			t.Fatalf("accepted amount %d", req.Amount)
		}
		if r == nil {
			if req.Receipt != nil {
				t.Fatal("receipt dropped")
			}
			return
		}
		if r.Total() != req.Amount {
			t.Fatalf("receipt total %d != amount %d", r.Total(), req.Amount)
		}
		var paid int64
		for _, p := range r.Payments {
			paid += p.Amount
		}
		if paid != req.Amount || len(r.Payments) != 1 || r.Payments[0].Kind != fiscal.Electronic {
			t.Fatalf("payments %+v for amount %d", r.Payments, req.Amount)
		}
		if err := r.Validate(fiscal.DefaultLimits); err != nil {
			t.Fatalf("accepted a receipt the register would refuse: %v", err)
		}
	})
}
