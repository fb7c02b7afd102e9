package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kassa-agent/agent/internal/config"
	"kassa-agent/agent/internal/sale"
	"kassa-agent/payments"
	"kassa-agent/payments/alif"
	alifsandbox "kassa-agent/payments/alif/sandbox"
	"kassa-agent/payments/alikassa"
	alikassasandbox "kassa-agent/payments/alikassa/sandbox"
)

// hosted is one hosted-page provider as the tests drive it: the body of a
// payment, how the buyer pays on the page, and what the provider saw.
type hosted struct {
	name    string
	body    string
	pay     func(r *rig, p apiPayment) error
	created func(r *rig) int // payments/sessions the provider holds
	creates func(r *rig) int // create requests it saw
}

var hostedProviders = []hosted{
	{
		name: alif.Name,
		body: `{"provider":"alif","amount":15001,"currency":"UZS","slip":true,"order_ref":"POS-7",
			"receipt":{"items":[{"name":"Non","quantity":1000,"price":15001,"vat":"none"}]}}`,
		pay:     func(r *rig, p apiPayment) error { return r.till.Alif.Pay(p.ProviderPaymentID) },
		created: func(r *rig) int { return len(r.till.Alif.Sessions()) },
		creates: func(r *rig) int { return r.till.Alif.Count(alif.OpCreate) },
	},
	{
		name:    "alikassa",
		body:    `{"provider":"alikassa","amount":50000,"currency":"BDT","slip":true,"order_ref":"POS-8"}`,
		pay:     func(r *rig, p apiPayment) error { return r.till.AliKassa.Pay(p.OrderID) },
		created: func(r *rig) int { return len(r.till.AliKassa.Payments()) },
		creates: func(r *rig) int {
			n := 0
			for _, q := range r.till.AliKassa.Requests() {
				if q.Op == alikassa.OpCreate {
					n++
				}
			}
			return n
		},
	},
}

// TestHostedPageHappyPath: per provider, through the POS API: the payment
// page is created once, the POS is told to show it, the buyer pays on it, the
// payment completes and its slip prints once (the register fiscalizes only
// rubles).
func TestHostedPageHappyPath(t *testing.T) {
	for _, h := range hostedProviders {
		t.Run(h.name, func(t *testing.T) {
			r := newRig(t, rigOptions{})
			r.startInProcess()
			p := r.create("k", h.body)
			p = r.waitState(p.ID, "processing", 10*time.Second)
			assert.Equal(t, "show_url", p.NextAction)
			assert.NotEmpty(t, p.CheckoutURL)
			assert.NotEmpty(t, p.QRText)
			assert.NotEmpty(t, p.ProviderPaymentID)
			require.NoError(t, h.pay(r, p))
			p = r.waitState(p.ID, "completed", 10*time.Second)
			assert.Equal(t, "slip_printed", p.Fiscal.State)
			assert.Nil(t, p.Fiscal.Error)
			assert.Equal(t, 1, h.creates(r), "created once")
			assert.Equal(t, 1, h.created(r))
			assert.Empty(t, receiptsOf(r.till.Register.Documents()), "a fiscal receipt for a payment not in rubles")
			tape, err := os.ReadFile(r.till.TapePath())
			require.NoError(t, err)
			assert.Equal(t, 1, strings.Count(string(tape), "NOT A FISCAL RECEIPT"), "the slip printed once")
		})
	}
}

// TestHostedPageRulesRefusedBeforeSending: a few of each provider's rules,
// broken through the POS API: 422 naming the field, nothing sent.
func TestHostedPageRulesRefusedBeforeSending(t *testing.T) {
	r := newRig(t, rigOptions{})
	r.startInProcess()
	cases := []struct{ name, body, field string }{
		{"alif http redirect", `{"provider":"alif","amount":100,"currency":"UZS","alif":{"redirect_url":"http://shop.example/x"},"receipt":{"items":[{"name":"a","quantity":1000,"price":100,"vat":"none"}]},"slip":true}`, "alif.redirect_url"},
		{"alif no items", `{"provider":"alif","amount":100,"currency":"UZS","slip":true}`, "items"},
		{"alif items sum", `{"provider":"alif","amount":101,"currency":"UZS","receipt":{"items":[{"name":"a","quantity":1000,"price":100,"vat":"none"}]},"slip":true}`, "amount"},
		{"alif unknown option", `{"provider":"alif","amount":100,"currency":"UZS","alif":{"epoz":"x"},"receipt":{"items":[{"name":"a","quantity":1000,"price":100,"vat":"none"}]},"slip":true}`, "epoz"},
		{"alif in rubles", `{"provider":"alif","amount":100,"currency":"RUB","receipt":{"items":[{"name":"a","quantity":1000,"price":100,"vat":"none"}]},"slip":true}`, "currency"},
		{"alikassa bad ip", `{"provider":"alikassa","amount":50000,"currency":"BDT","alikassa":{"customer_ip":"till-7"}}`, "alikassa.customer_ip"},
		{"alikassa lifetime", `{"provider":"alikassa","amount":50000,"currency":"BDT","alikassa":{"lifetime":60}}`, "alikassa.lifetime"},
		{"options for another provider", `{"provider":"alikassa","amount":50000,"currency":"BDT","alif":{"epos":"x"}}`, "alif"},
		{"fiscal receipt not in rubles", `{"provider":"alikassa","amount":50000,"currency":"BDT","receipt":{"items":[{"name":"a","quantity":1000,"price":50000,"vat":"none"}]}}`, "receipt"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var e apiError
			code := r.call("POST", "/v1/payments", fmt.Sprint("bad-", i), tc.body, &e)
			assert.True(t, code == 422 || code == 400, "HTTP %d: %+v", code, e)
			assert.Contains(t, e.Error.Message, tc.field)
		})
	}
	for _, h := range hostedProviders {
		assert.Zero(t, h.creates(r), "%s: a refused payment reached the provider", h.name)
	}
	var list struct{ Payments []apiPayment }
	r.call("GET", "/v1/payments", "", "", &list)
	assert.Empty(t, list.Payments)
}

// TestAlifWebhookWakesThePayment: with polling slowed to a crawl, a verified
// webhook makes the agent ask the status at once; an unsigned or forged one
// is refused with 401 and changes nothing.
func TestAlifWebhookWakesThePayment(t *testing.T) {
	r := newRig(t, rigOptions{extra: ""})
	r.cfg.Alif.PollEvery = config.Duration(30 * time.Second)
	r.startInProcess(func(o *sale.Options) { o.PollMin = 20 * time.Second })
	p := r.create("k", hostedProviders[0].body)
	p = r.waitState(p.ID, "processing", 30*time.Second)
	require.NoError(t, r.till.Alif.Pay(p.ProviderPaymentID))
	body := []byte(`{"id":"` + p.ProviderPaymentID + `"}`)
	secret, err := os.ReadFile(r.cfg.Alif.WebhookKey)
	require.NoError(t, err)
	mac := hmac.New(sha256.New, []byte(strings.TrimSpace(string(secret))))
	mac.Write(body)
	good := base64.StdEncoding.EncodeToString(mac.Sum(nil))

	assert.Equal(t, 401, r.notice("POST", "/v1/providers/alif/webhook", body, map[string]string{}))
	assert.Equal(t, 401, r.notice("POST", "/v1/providers/alif/webhook", body, map[string]string{"Signature": "AAAA" + good[4:]}))
	var q apiPayment
	r.call("GET", "/v1/payments/"+p.ID, "", "", &q)
	assert.Equal(t, "processing", q.State, "an unverified webhook changed the payment")

	start := time.Now()
	assert.Equal(t, 200, r.notice("POST", "/v1/providers/alif/webhook", body, map[string]string{"Signature": good}))
	r.waitState(p.ID, "completed", 5*time.Second)
	assert.Less(t, time.Since(start), 2*time.Second, "the webhook did not wake the payment")
}

// TestAliKassaNotificationWakesThePayment: the same for AliKassa's signed GET
// notification.
func TestAliKassaNotificationWakesThePayment(t *testing.T) {
	r := newRig(t, rigOptions{})
	r.cfg.AliKassa.PollEvery = config.Duration(30 * time.Second)
	r.startInProcess(func(o *sale.Options) { o.PollMin = 20 * time.Second })
	p := r.create("k", hostedProviders[1].body)
	p = r.waitState(p.ID, "processing", 30*time.Second)
	require.NoError(t, r.till.AliKassa.Pay(p.OrderID))
	v, err := r.till.AliKassa.Notice(p.OrderID)
	require.NoError(t, err)
	forged := url.Values{}
	for k, vs := range v {
		forged[k] = vs
	}
	forged.Set("payment_amount", "1.00")
	assert.Equal(t, 401, r.notice("GET", "/v1/providers/alikassa/notify?"+forged.Encode(), nil, nil))
	start := time.Now()
	assert.Equal(t, 200, r.notice("GET", "/v1/providers/alikassa/notify?"+v.Encode(), nil, nil))
	r.waitState(p.ID, "completed", 5*time.Second)
	assert.Less(t, time.Since(start), 2*time.Second, "the notification did not wake the payment")
}

// notice sends a relayed notification with the POS's token.
func (r *rig) notice(method, path string, body []byte, headers map[string]string) int {
	r.t.Helper()
	req, err := http.NewRequest(method, fmt.Sprintf("http://127.0.0.1:%d%s", r.port, path), strings.NewReader(string(body)))
	require.NoError(r.t, err)
	req.Header.Set("Authorization", "Bearer "+r.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(r.t, err)
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// TestHostedFaultMatrix injects the providers' faults at create and status
// and checks where the payment ends and how many creates the provider saw: a
// page is never created twice for one payment, and only a create the provider
// certainly did not apply (found missing by our order id) is sent again.
func TestHostedFaultMatrix(t *testing.T) {
	type want struct {
		state, errCode string
		creates        int
	}
	done := want{state: "completed", creates: 1}
	type fault struct{ op, kind string }
	cases := []struct {
		provider string
		name     string
		faults   []fault
		want     want
	}{
		{"alif", "create latency", []fault{{"create", "latency"}}, done},
		{"alif", "create 5xx", []fault{{"create", "server_error"}}, want{"failed", "create_unanswered", 1}},
		{"alif", "create reset", []fault{{"create", "reset"}}, want{"failed", "create_unanswered", 1}},
		{"alif", "create reply lost", []fault{{"create", "reply_lost"}}, want{"failed", "create_unanswered", 1}},
		{"alif", "create refused (200 + error)", []fault{{"create", "refusal"}}, want{"failed", "release_refused", 1}},
		{"alif", "status 5xx", []fault{{"status", "server_error"}, {"status", "server_error"}}, done},
		{"alif", "status reset", []fault{{"status", "reset"}}, done},
		{"alikassa", "create latency", []fault{{"create", "latency"}}, done},
		{"alikassa", "create 5xx, not applied: found missing, created again", []fault{{"create", "server_error"}}, want{"completed", "", 2}},
		{"alikassa", "create reset", []fault{{"create", "reset"}}, want{"completed", "", 2}},
		{"alikassa", "create reply lost: found by order id", []fault{{"create", "reply_lost"}}, done},
		{"alikassa", "create refused (400 errors)", []fault{{"create", "invalid"}}, want{"failed", "release_refused", 1}},
		{"alikassa", "status 5xx", []fault{{"status", "server_error"}, {"status", "server_error"}}, done},
		{"alikassa", "status reset", []fault{{"status", "reset"}}, done},
	}
	for _, tc := range cases {
		t.Run(tc.provider+"/"+tc.name, func(t *testing.T) {
			t.Parallel()
			r := newRig(t, rigOptions{})
			r.startInProcess()
			var h hosted
			for _, x := range hostedProviders {
				if x.name == tc.provider {
					h = x
				}
			}
			for _, f := range tc.faults {
				if tc.provider == "alif" {
					require.NoError(t, r.till.Alif.Inject(alifsandbox.Fault{Op: alif.Op(f.op), Kind: alifsandbox.Kind(f.kind), Delay: 300 * time.Millisecond, Code: "validation_error", Message: "injected refusal", Field: "epos"}))
				} else {
					require.NoError(t, r.till.AliKassa.Inject(alikassasandbox.Fault{Op: alikassa.Op(f.op), Kind: alikassasandbox.Kind(f.kind), Delay: 300 * time.Millisecond, Field: "customer_code", Message: "injected refusal"}))
				}
			}
			p := r.create("k", h.body)
			deadline := time.Now().Add(20 * time.Second)
			for time.Now().Before(deadline) && !payments.State(p.State).Final() {
				id := p.ID
				p = apiPayment{}
				require.Equal(t, 200, r.call("GET", "/v1/payments/"+id+"?wait=1s", "", "", &p))
				if p.State == "processing" && p.ProviderPaymentID != "" {
					_ = h.pay(r, p)
				}
			}
			assert.Equal(t, tc.want.state, p.State, "error %+v", p.Error)
			if tc.want.errCode != "" {
				require.NotNil(t, p.Error)
				assert.Equal(t, tc.want.errCode, p.Error.Code, p.Error.Message)
			}
			assert.Equal(t, tc.want.creates, h.creates(r), "create requests")
		})
	}
}

// TestAlifDeclineThenPay: the buyer's first card is declined on the Alif page
// and a second one pays. The payment must not end "declined" at the first
// word: the agent keeps watching the page and completes it.
func TestAlifDeclineThenPay(t *testing.T) {
	r := newRig(t, rigOptions{})
	r.startInProcess()
	p := r.create("k", hostedProviders[0].body)
	p = r.waitState(p.ID, "processing", 10*time.Second)
	require.NoError(t, r.till.Alif.Fail(p.ProviderPaymentID, "INSUFFICIENT_FUNDS"))
	require.Eventually(t, func() bool {
		var q apiPayment
		r.call("GET", "/v1/payments/"+p.ID, "", "", &q)
		return q.Error != nil && q.Error.Code == "declined_retry"
	}, 10*time.Second, 20*time.Millisecond)
	var q apiPayment
	r.call("GET", "/v1/payments/"+p.ID, "", "", &q)
	assert.Equal(t, "processing", q.State, "a declined card ended a page the buyer may still pay on")
	require.NoError(t, r.till.Alif.Pay(p.ProviderPaymentID))
	q = r.waitState(p.ID, "completed", 10*time.Second)
	assert.Nil(t, q.Error)
}

// TestAliKassaPartialPayment: the buyer pays part of the amount. That is not
// paid: the payment ends failed with partially_paid, both amounts in the
// message, and no slip.
func TestAliKassaPartialPayment(t *testing.T) {
	r := newRig(t, rigOptions{})
	r.startInProcess()
	p := r.create("k", hostedProviders[1].body)
	p = r.waitState(p.ID, "processing", 10*time.Second)
	require.NoError(t, r.till.AliKassa.PayPartial(p.OrderID, payments.Amount{Minor: 20000, Currency: payments.BDT}))
	p = r.waitState(p.ID, "failed", 10*time.Second)
	require.NotNil(t, p.Error)
	assert.Equal(t, "partially_paid", p.Error.Code)
	assert.Contains(t, p.Error.Message, "200.00")
	assert.Contains(t, p.Error.Message, "500.00")
	assert.Equal(t, "none", p.Fiscal.State, "a slip for a payment that did not complete")
}
