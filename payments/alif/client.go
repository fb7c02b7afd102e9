package alif

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"kassa-agent/payments"
	"kassa-agent/payments/alif/internal/wire"
)

// Name is the provider's name: the POS's "provider" value, the config
// section, the key of the POS's options.
const Name = "alif"

// Public addresses. The API host is from public integrations (the sandbox
// API host is unsettled: configure it); the checkout pages are the seed's.
const (
	ProductionAPIURL      = "https://api.alifpay.uz"
	ProductionCheckoutURL = "https://checkout.alifpay.uz"
	SandboxCheckoutURL    = "https://checkout.dev.alif.cloud"
)

// Timeouts bound each HTTP exchange. Zero fields take the defaults.
type Timeouts struct {
	Create time.Duration // default 15 s
	Status time.Duration // default 10 s
	Refund time.Duration // default 20 s
}

func (t Timeouts) of(op Op) time.Duration {
	pick := func(v, def time.Duration) time.Duration {
		if v > 0 {
			return v
		}
		return def
	}
	switch op {
	case OpCreate:
		return pick(t.Create, 15*time.Second)
	case OpRefund:
		return pick(t.Refund, 20*time.Second)
	}
	return pick(t.Status, 10*time.Second)
}

// Config configures a Client. Secrets are read from the files named here;
// their contents never reach a log or an error.
type Config struct {
	APIURL      string // e.g. ProductionAPIURL
	CheckoutURL string // e.g. ProductionCheckoutURL or SandboxCheckoutURL
	TokenFile   string // the merchant token, sent as header Token
	// WebhookSecretFile holds the key of the webhook's HMAC. Optional:
	// without it every notice is refused as unsigned.
	WebhookSecretFile string
	// Defaults for the POS's options; the POS may override each.
	EPOS        string
	RedirectURL string
	CancelURL   string
	WebhookURL  string
	Timeouts    Timeouts
	Logger      *slog.Logger     // requests and answers at debug; nil discards
	Now         func() time.Time // clock for ExpiresAt; nil is time.Now
}

// Client is Alif's hosted checkout as a payments.Provider. It also
// implements payments.Refunder (full refunds only), payments.Verifier and
// payments.Prober.
//
// It is NOT a payments.Finder: Alif has no call that looks a session up by
// our order id (meta is only echoed back), so after a create whose outcome
// is unknown the saga must put the payment to a person, who can find the
// session by the order id in its meta in Alif's merchant cabinet. Nor is it
// a payments.Canceler: Alif has no call to close a session; it lapses after
// five hours. It is safe for concurrent use.
type Client struct {
	base     string
	checkout string
	token    string
	secret   []byte
	defaults Config
	timeouts Timeouts
	now      func() time.Time
	http     *http.Client
	tr       *http.Transport
	log      *slog.Logger
}

var (
	_ payments.Provider = (*Client)(nil)
	_ payments.Refunder = (*Client)(nil)
	_ payments.Verifier = (*Client)(nil)
	_ payments.Prober   = (*Client)(nil)
)

// New reads the token (and webhook secret) files, checks the addresses and
// the default URLs, and builds a client. It does not contact Alif.
func New(cfg Config) (*Client, error) {
	base, err := serviceURL("api_url", cfg.APIURL)
	if err != nil {
		return nil, err
	}
	checkout, err := serviceURL("checkout_url", cfg.CheckoutURL)
	if err != nil {
		return nil, err
	}
	if cfg.TokenFile == "" {
		return nil, errors.New("alif: token_file is required")
	}
	tok, err := readSecret("token_file", cfg.TokenFile)
	if err != nil {
		return nil, err
	}
	var secret []byte
	if cfg.WebhookSecretFile != "" {
		s, err := readSecret("webhook_secret_file", cfg.WebhookSecretFile)
		if err != nil {
			return nil, err
		}
		secret = []byte(s)
	}
	for _, u := range []struct{ key, val string }{
		{"redirect_url", cfg.RedirectURL}, {"cancel_url", cfg.CancelURL}, {"webhook_url", cfg.WebhookURL}} {
		if u.val == "" {
			continue // the POS must then send it (webhook_url stays optional)
		}
		if err := checkHTTPS(u.val); err != nil {
			return nil, fmt.Errorf("alif: %s %q: %v", u.key, u.val, err)
		}
	}
	if cfg.EPOS != "" {
		if err := checkEPOS(cfg.EPOS); err != nil {
			return nil, fmt.Errorf("alif: epos %q: %v", cfg.EPOS, err)
		}
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil // the till talks to Alif directly; no env-proxy surprises
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	return &Client{
		base:     base,
		checkout: checkout,
		token:    tok,
		secret:   secret,
		defaults: cfg,
		timeouts: cfg.Timeouts,
		now:      now,
		http: &http.Client{
			Transport: tr,
			// A redirect would turn a POST into a GET elsewhere; refuse it.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		tr:  tr,
		log: log.With("provider", Name),
	}, nil
}

// serviceURL accepts https, or plain http to a loopback host (the sandbox).
func serviceURL(key, s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("alif: %s %q: want https://host[:port][/path]", key, s)
	}
	switch u.Scheme {
	case "https":
	case "http":
		if ip := net.ParseIP(u.Hostname()); u.Hostname() != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return "", fmt.Errorf("alif: %s %q: plain http is allowed to loopback only (the sandbox)", key, s)
		}
	default:
		return "", fmt.Errorf("alif: %s %q: want https://", key, s)
	}
	return strings.TrimSuffix(s, "/"), nil
}

// readSecret reads a one-line secret; errors name the file, never the content.
func readSecret(key, path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("alif: %s: %w", key, err)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("alif: %s %s is empty", key, path)
	}
	if len(s) > 4096 {
		return "", fmt.Errorf("alif: %s %s: longer than 4096 bytes", key, path)
	}
	for _, r := range s {
		if r <= ' ' || r == 0x7f {
			return "", fmt.Errorf("alif: %s %s: one line without spaces or control characters expected", key, path)
		}
	}
	return s, nil
}

// Name is "alif".
func (c *Client) Name() string { return Name }

// Close drops idle connections.
func (c *Client) Close() { c.tr.CloseIdleConnections() }

// FullRefundOnly: Alif's refund call takes the session id only.
func (c *Client) FullRefundOnly() bool { return true }

// Check validates an order before anything is stored or sent.
func (c *Client) Check(o payments.Order) error {
	_, err := c.buildCreate(o)
	return err
}

// Create makes the checkout session. An ambiguous error means the session
// may exist: Alif cannot be asked by our id, so the saga must not create
// again but put the payment to a person.
func (c *Client) Create(ctx context.Context, o payments.Order) (payments.Ref, error) {
	req, err := c.buildCreate(o)
	if err != nil {
		return payments.Ref{}, err
	}
	var out wire.CreateResponse
	err = c.call(ctx, OpCreate, wire.PathCreate, o.ID, req, func(body []byte) error {
		if err := json.Unmarshal(body, &out); err != nil {
			return err
		}
		if out.ID == "" || len(out.ID) > 256 {
			return errors.New("the answer names no session id")
		}
		return nil
	})
	if err != nil {
		return payments.Ref{}, err
	}
	// The session's five hours are counted from the answer, which comes
	// after Alif made the session: our ExpiresAt is never before Alif's.
	checkout := c.checkout + "?" + wire.CheckoutParam + "=" + url.QueryEscape(out.ID)
	return payments.Ref{
		OrderID:     o.ID,
		ProviderID:  out.ID,
		CheckoutURL: checkout,
		QRText:      checkout,
		ExpiresAt:   c.now().Add(wire.SessionTTL),
	}, nil
}

// Status asks where the session's payment is.
func (c *Client) Status(ctx context.Context, r payments.Ref) (payments.Status, error) {
	if r.ProviderID == "" {
		return payments.Status{}, &Error{Op: OpStatus, Class: ClassRejected, Message: "the ref has no session id"}
	}
	var st payments.Status
	err := c.call(ctx, OpStatus, wire.PathStatus, r.ProviderID, wire.IDRequest{ID: r.ProviderID}, func(body []byte) (err error) {
		st, err = decodeStatus(body, r.ProviderID, r.ExpiresAt, c.now())
		return err
	})
	return st, err
}

// Refund returns the whole payment (Alif refunds only in full). It reads
// the status first: a refund already done is reported without sending
// another; an amount other than the paid one is refused before sending.
// An ambiguous error: ask Status (REVERTED is Canceled).
func (c *Client) Refund(ctx context.Context, r payments.Ref, amount payments.Amount) (payments.Status, error) {
	st, err := c.Status(ctx, r)
	if err != nil {
		return payments.Status{}, err
	}
	if wire.StatusMeaning(st.Raw) == wire.MeaningReverted {
		return st, nil
	}
	refuse := func(format string, args ...any) (payments.Status, error) {
		return st, &Error{Op: OpRefund, Class: ClassRejected, Message: fmt.Sprintf(format, args...)}
	}
	if st.State != payments.Paid {
		return refuse("only a paid session can be refunded; it is %s (%s)", st.State, st.Raw)
	}
	if st.Paid.IsZero() {
		return refuse("Alif did not say how much was paid; refund by hand in Alif's cabinet")
	}
	if amount != st.Paid {
		return refuse("Alif refunds only the whole payment: %s paid, %s asked", st.Paid, amount)
	}
	err = c.call(ctx, OpRefund, wire.PathRefund, r.ProviderID, wire.IDRequest{ID: r.ProviderID}, func(body []byte) (err error) {
		st, err = decodeStatus(body, r.ProviderID, r.ExpiresAt, c.now())
		return err
	})
	return st, err
}

// Probe checks the token with a status call on an id that cannot exist
// (wire.ProbeID): "not found" means the token was accepted.
func (c *Client) Probe(ctx context.Context) error {
	err := c.call(ctx, OpStatus, wire.PathStatus, "probe", wire.IDRequest{ID: wire.ProbeID}, nil)
	if err == nil || errors.Is(err, payments.ErrNotFound) {
		return nil
	}
	return err
}

// VerifyNotice checks a webhook: header Signature must be base64 of
// HMAC-SHA256(secret, body) over the raw bytes, compared in constant time.
// Unsigned or wrong is payments.ErrUnauthorized (the API answers 401). A
// valid notice names its session; it is only a hint to ask Status.
func (c *Client) VerifyNotice(h http.Header, _ url.Values, body []byte) (payments.Ref, error) {
	unauth := func(msg string) (payments.Ref, error) {
		c.log.Debug("alif notice refused", "reason", msg, "bytes", len(body))
		return payments.Ref{}, &Error{Op: OpNotice, Class: ClassUnauthorized, Message: msg}
	}
	if len(c.secret) == 0 {
		return unauth("no webhook secret configured")
	}
	sig := h.Get(wire.HeaderSignature)
	if sig == "" {
		return unauth("unsigned notice")
	}
	got, err := base64.StdEncoding.DecodeString(sig)
	if err != nil {
		return unauth("signature is not base64")
	}
	m := hmac.New(sha256.New, c.secret)
	m.Write(body)
	if !hmac.Equal(got, m.Sum(nil)) {
		return unauth("wrong signature")
	}
	ref, err := decodeNotice(body)
	if err != nil {
		return payments.Ref{}, &Error{Op: OpNotice, Class: ClassRejected, Message: "signed notice unreadable", Err: err}
	}
	c.log.Debug("alif notice verified", "session", ref.ProviderID, "order_id", ref.OrderID)
	return ref, nil
}

// call sends one request and classifies its outcome. decode reads a 2xx
// body that carries no error object; a body it cannot read makes the call
// ambiguous (the change was likely made, its result is unknown).
func (c *Client) call(ctx context.Context, op Op, path, id string, in any, decode func([]byte) error) error {
	body, err := json.Marshal(in)
	if err != nil {
		return &Error{Op: op, Class: ClassRejected, Message: "encode request", Err: err}
	}
	status, data, err := c.send(ctx, op, path, id, body)
	if err != nil {
		return err
	}
	if e := errorFromResponse(op, status, data); e != nil {
		return e
	}
	if decode != nil {
		if err := decode(data); err != nil {
			return &Error{Op: op, Class: ClassAmbiguous, HTTPStatus: status, Message: "unreadable success answer", Err: err}
		}
	}
	return nil
}

// send performs one exchange under the op's timeout and classifies a
// transport failure by whether the request was written.
func (c *Client) send(ctx context.Context, op Op, path, id string, body []byte) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeouts.of(op))
	defer cancel()
	var written atomic.Bool
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		// WroteHeaders, not WroteRequest: once any byte left, Alif may act.
		WroteHeaders: func() { written.Store(true) },
	})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, &Error{Op: op, Class: ClassRejected, Message: "build request", Err: err}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set(wire.HeaderToken, c.token)
	ids := []any{"op", string(op), "id", id}
	// Bodies carry no secret (the token rides in a header, never logged).
	c.log.DebugContext(ctx, "alif request", append(ids, "path", path, "body", logText(body))...)
	start := time.Now()
	resp, err := c.http.Do(req)
	if err != nil {
		e := transportError(op, err, written.Load())
		c.log.DebugContext(ctx, "alif exchange failed", append(ids, "class", e.Class.String(), "elapsed", time.Since(start).Round(time.Millisecond), "error", err)...)
		return 0, nil, e
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if err != nil {
		// Headers arrived, the body broke: Alif acted.
		c.log.DebugContext(ctx, "alif answer lost", append(ids, "http_status", resp.StatusCode, "error", err)...)
		return 0, nil, &Error{Op: op, Class: ClassAmbiguous, HTTPStatus: resp.StatusCode, Message: "answer body lost", Err: err}
	}
	c.log.DebugContext(ctx, "alif answer", append(ids, "http_status", resp.StatusCode,
		"elapsed", time.Since(start).Round(time.Millisecond), "body", logText(data))...)
	return resp.StatusCode, data, nil
}

func logText(b []byte) string {
	const maxLog = 2048
	if len(b) > maxLog {
		return clean(string(b[:maxLog]), maxLog) + "…"
	}
	return clean(string(b), maxLog)
}

// transportError: a request never written was not applied; anything after
// the first byte left may have been.
func transportError(op Op, err error, written bool) *Error {
	if !written {
		return &Error{Op: op, Class: ClassUnavailable, Message: "request not sent", Err: err}
	}
	return &Error{Op: op, Class: ClassAmbiguous, Message: "no answer", Err: err}
}
