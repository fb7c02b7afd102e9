// Package sandbox is a faithful fake of the AliKassa merchant API for tests
// and the demo: a plain HTTP server on loopback that verifies the Account
// header and the Sign of every request with the merchant's public key (key
// pairs are generated at start and written as files: the private key both as
// encrypted PKCS#8 and as legacy encrypted PEM, with password.txt; none is
// committed), keeps real payments keyed by order_id (a repeated order_id is
// refused as the service would), serves a payment page at the returned url
// with pay / partial pay / fail / cancel buttons, records every request,
// injects faults (latency, 5xx, reset, reply lost, 400 with errors, odd
// status words) and, when asked, delivers signed notifications as GET query
// parameters.
//
// It speaks the contract in payments/alikassa/internal/wire, the file the
// client uses.
//
//	POST /v1/payment, /v1/payment/status, /v1/account/info   the API
//	GET  /pay/{uuid}                                        the buyer's page
//	POST /pay/{uuid}/{pay|partial|fail|cancel}              its buttons (partial: form field amount)
//	GET  /sandbox/requests                                  the request journal
//	GET  /sandbox/payments                                  every payment
package sandbox

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	_ "crypto/sha1" // the default signature hash
	_ "crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"kassa-agent/payments"
	"kassa-agent/payments/alikassa"
	"kassa-agent/payments/alikassa/internal/wire"
	"kassa-agent/payments/internal/faultq"
)

// Key formats for Options.KeyFormat.
const (
	KeyPKCS8  = "pkcs8"
	KeyLegacy = "legacy"
)

// Options configures a sandbox. The zero value is usable.
type Options struct {
	// Addr is the loopback address; default "127.0.0.1:0". The demo sets a
	// fixed port.
	Addr string
	// Dir receives the key files. Empty: a temporary directory removed by
	// Close.
	Dir string
	// Account is the merchant's account uuid; default a random uuid.
	Account string
	// SignatureHash is "sha1" (default) or "sha256", for requests and
	// notifications.
	SignatureHash string
	// KeyFormat picks the private key file ClientConfig names: KeyPKCS8
	// (default) or KeyLegacy.
	KeyFormat string
	// Keys are the key pairs; nil uses a pair generated once per process.
	Keys *KeyPairs
	// NotifyURL receives notifications of payments created without a
	// notification_endpoint_url; empty: only those that named one.
	NotifyURL string
	// NoticeFields are the signed notification keys in order; default
	// alikassa.NoticeFields().
	NoticeFields []string
	// Now is the clock (payment lifetimes); default time.Now.
	Now    func() time.Time
	Logger *slog.Logger
}

// Request is one journal entry.
type Request struct {
	Op      alikassa.Op `json:"op"` // "" outside the API
	Method  string      `json:"method"`
	Path    string      `json:"path"`
	Body    string      `json:"body"`
	Account string      `json:"account"`
	Sign    string      `json:"sign"` // as received (the sandbox is no secret keeper)
	Time    time.Time   `json:"time"`
	Status  int         `json:"status"` // 0 when no answer was sent
	Fault   Kind        `json:"fault,omitempty"`
}

// Payment is the sandbox's view of one payment.
type Payment struct {
	OrderID      string    `json:"order_id"`
	ID           int64     `json:"id"`
	UUID         string    `json:"uuid"`
	URL          string    `json:"url"`
	Status       string    `json:"payment_status"`
	Amount       int64     `json:"amount"` // minor units
	Paid         int64     `json:"payment_amount"`
	Commission   int64     `json:"commission_amount"`
	Service      string    `json:"service"`
	CustomerCode string    `json:"customer_code"`
	CustomerIP   string    `json:"customer_ip"`
	Desc         string    `json:"desc"`
	Lifetime     int64     `json:"lifetime"`
	NotifyURL    string    `json:"notification_endpoint_url,omitempty"`
	CreatedAt    time.Time `json:"created_at"`
	Lapsed       bool      `json:"lapsed"`            // Expire was called
	Notices      []string  `json:"notices,omitempty"` // delivery results
}

// Errors of the controls.
var (
	ErrNoPayment = errors.New("sandbox: no such payment")
	ErrFinal     = errors.New("sandbox: the payment is final")
	ErrLapsed    = errors.New("sandbox: the payment page has lapsed")
)

// Server is a running sandbox.
type Server struct {
	opts    Options
	keys    KeyPairs
	hash    crypto.Hash
	files   Files
	tempDir bool
	ln      net.Listener
	srv     *http.Server
	url     string
	log     *slog.Logger
	closing chan struct{}
	hc      *http.Client

	mu       sync.Mutex
	payments map[string]*Payment // by order_id
	byUUID   map[string]string
	faults   faultq.List[Fault, *Fault]
	journal  []Request
	nextID   int64
}

// Start generates (or reuses) the keys, writes the client files and serves.
func Start(opts Options) (*Server, error) {
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Account == "" {
		opts.Account = uuid()
	}
	if len(opts.NoticeFields) == 0 {
		opts.NoticeFields = alikassa.NoticeFields()
	}
	switch opts.KeyFormat {
	case "":
		opts.KeyFormat = KeyPKCS8
	case KeyPKCS8, KeyLegacy:
	default:
		return nil, fmt.Errorf("sandbox: key format %q: want %s or %s", opts.KeyFormat, KeyPKCS8, KeyLegacy)
	}
	var hash crypto.Hash
	switch opts.SignatureHash {
	case "", "sha1":
		hash = crypto.SHA1
	case "sha256":
		hash = crypto.SHA256
	default:
		return nil, fmt.Errorf("sandbox: signature hash %q", opts.SignatureHash)
	}
	host, _, err := net.SplitHostPort(opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("sandbox: address %q: %w", opts.Addr, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return nil, fmt.Errorf("sandbox: address %q is not loopback", opts.Addr)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		opts:     opts,
		hash:     hash,
		log:      log.With("component", "alikassa-sandbox"),
		closing:  make(chan struct{}),
		hc:       &http.Client{Timeout: 5 * time.Second},
		payments: map[string]*Payment{},
		byUUID:   map[string]string{},
		nextID:   108465371, // the seed's example id
	}
	if opts.Keys != nil {
		s.keys = *opts.Keys
	} else if s.keys, err = processKeys(); err != nil {
		return nil, fmt.Errorf("sandbox: keys: %w", err)
	}
	dir := opts.Dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "alikassa-sandbox-"); err != nil {
			return nil, err
		}
		s.tempDir = true
	}
	if s.files, err = s.keys.WriteFiles(dir); err != nil {
		s.removeTemp()
		return nil, err
	}
	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		s.removeTemp()
		return nil, fmt.Errorf("sandbox: listen: %w", err)
	}
	s.ln = ln
	s.url = "http://" + ln.Addr().String()
	s.srv = &http.Server{
		Handler:           s.routes(),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("sandbox stopped", "error", err)
		}
	}()
	return s, nil
}

// URL is the API's base URL, e.g. "http://127.0.0.1:41234".
func (s *Server) URL() string { return s.url }

// Files names the key files written at start.
func (s *Server) Files() Files { return s.files }

// Account is the merchant's account uuid.
func (s *Server) Account() string { return s.opts.Account }

// ClientConfig is a client configuration pointing at the sandbox, with
// the key file of Options.KeyFormat; the caller adds defaults (customer_ip,
// customer_code) and a logger.
func (s *Server) ClientConfig() alikassa.Config {
	key := s.files.PrivateKeyPKCS8
	if s.opts.KeyFormat == KeyLegacy {
		key = s.files.PrivateKeyLegacy
	}
	return alikassa.Config{
		BaseURL: s.url, Account: s.opts.Account,
		PrivateKeyFile: key, PasswordFile: s.files.PasswordFile,
		NotifyPublicKeyFile: s.files.NotifyPublicKeyFile,
		SignatureHash:       s.opts.SignatureHash,
		NoticeFields:        s.opts.NoticeFields,
		Now:                 s.opts.Now,
	}
}

// Close stops the server and removes its temporary directory.
func (s *Server) Close() error {
	select {
	case <-s.closing:
		return nil
	default:
	}
	close(s.closing)
	err := s.srv.Close()
	s.removeTemp()
	return err
}

func (s *Server) removeTemp() {
	if s.tempDir {
		os.RemoveAll(s.files.Dir)
	}
}

// Inject adds a fault; faults act in the order injected.
func (s *Server) Inject(f Fault) error {
	if err := f.validate(); err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	s.mu.Lock()
	s.faults.Add(f)
	s.mu.Unlock()
	return nil
}

// ClearFaults drops every pending fault.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	s.faults.Clear()
	s.mu.Unlock()
}

// Requests returns a copy of the journal.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.journal)
}

// Payments returns a copy of every payment, in creation order.
func (s *Server) Payments() []Payment {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Payment
	for _, p := range s.payments {
		c := *p
		c.Notices = slices.Clone(p.Notices)
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b Payment) int { return int(a.ID - b.ID) })
	return out
}

// Payment returns one payment by order id.
func (s *Server) Payment(orderID string) (Payment, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.payments[orderID]
	if !ok {
		return Payment{}, false
	}
	c := *p
	c.Notices = slices.Clone(p.Notices)
	return c, true
}

// Pay pays the whole amount, as a buyer on the page would.
func (s *Server) Pay(orderID string) error {
	return s.finish(orderID, func(p *Payment) { p.Status, p.Paid = wire.StatusPaid, p.Amount })
}

// PayPartial pays part of the amount; the payment ends paid with
// payment_amount less than amount (is_partial_payment).
func (s *Server) PayPartial(orderID string, amount payments.Amount) error {
	if amount.Minor <= 0 {
		return fmt.Errorf("sandbox: partial amount must be positive")
	}
	return s.finish(orderID, func(p *Payment) {
		p.Status, p.Paid = wire.StatusPaid, min(amount.Minor, p.Amount)
	})
}

// Fail ends the payment as failed (the bank refused).
func (s *Server) Fail(orderID string) error {
	return s.finish(orderID, func(p *Payment) { p.Status = wire.StatusFail })
}

// Cancel ends the payment as cancelled by the buyer.
func (s *Server) Cancel(orderID string) error {
	return s.finish(orderID, func(p *Payment) { p.Status = wire.StatusCancel })
}

// Expire makes the payment's page lapse now. Its status stays "wait", as
// the service is assumed to leave it (the client reports expired by the
// lifetime); the page refuses to pay. A clock past created+lifetime has the
// same effect.
func (s *Server) Expire(orderID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.payments[orderID]
	if !ok {
		return ErrNoPayment
	}
	p.Lapsed = true
	return nil
}

func (s *Server) lapsedLocked(p *Payment) bool {
	return p.Lapsed || s.opts.Now().After(p.CreatedAt.Add(time.Duration(p.Lifetime)*time.Second))
}

func (s *Server) finish(orderID string, apply func(*Payment)) error {
	s.mu.Lock()
	p, ok := s.payments[orderID]
	switch {
	case !ok:
		s.mu.Unlock()
		return ErrNoPayment
	case p.Status != wire.StatusWait:
		s.mu.Unlock()
		return ErrFinal
	case s.lapsedLocked(p):
		s.mu.Unlock()
		return ErrLapsed
	}
	apply(p)
	if p.Paid > 0 {
		p.Commission = p.Paid * 2 / 100 // the sandbox's 2 %
	}
	target := p.NotifyURL
	if target == "" {
		target = s.opts.NotifyURL
	}
	q, err := s.noticeLocked(p)
	s.mu.Unlock()
	if err != nil {
		return err
	}
	if target != "" {
		s.deliver(orderID, target, q)
	}
	return nil
}

// Notice is the signed notification of the payment's current state, as
// query parameters (sign included).
func (s *Server) Notice(orderID string) (url.Values, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.payments[orderID]
	if !ok {
		return nil, ErrNoPayment
	}
	return s.noticeLocked(p)
}

// NoticeType is the notification's type value. ASSUMED: "payment" (the
// spec names the field, not its values).
const NoticeType = "payment"

func (s *Server) noticeLocked(p *Payment) (url.Values, error) {
	partial := "0"
	if p.Paid > 0 && p.Paid < p.Amount {
		partial = "1"
	}
	v := url.Values{}
	for k, val := range map[string]string{
		wire.NoticeType: NoticeType, wire.NoticeID: strconv.FormatInt(p.ID, 10),
		wire.NoticeOrderID: p.OrderID, wire.NoticePaymentStatus: p.Status,
		wire.NoticeAmount: money(p.Amount), wire.NoticePaymentAmount: money(p.Paid),
		wire.NoticeCommissionAmount: money(p.Commission), wire.NoticeIsPartialPayment: partial,
		wire.NoticeAccount: s.opts.Account, wire.NoticeService: p.Service, wire.NoticeDesc: p.Desc,
	} {
		v.Set(k, val)
	}
	data, err := wire.NoticeJSON(s.opts.NoticeFields, func(k string) (string, bool) {
		_, ok := v[k]
		return v.Get(k), ok
	})
	if err != nil {
		return nil, fmt.Errorf("sandbox: notice: %w", err)
	}
	sig, err := rsa.SignPKCS1v15(nil, s.keys.Notify, s.hash, digest(s.hash, data))
	if err != nil {
		return nil, err
	}
	v.Set(wire.NoticeSign, base64.StdEncoding.EncodeToString(sig))
	return v, nil
}

// deliver sends a notification as the service does: GET with the fields
// as query parameters.
func (s *Server) deliver(orderID, target string, q url.Values) {
	u, err := url.Parse(target)
	result := ""
	if err == nil {
		u.RawQuery = q.Encode()
		var resp *http.Response
		if resp, err = s.hc.Get(u.String()); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			result = strconv.Itoa(resp.StatusCode)
		}
	}
	if err != nil {
		result = "error: " + err.Error()
	}
	s.mu.Lock()
	if p, ok := s.payments[orderID]; ok {
		p.Notices = append(p.Notices, result)
	}
	s.mu.Unlock()
}

func money(minor int64) string { return payments.FormatDecimal(minor, 2) }

func digest(h crypto.Hash, data []byte) []byte {
	d := h.New()
	d.Write(data)
	return d.Sum(nil)
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+wire.PathCreate, s.api(alikassa.OpCreate, s.create))
	mux.HandleFunc("POST "+wire.PathStatus, s.api(alikassa.OpStatus, s.status))
	mux.HandleFunc("POST "+wire.PathAccountInfo, s.api(alikassa.OpAccountInfo, s.accountInfo))
	mux.HandleFunc("GET /pay/{uuid}", s.page)
	mux.HandleFunc("POST /pay/{uuid}/{action}", s.pageAction)
	mux.HandleFunc("GET /sandbox/requests", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, 200, s.Requests()) })
	mux.HandleFunc("GET /sandbox/payments", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, 200, s.Payments()) })
	return mux
}

type handler func(body []byte, word string) (int, any)

// api wraps an API call: journal, Account and Sign, faults, then the call.
func (s *Server) api(op alikassa.Op, h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
		if err != nil {
			writeJSON(w, http.StatusBadRequest, wire.ErrorBody{Message: "unreadable body"})
			return
		}
		s.mu.Lock()
		s.journal = append(s.journal, Request{Op: op, Method: r.Method, Path: r.URL.Path, Body: string(body),
			Account: r.Header.Get(wire.HeaderAccount), Sign: r.Header.Get(wire.HeaderSign), Time: s.opts.Now()})
		idx := len(s.journal) - 1
		s.mu.Unlock()
		done := func(status int, f Kind) {
			s.mu.Lock()
			s.journal[idx].Status, s.journal[idx].Fault = status, f
			s.mu.Unlock()
		}
		if !s.authentic(r, body) {
			done(http.StatusUnauthorized, "")
			writeJSON(w, http.StatusUnauthorized, wire.ErrorBody{Message: wire.MessageUnauthenticated})
			return
		}
		f := s.takeFault(op)
		word := ""
		if f != nil {
			switch f.Kind {
			case Latency:
				select {
				case <-time.After(f.Delay):
				case <-s.closing:
					return
				}
			case ServerError:
				st := f.Status
				if st == 0 {
					st = http.StatusInternalServerError
				}
				done(st, f.Kind)
				writeJSON(w, st, wire.ErrorBody{Message: "Server Error"})
				return
			case Reset:
				done(0, f.Kind)
				drop(w, true)
				return
			case Invalid:
				done(http.StatusBadRequest, f.Kind)
				writeJSON(w, http.StatusBadRequest, wire.ErrorBody{Message: wire.MessageInvalid,
					Errors: map[string][]string{f.Field: {f.Message}}})
				return
			case StatusWord:
				word = f.Word
			}
		}
		status, out := h(body, word)
		if f != nil && f.Kind == ReplyLost {
			done(0, f.Kind)
			drop(w, false)
			return
		}
		var fk Kind
		if f != nil {
			fk = f.Kind
		}
		done(status, fk)
		writeJSON(w, status, out)
	}
}

// authentic checks the Account header and the Sign over exactly the body.
func (s *Server) authentic(r *http.Request, body []byte) bool {
	if r.Header.Get(wire.HeaderAccount) != s.opts.Account {
		return false
	}
	sig, err := base64.StdEncoding.DecodeString(r.Header.Get(wire.HeaderSign))
	if err != nil || len(sig) == 0 {
		return false
	}
	return rsa.VerifyPKCS1v15(&s.keys.Merchant.PublicKey, s.hash, digest(s.hash, body), sig) == nil
}

func (s *Server) takeFault(op alikassa.Op) *Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.faults.Take(func(f *Fault) bool { return f.matches(op) })
	if !ok {
		return nil
	}
	return &f
}

// drop closes the connection without an answer; rst sends a TCP reset.
func drop(w http.ResponseWriter, rst bool) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	if tc, ok := conn.(*net.TCPConn); ok && rst {
		tc.SetLinger(0)
	}
	conn.Close()
}

func invalid(errs map[string][]string) (int, any) {
	return http.StatusBadRequest, wire.ErrorBody{Message: wire.MessageInvalid, Errors: errs}
}

// create validates as the service's Laravel rules would, then stores the
// payment.
func (s *Server) create(body []byte, _ string) (int, any) {
	var in map[string]json.RawMessage
	if err := json.Unmarshal(body, &in); err != nil {
		return invalid(map[string][]string{"body": {"The body must be a JSON object."}})
	}
	errs := map[string][]string{}
	bad := func(k, msg string) { errs[k] = append(errs[k], msg) }
	str := func(k string, required bool, max int) string {
		raw, ok := in[k]
		if !ok || string(raw) == "null" {
			if required {
				bad(k, "The "+k+" field is required.")
			}
			return ""
		}
		var v string
		if json.Unmarshal(raw, &v) != nil {
			bad(k, "The "+k+" must be a string.")
			return ""
		}
		if required && v == "" {
			bad(k, "The "+k+" field is required.")
		}
		if utf8.RuneCountInString(v) > max {
			bad(k, fmt.Sprintf("The %s may not be greater than %d characters.", k, max))
		}
		return v
	}
	integer := func(k string) (int64, bool) {
		raw, ok := in[k]
		if !ok || string(raw) == "null" {
			return 0, false
		}
		n, err := strconv.ParseInt(string(raw), 10, 64)
		if err != nil {
			bad(k, "The "+k+" must be an integer.")
			return 0, false
		}
		return n, true
	}

	var amount int64
	if raw, ok := in[wire.FieldAmount]; !ok {
		bad(wire.FieldAmount, "The amount field is required.")
	} else {
		text := string(raw)
		var sv string
		if json.Unmarshal(raw, &sv) == nil {
			text = sv
		}
		a, err := payments.ParseDecimal(text, payments.BDT)
		if err != nil || a.Minor <= 0 || a.Minor > wire.MaxAmountMinor {
			bad(wire.FieldAmount, "The amount must be a number with at most 2 decimals, 0.01–999999999.99.")
		}
		amount = a.Minor
	}
	orderID := str(wire.FieldOrderID, true, wire.MaxOrderID)
	service := str(wire.FieldService, true, wire.MaxService)
	if service != "" && service != wire.ServiceBDT {
		bad(wire.FieldService, "The selected service is invalid.")
	}
	ip := str(wire.FieldCustomerIP, true, 64)
	if _, err := netip.ParseAddr(ip); ip != "" && err != nil {
		bad(wire.FieldCustomerIP, "The customer ip must be a valid IP address.")
	}
	code := str(wire.FieldCustomerCode, true, wire.MaxCustomerCode)
	if code != "" && service == wire.ServiceBDT && !slices.Contains(wire.BankCodesBDT, code) {
		bad(wire.FieldCustomerCode, "The selected customer code is invalid.")
	}
	for _, k := range []string{wire.FieldSuccessRedirectID, wire.FieldFailRedirectID, wire.FieldNotificationID} {
		integer(k)
	}
	var notify string
	for _, k := range []string{wire.FieldSuccessRedirectURL, wire.FieldFailRedirectURL, wire.FieldNotificationURL} {
		v := str(k, false, wire.MaxURL)
		if u, err := url.Parse(v); v != "" && (err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https")) {
			bad(k, "The "+k+" format is invalid.")
		}
		if k == wire.FieldNotificationURL {
			notify = v
		}
	}
	desc := str(wire.FieldDesc, false, wire.MaxDesc)
	lifetime := int64(wire.MinLifetime)
	if n, ok := integer(wire.FieldLifetime); ok {
		if n < wire.MinLifetime || n > wire.MaxLifetime {
			bad(wire.FieldLifetime, fmt.Sprintf("The lifetime must be between %d and %d.", wire.MinLifetime, wire.MaxLifetime))
		}
		lifetime = n
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, dup := s.payments[orderID]; dup && orderID != "" {
		bad(wire.FieldOrderID, wire.MessageOrderIDTaken)
	}
	if len(errs) > 0 {
		return invalid(errs)
	}
	id := uuid()
	p := &Payment{OrderID: orderID, ID: s.nextID, UUID: id, URL: s.url + "/pay/" + id,
		Status: wire.StatusWait, Amount: amount, Service: service, CustomerCode: code,
		CustomerIP: ip, Desc: desc, Lifetime: lifetime, NotifyURL: notify, CreatedAt: s.opts.Now()}
	s.nextID++
	s.payments[orderID] = p
	s.byUUID[id] = orderID
	return http.StatusOK, map[string]any{"url": p.URL, "payment_status": p.Status, "id": p.ID,
		"uuid": p.UUID, "success_redirect_url": nil}
}

func (s *Server) status(body []byte, word string) (int, any) {
	var in struct {
		OrderID *string `json:"order_id"`
		ID      *int64  `json:"id"`
	}
	unknown := map[string][]string{wire.FieldOrderID: {wire.MessageOrderIDUnknown}}
	if json.Unmarshal(body, &in) != nil || (in.OrderID == nil && in.ID == nil) {
		return invalid(map[string][]string{wire.FieldOrderID: {"The order id field is required when id is not present."}})
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var p *Payment
	if in.OrderID != nil {
		p = s.payments[*in.OrderID]
	} else {
		for _, q := range s.payments {
			if q.ID == *in.ID {
				p = q
			}
		}
		unknown = map[string][]string{"id": {"The selected id is invalid."}}
	}
	if p == nil {
		return invalid(unknown)
	}
	if word == "" {
		word = p.Status
	}
	return http.StatusOK, map[string]any{
		"order_id": p.OrderID, "id": p.ID, "uuid": p.UUID, "url": p.URL, "payment_status": word,
		"amount": money(p.Amount), "payment_amount": money(p.Paid), "commission_amount": money(p.Commission),
		"is_partial_payment": p.Paid > 0 && p.Paid < p.Amount, "card_mask": nil, "service_code": p.Service,
	}
}

func (s *Server) accountInfo([]byte, string) (int, any) {
	return http.StatusOK, map[string]any{"is_allowed_payment": true, "is_allowed_payout": false,
		"payment": []map[string]any{{"service": wire.ServiceBDT, "is_active": true}}}
}

var pageTmpl = template.Must(template.New("page").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>AliKassa sandbox payment</title></head><body>
<h1>AliKassa sandbox</h1>
<p>Order {{.OrderID}} — {{.Amount}} BDT — {{.Status}}{{if .Lapsed}} (lapsed){{end}}</p>
<p>{{.Desc}}</p>
{{if .Open}}
<form method="post" action="/pay/{{.UUID}}/pay"><button>Pay</button></form>
<form method="post" action="/pay/{{.UUID}}/partial"><input name="amount" value="1.00"><button>Pay part</button></form>
<form method="post" action="/pay/{{.UUID}}/fail"><button>Fail</button></form>
<form method="post" action="/pay/{{.UUID}}/cancel"><button>Cancel</button></form>
{{end}}
</body></html>`))

func (s *Server) page(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	p, ok := s.payments[s.byUUID[r.PathValue("uuid")]]
	var view map[string]any
	if ok {
		lapsed := s.lapsedLocked(p)
		view = map[string]any{"OrderID": p.OrderID, "Amount": money(p.Amount), "Status": p.Status,
			"Lapsed": lapsed, "Desc": p.Desc, "UUID": p.UUID, "Open": p.Status == wire.StatusWait && !lapsed}
	}
	s.mu.Unlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	pageTmpl.Execute(w, view)
}

func (s *Server) pageAction(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	orderID, ok := s.byUUID[r.PathValue("uuid")]
	s.mu.Unlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	var err error
	switch r.PathValue("action") {
	case "pay":
		err = s.Pay(orderID)
	case "partial":
		var a payments.Amount
		if a, err = payments.ParseDecimal(r.FormValue("amount"), payments.BDT); err == nil {
			err = s.PayPartial(orderID, a)
		}
	case "fail":
		err = s.Fail(orderID)
	case "cancel":
		err = s.Cancel(orderID)
	default:
		http.NotFound(w, r)
		return
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusConflict)
		return
	}
	http.Redirect(w, r, "/pay/"+r.PathValue("uuid"), http.StatusSeeOther)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.Encode(v)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(b.Bytes())
}

func uuid() string {
	b := make([]byte, 16)
	rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func randomText(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
