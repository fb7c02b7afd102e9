package smartpay

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptrace"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"kassa-agent/payments/smartpay/internal/wire"
)

// DefaultCodePattern is the regular expression that recognises a Smart Pay
// QR payload among other scans until the real structure is known: a
// URL-like "https://qr.smartpay.example/c/<16–64 of [A-Za-z0-9_-]>". The
// sandbox issues codes that match it.
const DefaultCodePattern = wire.DefaultCodePattern

// TestBaseURL is the provider's test environment named in the seed.
const TestBaseURL = "http://kassa-api.test.r-proc.net"

// Timeouts bound each HTTP exchange (not the caller's whole operation).
// Zero fields take the defaults.
type Timeouts struct {
	Auth    time.Duration // default 10 s
	Commit  time.Duration // default 5 s: the commit must be fast
	Release time.Duration // default 20 s
	Status  time.Duration // default 5 s
	Confirm time.Duration // default 10 s
	Fiscal  time.Duration // default 10 s
	Cancel  time.Duration // default 10 s
}

func (t Timeouts) of(op Op) time.Duration {
	pick := func(v, def time.Duration) time.Duration {
		if v > 0 {
			return v
		}
		return def
	}
	switch op {
	case OpAuth:
		return pick(t.Auth, 10*time.Second)
	case OpCommit:
		return pick(t.Commit, 5*time.Second)
	case OpRelease:
		return pick(t.Release, 20*time.Second)
	case OpStatus:
		return pick(t.Status, 5*time.Second)
	case OpConfirm:
		return pick(t.Confirm, 10*time.Second)
	case OpFiscal:
		return pick(t.Fiscal, 10*time.Second)
	}
	return pick(t.Cancel, 10*time.Second)
}

// Config configures a Client. Secrets are read from the files named here;
// their contents never reach a log.
type Config struct {
	BaseURL  string // e.g. "https://kassa-api.r-proc.net"
	CertFile string // PEM client certificate (chain allowed)
	KeyFile  string // PEM private key of the certificate
	CAFile   string // optional PEM CA bundle for the server; system roots when empty
	Timeouts Timeouts
	Logger   *slog.Logger // requests and responses at debug; nil discards
}

// Client talks to the kassa API. It is safe for concurrent use.
type Client struct {
	base     string
	http     *http.Client
	tr       *http.Transport
	timeouts Timeouts
	log      *slog.Logger
	cert     CertInfo

	authMu sync.Mutex
	authed bool
	gen    uint64 // bumps on every successful auth
}

// New loads the certificate, key and CA files and builds a client. It does
// not contact the service; the first call authenticates.
func New(cfg Config) (*Client, error) {
	u, err := url.Parse(cfg.BaseURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("smartpay: base URL %q: want http(s)://host[:port]", cfg.BaseURL)
	}
	if cfg.CertFile == "" || cfg.KeyFile == "" {
		return nil, errors.New("smartpay: client certificate and key files are required")
	}
	pair, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
	if err != nil {
		// The tls error names the problem without quoting key material.
		return nil, fmt.Errorf("smartpay: client certificate %s / key %s: %w", cfg.CertFile, cfg.KeyFile, err)
	}
	leaf := pair.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return nil, fmt.Errorf("smartpay: client certificate %s: %w", cfg.CertFile, err)
		}
	}
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{pair}}
	if cfg.CAFile != "" {
		pemData, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("smartpay: CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pemData) {
			return nil, fmt.Errorf("smartpay: CA file %s: no certificates", cfg.CAFile)
		}
		tlsCfg.RootCAs = pool
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tlsCfg
	tr.Proxy = nil // the till talks to the service directly; no env-proxy surprises
	jar, _ := cookiejar.New(nil)
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("provider", "smartpay")
	if u.Scheme == "http" {
		log.Warn("base URL is plain http: the client certificate cannot be presented", "base_url", cfg.BaseURL)
	}
	c := &Client{
		base: strings.TrimSuffix(cfg.BaseURL, "/"),
		http: &http.Client{
			Transport: tr,
			Jar:       jar,
			// A redirect would turn a POST into a GET elsewhere; refuse it.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		tr:       tr,
		timeouts: cfg.Timeouts,
		log:      log,
		cert:     certInfo(leaf),
	}
	return c, nil
}

// Certificate describes the client certificate in use.
func (c *Client) Certificate() CertInfo { return c.cert }

// Close drops idle connections.
func (c *Client) Close() { c.tr.CloseIdleConnections() }

// Authenticate calls /v1/auth now (diagnostics use it; the calls below
// authenticate by themselves when needed).
func (c *Client) Authenticate(ctx context.Context) error {
	c.authMu.Lock()
	defer c.authMu.Unlock()
	return c.authLocked(ctx)
}

// Commit fixes a scanned code for this kassa's purchase and returns the
// service's purchase id. Call it the moment the code is scanned.
func (c *Client) Commit(ctx context.Context, code, kassaPurchaseID string) (string, error) {
	if code == "" || len(code) > 4096 || kassaPurchaseID == "" {
		return "", invalid(OpCommit, "code (1–4096 bytes) and kassa purchase id are required")
	}
	var out wire.CommitResponse
	err := c.call(ctx, OpCommit, wire.PathCommit, kassaPurchaseID, "",
		wire.CommitRequest{Code: code, KassaPurchaseID: kassaPurchaseID}, func(body []byte) error {
			if err := json.Unmarshal(body, &out); err != nil {
				return err
			}
			if out.PurchaseID == "" {
				return errors.New("response has no purchase id")
			}
			return nil
		})
	if err != nil {
		return "", err
	}
	return out.PurchaseID, nil
}

// Release starts the payment of amount kopecks. An ambiguous error means
// the money may be moving: never call Release again, poll Status.
func (c *Client) Release(ctx context.Context, purchaseID string, amount int64) (Status, error) {
	if purchaseID == "" || amount <= 0 {
		return Status{}, invalid(OpRelease, "purchase id and a positive amount are required")
	}
	var st Status
	err := c.call(ctx, OpRelease, wire.PathRelease, "", purchaseID,
		wire.ReleaseRequest{PurchaseID: purchaseID, Amount: amount}, func(body []byte) (err error) {
			st, err = decodeStatus(body)
			return err
		})
	return st, err
}

// Status asks where the purchase is.
func (c *Client) Status(ctx context.Context, purchaseID string) (Status, error) {
	if purchaseID == "" {
		return Status{}, invalid(OpStatus, "purchase id is required")
	}
	var st Status
	err := c.call(ctx, OpStatus, wire.PathStatus, "", purchaseID,
		wire.PurchaseRequest{PurchaseID: purchaseID}, func(body []byte) (err error) {
			st, err = decodeStatus(body)
			return err
		})
	return st, err
}

// Confirm tells the service the kassa completed the purchase (kassa/status
// "completed"). Safe to repeat.
func (c *Client) Confirm(ctx context.Context, purchaseID string) error {
	if purchaseID == "" {
		return invalid(OpConfirm, "purchase id is required")
	}
	return c.call(ctx, OpConfirm, wire.PathConfirm, "", purchaseID,
		wire.ConfirmRequest{PurchaseID: purchaseID, Status: wire.ConfirmCompleted}, nil)
}

// FiscalData is the receipt's fiscal data stored at the service.
type FiscalData struct {
	PurchaseID   string
	KKTRegNumber string // the register's registration number (РН ККТ)
	FiscalSign   string // the receipt's fiscal sign (ФП/ФПД), digits
	FNNumber     string // the fiscal drive number
	FDNumber     uint32 // the fiscal document number
	ReceiptTime  time.Time
	Amount       int64 // kopecks
}

// Fiscal stores the receipt's fiscal data at the service. Safe to repeat.
func (c *Client) Fiscal(ctx context.Context, d FiscalData) error {
	if d.PurchaseID == "" || d.KKTRegNumber == "" || d.FiscalSign == "" || d.FNNumber == "" ||
		d.FDNumber == 0 || d.ReceiptTime.IsZero() || d.Amount <= 0 {
		return invalid(OpFiscal, "every fiscal field is required and the amount must be positive")
	}
	return c.call(ctx, OpFiscal, wire.PathFiscal, "", d.PurchaseID, wire.FiscalRequest{
		PurchaseID:   d.PurchaseID,
		KKTRegNumber: d.KKTRegNumber,
		FiscalSign:   d.FiscalSign,
		FNNumber:     d.FNNumber,
		FDNumber:     d.FDNumber,
		ReceiptTime:  d.ReceiptTime.Format(wire.ReceiptTimeLayout),
		Amount:       d.Amount,
	}, nil)
}

// Cancel abandons a committed purchase before release.
func (c *Client) Cancel(ctx context.Context, purchaseID string) error {
	if purchaseID == "" {
		return invalid(OpCancel, "purchase id is required")
	}
	return c.call(ctx, OpCancel, wire.PathCancel, "", purchaseID,
		wire.PurchaseRequest{PurchaseID: purchaseID}, nil)
}

// notSent is the error of a call that never left because authentication
// failed first (on the first call, or on the re-login after a 401, which
// itself was not applied). However the auth call failed — a 5xx or a timeout
// is ambiguous for auth — op certainly was not applied: sending it again is
// safe, and must not be taken for a lost release.
func notSent(op Op, authErr error) error {
	class := ClassUnavailable
	if IsUnauthorized(authErr) {
		class = ClassUnauthorized
	}
	return &Error{Op: op, Class: class, Message: "not sent: authentication failed", Err: authErr}
}

func invalid(op Op, msg string) error {
	return &Error{Op: op, Class: ClassRejected, Message: "invalid argument: " + msg}
}

// call runs one API call: authenticate if we never did, send; on 401
// authenticate once more and send once more. decode reads a 2xx body; a
// body it cannot read makes the call ambiguous (the change was likely made,
// we cannot tell its result).
func (c *Client) call(ctx context.Context, op Op, path, kassaPurchaseID, purchaseID string, in any, decode func([]byte) error) error {
	body, err := json.Marshal(in)
	if err != nil {
		return &Error{Op: op, Class: ClassRejected, Message: "encode request", Err: err}
	}
	ids := []any{"op", string(op)}
	if purchaseID != "" {
		ids = append(ids, "purchase_id", purchaseID)
	}
	if kassaPurchaseID != "" {
		ids = append(ids, "kassa_purchase_id", kassaPurchaseID)
	}
	gen, err := c.session(ctx)
	if err != nil {
		return notSent(op, err)
	}
	resp, err := c.send(ctx, op, path, body, ids)
	if err != nil {
		return err
	}
	if resp.status == http.StatusUnauthorized {
		c.log.DebugContext(ctx, "smartpay session refused; authenticating again", ids...)
		if err := c.reauth(ctx, gen); err != nil {
			return notSent(op, err)
		}
		if resp, err = c.send(ctx, op, path, body, ids); err != nil {
			return err
		}
	}
	if resp.status < 200 || resp.status > 299 {
		return errorFromResponse(op, resp.status, resp.body, resp.secrets)
	}
	if decode != nil {
		if err := decode(resp.body); err != nil {
			return &Error{Op: op, Class: ClassAmbiguous, HTTPStatus: resp.status,
				Message: "unreadable success response", Err: err}
		}
	}
	return nil
}

// session makes sure we authenticated at least once and returns the
// session generation the next request runs under.
func (c *Client) session(ctx context.Context) (uint64, error) {
	c.authMu.Lock()
	defer c.authMu.Unlock()
	if !c.authed {
		if err := c.authLocked(ctx); err != nil {
			return 0, err
		}
	}
	return c.gen, nil
}

// reauth authenticates again unless another call already did since gen.
func (c *Client) reauth(ctx context.Context, gen uint64) error {
	c.authMu.Lock()
	defer c.authMu.Unlock()
	if c.authed && c.gen != gen {
		return nil
	}
	return c.authLocked(ctx)
}

func (c *Client) authLocked(ctx context.Context) error {
	c.authed = false
	body, _ := json.Marshal(wire.AuthRequest{})
	resp, err := c.send(ctx, OpAuth, wire.PathAuth, body, []any{"op", string(OpAuth)})
	if err != nil {
		return err
	}
	if resp.status < 200 || resp.status > 299 {
		e := errorFromResponse(OpAuth, resp.status, resp.body, nil)
		if e.HTTPStatus == http.StatusUnauthorized || e.HTTPStatus == http.StatusForbidden {
			e.Class = ClassUnauthorized
		}
		return e
	}
	if u, _ := url.Parse(c.base); len(c.http.Jar.Cookies(u)) == 0 {
		c.log.WarnContext(ctx, "smartpay auth answered without a session cookie")
	}
	c.authed = true
	c.gen++
	return nil
}

type response struct {
	status  int
	body    []byte
	secrets []string
}

// send performs one HTTP exchange under the op's timeout and classifies
// transport failures by whether the request was written.
func (c *Client) send(ctx context.Context, op Op, path string, body []byte, ids []any) (response, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeouts.of(op))
	defer cancel()
	var written atomic.Bool
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		// WroteHeaders, not WroteRequest: once any byte left, the service
		// may act on the request.
		WroteHeaders: func() { written.Store(true) },
	})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+path, bytes.NewReader(body))
	if err != nil {
		return response{}, &Error{Op: op, Class: ClassRejected, Message: "build request", Err: err}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	ids = slices.Clip(ids) // each log line appends its own attributes
	reqLog, secrets := redactBody(body)
	c.log.DebugContext(ctx, "smartpay request", append(ids, "method", req.Method, "path", path, "body", reqLog)...)
	start := time.Now()
	resp, err := c.http.Do(req)
	var data []byte
	if err == nil {
		data, err = io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if err != nil {
			// Headers arrived but the body broke: the service acted.
			c.log.DebugContext(ctx, "smartpay response body lost", append(ids, "http_status", resp.StatusCode, "error", err)...)
			return response{}, &Error{Op: op, Class: ClassAmbiguous, HTTPStatus: resp.StatusCode, Message: "response body lost", Err: err}
		}
	}
	elapsed := time.Since(start).Round(time.Millisecond)
	if err != nil {
		e := transportError(op, err, written.Load())
		c.log.DebugContext(ctx, "smartpay exchange failed", append(ids, "class", e.Class.String(), "elapsed", elapsed, "error", err)...)
		return response{}, e
	}
	respLog, _ := redactBody(data)
	attrs := append(ids, "http_status", resp.StatusCode, "elapsed", elapsed, "body", scrub(respLog, secrets))
	if names := cookieNames(resp); names != "" {
		attrs = append(attrs, "set_cookie_names", names) // names only, never values
	}
	c.log.DebugContext(ctx, "smartpay response", attrs...)
	return response{status: resp.StatusCode, body: data, secrets: secrets}, nil
}

func cookieNames(resp *http.Response) string {
	var names []string
	for _, ck := range resp.Cookies() {
		names = append(names, ck.Name)
	}
	return strings.Join(names, ",")
}

// transportError classifies a failed exchange. A TLS alert from the server
// is a refusal of our certificate; a request never written was not applied;
// anything after the first byte left may have been applied.
func transportError(op Op, err error, written bool) *Error {
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Op == "remote error" {
		return &Error{Op: op, Class: ClassUnauthorized, Message: "TLS handshake refused by the service (client certificate?)", Err: err}
	}
	var verr *tls.CertificateVerificationError
	if errors.As(err, &verr) {
		return &Error{Op: op, Class: ClassUnavailable, Message: "the service's certificate is not trusted", Err: err}
	}
	if !written {
		return &Error{Op: op, Class: ClassUnavailable, Message: "request not sent", Err: err}
	}
	return &Error{Op: op, Class: ClassAmbiguous, Message: "no answer", Err: err}
}

// errorFromResponse classifies a non-2xx answer.
func errorFromResponse(op Op, status int, body []byte, secrets []string) *Error {
	code, msg := wire.ParseError(body)
	e := &Error{Op: op, HTTPStatus: status, Code: clean(scrub(code, secrets), 100), Message: clean(scrub(msg, secrets), 300)}
	codeRejected := false
	for _, w := range wire.CodeRejectedErrors {
		if strings.EqualFold(code, w) {
			codeRejected = true
		}
	}
	switch {
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		e.Class = ClassUnauthorized
	case status == wire.HTTPCodeRejected && (op == OpCommit || codeRejected):
		e.Class = ClassCodeRejected
	case status == wire.HTTPConflict:
		e.Class = ClassConflict
	case status == http.StatusNotFound:
		e.Class = ClassNotFound
	case status == http.StatusRequestTimeout || status == http.StatusTooManyRequests:
		e.Class = ClassUnavailable
	case status >= 500:
		e.Class = ClassAmbiguous
	case status >= 400:
		e.Class = ClassRejected
	default: // 1xx/3xx: the service did not process the call as asked
		e.Class = ClassRejected
		if e.Message == "" {
			e.Message = fmt.Sprintf("unexpected HTTP %d", status)
		}
	}
	return e
}
