package alif_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"kassa-agent/payments"
	"kassa-agent/payments/alif"
	"kassa-agent/payments/alif/sandbox"
)

// syncBuffer collects log output from concurrent goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// fakeClock drives both the sandbox's and the client's time.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type env struct {
	srv   *sandbox.Server
	cl    *alif.Client
	cfg   alif.Config
	logs  *syncBuffer
	clock *fakeClock
}

func start(t *testing.T, opts sandbox.Options, tune ...func(*alif.Config)) env {
	t.Helper()
	clock := &fakeClock{t: time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)}
	if opts.Now == nil {
		opts.Now = clock.Now
	}
	srv, err := sandbox.Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	logs := &syncBuffer{}
	cfg := srv.ClientConfig()
	cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg.Now = clock.Now
	for _, f := range tune {
		f(&cfg)
	}
	cl, err := alif.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return env{srv: srv, cl: cl, cfg: cfg, logs: logs, clock: clock}
}

var orderSeq struct {
	sync.Mutex
	n int
}

func orderID() string {
	orderSeq.Lock()
	defer orderSeq.Unlock()
	orderSeq.n++
	return "till7-" + time.Now().Format("150405.000000") + "-" + string(rune('a'+orderSeq.n%26))
}

// order is 3 apples at 30.00 sum and 0.5 kg of cheese at 120.01 sum/kg
// (60.005 → 60.01 sum, half up): 150.01 sum.
func order() payments.Order {
	return payments.Order{
		ID:     orderID(),
		Amount: payments.Tiyin(3*3000 + 6001),
		Items: []payments.Item{
			{Name: "apple", Price: 3000, Quantity: 3000},
			{Name: "cheese", Price: 12001, Quantity: 500},
		},
		Options: json.RawMessage(`{"meta":{"thebestone":"itachi"}}`),
	}
}

func TestHappyPathCreatePayStatus(t *testing.T) {
	e := start(t, sandbox.Options{})
	ctx := context.Background()
	o := order()
	ref, err := e.cl.Create(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if ref.OrderID != o.ID || ref.ProviderID == "" {
		t.Fatalf("ref = %+v", ref)
	}
	wantURL := strings.TrimSuffix(e.cfg.CheckoutURL, "/") + "?session_ref=" + url.QueryEscape(ref.ProviderID)
	if ref.CheckoutURL != wantURL || ref.QRText != wantURL {
		t.Fatalf("checkout %q qr %q, want %q", ref.CheckoutURL, ref.QRText, wantURL)
	}
	if want := e.clock.Now().Add(5 * time.Hour); !ref.ExpiresAt.Equal(want) {
		t.Fatalf("expires %v, want %v", ref.ExpiresAt, want)
	}
	sess, ok := e.srv.Session(ref.ProviderID)
	if !ok {
		t.Fatal("no session at the sandbox")
	}
	if sess.Amount != 15001 || len(sess.Items) != 2 {
		t.Fatalf("session %+v", sess)
	}
	// The fractional line goes as one unit priced at the line's sum.
	if it := sess.Items[1]; it.Amount != 1 || it.Price != 6001 || it.Name != "cheese" {
		t.Fatalf("fractional line sent as %+v", it)
	}
	if it := sess.Items[0]; it.Amount != 3 || it.Price != 3000 {
		t.Fatalf("whole line sent as %+v", it)
	}
	var meta map[string]string
	if err := json.Unmarshal(sess.Meta, &meta); err != nil || meta["kassa_order_id"] != o.ID || meta["thebestone"] != "itachi" {
		t.Fatalf("meta %s (%v)", sess.Meta, err)
	}
	if sess.EPOS != e.cfg.EPOS || sess.RedirectURL != e.cfg.RedirectURL || sess.CancelURL != e.cfg.CancelURL {
		t.Fatalf("defaults not applied: %+v", sess)
	}

	st, err := e.cl.Status(ctx, ref)
	if err != nil || st.State != payments.Processing {
		t.Fatalf("before pay: %+v %v", st, err)
	}
	if err := e.srv.Pay(ref.ProviderID); err != nil {
		t.Fatal(err)
	}
	st, err = e.cl.Status(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != payments.Paid || st.Paid != payments.Tiyin(15001) || st.Partial || st.Raw != "SUCCEEDED" {
		t.Fatalf("after pay: %+v", st)
	}
	// One successful payment per session.
	if err := e.srv.Pay(ref.ProviderID); err == nil {
		t.Fatal("second payment of a session accepted")
	}
	if e.srv.Count(alif.OpCreate) != 1 {
		t.Fatalf("creates = %d", e.srv.Count(alif.OpCreate))
	}
}

func TestProviderContract(t *testing.T) {
	e := start(t, sandbox.Options{})
	var p payments.Provider = e.cl
	if p.Name() != "alif" {
		t.Fatalf("name %q", p.Name())
	}
	if _, ok := p.(payments.Refunder); !ok {
		t.Fatal("not a Refunder")
	}
	if _, ok := p.(payments.Verifier); !ok {
		t.Fatal("not a Verifier")
	}
	if _, ok := p.(payments.Prober); !ok {
		t.Fatal("not a Prober")
	}
	// Alif cannot look a session up by our id.
	if _, ok := p.(payments.Finder); ok {
		t.Fatal("claims to be a Finder")
	}
	if _, ok := p.(payments.Canceler); ok {
		t.Fatal("claims to be a Canceler")
	}
	if !e.cl.FullRefundOnly() {
		t.Fatal("partial refunds claimed")
	}
}

// Every rule of the seed, broken once: Check and Create refuse it with the
// field named as the POS sent it, and nothing reaches Alif.
func TestRulesRefusedBeforeSending(t *testing.T) {
	e := start(t, sandbox.Options{})
	opt := func(s string) func(*payments.Order) {
		return func(o *payments.Order) { o.Options = json.RawMessage(s) }
	}
	cases := []struct {
		name  string
		edit  func(*payments.Order)
		field string
	}{
		{"redirect not https", opt(`{"redirect_url":"http://shop.example/ok"}`), "alif.redirect_url"},
		{"redirect not a URL", opt(`{"redirect_url":"https://"}`), "alif.redirect_url"},
		{"redirect with space", opt(`{"redirect_url":"https://shop.example/o k"}`), "alif.redirect_url"},
		{"redirect upper-case scheme", opt(`{"redirect_url":"HTTPS://shop.example/"}`), "alif.redirect_url"},
		{"cancel not https", opt(`{"cancel_url":"ftp://shop.example/"}`), "alif.cancel_url"},
		{"cancel empty", opt(`{"cancel_url":""}`), "alif.cancel_url"},
		{"webhook not https", opt(`{"webhook_url":"http://hook.example/"}`), "alif.webhook_url"},
		{"webhook with user", opt(`{"webhook_url":"https://u:p@hook.example/"}`), "alif.webhook_url"},
		{"meta invalid JSON", opt(`{"meta":{"a":}}`), "alif.meta"},
		{"meta too long", opt(`{"meta":"` + strings.Repeat("x", 5000) + `"}`), "alif.meta"},
		{"meta reserved key", opt(`{"meta":{"kassa_order_id":"other"}}`), "alif.meta"},
		{"epos empty", opt(`{"epos":""}`), "alif.epos"},
		{"unknown option", opt(`{"redirect":"https://shop.example/"}`), "alif.redirect"},
		{"case variant option", opt(`{"Redirect_URL":"https://shop.example/"}`), "alif.Redirect_URL"},
		{"duplicate option", opt(`{"epos":"a","epos":"b"}`), "alif.epos"},
		{"options not an object", opt(`[1]`), "alif"},
		{"no items", func(o *payments.Order) { o.Items = nil }, "receipt.items"},
		{"empty name", func(o *payments.Order) { o.Items[1].Name = " " }, "receipt.items[1].name"},
		{"zero quantity", func(o *payments.Order) { o.Items[0].Quantity = 0 }, "receipt.items[0].quantity"},
		{"negative price", func(o *payments.Order) { o.Items[0].Price = -1 }, "receipt.items[0].price"},
		{"sum differs", func(o *payments.Order) { o.Amount.Minor++ }, "amount"},
		{"sum overflows", func(o *payments.Order) { o.Items[0].Price, o.Items[0].Quantity = 1<<62, 4000 }, "receipt.items[0].price"},
		{"sum of lines overflows", func(o *payments.Order) {
			o.Items = []payments.Item{{Name: "a", Price: 1 << 62, Quantity: 1000}, {Name: "b", Price: 1 << 62, Quantity: 1000}}
		}, "amount"},
		{"not UZS", func(o *payments.Order) { o.Amount = payments.Kopecks(o.Amount.Minor) }, "currency"},
		{"zero amount", func(o *payments.Order) { o.Amount.Minor = 0; o.Items = []payments.Item{{Name: "gift", Quantity: 1000}} }, "amount"},
		{"no order id", func(o *payments.Order) { o.ID = "" }, "order_id"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := order()
			c.edit(&o)
			for _, call := range []struct {
				name string
				f    func() error
			}{
				{"check", func() error { return e.cl.Check(o) }},
				{"create", func() error { _, err := e.cl.Create(context.Background(), o); return err }},
			} {
				err := call.f()
				var fe *payments.FieldError
				if !errors.As(err, &fe) || fe.Field != c.field || !errors.Is(err, payments.ErrRejected) {
					t.Fatalf("%s: %v, want a FieldError on %s", call.name, err, c.field)
				}
			}
		})
	}
	if n := len(e.srv.Requests()); n != 0 {
		t.Fatalf("%d requests reached the sandbox", n)
	}
}

func TestPOSOverridesDefaults(t *testing.T) {
	e := start(t, sandbox.Options{})
	o := order()
	o.Options = json.RawMessage(`{"epos":"shop2","redirect_url":"https://pos.example/ok?x=1","cancel_url":"https://pos.example/back",
		"webhook_url":"https://relay.example/alif","meta":["a",1]}`)
	ref, err := e.cl.Create(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := e.srv.Session(ref.ProviderID)
	if s.EPOS != "shop2" || s.RedirectURL != "https://pos.example/ok?x=1" || s.CancelURL != "https://pos.example/back" || s.WebhookURL != "https://relay.example/alif" {
		t.Fatalf("session %+v", s)
	}
	var meta struct {
		Order string `json:"kassa_order_id"`
		POS   []any  `json:"pos"`
	}
	if err := json.Unmarshal(s.Meta, &meta); err != nil || meta.Order != o.ID || len(meta.POS) != 2 {
		t.Fatalf("meta %s", s.Meta)
	}
}

func TestCreateReplyLostIsAmbiguousAndOneSession(t *testing.T) {
	e := start(t, sandbox.Options{})
	if err := e.srv.Inject(sandbox.Fault{Op: alif.OpCreate, Kind: sandbox.ReplyLost}); err != nil {
		t.Fatal(err)
	}
	o := order()
	_, err := e.cl.Create(context.Background(), o)
	if !errors.Is(err, payments.ErrAmbiguous) {
		t.Fatalf("err = %v, want ambiguous", err)
	}
	n := 0
	for _, s := range e.srv.Sessions() {
		var meta map[string]string
		json.Unmarshal(s.Meta, &meta)
		if meta["kassa_order_id"] == o.ID {
			n++
		}
	}
	if n != 1 || e.srv.Count(alif.OpCreate) != 1 {
		t.Fatalf("sessions for the order = %d, creates = %d", n, e.srv.Count(alif.OpCreate))
	}
}

func TestFaultClasses(t *testing.T) {
	cases := []struct {
		name  string
		fault sandbox.Fault
		class error
	}{
		{"500", sandbox.Fault{Kind: sandbox.ServerError}, payments.ErrAmbiguous},
		{"503", sandbox.Fault{Kind: sandbox.ServerError, Status: 503}, payments.ErrAmbiguous},
		{"reset after write", sandbox.Fault{Kind: sandbox.Reset}, payments.ErrAmbiguous},
		{"reply lost", sandbox.Fault{Kind: sandbox.ReplyLost}, payments.ErrAmbiguous},
		{"timeout", sandbox.Fault{Kind: sandbox.Latency, Delay: 700 * time.Millisecond}, payments.ErrAmbiguous},
		{"429", sandbox.Fault{Kind: sandbox.HTTPStatus, Status: 429}, payments.ErrUnavailable},
		{"408", sandbox.Fault{Kind: sandbox.HTTPStatus, Status: 408}, payments.ErrUnavailable},
		{"401", sandbox.Fault{Kind: sandbox.HTTPStatus, Status: 401}, payments.ErrUnauthorized},
		{"400", sandbox.Fault{Kind: sandbox.HTTPStatus, Status: 400}, payments.ErrRejected},
		{"200 + error", sandbox.Fault{Kind: sandbox.Refusal, Code: "epos_disabled", Message: "terminal off"}, payments.ErrRejected},
		{"200 + numeric error", sandbox.Fault{Kind: sandbox.Refusal, Code: "17", Message: "nope"}, payments.ErrRejected},
		{"200 + unauthorized", sandbox.Fault{Kind: sandbox.Refusal, Code: "invalid_token"}, payments.ErrUnauthorized},
		{"garbage 200", sandbox.Fault{Kind: sandbox.Garbage}, payments.ErrAmbiguous},
	}
	classes := []error{payments.ErrAmbiguous, payments.ErrUnavailable, payments.ErrRejected, payments.ErrUnauthorized}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := start(t, sandbox.Options{}, func(cfg *alif.Config) { cfg.Timeouts.Create = 300 * time.Millisecond })
			c.fault.Op = alif.OpCreate
			if err := e.srv.Inject(c.fault); err != nil {
				t.Fatal(err)
			}
			_, err := e.cl.Create(context.Background(), order())
			for _, cl := range classes {
				if errors.Is(err, cl) != (cl == c.class) {
					t.Fatalf("err = %v: Is(%v) = %v", err, cl, errors.Is(err, cl))
				}
			}
		})
	}
}

func TestRefusalNamingAFieldIsAFieldError(t *testing.T) {
	e := start(t, sandbox.Options{})
	e.srv.Inject(sandbox.Fault{Op: alif.OpCreate, Kind: sandbox.Refusal, Code: "validation_error", Message: "bad url", Field: "redirect_url"})
	_, err := e.cl.Create(context.Background(), order())
	var fe *payments.FieldError
	if !errors.As(err, &fe) || fe.Field != "alif.redirect_url" || !errors.Is(err, payments.ErrRejected) || errors.Is(err, payments.ErrAmbiguous) {
		t.Fatalf("err = %v", err)
	}
	e.srv.Inject(sandbox.Fault{Op: alif.OpCreate, Kind: sandbox.Refusal, Code: "validation_error", Message: "bad", Field: "items[1].price"})
	_, err = e.cl.Create(context.Background(), order())
	if !errors.As(err, &fe) || fe.Field != "receipt.items[1].price" {
		t.Fatalf("err = %v", err)
	}
}

func TestConnectionRefusedIsUnavailable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	e := start(t, sandbox.Options{}, func(c *alif.Config) { c.APIURL = "http://" + addr })
	_, err = e.cl.Create(context.Background(), order())
	if !errors.Is(err, payments.ErrUnavailable) || errors.Is(err, payments.ErrAmbiguous) {
		t.Fatalf("err = %v, want unavailable", err)
	}
	_, err = e.cl.Status(context.Background(), payments.Ref{ProviderID: "x"})
	if !errors.Is(err, payments.ErrUnavailable) {
		t.Fatalf("status err = %v", err)
	}
}

func TestWrongTokenUnauthorized(t *testing.T) {
	e := start(t, sandbox.Options{})
	bad := filepath.Join(t.TempDir(), "token")
	os.WriteFile(bad, []byte("not-the-token\n"), 0o600)
	cfg := e.cfg
	cfg.TokenFile = bad
	cl, err := alif.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := cl.Create(context.Background(), order()); !errors.Is(err, payments.ErrUnauthorized) {
		t.Fatalf("create: %v", err)
	}
	if err := cl.Probe(context.Background()); !errors.Is(err, payments.ErrUnauthorized) {
		t.Fatalf("probe: %v", err)
	}
	if err := e.cl.Probe(context.Background()); err != nil {
		t.Fatalf("probe with the right token: %v", err)
	}
	if len(e.srv.Sessions()) != 0 {
		t.Fatal("a session was made")
	}
}

// Only SUCCEEDED is paid; every other word, however close, is not.
func TestUnknownStatusWordsNeverPaid(t *testing.T) {
	e := start(t, sandbox.Options{})
	ref, err := e.cl.Create(context.Background(), order())
	if err != nil {
		t.Fatal(err)
	}
	words := map[string]payments.State{
		"SUCCESS": payments.Processing, "PAID": payments.Processing, "COMPLETED": payments.Processing,
		"SUCCEEDED_PARTIALLY": payments.Processing, "OK": payments.Processing, "APPROVED": payments.Processing,
		"HOLD": payments.Processing, "SUCCEEDE": payments.Processing, "SUССEEDED": payments.Processing, // Cyrillic С
		"PENDING": payments.Processing, "": payments.Processing,
		"DECLINED": payments.Declined, "INSUFFICIENT_FUNDS": payments.Declined, "EXPIRED_CARD": payments.Declined,
		"BLOCKED_CARD": payments.Declined, "REVERTED": payments.Canceled, "EXPIRED": payments.Expired,
		"succeeded": payments.Paid, " SUCCEEDED ": payments.Paid,
	}
	for w, want := range words {
		e.srv.Inject(sandbox.Fault{Op: alif.OpStatus, Kind: sandbox.StatusWord, Word: w})
		st, err := e.cl.Status(context.Background(), ref)
		if err != nil {
			t.Fatalf("%q: %v", w, err)
		}
		if st.State != want {
			t.Errorf("%q → %v, want %v", w, st.State, want)
		}
		if st.State.MoneyTaken() && strings.ToUpper(strings.TrimSpace(w)) != "SUCCEEDED" {
			t.Errorf("%q counted as money taken", w)
		}
	}
}

func TestDeclineThenPayStillSeen(t *testing.T) {
	e := start(t, sandbox.Options{})
	ref, _ := e.cl.Create(context.Background(), order())
	if err := e.srv.Fail(ref.ProviderID, "INSUFFICIENT_FUNDS"); err != nil {
		t.Fatal(err)
	}
	st, err := e.cl.Status(context.Background(), ref)
	if err != nil || st.State != payments.Declined || st.Raw != "INSUFFICIENT_FUNDS" || !st.Retry {
		t.Fatalf("%+v %v", st, err)
	}
	// Only a success closes a session: the buyer may try another card.
	if err := e.srv.Pay(ref.ProviderID); err != nil {
		t.Fatal(err)
	}
	if st, _ := e.cl.Status(context.Background(), ref); st.State != payments.Paid {
		t.Fatalf("after a second card: %+v", st)
	}
}

func TestExpiry(t *testing.T) {
	e := start(t, sandbox.Options{})
	ref, err := e.cl.Create(context.Background(), order())
	if err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(5*time.Hour - time.Second)
	if st, _ := e.cl.Status(context.Background(), ref); st.State != payments.Processing {
		t.Fatalf("before 5 h: %+v", st)
	}
	e.clock.Advance(time.Second)
	if err := e.srv.Pay(ref.ProviderID); err == nil {
		t.Fatal("paid an expired session")
	}
	st, err := e.cl.Status(context.Background(), ref)
	if err != nil || st.State != payments.Expired {
		t.Fatalf("after 5 h: %+v %v", st, err)
	}

	// A session the provider still shows pending is expired by our clock.
	ref2, _ := e.cl.Create(context.Background(), order())
	e.clock.Advance(5*time.Hour + 3*time.Minute)
	e.srv.Inject(sandbox.Fault{Op: alif.OpStatus, Kind: sandbox.StatusWord, Word: "PENDING"})
	if st, _ := e.cl.Status(context.Background(), ref2); st.State != payments.Expired {
		t.Fatalf("pending past ExpiresAt: %+v", st)
	}
	// An unknown word past expiry is not taken for "no money": keep asking.
	e.srv.Inject(sandbox.Fault{Op: alif.OpStatus, Kind: sandbox.StatusWord, Word: "WEIRD"})
	if st, _ := e.cl.Status(context.Background(), ref2); st.State != payments.Processing {
		t.Fatalf("unknown past ExpiresAt: %+v", st)
	}
	// Expire control.
	ref3, _ := e.cl.Create(context.Background(), order())
	e.srv.Expire(ref3.ProviderID)
	if st, _ := e.cl.Status(context.Background(), ref3); st.State != payments.Expired {
		t.Fatalf("expired by control: %+v", st)
	}
}

func TestStatusOfUnknownSessionIsNotFound(t *testing.T) {
	e := start(t, sandbox.Options{})
	_, err := e.cl.Status(context.Background(), payments.Ref{ProviderID: "no-such"})
	if !errors.Is(err, payments.ErrNotFound) || !errors.Is(err, payments.ErrRejected) {
		t.Fatalf("err = %v", err)
	}
}

func TestRefundFullOnly(t *testing.T) {
	e := start(t, sandbox.Options{})
	ctx := context.Background()
	ref, _ := e.cl.Create(ctx, order())
	if _, err := e.cl.Refund(ctx, ref, payments.Tiyin(15001)); !errors.Is(err, payments.ErrRejected) {
		t.Fatalf("refund of an unpaid session: %v", err)
	}
	e.srv.Pay(ref.ProviderID)
	if _, err := e.cl.Refund(ctx, ref, payments.Tiyin(15000)); !errors.Is(err, payments.ErrRejected) {
		t.Fatalf("partial refund: %v", err)
	}
	// A payment that took another sum than asked is for a person, not an
	// automatic refund, even of exactly what was taken.
	e.srv.Inject(sandbox.Fault{Op: alif.OpStatus, Kind: sandbox.PaidAmount, Amount: 15000})
	if _, err := e.cl.Refund(ctx, ref, payments.Tiyin(15000)); !errors.Is(err, payments.ErrRejected) {
		t.Fatalf("refund of a short payment: %v", err)
	}
	if n := e.srv.Count(alif.OpRefund); n != 0 {
		t.Fatalf("%d refunds sent for refused amounts", n)
	}
	st, err := e.cl.Refund(ctx, ref, payments.Tiyin(15001))
	if err != nil || st.State != payments.Canceled || st.Raw != "REVERTED" {
		t.Fatalf("refund: %+v %v", st, err)
	}
	// Again (say after a lost answer): reported, not sent twice.
	st, err = e.cl.Refund(ctx, ref, payments.Tiyin(15001))
	if err != nil || st.State != payments.Canceled {
		t.Fatalf("repeat: %+v %v", st, err)
	}
	if s, _ := e.srv.Session(ref.ProviderID); s.Refunds != 1 || e.srv.Count(alif.OpRefund) != 1 {
		t.Fatalf("refunds %d, sent %d", s.Refunds, e.srv.Count(alif.OpRefund))
	}
}

func TestRefundRefusedIsRejected(t *testing.T) {
	e := start(t, sandbox.Options{})
	ctx := context.Background()
	ref, _ := e.cl.Create(ctx, order())
	e.srv.Pay(ref.ProviderID)
	e.srv.Inject(sandbox.Fault{Op: alif.OpRefund, Kind: sandbox.Refusal, Code: "method_not_allowed", Message: "refunds are off"})
	_, err := e.cl.Refund(ctx, ref, payments.Tiyin(15001))
	if !errors.Is(err, payments.ErrRejected) || !strings.Contains(err.Error(), "refunds are off") {
		t.Fatalf("err = %v", err)
	}
	if s, _ := e.srv.Session(ref.ProviderID); s.Status != "SUCCEEDED" {
		t.Fatalf("session %+v", s)
	}
}

func sign(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

func TestWebhookDeliveredAndVerified(t *testing.T) {
	got := make(chan *http.Request, 1)
	bodies := make(chan []byte, 1)
	recv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- r
		bodies <- b
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go recv.Serve(ln)
	defer recv.Close()
	e := start(t, sandbox.Options{WebhookTarget: "http://" + ln.Addr().String() + "/hook"})
	o := order()
	o.Options = json.RawMessage(`{"webhook_url":"https://relay.example/alif"}`)
	ref, err := e.cl.Create(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	e.srv.Pay(ref.ProviderID)
	var r *http.Request
	select {
	case r = <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("no webhook")
	}
	body := <-bodies
	nref, err := e.cl.VerifyNotice(r.Header, r.URL.Query(), body)
	if err != nil || nref.ProviderID != ref.ProviderID || nref.OrderID != o.ID {
		t.Fatalf("verify: %+v %v", nref, err)
	}
	// Tampered, unsigned, signed with another secret, malformed signature.
	tampered := bytes.Replace(body, []byte("SUCCEEDED"), []byte("SUCCEEDEd"), 1)
	h := func(sig string) http.Header {
		x := http.Header{}
		if sig != "" {
			x.Set("Signature", sig)
		}
		return x
	}
	for name, c := range map[string]struct {
		h    http.Header
		body []byte
	}{
		"tampered":  {r.Header, tampered},
		"unsigned":  {h(""), body},
		"other key": {h(sign([]byte("other"), body)), body},
		"not b64":   {h("!!!"), body},
		"truncated": {h(r.Header.Get("Signature")[:20]), body},
	} {
		if _, err := e.cl.VerifyNotice(c.h, nil, c.body); !errors.Is(err, payments.ErrUnauthorized) {
			t.Errorf("%s: %v, want unauthorized", name, err)
		}
	}
	// Signed but naming no session: refused, not unauthorized.
	secret, _ := os.ReadFile(e.cfg.WebhookSecretFile)
	nobody := []byte(`{"payment":{"status":"SUCCEEDED"}}`)
	if _, err := e.cl.VerifyNotice(h(sign(bytes.TrimSpace(secret), nobody)), nil, nobody); !errors.Is(err, payments.ErrRejected) {
		t.Errorf("no id: %v", err)
	}
}

func TestVerifyWithoutSecretRefuses(t *testing.T) {
	e := start(t, sandbox.Options{}, func(c *alif.Config) { c.WebhookSecretFile = "" })
	body := []byte(`{"id":"x"}`)
	hd := http.Header{}
	hd.Set("Signature", sign(nil, body))
	if _, err := e.cl.VerifyNotice(hd, nil, body); !errors.Is(err, payments.ErrUnauthorized) {
		t.Fatalf("err = %v", err)
	}
}

func TestNoSecretsInDebugLogs(t *testing.T) {
	recv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go recv.Serve(ln)
	defer recv.Close()
	e := start(t, sandbox.Options{WebhookTarget: "http://" + ln.Addr().String()})
	ctx := context.Background()
	ref, err := e.cl.Create(ctx, order())
	if err != nil {
		t.Fatal(err)
	}
	e.srv.Pay(ref.ProviderID)
	e.cl.Status(ctx, ref)
	e.cl.Refund(ctx, ref, payments.Tiyin(15001))
	e.cl.Probe(ctx)
	e.srv.Inject(sandbox.Fault{Op: alif.OpStatus, Kind: sandbox.ServerError})
	e.cl.Status(ctx, ref)
	body := []byte(`{"id":"` + ref.ProviderID + `"}`)
	sig := sign([]byte(e.srv.WebhookSecret()), body)
	hd := http.Header{}
	hd.Set("Signature", sig)
	if _, err := e.cl.VerifyNotice(hd, nil, body); err != nil {
		t.Fatal(err)
	}
	hd.Set("Signature", sign([]byte("x"), body))
	e.cl.VerifyNotice(hd, nil, body)
	logs := e.logs.String()
	if !strings.Contains(logs, "alif request") || !strings.Contains(logs, "/v2/getInvoice") {
		t.Fatalf("no debug lines captured:\n%s", logs)
	}
	for name, secret := range map[string]string{"token": e.srv.Token(), "webhook secret": e.srv.WebhookSecret(), "signature": sig} {
		if strings.Contains(logs, secret) {
			t.Errorf("%s in the debug log", name)
		}
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	dir := t.TempDir()
	tok := filepath.Join(dir, "token")
	os.WriteFile(tok, []byte("abc123\n"), 0o600)
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, []byte(" \n"), 0o600)
	twoLines := filepath.Join(dir, "two")
	os.WriteFile(twoLines, []byte("abc\ndef\n"), 0o600)
	good := alif.Config{APIURL: "https://api.alifpay.uz", CheckoutURL: "https://checkout.alifpay.uz", TokenFile: tok,
		EPOS: "aliftech", RedirectURL: "https://shop.example/ok", CancelURL: "https://shop.example/back"}
	if c, err := alif.New(good); err != nil {
		t.Fatal(err)
	} else {
		c.Close()
	}
	cases := map[string]struct {
		edit func(*alif.Config)
		want string
	}{
		"no token file":      {func(c *alif.Config) { c.TokenFile = "" }, "token"},
		"missing token file": {func(c *alif.Config) { c.TokenFile = filepath.Join(dir, "nope") }, "nope"},
		"empty token":        {func(c *alif.Config) { c.TokenFile = empty }, empty},
		"two-line token":     {func(c *alif.Config) { c.TokenFile = twoLines }, twoLines},
		"missing secret":     {func(c *alif.Config) { c.WebhookSecretFile = filepath.Join(dir, "sec") }, "sec"},
		"empty secret":       {func(c *alif.Config) { c.WebhookSecretFile = empty }, empty},
		"api http":           {func(c *alif.Config) { c.APIURL = "http://api.alifpay.uz" }, "api"},
		"api junk":           {func(c *alif.Config) { c.APIURL = "::" }, "api"},
		"checkout http":      {func(c *alif.Config) { c.CheckoutURL = "http://checkout.alifpay.uz" }, "checkout"},
		"redirect http":      {func(c *alif.Config) { c.RedirectURL = "http://x.example" }, "redirect_url"},
		"cancel http":        {func(c *alif.Config) { c.CancelURL = "http://x.example" }, "cancel_url"},
		"webhook http":       {func(c *alif.Config) { c.WebhookURL = "http://x.example" }, "webhook_url"},
	}
	for name, c := range cases {
		cfg := good
		c.edit(&cfg)
		cl, err := alif.New(cfg)
		if err == nil {
			cl.Close()
			t.Errorf("%s: accepted", name)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v does not name %q", name, err, c.want)
		}
		if strings.Contains(err.Error(), "abc123") {
			t.Errorf("%s: token in the error", name)
		}
	}
}

func TestCheckoutPagePaysAsABuyer(t *testing.T) {
	e := start(t, sandbox.Options{})
	ref, err := e.cl.Create(context.Background(), order())
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(ref.CheckoutURL)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(page), "150.01") || !strings.Contains(string(page), "cheese") {
		t.Fatalf("page %d:\n%s", resp.StatusCode, page)
	}
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err = noRedirect.PostForm(e.srv.URL()+"/pay", url.Values{"session_ref": {ref.ProviderID}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("pay answered %d", resp.StatusCode)
	}
	if st, _ := e.cl.Status(context.Background(), ref); st.State != payments.Paid {
		t.Fatalf("after the page's pay: %+v", st)
	}
	resp, _ = http.Get(e.srv.URL() + "/?session_ref=nope")
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("unknown session page: %d", resp.StatusCode)
	}
}

func TestPartialOrOverPaymentIsNotPaid(t *testing.T) {
	e := start(t, sandbox.Options{})
	ref, _ := e.cl.Create(context.Background(), order())
	e.srv.Pay(ref.ProviderID)
	e.srv.Inject(sandbox.Fault{Op: alif.OpStatus, Kind: sandbox.PaidAmount, Amount: 15000})
	st, err := e.cl.Status(context.Background(), ref)
	if err != nil || st.State == payments.Paid || !st.Partial || st.Paid != payments.Tiyin(15000) {
		t.Fatalf("short payment: %+v %v", st, err)
	}
	e.srv.Inject(sandbox.Fault{Op: alif.OpStatus, Kind: sandbox.PaidAmount, Amount: 15002})
	st, _ = e.cl.Status(context.Background(), ref)
	if st.State == payments.Paid || st.State.MoneyTaken() {
		t.Fatalf("over payment: %+v", st)
	}
}

func TestConcurrentCreates(t *testing.T) {
	e := start(t, sandbox.Options{})
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			_, err := e.cl.Create(context.Background(), order())
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := len(e.srv.Sessions()); n != 8 {
		t.Fatalf("%d sessions", n)
	}
}

func BenchmarkCreate(b *testing.B) {
	srv, err := sandbox.Start(sandbox.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	cl, err := alif.New(srv.ClientConfig())
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	o := order()
	for b.Loop() {
		o.ID = orderID()
		if _, err := cl.Create(context.Background(), o); err != nil {
			b.Fatal(err)
		}
	}
}
