package smartpay_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"kassa-agent/payments"
	"kassa-agent/payments/smartpay"
	"kassa-agent/payments/smartpay/sandbox"
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

// fakeClock drives the sandbox's time without sleeping.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: time.Now()} }

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
	srv  *sandbox.Server
	cl   *smartpay.Client
	logs *syncBuffer
}

func start(t *testing.T, opts sandbox.Options, tune ...func(*smartpay.Config)) env {
	t.Helper()
	if opts.ProcessingDelay == 0 {
		opts.ProcessingDelay = sandbox.Immediate
	}
	srv, err := sandbox.Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	logs := &syncBuffer{}
	cfg := srv.ClientConfig()
	cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg.Timeouts = smartpay.Timeouts{Auth: 5 * time.Second, Commit: 5 * time.Second, Release: 5 * time.Second,
		Status: 5 * time.Second, Confirm: 5 * time.Second, Fiscal: 5 * time.Second, Cancel: 5 * time.Second}
	for _, f := range tune {
		f(&cfg)
	}
	cl, err := smartpay.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return env{srv: srv, cl: cl, logs: logs}
}

var kassaSeq struct {
	sync.Mutex
	n int
}

func kassaID() string {
	kassaSeq.Lock()
	defer kassaSeq.Unlock()
	kassaSeq.n++
	return "k-" + time.Now().Format("150405") + "-" + string(rune('a'+kassaSeq.n%26)) + strings.Repeat("x", kassaSeq.n/26)
}

func (e env) commit(t *testing.T) string {
	t.Helper()
	id, err := e.cl.Commit(t.Context(), e.srv.NewCode(), kassaID())
	if err != nil {
		t.Fatalf("commit: %v", err)
	}
	return id
}

func fiscalFor(id string, amount int64) smartpay.FiscalData {
	return smartpay.FiscalData{PurchaseID: id, KKTRegNumber: "0001234567012345", FiscalSign: "3522507261",
		FNNumber: "9999078900012345", FDNumber: 42, ReceiptTime: time.Date(2025, 3, 1, 12, 30, 0, 0, time.FixedZone("MSK", 3*3600)),
		Amount: amount}
}

func TestFullFlow(t *testing.T) {
	e := start(t, sandbox.Options{})
	ctx := t.Context()
	code := e.srv.NewCode()
	if !regexp.MustCompile(smartpay.DefaultCodePattern).MatchString(code) {
		t.Fatalf("sandbox code %q does not match the default pattern", code)
	}
	id, err := e.cl.Commit(ctx, code, "kp-1")
	if err != nil {
		t.Fatal(err)
	}
	st, err := e.cl.Release(ctx, id, 12345)
	if err != nil || st.State != smartpay.StateProcessing {
		t.Fatalf("release: %+v %v", st, err)
	}
	st, err = e.cl.Status(ctx, id)
	if err != nil || st.State != smartpay.StateSuccess {
		t.Fatalf("status: %+v %v", st, err)
	}
	if ps, ok := st.State.Payment(); !ok || ps != payments.Paid {
		t.Fatalf("payment state %v %v", ps, ok)
	}
	for range 2 { // outbox delivery repeats: both are safe to repeat
		if err := e.cl.Confirm(ctx, id); err != nil {
			t.Fatal(err)
		}
		if err := e.cl.Fiscal(ctx, fiscalFor(id, 12345)); err != nil {
			t.Fatal(err)
		}
	}
	p, _ := e.srv.Purchase(id)
	if p.KassaPurchaseID != "kp-1" || p.Amount != 12345 || p.Releases != 1 || p.Confirms != 2 || len(p.Fiscals) != 2 {
		t.Fatalf("sandbox purchase %+v", p)
	}
	f := p.Fiscals[0]
	if f.KKTRegNumber != "0001234567012345" || f.FiscalSign != "3522507261" || f.FDNumber != 42 ||
		f.ReceiptTime != "2025-03-01T12:30:00+03:00" || f.Amount != 12345 {
		t.Fatalf("fiscal as received: %+v", f)
	}
	if err := e.cl.Cancel(ctx, id); !smartpay.IsConflict(err) {
		t.Fatalf("cancel after payment: %v", err)
	}
	// Fiscal data with another amount than released is refused.
	if err := e.cl.Fiscal(ctx, fiscalFor(id, 999)); !smartpay.IsRejected(err) || smartpay.IsCodeRejected(err) {
		t.Fatalf("fiscal with wrong amount: %v", err)
	}
}

func TestAuthOnceAndCookieReused(t *testing.T) {
	e := start(t, sandbox.Options{})
	for range 3 {
		id := e.commit(t)
		if _, err := e.cl.Status(t.Context(), id); err != nil {
			t.Fatal(err)
		}
	}
	if n := e.srv.Count(smartpay.OpAuth); n != 1 {
		t.Fatalf("auth sent %d times, want 1", n)
	}
	if n := e.srv.Count(smartpay.OpStatus); n != 3 {
		t.Fatalf("status %d", n)
	}
	// Explicit Authenticate for diagnostics makes a new session.
	if err := e.cl.Authenticate(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := e.srv.Count(smartpay.OpAuth); n != 2 {
		t.Fatalf("auth after Authenticate: %d", n)
	}
}

func TestReauthOn401ThenRetryOnce(t *testing.T) {
	e := start(t, sandbox.Options{})
	id := e.commit(t)
	e.srv.ExpireSessions()
	st, err := e.cl.Status(t.Context(), id)
	if err != nil || st.State != smartpay.StateCommitted {
		t.Fatalf("status after expired session: %+v %v", st, err)
	}
	if a, s := e.srv.Count(smartpay.OpAuth), e.srv.Count(smartpay.OpStatus); a != 2 || s != 2 {
		t.Fatalf("auth %d status %d; want 2 and 2", a, s)
	}

	// A second 401 after re-auth is an error, not a loop.
	if err := e.srv.Inject(sandbox.Fault{Op: smartpay.OpStatus, Kind: sandbox.Unauthorized, Times: -1}); err != nil {
		t.Fatal(err)
	}
	_, err = e.cl.Status(t.Context(), id)
	if !smartpay.IsUnauthorized(err) || !errors.Is(err, payments.ErrUnauthorized) {
		t.Fatalf("want unauthorized, got %v", err)
	}
	var se *smartpay.Error
	if !errors.As(err, &se) || se.HTTPStatus != 401 || se.Op != smartpay.OpStatus {
		t.Fatalf("error %#v", se)
	}
	if a, s := e.srv.Count(smartpay.OpAuth), e.srv.Count(smartpay.OpStatus); a != 3 || s != 4 {
		t.Fatalf("auth %d status %d; want 3 and 4", a, s)
	}
}

func TestAuthRefused(t *testing.T) {
	e := start(t, sandbox.Options{})
	e.srv.Inject(sandbox.Fault{Op: smartpay.OpAuth, Kind: sandbox.Unauthorized})
	if _, err := e.cl.Commit(t.Context(), e.srv.NewCode(), kassaID()); !smartpay.IsUnauthorized(err) {
		t.Fatalf("commit with auth refused: %v", err)
	}
	if n := e.srv.Count(smartpay.OpCommit); n != 0 {
		t.Fatalf("commit sent without a session: %d", n)
	}
	// The next call authenticates afresh.
	e.commit(t)
}

func TestSessionLapsesWithTime(t *testing.T) {
	clk := newClock()
	e := start(t, sandbox.Options{Now: clk.Now, AuthTTL: time.Minute})
	id := e.commit(t)
	clk.Advance(59 * time.Second)
	if _, err := e.cl.Status(t.Context(), id); err != nil {
		t.Fatal(err)
	}
	clk.Advance(2 * time.Second)
	if _, err := e.cl.Status(t.Context(), id); err != nil {
		t.Fatal(err)
	}
	if n := e.srv.Count(smartpay.OpAuth); n != 2 {
		t.Fatalf("auth %d, want 2 (one after the cookie lapsed)", n)
	}
}

func TestConcurrent401sReauthOnce(t *testing.T) {
	e := start(t, sandbox.Options{})
	id := e.commit(t)
	e.srv.ExpireSessions()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			_, err := e.cl.Status(t.Context(), id)
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
	// Calls that saw 401 under the old session share one re-auth; a call
	// that started after it simply uses the new cookie.
	if n := e.srv.Count(smartpay.OpAuth); n != 2 {
		t.Fatalf("auth %d, want 2", n)
	}
}

func TestFaultClasses(t *testing.T) {
	e := start(t, sandbox.Options{}, func(c *smartpay.Config) { c.Timeouts.Status = 300 * time.Millisecond })
	ctx := t.Context()

	t.Run("latency beyond the timeout is ambiguous", func(t *testing.T) {
		id := e.commit(t)
		e.srv.Inject(sandbox.Fault{Op: smartpay.OpStatus, Kind: sandbox.Latency, Delay: time.Second})
		_, err := e.cl.Status(ctx, id)
		if !smartpay.IsAmbiguous(err) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("latency within the timeout is fine", func(t *testing.T) {
		id := e.commit(t)
		e.srv.Inject(sandbox.Fault{Op: smartpay.OpStatus, Kind: sandbox.Latency, Delay: 50 * time.Millisecond})
		if _, err := e.cl.Status(ctx, id); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("5xx on release is ambiguous and not applied", func(t *testing.T) {
		id := e.commit(t)
		e.srv.Inject(sandbox.Fault{Op: smartpay.OpRelease, Kind: sandbox.ServerError, Status: 503})
		_, err := e.cl.Release(ctx, id, 100)
		var se *smartpay.Error
		if !smartpay.IsAmbiguous(err) || !errors.As(err, &se) || se.HTTPStatus != 503 || !errors.Is(err, payments.ErrAmbiguous) {
			t.Fatalf("got %v", err)
		}
		if p, _ := e.srv.Purchase(id); p.Releases != 0 || p.State != "committed" {
			t.Fatalf("purchase %+v", p)
		}
	})
	t.Run("reset on commit is ambiguous", func(t *testing.T) {
		e.srv.Inject(sandbox.Fault{Op: smartpay.OpCommit, Kind: sandbox.Reset})
		_, err := e.cl.Commit(ctx, e.srv.NewCode(), kassaID())
		if !smartpay.IsAmbiguous(err) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("reply lost on commit: same commit again gives the same purchase", func(t *testing.T) {
		code, kid := e.srv.NewCode(), kassaID()
		e.srv.Inject(sandbox.Fault{Op: smartpay.OpCommit, Kind: sandbox.ReplyLost})
		if _, err := e.cl.Commit(ctx, code, kid); !smartpay.IsAmbiguous(err) {
			t.Fatalf("got %v", err)
		}
		id, err := e.cl.Commit(ctx, code, kid)
		if err != nil {
			t.Fatal(err)
		}
		if p, ok := e.srv.PurchaseByKassaID(kid); !ok || p.ID != id {
			t.Fatalf("purchase %+v", p)
		}
	})
	t.Run("unauthorized once is transparent", func(t *testing.T) {
		id := e.commit(t)
		e.srv.Inject(sandbox.Fault{Op: smartpay.OpRelease, Kind: sandbox.Unauthorized})
		if _, err := e.cl.Release(ctx, id, 100); err != nil {
			t.Fatal(err)
		}
		if p, _ := e.srv.Purchase(id); p.Releases != 1 {
			t.Fatalf("releases %d", p.Releases)
		}
	})
	t.Run("code expired at commit", func(t *testing.T) {
		e.srv.Inject(sandbox.Fault{Op: smartpay.OpCommit, Kind: sandbox.CodeExpired})
		_, err := e.cl.Commit(ctx, e.srv.NewCode(), kassaID())
		if !smartpay.IsCodeRejected(err) || !errors.Is(err, payments.ErrRejected) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("code expired at release", func(t *testing.T) {
		id := e.commit(t)
		e.srv.Inject(sandbox.Fault{Kind: sandbox.CodeExpired})
		_, err := e.cl.Release(ctx, id, 100)
		var se *smartpay.Error
		if !smartpay.IsCodeRejected(err) || !errors.As(err, &se) || se.Code != "code_expired" {
			t.Fatalf("got %v", err)
		}
		if st, err := e.cl.Status(ctx, id); err != nil || st.State != smartpay.StateExpired || !st.State.Final() {
			t.Fatalf("status %+v %v", st, err)
		}
	})
	t.Run("unknown code", func(t *testing.T) {
		_, err := e.cl.Commit(ctx, "https://qr.smartpay.example/c/never-issued-0000000", kassaID())
		if !smartpay.IsCodeRejected(err) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("code committed elsewhere", func(t *testing.T) {
		code := e.srv.NewCode()
		if _, err := e.cl.Commit(ctx, code, kassaID()); err != nil {
			t.Fatal(err)
		}
		_, err := e.cl.Commit(ctx, code, kassaID())
		if !smartpay.IsConflict(err) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("declined", func(t *testing.T) {
		id := e.commit(t)
		e.srv.Inject(sandbox.Fault{Kind: sandbox.Declined, Reason: "insufficient funds"})
		if _, err := e.cl.Release(ctx, id, 100); err != nil {
			t.Fatal(err)
		}
		st, err := e.cl.Status(ctx, id)
		if err != nil || st.State != smartpay.StateDeclined || st.Reason != "insufficient funds" {
			t.Fatalf("status %+v %v", st, err)
		}
		if ps, _ := st.State.Payment(); ps != payments.Declined {
			t.Fatalf("payment state %v", ps)
		}
	})
	t.Run("stuck in processing", func(t *testing.T) {
		id := e.commit(t)
		e.srv.Inject(sandbox.Fault{Kind: sandbox.Stuck})
		if _, err := e.cl.Release(ctx, id, 100); err != nil {
			t.Fatal(err)
		}
		for range 3 {
			if st, err := e.cl.Status(ctx, id); err != nil || st.State != smartpay.StateProcessing || st.State.Final() {
				t.Fatalf("status %+v %v", st, err)
			}
		}
	})
	t.Run("unknown status word is unknown, never success", func(t *testing.T) {
		id := e.commit(t)
		e.srv.Inject(sandbox.Fault{Kind: sandbox.StatusWord, Word: "HOLD_FOR_REVIEW"})
		st, err := e.cl.Status(ctx, id)
		if err != nil || st.State != smartpay.StateUnknown || st.Raw != "HOLD_FOR_REVIEW" || st.State.Final() {
			t.Fatalf("status %+v %v", st, err)
		}
		if _, ok := st.State.Payment(); ok {
			t.Fatal("unknown mapped to a payment state")
		}
	})
	t.Run("unknown purchase", func(t *testing.T) {
		_, err := e.cl.Status(ctx, "sp-nope")
		if !smartpay.IsNotFound(err) || !smartpay.IsRejected(err) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("second release is a conflict", func(t *testing.T) {
		id := e.commit(t)
		if _, err := e.cl.Release(ctx, id, 100); err != nil {
			t.Fatal(err)
		}
		if _, err := e.cl.Release(ctx, id, 100); !smartpay.IsConflict(err) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("cancel before release", func(t *testing.T) {
		id := e.commit(t)
		if err := e.cl.Cancel(ctx, id); err != nil {
			t.Fatal(err)
		}
		if st, _ := e.cl.Status(ctx, id); st.State != smartpay.StateCanceled {
			t.Fatalf("status %+v", st)
		}
		if _, err := e.cl.Release(ctx, id, 100); !smartpay.IsConflict(err) {
			t.Fatalf("release after cancel: %v", err)
		}
	})
	t.Run("invalid arguments are refused before sending", func(t *testing.T) {
		before := len(e.srv.Requests())
		checks := []error{
			func() error { _, err := e.cl.Commit(ctx, "", "k"); return err }(),
			func() error { _, err := e.cl.Commit(ctx, "c", ""); return err }(),
			func() error { _, err := e.cl.Release(ctx, "p", 0); return err }(),
			func() error { _, err := e.cl.Release(ctx, "p", -5); return err }(),
			func() error { _, err := e.cl.Status(ctx, ""); return err }(),
			e.cl.Confirm(ctx, ""),
			e.cl.Cancel(ctx, ""),
			e.cl.Fiscal(ctx, smartpay.FiscalData{PurchaseID: "p"}),
		}
		for i, err := range checks {
			if smartpay.ClassOf(err) != smartpay.ClassRejected {
				t.Errorf("check %d: %v", i, err)
			}
		}
		if after := len(e.srv.Requests()); after != before {
			t.Fatalf("%d requests sent for invalid arguments", after-before)
		}
	})
	t.Run("confirm before success is a conflict", func(t *testing.T) {
		id := e.commit(t)
		if err := e.cl.Confirm(ctx, id); !smartpay.IsConflict(err) {
			t.Fatalf("got %v", err)
		}
	})
}

// The rule the whole agent leans on: a release whose reply was lost after
// the service applied it is ambiguous, the client sends it exactly once
// (no transport retry), and status then tells the truth.
func TestReleaseReplyLostIsAmbiguousAndAppliedOnce(t *testing.T) {
	for _, kind := range []sandbox.Kind{sandbox.ReplyLost, sandbox.Reset} {
		t.Run(string(kind), func(t *testing.T) {
			e := start(t, sandbox.Options{})
			id := e.commit(t) // the connection is now reused: transport retries would show up here
			if err := e.srv.Inject(sandbox.Fault{Op: smartpay.OpRelease, Kind: kind}); err != nil {
				t.Fatal(err)
			}
			_, err := e.cl.Release(t.Context(), id, 4200)
			if !smartpay.IsAmbiguous(err) {
				t.Fatalf("want ambiguous, got %v", err)
			}
			if n := e.srv.Count(smartpay.OpRelease); n != 1 {
				t.Fatalf("release sent %d times", n)
			}
			p, _ := e.srv.Purchase(id)
			wantReleases := map[sandbox.Kind]int{sandbox.ReplyLost: 1, sandbox.Reset: 0}[kind]
			if p.Releases != wantReleases {
				t.Fatalf("releases applied %d, want %d", p.Releases, wantReleases)
			}
			st, err := e.cl.Status(t.Context(), id)
			if err != nil {
				t.Fatal(err)
			}
			want := map[sandbox.Kind]smartpay.State{sandbox.ReplyLost: smartpay.StateSuccess, sandbox.Reset: smartpay.StateCommitted}[kind]
			if st.State != want {
				t.Fatalf("status %v, want %v", st.State, want)
			}
		})
	}
}

func TestProcessingDelay(t *testing.T) {
	clk := newClock()
	e := start(t, sandbox.Options{Now: clk.Now, ProcessingDelay: 2 * time.Second})
	id := e.commit(t)
	if _, err := e.cl.Release(t.Context(), id, 500); err != nil {
		t.Fatal(err)
	}
	clk.Advance(1900 * time.Millisecond)
	if st, _ := e.cl.Status(t.Context(), id); st.State != smartpay.StateProcessing {
		t.Fatalf("before the delay: %v", st.State)
	}
	clk.Advance(100 * time.Millisecond)
	if st, _ := e.cl.Status(t.Context(), id); st.State != smartpay.StateSuccess {
		t.Fatalf("after the delay: %v", st.State)
	}
}

func TestCommitLapsesBeforeRelease(t *testing.T) {
	clk := newClock()
	e := start(t, sandbox.Options{Now: clk.Now, CodeTTL: time.Minute, AuthTTL: time.Hour})
	id := e.commit(t)
	clk.Advance(time.Minute)
	if _, err := e.cl.Release(t.Context(), id, 100); !smartpay.IsCodeRejected(err) {
		t.Fatalf("release after the commit lapsed: %v", err)
	}
	// An issued but unused code lapses too.
	code := e.srv.NewCode()
	clk.Advance(time.Minute)
	if _, err := e.cl.Commit(t.Context(), code, kassaID()); !smartpay.IsCodeRejected(err) {
		t.Fatalf("commit of a lapsed code: %v", err)
	}
}

func TestUnavailableWhenNothingListens(t *testing.T) {
	e := start(t, sandbox.Options{})
	e.srv.Close()
	_, err := e.cl.Commit(t.Context(), "https://qr.smartpay.example/c/aaaaaaaaaaaaaaaaaaaa", kassaID())
	if !smartpay.IsUnavailable(err) || !errors.Is(err, payments.ErrUnavailable) {
		t.Fatalf("got %v", err)
	}
}

func TestCertificateExpiryReading(t *testing.T) {
	clk := newClock()
	e := start(t, sandbox.Options{Now: clk.Now, ClientCertValidity: 10 * 24 * time.Hour})
	ci := e.cl.Certificate()
	now := clk.Now()
	if d := ci.NotAfter.Sub(now.Add(10 * 24 * time.Hour)); d > time.Second || d < -time.Second {
		t.Fatalf("NotAfter %v, want about %v", ci.NotAfter, now.Add(10*24*time.Hour))
	}
	if !strings.Contains(ci.Subject, "kassa-agent sandbox till") || ci.Serial == "" {
		t.Fatalf("cert info %+v", ci)
	}
	fromFile, err := smartpay.LoadCertInfo(e.srv.Files().CertFile)
	if err != nil || fromFile != ci {
		t.Fatalf("LoadCertInfo %+v %v", fromFile, err)
	}
	cases := []struct {
		at   time.Duration
		want smartpay.ExpiryLevel
	}{
		{-48 * time.Hour, smartpay.ExpiryNotYetValid},
		{0, smartpay.ExpiryWarn},
		{7*24*time.Hour - time.Minute, smartpay.ExpiryWarn},
		{7*24*time.Hour + time.Minute, smartpay.ExpiryCritical},
		{10*24*time.Hour + time.Minute, smartpay.ExpiryExpired},
	}
	for _, c := range cases {
		if got := ci.Expiry(now.Add(c.at)); got != c.want {
			t.Errorf("at +%v: %v, want %v", c.at, got, c.want)
		}
	}
	if _, err := smartpay.LoadCertInfo(e.srv.Files().KeyFile); err == nil {
		t.Fatal("a key file read as a certificate")
	}
}

func TestExpiryLevels(t *testing.T) {
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	ci := smartpay.CertInfo{NotBefore: now.Add(-365 * 24 * time.Hour)}
	cases := []struct {
		left time.Duration
		want smartpay.ExpiryLevel
	}{
		{31 * 24 * time.Hour, smartpay.ExpiryOK},
		{30*24*time.Hour + time.Second, smartpay.ExpiryOK},
		{30 * 24 * time.Hour, smartpay.ExpiryWarn},
		{3*24*time.Hour + time.Second, smartpay.ExpiryWarn},
		{3 * 24 * time.Hour, smartpay.ExpiryCritical},
		{time.Second, smartpay.ExpiryCritical},
		{0, smartpay.ExpiryExpired},
		{-time.Hour, smartpay.ExpiryExpired},
	}
	for _, c := range cases {
		ci.NotAfter = now.Add(c.left)
		if got := ci.Expiry(now); got != c.want {
			t.Errorf("left %v: %v, want %v", c.left, got, c.want)
		}
		if ci.Left(now) != c.left {
			t.Errorf("Left %v", ci.Left(now))
		}
	}
	if smartpay.ExpiryCritical.String() != "critical" {
		t.Fatal(smartpay.ExpiryCritical.String())
	}
}

func TestExpiredClientCertRefused(t *testing.T) {
	e := start(t, sandbox.Options{ClientCertValidity: -time.Hour})
	if lvl := e.cl.Certificate().Expiry(time.Now()); lvl != smartpay.ExpiryExpired {
		t.Fatalf("level %v", lvl)
	}
	_, err := e.cl.Commit(t.Context(), e.srv.NewCode(), kassaID())
	if !smartpay.IsUnauthorized(err) {
		t.Fatalf("got %v", err)
	}
}

func TestUntrustedClientCertRefused(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, err := sandbox.WriteUntrustedClient(dir)
	if err != nil {
		t.Fatal(err)
	}
	e := start(t, sandbox.Options{}, func(c *smartpay.Config) { c.CertFile, c.KeyFile = certFile, keyFile })
	_, err = e.cl.Commit(t.Context(), e.srv.NewCode(), kassaID())
	if !smartpay.IsUnauthorized(err) {
		t.Fatalf("got %v", err)
	}
	if n := e.srv.Count(smartpay.OpCommit); n != 0 {
		t.Fatalf("commit reached the API: %d", n)
	}
}

func caClient(t *testing.T, srv *sandbox.Server) *http.Client {
	t.Helper()
	pemData, err := os.ReadFile(srv.Files().CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pemData)
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
}

func TestTLSWithoutClientCertRefused(t *testing.T) {
	t.Run("api answers 403, admin works", func(t *testing.T) {
		srv, err := sandbox.Start(sandbox.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Close()
		hc := caClient(t, srv)
		resp, err := hc.Post(srv.URL()+"/v1/auth", "application/json", strings.NewReader("{}"))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "client_certificate_required") || len(resp.Cookies()) != 0 {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		resp, err = hc.Post(srv.URL()+"/sandbox/codes", "", nil)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("admin: %v %v", resp, err)
		}
		resp.Body.Close()
	})
	t.Run("handshake refused when required", func(t *testing.T) {
		srv, err := sandbox.Start(sandbox.Options{RequireCertAtHandshake: true})
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Close()
		resp, err := caClient(t, srv).Post(srv.URL()+"/v1/auth", "application/json", strings.NewReader("{}"))
		if err == nil {
			resp.Body.Close()
			t.Fatalf("answered %d without a client certificate", resp.StatusCode)
		}
		// And the smartpay client with its certificate still gets in.
		cl, err := smartpay.New(srv.ClientConfig())
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		if _, err := cl.Commit(t.Context(), srv.NewCode(), "k1"); err != nil {
			t.Fatal(err)
		}
	})
}

func TestAdminEndpoints(t *testing.T) {
	e := start(t, sandbox.Options{})
	hc := caClient(t, e.srv)
	do := func(method, path, body string) (int, string) {
		req, _ := http.NewRequest(method, e.srv.URL()+path, strings.NewReader(body))
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	st, body := do("POST", "/sandbox/codes", "")
	var got struct{ Code string }
	if st != 200 || json.Unmarshal([]byte(body), &got) != nil || !regexp.MustCompile(smartpay.DefaultCodePattern).MatchString(got.Code) {
		t.Fatalf("codes: %d %s", st, body)
	}
	st, text := do("POST", "/sandbox/codes?format=text", "")
	if st != 200 || !regexp.MustCompile(smartpay.DefaultCodePattern).MatchString(strings.TrimSpace(text)) {
		t.Fatalf("codes text: %d %q", st, text)
	}
	id, err := e.cl.Commit(t.Context(), got.Code, "kp-admin")
	if err != nil {
		t.Fatal(err)
	}
	if st, body := do("POST", "/sandbox/faults", `{"op":"release","kind":"reply_lost","times":1}`); st != 201 || !strings.Contains(body, "reply_lost") {
		t.Fatalf("inject: %d %s", st, body)
	}
	if _, err := e.cl.Release(t.Context(), id, 700); !smartpay.IsAmbiguous(err) {
		t.Fatalf("release: %v", err)
	}
	st, body = do("GET", "/sandbox/purchases", "")
	var ps []sandbox.Purchase
	if st != 200 || json.Unmarshal([]byte(body), &ps) != nil || len(ps) != 1 || ps[0].Releases != 1 || ps[0].ID != id {
		t.Fatalf("purchases: %d %s", st, body)
	}
	if st, body := do("GET", "/sandbox/requests", ""); st != 200 || strings.Count(body, `"op":"release"`) != 1 {
		t.Fatalf("requests: %d %s", st, body)
	}
	for _, bad := range []string{`{"kind":"meteor"}`, `{"op":"refund","kind":"reset"}`, `{"kind":"latency"}`,
		`{"kind":"latency","delay":"soon"}`, `{"kind":"server_error","status":404}`, `{"kind":"reset","extra":1}`} {
		if st, body := do("POST", "/sandbox/faults", bad); st != 400 {
			t.Errorf("fault %s: %d %s", bad, st, body)
		}
	}
	do("POST", "/sandbox/faults", `{"kind":"latency","delay":"2s","times":-1}`)
	if f := e.srv.Faults(); len(f) != 1 || f[0].Delay != 2*time.Second || f[0].Times != -1 {
		t.Fatalf("faults %+v", f)
	}
	if st, _ := do("DELETE", "/sandbox/faults", ""); st != 204 || len(e.srv.Faults()) != 0 {
		t.Fatalf("clear: %d", st)
	}
	if st, _ := do("POST", "/sandbox/sessions/expire", ""); st != 204 || len(e.srv.SessionIDs()) != 0 {
		t.Fatal("expire sessions")
	}
	if st, body := do("GET", "/sandbox/", ""); st != 200 || !strings.Contains(body, "/sandbox/faults") {
		t.Fatalf("help: %d", st)
	}
}

func TestFixedAddressAndClientFiles(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	dir := t.TempDir()
	srv, err := sandbox.Start(sandbox.Options{Addr: addr, Dir: dir, ProcessingDelay: sandbox.Immediate})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if srv.URL() != "https://"+addr || srv.Files().Dir != dir {
		t.Fatalf("url %s files %+v", srv.URL(), srv.Files())
	}
	if fi, err := os.Stat(srv.Files().KeyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", fi, err)
	}
	other := filepath.Join(t.TempDir(), "agent")
	files, err := srv.WriteClientFiles(other)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := smartpay.New(smartpay.Config{BaseURL: srv.URL(), CertFile: files.CertFile, KeyFile: files.KeyFile, CAFile: files.CAFile})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := cl.Commit(t.Context(), srv.NewCode(), "k"); err != nil {
		t.Fatal(err)
	}
	if _, err := sandbox.Start(sandbox.Options{Addr: "0.0.0.0:0"}); err == nil {
		t.Fatal("sandbox listened beyond loopback")
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	srv, err := sandbox.Start(sandbox.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	good := srv.ClientConfig()
	keyPEM, _ := os.ReadFile(good.KeyFile)
	cases := map[string]func(*smartpay.Config){
		"no url":        func(c *smartpay.Config) { c.BaseURL = "" },
		"ftp url":       func(c *smartpay.Config) { c.BaseURL = "ftp://x" },
		"no cert":       func(c *smartpay.Config) { c.CertFile = "" },
		"missing key":   func(c *smartpay.Config) { c.KeyFile = filepath.Join(t.TempDir(), "nope.pem") },
		"key as cert":   func(c *smartpay.Config) { c.CertFile = good.KeyFile },
		"missing CA":    func(c *smartpay.Config) { c.CAFile = filepath.Join(t.TempDir(), "nope.pem") },
		"key as CA":     func(c *smartpay.Config) { c.CAFile = good.KeyFile },
		"cert/key pair": func(c *smartpay.Config) { c.KeyFile = mustUntrustedKey(t) },
	}
	for name, mod := range cases {
		cfg := good
		mod(&cfg)
		_, err := smartpay.New(cfg)
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		if strings.Contains(err.Error(), strings.TrimSpace(string(keyPEM))[40:80]) {
			t.Errorf("%s: key material in error %v", name, err)
		}
	}
}

func mustUntrustedKey(t *testing.T) string {
	_, key, err := sandbox.WriteUntrustedClient(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// No secret reaches the debug log: not the session cookie, not the key,
// not the buyer's QR code, and not through an error message quoting it.
func TestNoSecretsInDebugLogs(t *testing.T) {
	e := start(t, sandbox.Options{})
	ctx := t.Context()
	code := e.srv.NewCode()
	id, err := e.cl.Commit(ctx, code, "kp-secret-test")
	if err != nil {
		t.Fatal(err)
	}
	sessions := e.srv.SessionIDs()
	e.srv.ExpireSessions() // force a second auth and a second cookie
	if _, err := e.cl.Release(ctx, id, 100); err != nil {
		t.Fatal(err)
	}
	sessions = append(sessions, e.srv.SessionIDs()...)
	e.cl.Status(ctx, id)
	e.cl.Confirm(ctx, id)
	e.cl.Fiscal(ctx, fiscalFor(id, 100))
	_, err = e.cl.Commit(ctx, code, "kp-other") // conflict: the body may quote the code
	if !smartpay.IsConflict(err) {
		t.Fatalf("got %v", err)
	}
	if strings.Contains(err.Error(), code) {
		t.Fatalf("error quotes the code: %v", err)
	}

	logs := e.logs.String()
	if len(sessions) != 2 {
		t.Fatalf("sessions seen: %d", len(sessions))
	}
	for _, s := range sessions {
		if len(s) < 32 || strings.Contains(logs, s) {
			t.Fatalf("session cookie value in logs (or too short to check): %q", s)
		}
	}
	if strings.Contains(logs, code) || strings.Contains(logs, code[len(code)-16:]) {
		t.Fatal("QR code in logs")
	}
	keyPEM, _ := os.ReadFile(e.srv.Files().KeyFile)
	for _, line := range strings.Split(string(keyPEM), "\n") {
		if len(line) > 16 && !strings.HasPrefix(line, "-----") && strings.Contains(logs, line) {
			t.Fatal("key material in logs")
		}
	}
	if strings.Contains(logs, "PRIVATE KEY") {
		t.Fatal("key PEM in logs")
	}
	// The test must be able to fail: the log does hold the exchanges.
	for _, want := range []string{"smartpay request", "smartpay response", "op=commit", "op=release", "purchase_id=" + id,
		"kassa_purchase_id=kp-secret-test", "set_cookie_names=kassa_session", "redacted:", "http_status=409"} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q", want)
		}
	}
	if t.Failed() {
		t.Log(logs)
	}
}

// BenchmarkCommit measures the scan-to-committed round trip over loopback
// mTLS with a live session (the step the seed wants as fast as possible).
func BenchmarkCommit(b *testing.B) {
	srv, err := sandbox.Start(sandbox.Options{ProcessingDelay: sandbox.Immediate})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	cl, err := smartpay.New(srv.ClientConfig())
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	codes := make([]string, b.N)
	for i := range codes {
		codes[i] = srv.NewCode()
	}
	if err := cl.Authenticate(b.Context()); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := range b.N {
		if _, err := cl.Commit(b.Context(), codes[i], "bench-"+strconv.Itoa(i)); err != nil {
			b.Fatal(err)
		}
	}
}

// TestReloginFailureIsNotSent: the release meets a lapsed session (401, not
// applied) and the re-login then fails with a 5xx or a timeout. The release
// never left a second time: the error must say "not sent" (safe to send
// again), never "outcome unknown", which would make the agent give the
// purchase up instead of releasing it.
func TestReloginFailureIsNotSent(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fault sandbox.Fault
	}{
		{"re-login 5xx", sandbox.Fault{Op: smartpay.OpAuth, Kind: sandbox.ServerError, Status: 503}},
		{"re-login times out", sandbox.Fault{Op: smartpay.OpAuth, Kind: sandbox.Latency, Delay: 700 * time.Millisecond}},
		{"re-login reset", sandbox.Fault{Op: smartpay.OpAuth, Kind: sandbox.Reset}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := start(t, sandbox.Options{}, func(c *smartpay.Config) { c.Timeouts.Auth = 300 * time.Millisecond })
			id := e.commit(t)
			for _, f := range []sandbox.Fault{{Op: smartpay.OpRelease, Kind: sandbox.Unauthorized}, tc.fault} {
				if err := e.srv.Inject(f); err != nil {
					t.Fatal(err)
				}
			}
			_, err := e.cl.Release(t.Context(), id, 1000)
			if !smartpay.IsUnavailable(err) || smartpay.IsAmbiguous(err) {
				t.Fatalf("release after a failed re-login: %v (class %v); want unavailable", err, smartpay.ClassOf(err))
			}
			var se *smartpay.Error
			if !errors.As(err, &se) || se.Op != smartpay.OpRelease {
				t.Fatalf("error names op %v, want release", se)
			}
			if p, _ := e.srv.Purchase(id); p.Releases != 0 {
				t.Fatalf("release applied %d times", p.Releases)
			}
			// Sending it again is what the agent does, and it goes through.
			time.Sleep(800 * time.Millisecond) // past the injected latency
			if _, err := e.cl.Release(t.Context(), id, 1000); err != nil {
				t.Fatalf("second release: %v", err)
			}
			if p, _ := e.srv.Purchase(id); p.Releases != 1 {
				t.Fatalf("release applied %d times", p.Releases)
			}
		})
	}
}
