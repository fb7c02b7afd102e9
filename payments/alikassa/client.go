package alikassa

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"kassa-agent/payments"
	"kassa-agent/payments/alikassa/internal/wire"
)

// Name is the provider's name: the POS's "provider" value and config section.
const Name = "alikassa"

// DefaultBaseURL is the merchant API named in the seed.
const DefaultBaseURL = "https://api-merchant.alikassa.com"

// ExtraField is a create field the config adds to every payment, after the
// seed's fields (some services want browser fields such as
// customer_browser_user_agent).
type ExtraField struct {
	Name  string
	Value string
}

// Config configures a Client. Secrets are read from the files named here;
// their contents never reach a log.
type Config struct {
	BaseURL string // default DefaultBaseURL
	Account string // the account uuid (Account header)

	PrivateKeyFile string // the payments key pair's private.pem
	PasswordFile   string // its password.txt; empty for an unencrypted key
	// NotifyPublicKeyFile is the notifications key pair's public.pem; empty
	// disables VerifyNotice (every notice is refused).
	NotifyPublicKeyFile string
	// SignatureHash is "sha1" (default) or "sha256", for requests and
	// notifications alike.
	SignatureHash string

	Currency     payments.Currency // default BDT
	Service      string            // default payment_card_bdt_hpp
	CustomerCode string            // default bank code; the POS may send another
	CustomerIP   string            // default buyer IP; the POS may send another
	Lifetime     time.Duration     // default 15 min; 900–3600 s

	SuccessRedirectID, FailRedirectID, NotificationID    int64
	SuccessRedirectURL, FailRedirectURL, NotificationURL string
	ExtraFields                                          []ExtraField
	// NoticeFields overrides the signed notification keys and their order
	// (default: wire.NoticeFields, see NoticeFields()).
	NoticeFields []string

	// ExpiryGrace is how long after the page's lifetime a payment still
	// "wait" is kept processing before it is reported expired, for a buyer
	// who pressed pay in the last second; default 1 min.
	ExpiryGrace time.Duration
	Timeout     time.Duration    // each HTTP exchange; default 15 s
	Now         func() time.Time // default time.Now
	Logger      *slog.Logger     // requests and answers at debug; nil discards
}

// NoticeFields is the default list of signed notification keys, in order.
func NoticeFields() []string { return slices.Clone(wire.NoticeFields) }

// Client is the AliKassa provider. It is safe for concurrent use.
type Client struct {
	cfg      Config
	base     string
	key      *rsa.PrivateKey
	notify   *rsa.PublicKey
	hash     crypto.Hash
	currency payments.Currency
	lifetime time.Duration
	grace    time.Duration
	timeout  time.Duration
	now      func() time.Time
	notice   []string
	http     *http.Client
	tr       *http.Transport
	log      *slog.Logger
}

var (
	_ payments.Provider = (*Client)(nil)
	_ payments.Finder   = (*Client)(nil)
	_ payments.Verifier = (*Client)(nil)
	_ payments.Prober   = (*Client)(nil)
)

// New reads the key files, checks the config and builds a client. It does
// not contact the service (Probe does).
func New(cfg Config) (*Client, error) {
	if cfg.BaseURL == "" {
		cfg.BaseURL = DefaultBaseURL
	}
	u, err := url.Parse(cfg.BaseURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("alikassa: base URL %q: want http(s)://host[:port]", cfg.BaseURL)
	}
	if cfg.Account == "" || !printableASCII(cfg.Account) {
		return nil, errors.New("alikassa: account: the account uuid from the cabinet is required")
	}
	if cfg.PrivateKeyFile == "" {
		return nil, errors.New("alikassa: private key file: required")
	}
	c := &Client{cfg: cfg, base: strings.TrimSuffix(cfg.BaseURL, "/")}
	if c.hash, err = parseHash(cfg.SignatureHash); err != nil {
		return nil, err
	}
	if c.key, err = LoadPrivateKey(cfg.PrivateKeyFile, cfg.PasswordFile); err != nil {
		return nil, err
	}
	if cfg.NotifyPublicKeyFile != "" {
		if c.notify, err = LoadPublicKey(cfg.NotifyPublicKeyFile); err != nil {
			return nil, fmt.Errorf("notifications public key: %w", err)
		}
	}
	c.currency = cfg.Currency
	if c.currency == "" {
		c.currency = payments.BDT
	}
	if !c.currency.Valid() {
		return nil, fmt.Errorf("alikassa: currency %q: %w", c.currency, payments.ErrCurrency)
	}
	if c.cfg.Service == "" {
		c.cfg.Service = wire.ServiceBDT
	}
	c.lifetime = cfg.Lifetime
	if c.lifetime == 0 {
		c.lifetime = 15 * time.Minute
	}
	if s := c.lifetime / time.Second; c.lifetime%time.Second != 0 || s < wire.MinLifetime || s > wire.MaxLifetime {
		return nil, fmt.Errorf("alikassa: lifetime %s: want whole seconds, 15m–1h", c.lifetime)
	}
	if c.grace = cfg.ExpiryGrace; c.grace <= 0 {
		c.grace = time.Minute
	}
	if c.timeout = cfg.Timeout; c.timeout <= 0 {
		c.timeout = 15 * time.Second
	}
	if c.now = cfg.Now; c.now == nil {
		c.now = time.Now
	}
	c.notice = cfg.NoticeFields
	if len(c.notice) == 0 {
		c.notice = wire.NoticeFields
	}
	if slices.Contains(c.notice, wire.NoticeSign) || !slices.Contains(c.notice, wire.NoticeOrderID) {
		return nil, errors.New("alikassa: notice fields: must name order_id and must not name sign")
	}
	for _, x := range cfg.ExtraFields {
		if x.Name == "" || slices.Contains(wire.CreateFieldOrder, x.Name) {
			return nil, fmt.Errorf("alikassa: extra field %q: empty or one the client already sends", x.Name)
		}
	}
	// Defaults are checked as the POS's values would be, so a bad config
	// fails at start rather than at the first sale.
	if cfg.CustomerIP != "" {
		if addr, err := netip.ParseAddr(cfg.CustomerIP); err != nil || addr.Zone() != "" {
			return nil, fmt.Errorf("alikassa: config: customer_ip %q is not an IP address", cfg.CustomerIP)
		}
	}
	if msg := textProblem(c.cfg.Service, wire.MaxService, true); msg != "" {
		return nil, fmt.Errorf("alikassa: config: service: %s", msg)
	}
	if msg := textProblem(cfg.CustomerCode, wire.MaxCustomerCode, false); msg != "" {
		return nil, fmt.Errorf("alikassa: config: customer_code: %s", msg)
	}
	for _, x := range []struct{ name, v string }{
		{"success_redirect_url", cfg.SuccessRedirectURL}, {"fail_redirect_url", cfg.FailRedirectURL},
		{"notification_url", cfg.NotificationURL},
	} {
		if x.v != "" {
			if err := checkURL(x.name, x.v); err != nil {
				return nil, fmt.Errorf("alikassa: config: %w", err)
			}
		}
	}
	c.tr = http.DefaultTransport.(*http.Transport).Clone()
	c.tr.Proxy = nil // the till talks to the service directly
	c.http = &http.Client{
		Transport: c.tr,
		// A redirect would replay a signed POST elsewhere; refuse it.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	c.log = cfg.Logger
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	c.log = c.log.With("provider", Name)
	if u.Scheme == "http" {
		c.log.Warn("base URL is plain http", "base_url", cfg.BaseURL)
	}
	return c, nil
}

// Name is "alikassa".
func (c *Client) Name() string { return Name }

// Close drops idle connections.
func (c *Client) Close() { c.tr.CloseIdleConnections() }

// Check validates an order before anything is stored or sent.
func (c *Client) Check(o payments.Order) error {
	_, err := c.build(o)
	return err
}

// Create starts the payment, keyed by o.ID as the order_id. An ambiguous
// error means it may exist: never create again, call Find.
func (c *Client) Create(ctx context.Context, o payments.Order) (payments.Ref, error) {
	req, err := c.build(o)
	if err != nil {
		return payments.Ref{}, err
	}
	body, err := wire.Object(req.fields)
	if err != nil {
		return payments.Ref{}, &Error{Op: OpCreate, Class: ClassRejected, Message: "encode request", Err: err}
	}
	var lifetime int64
	for _, f := range req.fields {
		if f.Key == wire.FieldLifetime {
			lifetime = f.Value.(int64)
		}
	}
	start := c.now()
	resp, err := c.call(ctx, OpCreate, wire.PathCreate, body, o.ID)
	if err != nil {
		return payments.Ref{}, err
	}
	if resp.status < 200 || resp.status > 299 {
		return payments.Ref{}, c.refusal(OpCreate, resp, req.fields)
	}
	var out wire.CreateResponse
	if err := json.Unmarshal(resp.body, &out); err != nil || out.URL == "" {
		if err == nil {
			err = errors.New("no payment url")
		}
		return payments.Ref{}, &Error{Op: OpCreate, Class: ClassAmbiguous, HTTPStatus: resp.status, Message: "unreadable success answer", Err: err}
	}
	return payments.Ref{
		OrderID:     o.ID,
		ProviderID:  idText(out.ID),
		CheckoutURL: out.URL,
		QRText:      out.URL,
		ExpiresAt:   start.Add(time.Duration(lifetime) * time.Second),
	}, nil
}

// Status asks where the payment is, by its order id.
func (c *Client) Status(ctx context.Context, r payments.Ref) (payments.Status, error) {
	_, st, err := c.status(ctx, r)
	return st, err
}

// Find looks a payment up by our order id after a create whose outcome is
// unknown. ErrNotFound when the service has none. The returned Ref's
// ExpiresAt is now plus the longest lifetime the service allows (3600 s):
// the payment was created before now with a lifetime we no longer know
// (the POS may have chosen it), so it lapses no later than that.
func (c *Client) Find(ctx context.Context, orderID string) (payments.Ref, payments.Status, error) {
	if orderID == "" {
		return payments.Ref{}, payments.Status{}, &Error{Op: OpStatus, Class: ClassRejected, Message: "order id is required"}
	}
	return c.status(ctx, payments.Ref{OrderID: orderID, ExpiresAt: c.now().Add(wire.MaxLifetime * time.Second)})
}

func (c *Client) status(ctx context.Context, r payments.Ref) (payments.Ref, payments.Status, error) {
	if r.OrderID == "" {
		return r, payments.Status{}, &Error{Op: OpStatus, Class: ClassRejected, Message: "order id is required"}
	}
	body, err := json.Marshal(wire.StatusRequest{OrderID: r.OrderID})
	if err != nil {
		return r, payments.Status{}, &Error{Op: OpStatus, Class: ClassRejected, Message: "encode request", Err: err}
	}
	resp, err := c.call(ctx, OpStatus, wire.PathStatus, body, r.OrderID)
	if err != nil {
		return r, payments.Status{}, err
	}
	if resp.status < 200 || resp.status > 299 {
		return r, payments.Status{}, c.refusal(OpStatus, resp, nil)
	}
	ans, err := decodeStatus(resp.body, c.currency)
	if err != nil {
		return r, payments.Status{}, &Error{Op: OpStatus, Class: ClassAmbiguous, HTTPStatus: resp.status, Message: "unreadable status answer", Err: err}
	}
	if ans.orderID != "" && ans.orderID != r.OrderID {
		return r, payments.Status{}, &Error{Op: OpStatus, Class: ClassAmbiguous, HTTPStatus: resp.status,
			Message: fmt.Sprintf("status answer is about order %q, asked for %q", clip(ans.orderID), clip(r.OrderID))}
	}
	if r.ProviderID == "" {
		r.ProviderID = ans.id
	}
	if r.CheckoutURL == "" {
		r.CheckoutURL, r.QRText = ans.url, ans.url
	}
	return r, ans.state(r.ExpiresAt, c.now(), c.grace), nil
}

// Probe calls account/info: a harmless signed call that checks the
// account, key and signature end to end, and that payments are allowed.
func (c *Client) Probe(ctx context.Context) error {
	body, _ := json.Marshal(wire.AccountInfoRequest{})
	resp, err := c.call(ctx, OpAccountInfo, wire.PathAccountInfo, body, "")
	if err != nil {
		return err
	}
	if resp.status < 200 || resp.status > 299 {
		return c.refusal(OpAccountInfo, resp, nil)
	}
	var info wire.AccountInfoResponse
	if err := json.Unmarshal(resp.body, &info); err != nil {
		return &Error{Op: OpAccountInfo, Class: ClassAmbiguous, HTTPStatus: resp.status, Message: "unreadable answer", Err: err}
	}
	if !wire.Truthy(info.IsAllowedPayment) {
		return &Error{Op: OpAccountInfo, Class: ClassRejected, HTTPStatus: resp.status, Message: "the account is not allowed to take payments (is_allowed_payment)"}
	}
	return nil
}

type response struct {
	status int
	body   []byte
}

// call signs body, sends it and reads the answer, classifying transport
// failures by whether the request was written.
func (c *Client) call(ctx context.Context, op Op, path string, body []byte, orderID string) (response, error) {
	sig, err := sign(c.key, c.hash, body)
	if err != nil {
		return response{}, &Error{Op: op, Class: ClassRejected, Message: "cannot sign the request", Err: err}
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var written atomic.Bool
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		// Once the headers left, the service may act on the request.
		WroteHeaders: func() { written.Store(true) },
	})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+path, bytes.NewReader(body))
	if err != nil {
		return response{}, &Error{Op: op, Class: ClassRejected, Message: "build request", Err: err}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set(wire.HeaderAccount, c.cfg.Account)
	req.Header.Set(wire.HeaderSign, base64.StdEncoding.EncodeToString(sig))
	ids := []any{"op", string(op)}
	if orderID != "" {
		ids = append(ids, "order_id", orderID)
	}
	// The body holds no secret (the signature and account travel in
	// headers, which are never logged).
	c.log.DebugContext(ctx, "alikassa request", append(slices.Clip(ids), "path", path, "body", logText(body))...)
	start := time.Now()
	resp, err := c.http.Do(req)
	var data []byte
	if err == nil {
		data, err = io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if err != nil {
			// Headers arrived, the body broke: the service acted.
			return response{}, &Error{Op: op, Class: ClassAmbiguous, HTTPStatus: resp.StatusCode, Message: "answer body lost", Err: err}
		}
	}
	elapsed := time.Since(start).Round(time.Millisecond)
	if err != nil {
		e := transportError(op, err, written.Load())
		c.log.DebugContext(ctx, "alikassa exchange failed", append(slices.Clip(ids), "class", e.Class.String(), "elapsed", elapsed, "error", err)...)
		return response{}, e
	}
	c.log.DebugContext(ctx, "alikassa answer", append(slices.Clip(ids), "http_status", resp.StatusCode, "elapsed", elapsed, "body", logText(data))...)
	if resp.StatusCode >= 500 {
		return response{}, &Error{Op: op, Class: ClassAmbiguous, HTTPStatus: resp.StatusCode, Message: clean(wire.ParseError(data).Message)}
	}
	return response{status: resp.StatusCode, body: data}, nil
}

// transportError: a request never written was not applied; anything after
// the headers left may have been.
func transportError(op Op, err error, written bool) *Error {
	var dns *net.DNSError
	if !written || errors.As(err, &dns) {
		return &Error{Op: op, Class: ClassUnavailable, Message: "request not sent", Err: err}
	}
	return &Error{Op: op, Class: ClassAmbiguous, Message: "no answer", Err: err}
}

// refusal classifies a non-2xx, non-5xx answer. fields are the create
// fields sent, to name the refused one as the POS knows it.
func (c *Client) refusal(op Op, resp response, fields []wire.Field) error {
	eb := wire.ParseError(resp.body)
	e := &Error{Op: op, HTTPStatus: resp.status, Message: clean(eb.Message)}
	switch {
	case resp.status == http.StatusUnauthorized || resp.status == http.StatusForbidden:
		e.Class = ClassUnauthorized
	case resp.status == http.StatusRequestTimeout || resp.status == http.StatusTooManyRequests:
		e.Class = ClassUnavailable
	case op == OpStatus && (resp.status == http.StatusNotFound ||
		(resp.status == http.StatusBadRequest && len(eb.Errors[wire.FieldOrderID]) > 0)):
		e.Class = ClassNotFound
	default:
		e.Class = ClassRejected
		if e.Message == "" {
			e.Message = fmt.Sprintf("unexpected HTTP %d", resp.status)
		}
		if op == OpCreate && len(eb.Errors) > 0 {
			e.Field = refusedField(eb.Errors, fields)
		}
	}
	return e
}

// refusedField names the first refused field (in sending order, then by
// name for fields we did not send) as the POS knows it; the message lists
// every refused field.
func refusedField(errs map[string][]string, sent []wire.Field) *payments.FieldError {
	var names []string
	for _, f := range sent {
		if _, ok := errs[f.Key]; ok {
			names = append(names, f.Key)
		}
	}
	var rest []string
	for k := range errs {
		if !slices.Contains(names, k) {
			rest = append(rest, k)
		}
	}
	slices.Sort(rest)
	names = append(names, rest...)
	var msg []string
	for _, n := range names {
		msg = append(msg, n+": "+strings.Join(errs[n], " "))
	}
	return &payments.FieldError{Field: posField(names[0]), Message: clean("AliKassa refused " + strings.Join(msg, "; "))}
}

// posField maps a provider field to the name the POS sent it under: the
// amount and the description are the order's own, everything else
// (order_id included) is named as an AliKassa field.
func posField(provider string) string {
	switch provider {
	case wire.FieldAmount:
		return "amount"
	case wire.FieldDesc:
		return "desc"
	}
	return field(provider)
}

// idText is a JSON id (number or string) as text.
func idText(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var n json.Number
	if json.Unmarshal(raw, &n) == nil {
		return n.String()
	}
	return ""
}

// logText is a body for the debug log: JSON objects as they are (no field
// of ours or the service's is secret), anything else by size only.
func logText(body []byte) string {
	if len(body) == 0 {
		return ""
	}
	if !json.Valid(body) || body[0] != '{' {
		return fmt.Sprintf("[%d bytes, not a JSON object]", len(body))
	}
	const max = 2048
	if len(body) > max {
		return string(body[:max]) + "…"
	}
	return string(body)
}

// clean keeps a service message printable and short.
func clean(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	return clip(s)
}

func clip(s string) string {
	const max = 300
	if len(s) > max {
		for i := max; i > 0; i-- {
			if s[i]&0xc0 != 0x80 {
				return s[:i] + "…"
			}
		}
	}
	return s
}
