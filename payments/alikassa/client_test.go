package alikassa_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"kassa-agent/payments"
	"kassa-agent/payments/alikassa"
	"kassa-agent/payments/alikassa/sandbox"
)

func bdt(n int64) payments.Amount { return payments.Amount{Minor: n, Currency: payments.BDT} }

// syncBuf is a log sink shared by the client's goroutines.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type rig struct {
	sb  *sandbox.Server
	c   *alikassa.Client
	log *syncBuf
}

func start(t *testing.T, opts sandbox.Options, mut func(*alikassa.Config)) rig {
	t.Helper()
	sb, err := sandbox.Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.Close() })
	cfg := sb.ClientConfig()
	cfg.CustomerIP = "203.0.113.7"
	cfg.CustomerCode = "bkash"
	cfg.Timeout = 3 * time.Second
	log := &syncBuf{}
	cfg.Logger = slog.New(slog.NewTextHandler(log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if mut != nil {
		mut(&cfg)
	}
	c, err := alikassa.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return rig{sb: sb, c: c, log: log}
}

func order(id string, minor int64) payments.Order {
	return payments.Order{ID: id, Amount: bdt(minor), Desc: "Order " + id}
}

func TestCreatePayStatusPaid(t *testing.T) {
	r := start(t, sandbox.Options{}, nil)
	ctx := context.Background()
	ref, err := r.c.Create(ctx, order("till7-000001", 50000))
	if err != nil {
		t.Fatal(err)
	}
	if ref.OrderID != "till7-000001" || ref.ProviderID == "" || !strings.HasPrefix(ref.CheckoutURL, r.sb.URL()+"/pay/") || ref.ExpiresAt.IsZero() {
		t.Fatalf("ref %+v", ref)
	}
	reqs := r.sb.Requests()
	want := `{"amount":"500.00","order_id":"till7-000001","service":"payment_card_bdt_hpp","customer_ip":"203.0.113.7","customer_code":"bkash","desc":"Order till7-000001","lifetime":900}`
	if len(reqs) != 1 || reqs[0].Body != want || reqs[0].Account != r.sb.Account() {
		t.Fatalf("sent %+v\nwant body %s", reqs, want)
	}
	st, err := r.c.Status(ctx, ref)
	if err != nil || st.State != payments.Processing || st.Raw != "wait" {
		t.Fatalf("before pay: %+v %v", st, err)
	}
	if err := r.sb.Pay(ref.OrderID); err != nil {
		t.Fatal(err)
	}
	st, err = r.c.Status(ctx, ref)
	if err != nil || st.State != payments.Paid || st.Paid != bdt(50000) || st.Partial {
		t.Fatalf("after pay: %+v %v", st, err)
	}
	// The page the buyer is sent to exists.
	resp, err := http.Get(ref.CheckoutURL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("payment page: HTTP %d", resp.StatusCode)
	}
}

// The signature is checked by openssl, an implementation independent of
// Go's, over exactly the bytes the sandbox received.
func TestSignatureVerifiesWithOpenSSL(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl is not on PATH: the independent signature check cannot run")
	}
	for _, hash := range []string{"sha1", "sha256"} {
		t.Run(hash, func(t *testing.T) {
			r := start(t, sandbox.Options{SignatureHash: hash}, nil)
			o := order("till7-ssl-"+hash, 12345)
			o.Desc = "Оплата / чай"
			if _, err := r.c.Create(context.Background(), o); err != nil {
				t.Fatal(err)
			}
			req := r.sb.Requests()[0]
			sig, err := base64.StdEncoding.DecodeString(req.Sign)
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			body, sigFile := filepath.Join(dir, "body.bin"), filepath.Join(dir, "sig.bin")
			os.WriteFile(body, []byte(req.Body), 0o600)
			os.WriteFile(sigFile, sig, 0o600)
			out, err := exec.Command(openssl, "dgst", "-"+hash, "-verify", r.sb.Files().PublicKeyFile, "-signature", sigFile, body).CombinedOutput()
			if err != nil || !strings.Contains(string(out), "Verified OK") {
				t.Fatalf("openssl: %v: %s", err, out)
			}
			// And a body changed by one byte does not verify.
			os.WriteFile(body, []byte(strings.Replace(req.Body, "123.45", "123.46", 1)), 0o600)
			if out, err := exec.Command(openssl, "dgst", "-"+hash, "-verify", r.sb.Files().PublicKeyFile, "-signature", sigFile, body).CombinedOutput(); err == nil {
				t.Fatalf("openssl verified a changed body: %s", out)
			}
		})
	}
}

func TestKeyFormatsLoad(t *testing.T) {
	sb, err := sandbox.Start(sandbox.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	f := sb.Files()
	for _, key := range []string{f.PrivateKeyPKCS8, f.PrivateKeyLegacy} {
		k, err := alikassa.LoadPrivateKey(key, f.PasswordFile)
		if err != nil {
			t.Fatalf("%s: %v", filepath.Base(key), err)
		}
		if k.N.BitLen() != 2048 {
			t.Fatalf("%s: %d bits", key, k.N.BitLen())
		}
		// openssl reads the files the sandbox wrote, so they are the real formats.
		if openssl, err := exec.LookPath("openssl"); err == nil {
			out, err := exec.Command(openssl, "pkey", "-in", key, "-passin", "file:"+f.PasswordFile, "-noout").CombinedOutput()
			if err != nil {
				t.Fatalf("openssl cannot read %s: %v %s", key, err, out)
			}
		}
	}
	head, _ := os.ReadFile(f.PrivateKeyLegacy)
	if !bytes.Contains(head, []byte("Proc-Type: 4,ENCRYPTED")) {
		t.Fatal("legacy file is not legacy encrypted PEM")
	}
	head, _ = os.ReadFile(f.PrivateKeyPKCS8)
	if !bytes.Contains(head, []byte("BEGIN ENCRYPTED PRIVATE KEY")) {
		t.Fatal("PKCS#8 file is not encrypted PKCS#8")
	}
	// The legacy key signs as the sandbox expects, end to end.
	r := start(t, sandbox.Options{KeyFormat: sandbox.KeyLegacy}, nil)
	if err := r.c.Probe(context.Background()); err != nil {
		t.Fatalf("probe with the legacy key: %v", err)
	}

	// Unencrypted keys load without a password file.
	if openssl, err := exec.LookPath("openssl"); err == nil {
		dir := t.TempDir()
		for _, args := range [][]string{
			{"pkey", "-in", f.PrivateKeyPKCS8, "-passin", "file:" + f.PasswordFile, "-out", filepath.Join(dir, "plain8.pem")},
			{"rsa", "-in", f.PrivateKeyPKCS8, "-passin", "file:" + f.PasswordFile, "-traditional", "-out", filepath.Join(dir, "plain1.pem")},
		} {
			if out, err := exec.Command(openssl, args...).CombinedOutput(); err != nil {
				t.Fatalf("openssl %v: %v %s", args, err, out)
			}
		}
		for _, p := range []string{"plain8.pem", "plain1.pem"} {
			if _, err := alikassa.LoadPrivateKey(filepath.Join(dir, p), ""); err != nil {
				t.Errorf("%s: %v", p, err)
			}
		}
	}

	// Wrong password, missing password: clear errors naming the file, never the password.
	wrong := filepath.Join(t.TempDir(), "wrong.txt")
	os.WriteFile(wrong, []byte("not-the-password\n"), 0o600)
	pw, _ := os.ReadFile(f.PasswordFile)
	for _, key := range []string{f.PrivateKeyPKCS8, f.PrivateKeyLegacy} {
		_, err := alikassa.LoadPrivateKey(key, wrong)
		if !errors.Is(err, alikassa.ErrKey) || !strings.Contains(err.Error(), key) || !strings.Contains(err.Error(), "password") {
			t.Errorf("wrong password for %s: %v", key, err)
		}
		if strings.Contains(err.Error(), strings.TrimSpace(string(pw))) || strings.Contains(err.Error(), "not-the-password") {
			t.Errorf("error quotes a password: %v", err)
		}
		if _, err := alikassa.LoadPrivateKey(key, ""); err == nil || !strings.Contains(err.Error(), "password file") {
			t.Errorf("no password for %s: %v", key, err)
		}
	}
	cfg := sb.ClientConfig()
	cfg.PrivateKeyFile = filepath.Join(t.TempDir(), "absent.pem")
	if _, err := alikassa.New(cfg); err == nil || !strings.Contains(err.Error(), "absent.pem") {
		t.Errorf("New with a missing key file: %v", err)
	}
}

// Every seed rule broken once: a FieldError naming the field, from Check
// and from Create, and nothing sent.
func TestSeedRulesRefusedBeforeSending(t *testing.T) {
	long := func(n int) string { return strings.Repeat("a", n) }
	longURL := "https://shop.example/" + long(255-len("https://shop.example/")+1)
	cases := []struct {
		name  string
		mod   func(*payments.Order)
		cfg   func(*alikassa.Config)
		field string
	}{
		{"currency", func(o *payments.Order) { o.Amount = payments.Amount{Minor: 100, Currency: payments.USD} }, nil, "amount"},
		{"zero amount", func(o *payments.Order) { o.Amount = bdt(0) }, nil, "amount"},
		{"negative amount", func(o *payments.Order) { o.Amount = bdt(-1) }, nil, "amount"},
		{"amount beyond decimal(11.2)", func(o *payments.Order) { o.Amount = bdt(100_000_000_000) }, nil, "amount"},
		{"empty order id", func(o *payments.Order) { o.ID = "" }, nil, "alikassa.order_id"},
		{"order id 129", func(o *payments.Order) { o.ID = long(129) }, nil, "alikassa.order_id"},
		{"order id with space", func(o *payments.Order) { o.ID = "a b" }, nil, "alikassa.order_id"},
		{"service 101", func(o *payments.Order) { o.Options = opt(`{"service":"` + long(101) + `"}`) }, nil, "alikassa.service"},
		{"customer_ip not an IP", func(o *payments.Order) { o.Options = opt(`{"customer_ip":"till-7"}`) }, nil, "alikassa.customer_ip"},
		{"customer_ip with zone", func(o *payments.Order) { o.Options = opt(`{"customer_ip":"fe80::1%eth0"}`) }, nil, "alikassa.customer_ip"},
		{"customer_ip missing", nil, func(c *alikassa.Config) { c.CustomerIP = "" }, "alikassa.customer_ip"},
		{"customer_code missing", nil, func(c *alikassa.Config) { c.CustomerCode = "" }, "alikassa.customer_code"},
		{"customer_code unknown bank", func(o *payments.Order) { o.Options = opt(`{"customer_code":"visa"}`) }, nil, "alikassa.customer_code"},
		{"customer_code 101", func(o *payments.Order) { o.Options = opt(`{"service":"other","customer_code":"` + long(101) + `"}`) }, nil, "alikassa.customer_code"},
		{"success url 256", func(o *payments.Order) { o.Options = opt(`{"success_redirect_url":"` + longURL + `"}`) }, nil, "alikassa.success_redirect_url"},
		{"fail url relative", func(o *payments.Order) { o.Options = opt(`{"fail_redirect_url":"/back"}`) }, nil, "alikassa.fail_redirect_url"},
		{"notification id and url", func(o *payments.Order) {
			o.Options = opt(`{"notification_endpoint_id":4,"notification_endpoint_url":"https://relay.example/n"}`)
		}, nil, "alikassa.notification_endpoint_url"},
		{"negative redirect id", func(o *payments.Order) { o.Options = opt(`{"success_redirect_id":-3}`) }, nil, "alikassa.success_redirect_id"},
		{"desc 129", func(o *payments.Order) { o.Desc = strings.Repeat("ж", 129) }, nil, "desc"},
		{"lifetime 899", func(o *payments.Order) { o.Options = opt(`{"lifetime":899}`) }, nil, "alikassa.lifetime"},
		{"lifetime 3601", func(o *payments.Order) { o.Options = opt(`{"lifetime":3601}`) }, nil, "alikassa.lifetime"},
		{"lifetime as text", func(o *payments.Order) { o.Options = opt(`{"lifetime":"900"}`) }, nil, "alikassa.lifetime"},
		{"unknown option", func(o *payments.Order) { o.Options = opt(`{"customer_email":"a@b.c"}`) }, nil, "alikassa.customer_email"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := start(t, sandbox.Options{}, c.cfg)
			o := order("till7-rule", 50000)
			if c.mod != nil {
				c.mod(&o)
			}
			var fe *payments.FieldError
			if err := r.c.Check(o); !errors.As(err, &fe) || fe.Field != c.field {
				t.Fatalf("Check: %v, want FieldError %s", err, c.field)
			}
			_, err := r.c.Create(context.Background(), o)
			if !errors.As(err, &fe) || fe.Field != c.field || !errors.Is(err, payments.ErrRejected) {
				t.Fatalf("Create: %v, want FieldError %s", err, c.field)
			}
			if n := len(r.sb.Requests()); n != 0 {
				t.Fatalf("%d requests sent, want 0", n)
			}
		})
	}
	// And the limits themselves pass: 128-character id, 255-character URL,
	// 128-character desc, lifetime 900 and 3600, an IPv6 buyer.
	r := start(t, sandbox.Options{}, nil)
	o := order(long(128), 1)
	o.Desc = strings.Repeat("ж", 128)
	o.Options = opt(`{"success_redirect_url":"https://shop.example/` + long(255-len("https://shop.example/")) + `","lifetime":3600,"customer_ip":"2001:db8::7","customer_code":"nagad"}`)
	if _, err := r.c.Create(context.Background(), o); err != nil {
		t.Fatalf("at the limits: %v", err)
	}
	if p, _ := r.sb.Payment(long(128)); p.Lifetime != 3600 || p.CustomerIP != "2001:db8::7" || p.CustomerCode != "nagad" {
		t.Fatalf("sandbox got %+v", p)
	}
}

func opt(s string) json.RawMessage { return json.RawMessage(s) }

// The service's own refusal naming a field comes back as a FieldError
// named as the POS knows it.
func TestServiceFieldRefusal(t *testing.T) {
	r := start(t, sandbox.Options{}, nil)
	ctx := context.Background()
	for _, c := range []struct{ provider, pos string }{
		{"customer_code", "alikassa.customer_code"}, {"amount", "amount"}, {"desc", "desc"}, {"customer_browser_user_agent", "alikassa.customer_browser_user_agent"},
	} {
		r.sb.Inject(sandbox.Fault{Op: alikassa.OpCreate, Kind: sandbox.Invalid, Field: c.provider, Message: "The " + c.provider + " is invalid."})
		_, err := r.c.Create(ctx, order("till7-refused-"+c.provider, 100))
		var fe *payments.FieldError
		if !errors.As(err, &fe) || fe.Field != c.pos || !errors.Is(err, payments.ErrRejected) || errors.Is(err, payments.ErrAmbiguous) {
			t.Fatalf("%s: %v, want FieldError %s", c.provider, err, c.pos)
		}
	}
	// A repeated order_id is refused by the sandbox as the service would.
	if _, err := r.c.Create(ctx, order("till7-dup", 100)); err != nil {
		t.Fatal(err)
	}
	_, err := r.c.Create(ctx, order("till7-dup", 100))
	var fe *payments.FieldError
	if !errors.As(err, &fe) || fe.Field != "alikassa.order_id" {
		t.Fatalf("duplicate: %v", err)
	}
	if n := len(r.sb.Payments()); n != 1 {
		t.Fatalf("%d payments, want 1", n)
	}
}

func TestReplyLostThenFind(t *testing.T) {
	r := start(t, sandbox.Options{}, nil)
	ctx := context.Background()
	r.sb.Inject(sandbox.Fault{Op: alikassa.OpCreate, Kind: sandbox.ReplyLost})
	_, err := r.c.Create(ctx, order("till7-lost", 50000))
	if !errors.Is(err, payments.ErrAmbiguous) {
		t.Fatalf("create with reply lost: %v, want ambiguous", err)
	}
	if ps := r.sb.Payments(); len(ps) != 1 || ps[0].OrderID != "till7-lost" {
		t.Fatalf("sandbox payments %+v, want exactly one", ps)
	}
	var f payments.Finder = r.c
	ref, st, err := f.Find(ctx, "till7-lost")
	if err != nil || ref.ProviderID == "" || ref.CheckoutURL == "" || st.State != payments.Processing {
		t.Fatalf("find: %+v %+v %v", ref, st, err)
	}
	r.sb.Pay("till7-lost")
	if st, err := r.c.Status(ctx, ref); err != nil || st.State != payments.Paid || st.Paid != bdt(50000) {
		t.Fatalf("status after pay: %+v %v", st, err)
	}
	if _, _, err := f.Find(ctx, "till7-never"); !errors.Is(err, payments.ErrNotFound) || errors.Is(err, payments.ErrAmbiguous) {
		t.Fatalf("find of an order never created: %v, want ErrNotFound", err)
	}
	if n := len(r.sb.Payments()); n != 1 {
		t.Fatalf("%d payments after find, want 1", n)
	}
}

func TestTransportFaults(t *testing.T) {
	ctx := context.Background()
	t.Run("5xx on create is ambiguous", func(t *testing.T) {
		r := start(t, sandbox.Options{}, nil)
		r.sb.Inject(sandbox.Fault{Op: alikassa.OpCreate, Kind: sandbox.ServerError, Status: 502})
		if _, err := r.c.Create(ctx, order("till7-5xx", 100)); !errors.Is(err, payments.ErrAmbiguous) {
			t.Fatalf("%v, want ambiguous", err)
		}
	})
	t.Run("5xx on status is ambiguous", func(t *testing.T) {
		r := start(t, sandbox.Options{}, nil)
		ref, _ := r.c.Create(ctx, order("till7-5xx-st", 100))
		r.sb.Inject(sandbox.Fault{Op: alikassa.OpStatus, Kind: sandbox.ServerError})
		if _, err := r.c.Status(ctx, ref); !errors.Is(err, payments.ErrAmbiguous) {
			t.Fatalf("%v, want ambiguous", err)
		}
	})
	t.Run("reset after writing is ambiguous", func(t *testing.T) {
		r := start(t, sandbox.Options{}, nil)
		r.sb.Inject(sandbox.Fault{Op: alikassa.OpCreate, Kind: sandbox.Reset})
		if _, err := r.c.Create(ctx, order("till7-rst", 100)); !errors.Is(err, payments.ErrAmbiguous) {
			t.Fatalf("%v, want ambiguous", err)
		}
	})
	t.Run("timeout after writing is ambiguous and the payment exists", func(t *testing.T) {
		r := start(t, sandbox.Options{}, func(c *alikassa.Config) { c.Timeout = 200 * time.Millisecond })
		r.sb.Inject(sandbox.Fault{Op: alikassa.OpCreate, Kind: sandbox.Latency, Delay: 600 * time.Millisecond})
		if _, err := r.c.Create(ctx, order("till7-slow", 100)); !errors.Is(err, payments.ErrAmbiguous) {
			t.Fatalf("%v, want ambiguous", err)
		}
		deadline := time.Now().Add(3 * time.Second)
		for len(r.sb.Payments()) == 0 && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if _, _, err := r.c.Find(ctx, "till7-slow"); err != nil {
			t.Fatalf("find after the slow create: %v", err)
		}
	})
	t.Run("connection refused is unavailable", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		r := start(t, sandbox.Options{}, func(c *alikassa.Config) { c.BaseURL = "http://" + addr })
		_, err = r.c.Create(ctx, order("till7-refused", 100))
		if !errors.Is(err, payments.ErrUnavailable) || errors.Is(err, payments.ErrAmbiguous) {
			t.Fatalf("%v, want unavailable", err)
		}
	})
	t.Run("wrong account is unauthorized", func(t *testing.T) {
		r := start(t, sandbox.Options{}, func(c *alikassa.Config) { c.Account = "00000000-0000-4000-8000-000000000000" })
		if _, err := r.c.Create(ctx, order("till7-acc", 100)); !errors.Is(err, payments.ErrUnauthorized) {
			t.Fatalf("%v, want unauthorized", err)
		}
		if err := r.c.Probe(ctx); !errors.Is(err, payments.ErrUnauthorized) {
			t.Fatalf("probe: %v, want unauthorized", err)
		}
	})
	t.Run("another key is unauthorized", func(t *testing.T) {
		other, err := sandbox.GenerateKeys()
		if err != nil {
			t.Fatal(err)
		}
		files, err := other.WriteFiles(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		r := start(t, sandbox.Options{}, func(c *alikassa.Config) {
			c.PrivateKeyFile, c.PasswordFile = files.PrivateKeyPKCS8, files.PasswordFile
		})
		if _, err := r.c.Create(ctx, order("till7-key", 100)); !errors.Is(err, payments.ErrUnauthorized) {
			t.Fatalf("%v, want unauthorized", err)
		}
		if n := len(r.sb.Payments()); n != 0 {
			t.Fatalf("%d payments from a wrongly signed create", n)
		}
	})
	t.Run("sha256 client against sha1 service is unauthorized", func(t *testing.T) {
		r := start(t, sandbox.Options{}, func(c *alikassa.Config) { c.SignatureHash = "sha256" })
		if err := r.c.Probe(ctx); !errors.Is(err, payments.ErrUnauthorized) {
			t.Fatalf("%v, want unauthorized", err)
		}
	})
}

func TestUnknownStatusWordsNeverPaid(t *testing.T) {
	r := start(t, sandbox.Options{}, nil)
	ctx := context.Background()
	ref, err := r.c.Create(ctx, order("till7-words", 100))
	if err != nil {
		t.Fatal(err)
	}
	r.sb.Pay(ref.OrderID) // the money is there: only the word is odd
	for _, w := range []string{"PAID", "paid ", "success", "succeeded", "complete", "refund", "hold", "0"} {
		r.sb.Inject(sandbox.Fault{Op: alikassa.OpStatus, Kind: sandbox.StatusWord, Word: w})
		st, err := r.c.Status(ctx, ref)
		if err != nil || st.State == payments.Paid || st.State != payments.Processing || st.Raw != w {
			t.Fatalf("word %q: %+v %v, want processing", w, st, err)
		}
	}
}

func TestPartialPaymentIsNotPaid(t *testing.T) {
	r := start(t, sandbox.Options{}, nil)
	ctx := context.Background()
	ref, err := r.c.Create(ctx, order("till7-part", 50000))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.sb.PayPartial(ref.OrderID, bdt(20000)); err != nil {
		t.Fatal(err)
	}
	st, err := r.c.Status(ctx, ref)
	if err != nil || st.State != payments.Failed || !st.Partial || st.Paid != bdt(20000) || st.Raw != "paid" {
		t.Fatalf("partial: %+v %v, want failed, partial, paid 200.00", st, err)
	}
}

func TestFailAndCancel(t *testing.T) {
	r := start(t, sandbox.Options{}, nil)
	ctx := context.Background()
	for _, c := range []struct {
		act  func(string) error
		want payments.State
		raw  string
	}{{r.sb.Fail, payments.Declined, "fail"}, {r.sb.Cancel, payments.Canceled, "cancel"}} {
		ref, err := r.c.Create(ctx, order("till7-"+c.raw, 100))
		if err != nil {
			t.Fatal(err)
		}
		c.act(ref.OrderID)
		if st, err := r.c.Status(ctx, ref); err != nil || st.State != c.want || st.Raw != c.raw {
			t.Fatalf("%s: %+v %v", c.raw, st, err)
		}
		if err := r.sb.Pay(ref.OrderID); !errors.Is(err, sandbox.ErrFinal) {
			t.Fatalf("pay after %s: %v", c.raw, err)
		}
	}
}

// clock is a settable clock shared by the sandbox and the client.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestExpiredAfterLifetime(t *testing.T) {
	clk := &clock{t: time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)}
	r := start(t, sandbox.Options{Now: clk.Now}, nil)
	ctx := context.Background()
	ref, err := r.c.Create(ctx, order("till7-exp", 100))
	if err != nil {
		t.Fatal(err)
	}
	if want := clk.Now().Add(15 * time.Minute); !ref.ExpiresAt.Equal(want) {
		t.Fatalf("expires %v, want %v", ref.ExpiresAt, want)
	}
	clk.Add(15*time.Minute + 30*time.Second) // past the page, within the grace
	if st, _ := r.c.Status(ctx, ref); st.State != payments.Processing {
		t.Fatalf("within grace: %+v", st)
	}
	if err := r.sb.Pay(ref.OrderID); !errors.Is(err, sandbox.ErrLapsed) {
		t.Fatalf("pay on a lapsed page: %v", err)
	}
	clk.Add(time.Minute)
	st, err := r.c.Status(ctx, ref)
	if err != nil || st.State != payments.Expired || st.Raw != "wait" {
		t.Fatalf("after lifetime: %+v %v, want expired", st, err)
	}
	// Find has no creation time: it bounds the expiry by now + lifetime.
	_, st, err = r.c.Find(ctx, ref.OrderID)
	if err != nil || st.State != payments.Processing {
		t.Fatalf("find: %+v %v", st, err)
	}
}

// After a lost create reply, Find does not know the lifetime the POS chose:
// a payment with a one-hour page must not be reported expired at minute 21
// because the config's default is 15 minutes.
func TestFindDoesNotExpireALongPageEarly(t *testing.T) {
	clk := &clock{t: time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)}
	r := start(t, sandbox.Options{Now: clk.Now}, nil)
	ctx := context.Background()
	o := order("till7-long", 100)
	o.Options = opt(`{"lifetime":3600}`)
	r.sb.Inject(sandbox.Fault{Op: alikassa.OpCreate, Kind: sandbox.ReplyLost})
	if _, err := r.c.Create(ctx, o); !errors.Is(err, payments.ErrAmbiguous) {
		t.Fatalf("create: %v", err)
	}
	clk.Add(time.Minute)
	ref, _, err := r.c.Find(ctx, o.ID)
	if err != nil {
		t.Fatal(err)
	}
	clk.Add(20 * time.Minute)
	if st, err := r.c.Status(ctx, ref); err != nil || st.State != payments.Processing {
		t.Fatalf("minute 21 of a one-hour page: %+v %v, want processing", st, err)
	}
	if err := r.sb.Pay(o.ID); err != nil {
		t.Fatalf("the buyer pays at minute 21: %v", err)
	}
	if st, err := r.c.Status(ctx, ref); err != nil || st.State != payments.Paid {
		t.Fatalf("after pay: %+v %v", st, err)
	}
}

func TestProbe(t *testing.T) {
	r := start(t, sandbox.Options{}, nil)
	var p payments.Prober = r.c
	if err := p.Probe(context.Background()); err != nil {
		t.Fatal(err)
	}
	reqs := r.sb.Requests()
	if len(reqs) != 1 || reqs[0].Op != alikassa.OpAccountInfo || reqs[0].Status != 200 {
		t.Fatalf("journal %+v", reqs)
	}
	r.sb.Inject(sandbox.Fault{Op: alikassa.OpAccountInfo, Kind: sandbox.ServerError})
	if err := p.Probe(context.Background()); !errors.Is(err, payments.ErrAmbiguous) {
		t.Fatalf("probe on 5xx: %v", err)
	}
}

func TestNoRefundNoCancel(t *testing.T) {
	r := start(t, sandbox.Options{}, nil)
	var p payments.Provider = r.c
	if _, ok := p.(payments.Refunder); ok {
		t.Fatal("AliKassa publishes no refund: the client must not be a Refunder")
	}
	if _, ok := p.(payments.Canceler); ok {
		t.Fatal("AliKassa publishes no cancel: the client must not be a Canceler")
	}
	if p.Name() != "alikassa" {
		t.Fatal(p.Name())
	}
}

func TestNoticeVerified(t *testing.T) {
	got := make(chan url.Values, 1)
	relay := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			got <- r.URL.Query()
		}
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go relay.Serve(ln)
	defer relay.Close()

	r := start(t, sandbox.Options{}, nil)
	ctx := context.Background()
	o := order("till7/notice", 50000)
	o.Desc = "Оплата №5 / чай 😀"
	o.Options = opt(`{"notification_endpoint_url":"http://` + ln.Addr().String() + `/v1/providers/alikassa/notify"}`)
	ref, err := r.c.Create(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.sb.Pay(ref.OrderID); err != nil {
		t.Fatal(err)
	}
	var q url.Values
	select {
	case q = <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("no notification delivered")
	}
	var v payments.Verifier = r.c
	nref, err := v.VerifyNotice(http.Header{}, q, nil)
	if err != nil || nref.OrderID != ref.OrderID || nref.ProviderID != ref.ProviderID {
		t.Fatalf("genuine notice: %+v %v", nref, err)
	}
	tamper := map[string]func(url.Values){
		"amount":          func(q url.Values) { q.Set("amount", "5000.00") },
		"payment_status":  func(q url.Values) { q.Set("payment_status", "paid"); q.Set("payment_amount", "1.00") },
		"desc":            func(q url.Values) { q.Set("desc", strings.Replace(q.Get("desc"), "чай", "чаи", 1)) },
		"order_id":        func(q url.Values) { q.Set("order_id", "till7/other") },
		"sign missing":    func(q url.Values) { q.Del("sign") },
		"sign not base64": func(q url.Values) { q.Set("sign", "%%%") },
		"sign of another": func(q url.Values) { q.Set("sign", base64.StdEncoding.EncodeToString(make([]byte, 256))) },
		"field missing":   func(q url.Values) { q.Del("commission_amount") },
		"field twice":     func(q url.Values) { q.Add("amount", q.Get("amount")) },
	}
	for name, f := range tamper {
		c := url.Values{}
		for k, vs := range q {
			c[k] = append([]string(nil), vs...)
		}
		f(c)
		if _, err := v.VerifyNotice(http.Header{}, c, nil); !errors.Is(err, alikassa.ErrNoticeRefused) || !errors.Is(err, payments.ErrUnauthorized) {
			t.Errorf("tampered %s: %v, want refused", name, err)
		}
	}
	// A client without the notifications key refuses every notice.
	cfg := r.sb.ClientConfig()
	cfg.NotifyPublicKeyFile = ""
	bare, err := alikassa.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bare.VerifyNotice(nil, q, nil); !errors.Is(err, alikassa.ErrNoticeRefused) {
		t.Fatalf("without a key: %v", err)
	}
	// A client for another account refuses a genuine notice of this one.
	cfg = r.sb.ClientConfig()
	cfg.Account = "another-account"
	other, _ := alikassa.New(cfg)
	if _, err := other.VerifyNotice(nil, q, nil); !errors.Is(err, alikassa.ErrNoticeRefused) {
		t.Fatalf("another account: %v", err)
	}
}

// Secrets never reach the debug log: not the signature, not the password,
// not the key, not the account header.
func TestSecretsNeverLogged(t *testing.T) {
	r := start(t, sandbox.Options{}, nil)
	ctx := context.Background()
	ref, _ := r.c.Create(ctx, order("till7-log", 100))
	r.c.Status(ctx, ref)
	r.c.Probe(ctx)
	r.sb.Inject(sandbox.Fault{Kind: sandbox.ServerError})
	r.c.Status(ctx, ref)
	r.sb.Inject(sandbox.Fault{Kind: sandbox.Invalid, Field: "amount", Message: "bad"})
	r.c.Create(ctx, order("till7-log2", 100))
	logText := r.log.String()
	if !strings.Contains(logText, "alikassa request") || !strings.Contains(logText, "till7-log") {
		t.Fatalf("debug log is missing the exchange, so this test would prove nothing:\n%s", logText)
	}
	var secrets []string
	for _, q := range r.sb.Requests() {
		secrets = append(secrets, q.Sign, q.Sign[:20])
	}
	pw, _ := os.ReadFile(r.sb.Files().PasswordFile)
	secrets = append(secrets, strings.TrimSpace(string(pw)), r.sb.Account())
	for _, f := range []string{r.sb.Files().PrivateKeyPKCS8, r.sb.Files().PrivateKeyLegacy} {
		data, _ := os.ReadFile(f)
		for _, line := range strings.Split(string(data), "\n") {
			if len(line) >= 32 && !strings.HasPrefix(line, "-----") && !strings.Contains(line, ":") {
				secrets = append(secrets, line)
			}
		}
	}
	secrets = append(secrets, "PRIVATE KEY")
	for _, s := range secrets {
		if s != "" && strings.Contains(logText, s) {
			t.Fatalf("secret %.12q… in the log", s)
		}
	}
}

func TestNewChecksConfig(t *testing.T) {
	sb, err := sandbox.Start(sandbox.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	for name, mut := range map[string]func(*alikassa.Config){
		"no account":         func(c *alikassa.Config) { c.Account = "" },
		"bad hash":           func(c *alikassa.Config) { c.SignatureHash = "md5" },
		"lifetime 10m":       func(c *alikassa.Config) { c.Lifetime = 10 * time.Minute },
		"bad base url":       func(c *alikassa.Config) { c.BaseURL = "ftp://x" },
		"notice with sign":   func(c *alikassa.Config) { c.NoticeFields = []string{"order_id", "sign"} },
		"extra shadows":      func(c *alikassa.Config) { c.ExtraFields = []alikassa.ExtraField{{Name: "amount", Value: "1"}} },
		"bad redirect url":   func(c *alikassa.Config) { c.SuccessRedirectURL = "shop.example/ok" },
		"bad notify keyfile": func(c *alikassa.Config) { c.NotifyPublicKeyFile = c.PasswordFile },
	} {
		cfg := sb.ClientConfig()
		mut(&cfg)
		if _, err := alikassa.New(cfg); err == nil {
			t.Errorf("%s: New accepted it", name)
		}
	}
}

func TestExtraFieldsSentAfterSeedFields(t *testing.T) {
	r := start(t, sandbox.Options{}, func(c *alikassa.Config) {
		c.ExtraFields = []alikassa.ExtraField{{Name: "customer_browser_user_agent", Value: "kassa-agent"}}
		c.NotificationID = 12
	})
	if _, err := r.c.Create(context.Background(), order("till7-extra", 100)); err != nil {
		t.Fatal(err)
	}
	body := r.sb.Requests()[0].Body
	if !strings.HasSuffix(body, `"notification_endpoint_id":12,"desc":"Order till7-extra","lifetime":900,"customer_browser_user_agent":"kassa-agent"}`) {
		t.Fatalf("body %s", body)
	}
}
