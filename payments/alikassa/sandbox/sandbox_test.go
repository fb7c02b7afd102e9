package sandbox_test

import (
	"bytes"
	"crypto"
	"crypto/rsa"
	_ "crypto/sha1"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"kassa-agent/payments"
	"kassa-agent/payments/alikassa"
	"kassa-agent/payments/alikassa/sandbox"
)

func post(t *testing.T, u, account, sign, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Account", account)
	req.Header.Set("Sign", sign)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// The sandbox refuses what the service would: a bad Account, an unsigned
// or wrongly signed body; and it records every request.
func TestSandboxRefusesBadAccountAndSign(t *testing.T) {
	s, err := sandbox.Start(sandbox.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	body := `{"amount":"1.00","order_id":"x","service":"payment_card_bdt_hpp","customer_ip":"1.2.3.4","customer_code":"bkash"}`
	key, err := alikassa.LoadPrivateKey(s.Files().PrivateKeyPKCS8, s.Files().PasswordFile)
	if err != nil {
		t.Fatal(err)
	}
	sum := crypto.SHA1.New()
	sum.Write([]byte(body))
	sig, _ := rsa.SignPKCS1v15(nil, key, crypto.SHA1, sum.Sum(nil))
	good := base64.StdEncoding.EncodeToString(sig)
	for _, c := range []struct {
		name, account, sign, body string
		want                      int
	}{
		{"no sign", s.Account(), "", body, 401},
		{"sign of another body", s.Account(), good, body + " ", 401},
		{"other account", "someone-else", good, body, 401},
		{"good", s.Account(), good, body, 200},
		{"same order again", s.Account(), good, body, 400},
	} {
		if st, out := post(t, s.URL()+"/v1/payment", c.account, c.sign, c.body); st != c.want {
			t.Errorf("%s: HTTP %d %s, want %d", c.name, st, out, c.want)
		}
	}
	if n := len(s.Requests()); n != 5 {
		t.Fatalf("%d requests recorded, want 5", n)
	}
	if n := len(s.Payments()); n != 1 {
		t.Fatalf("%d payments, want 1", n)
	}
}

// The demo's buyer: the page at the payment url pays, and the sandbox
// delivers a signed GET notification to Options.NotifyURL.
func TestSandboxPageAndNotification(t *testing.T) {
	got := make(chan url.Values, 1)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	relay := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got <- r.URL.Query() })}
	go relay.Serve(ln)
	defer relay.Close()
	s, err := sandbox.Start(sandbox.Options{NotifyURL: "http://" + ln.Addr().String() + "/notify"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	cfg := s.ClientConfig()
	cfg.CustomerIP, cfg.CustomerCode = "198.51.100.1", "rocket"
	c, err := alikassa.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := c.Create(t.Context(), orderOf("demo-1"))
	if err != nil {
		t.Fatal(err)
	}
	page, err := http.Get(ref.CheckoutURL)
	if err != nil {
		t.Fatal(err)
	}
	html, _ := io.ReadAll(page.Body)
	page.Body.Close()
	if !bytes.Contains(html, []byte("/pay")) || !bytes.Contains(html, []byte("5.00")) {
		t.Fatalf("page: %s", html)
	}
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.PostForm(ref.CheckoutURL+"/pay", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("pay button: HTTP %d", resp.StatusCode)
	}
	select {
	case q := <-got:
		if q.Get("order_id") != "demo-1" || q.Get("payment_status") != "paid" || q.Get("sign") == "" {
			t.Fatalf("notice %v", q)
		}
		if _, err := c.VerifyNotice(nil, q, nil); err != nil {
			t.Fatalf("the client refuses the sandbox's notice: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no notification")
	}
	resp, _ = http.Get(s.URL() + "/sandbox/payments")
	var ps []sandbox.Payment
	json.NewDecoder(resp.Body).Decode(&ps)
	resp.Body.Close()
	if len(ps) != 1 || ps[0].Status != "paid" || len(ps[0].Notices) != 1 || ps[0].Notices[0] != "200" {
		t.Fatalf("payments %+v", ps)
	}
}

func orderOf(id string) payments.Order {
	return payments.Order{ID: id, Amount: payments.Amount{Minor: 500, Currency: payments.BDT}}
}
