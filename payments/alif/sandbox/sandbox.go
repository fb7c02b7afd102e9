// Package sandbox is a faithful fake of Alif's online checkout for tests
// and the demo: a plain-HTTP server on loopback that keeps real state
// (sessions with their items, total, meta, payment status and five-hour
// expiry on an injectable clock; one successful payment per session),
// checks the Token header, serves the buyer's checkout page
// (GET /?session_ref=…, with a Pay button), records every request, injects
// faults (latency, 5xx, any HTTP status, reset, reply lost after applying,
// garbage, HTTP 200 + error refusals, odd status words and paid sums), and
// can deliver signed webhooks to a URL the test or the demo names.
//
// It speaks the contract assumed in payments/alif/internal/wire, the file
// the client uses. Admin endpoints live under /sandbox/ (see adminHelp).
package sandbox

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"kassa-agent/payments/alif"
	"kassa-agent/payments/alif/internal/wire"
	"kassa-agent/payments/internal/faultq"
)

// Options configures a sandbox. The zero value is usable.
type Options struct {
	// Addr is the loopback address to listen on; default "127.0.0.1:0"
	// (a free port). The demo sets a fixed port.
	Addr string
	// Dir receives the token and webhook secret files. Empty: a temporary
	// directory removed by Close.
	Dir string
	// Token and WebhookSecret; empty: random.
	Token         string
	WebhookSecret string
	// WebhookTarget, when set, receives a signed webhook (POST, header
	// Signature) after each successful payment of a session created with
	// a webhook_url: a till cannot be reached at the https address the
	// session names, so the sandbox delivers here instead.
	WebhookTarget string
	// Now is the clock of sessions (five-hour expiry); default time.Now.
	Now func() time.Time
	// Logger receives the sandbox's own debug lines; nil discards.
	Logger *slog.Logger
}

// Files names the files written at start.
type Files struct {
	Dir               string
	TokenFile         string
	WebhookSecretFile string
}

// Request is one journal entry.
type Request struct {
	Op      alif.Op   `json:"op"` // "" for paths outside the contract
	Path    string    `json:"path"`
	Body    string    `json:"body"`
	TokenOK bool      `json:"token_ok"`
	Time    time.Time `json:"time"`
	Status  int       `json:"status"`          // 0 when no answer was sent
	Fault   Kind      `json:"fault,omitempty"` // the fault that acted, if any
}

// Session is the sandbox's view of one checkout session.
type Session struct {
	ID          string          `json:"id"`
	Items       []wire.Item     `json:"items"`
	Amount      int64           `json:"amount"` // Σ price × amount, tiyin
	Meta        json.RawMessage `json:"meta"`
	EPOS        string          `json:"epos"`
	RedirectURL string          `json:"redirect_url"`
	CancelURL   string          `json:"cancel_url"`
	WebhookURL  string          `json:"webhook_url,omitempty"`
	Status      string          `json:"status"` // "" until the buyer tries to pay, then a wire word
	PaidAmount  int64           `json:"paid_amount,omitempty"`
	Payments    int             `json:"payments"` // successful payments (never more than 1)
	Failures    []string        `json:"failures,omitempty"`
	Refunds     int             `json:"refunds"`
	CreatedAt   time.Time       `json:"created_at"`
	ExpiresAt   time.Time       `json:"expires_at"`
}

// Delivery is one webhook delivery attempt.
type Delivery struct {
	SessionID string    `json:"session_id"`
	URL       string    `json:"url"`
	Status    int       `json:"status"` // 0 when no answer
	Error     string    `json:"error,omitempty"`
	Time      time.Time `json:"time"`
}

// Server is a running sandbox.
type Server struct {
	opts    Options
	files   Files
	tempDir bool
	ln      net.Listener
	srv     *http.Server
	url     string
	log     *slog.Logger
	closing chan struct{}
	hooks   sync.WaitGroup

	mu         sync.Mutex
	sessions   map[string]*Session
	order      []string
	faults     faultq.List[Fault, *Fault]
	journal    []Request
	deliveries []Delivery
}

// Start writes the token and secret files and serves.
func Start(opts Options) (*Server, error) {
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Token == "" {
		opts.Token = "sbx-" + randomHex(16)
	}
	if opts.WebhookSecret == "" {
		opts.WebhookSecret = "whs-" + randomHex(16)
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
	s := &Server{opts: opts, log: log.With("component", "alif-sandbox"), closing: make(chan struct{}),
		sessions: map[string]*Session{}}
	dir := opts.Dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "alif-sandbox-"); err != nil {
			return nil, err
		}
		s.tempDir = true
	}
	if s.files, err = s.WriteClientFiles(dir); err != nil {
		s.removeTemp(dir)
		return nil, err
	}
	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		s.removeTemp(dir)
		return nil, fmt.Errorf("sandbox: listen: %w", err)
	}
	s.ln = ln
	s.url = "http://" + ln.Addr().String()
	s.srv = &http.Server{Handler: s.routes(), ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug)}
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("sandbox stopped", "error", err)
		}
	}()
	return s, nil
}

// URL is the base URL of the API and of the checkout page.
func (s *Server) URL() string { return s.url }

// Files names the token and webhook secret files written at start.
func (s *Server) Files() Files { return s.files }

// Token is the token the sandbox accepts.
func (s *Server) Token() string { return s.opts.Token }

// WebhookSecret is the key the sandbox signs webhooks with.
func (s *Server) WebhookSecret() string { return s.opts.WebhookSecret }

// WriteClientFiles writes the token and secret files into dir (for an
// agent config that lives elsewhere).
func (s *Server) WriteClientFiles(dir string) (Files, error) {
	f := Files{Dir: dir, TokenFile: filepath.Join(dir, "alif-token"), WebhookSecretFile: filepath.Join(dir, "alif-webhook-secret")}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Files{}, err
	}
	if err := os.WriteFile(f.TokenFile, []byte(s.opts.Token+"\n"), 0o600); err != nil {
		return Files{}, err
	}
	if err := os.WriteFile(f.WebhookSecretFile, []byte(s.opts.WebhookSecret+"\n"), 0o600); err != nil {
		return Files{}, err
	}
	return f, nil
}

// ClientConfig is a client configuration pointing at the sandbox, with
// default redirect/cancel URLs on a reserved example host and epos
// "sandbox".
func (s *Server) ClientConfig() alif.Config {
	return alif.Config{APIURL: s.url, CheckoutURL: s.url + "/", TokenFile: s.files.TokenFile,
		WebhookSecretFile: s.files.WebhookSecretFile, EPOS: "sandbox",
		RedirectURL: "https://shop.example/paid", CancelURL: "https://shop.example/back"}
}

// Close stops the server, waits for webhook deliveries and removes the
// temporary directory.
func (s *Server) Close() error {
	select {
	case <-s.closing:
		return nil
	default:
	}
	close(s.closing)
	err := s.srv.Close()
	s.hooks.Wait()
	if s.tempDir {
		s.removeTemp(s.files.Dir)
	}
	return err
}

func (s *Server) removeTemp(dir string) {
	if s.tempDir && dir != "" {
		os.RemoveAll(dir)
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func newSessionID() string {
	b := make([]byte, 16)
	rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
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

// Faults lists pending faults (Times is what remains).
func (s *Server) Faults() []Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.faults.All()
}

// Requests returns the journal of every request received, in order.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.journal)
}

// Count is how many requests of op arrived (applied or not).
func (s *Server) Count(op alif.Op) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, r := range s.journal {
		if r.Op == op {
			n++
		}
	}
	return n
}

// Deliveries lists the webhook delivery attempts.
func (s *Server) Deliveries() []Delivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.deliveries)
}

// Session returns a session by id.
func (s *Server) Session(id string) (Session, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.sessions[id]
	if !ok {
		return Session{}, false
	}
	s.settle(p)
	return p.snapshot(), true
}

// Sessions lists every session, oldest first.
func (s *Server) Sessions() []Session {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Session, 0, len(s.order))
	for _, id := range s.order {
		p := s.sessions[id]
		s.settle(p)
		out = append(out, p.snapshot())
	}
	return out
}

func (p *Session) snapshot() Session {
	c := *p
	c.Items = slices.Clone(p.Items)
	c.Meta = slices.Clone(p.Meta)
	c.Failures = slices.Clone(p.Failures)
	return c
}

// settle lapses a session not paid within its five hours. mu held.
func (s *Server) settle(p *Session) {
	if (p.Status == "" || wire.StatusMeaning(p.Status) == wire.MeaningDeclined) && !s.opts.Now().Before(p.ExpiresAt) {
		p.Status = wire.StatusExpired
	}
}

// open finds a session a buyer may still pay. mu held.
func (s *Server) open(id string) (*Session, error) {
	p, ok := s.sessions[id]
	if !ok {
		return nil, fmt.Errorf("no session %q", id)
	}
	s.settle(p)
	switch wire.StatusMeaning(p.Status) {
	case wire.MeaningPending, wire.MeaningDeclined:
		return p, nil
	}
	return nil, fmt.Errorf("session %s is %s: it takes no payment", id, p.Status)
}

// Pay pays the session in full, as the buyer would on the checkout page.
// Only one payment per session succeeds; an expired session takes none.
func (s *Server) Pay(id string) error {
	s.mu.Lock()
	p, err := s.open(id)
	if err != nil {
		s.mu.Unlock()
		return err
	}
	p.Status, p.PaidAmount = wire.StatusSucceeded, p.Amount
	p.Payments++
	hook := p.WebhookURL != "" && s.opts.WebhookTarget != ""
	body, _ := json.Marshal(statusOf(p))
	s.mu.Unlock()
	if hook {
		s.hooks.Add(1)
		go s.deliver(id, body)
	}
	return nil
}

// Fail records a failed card attempt with word (DECLINED,
// INSUFFICIENT_FUNDS, …). Only a success closes a session, so the buyer
// may still pay afterwards with another card.
func (s *Server) Fail(id, word string) error {
	if word == "" {
		word = wire.StatusDeclined
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p, err := s.open(id)
	if err != nil {
		return err
	}
	p.Status = word
	p.Failures = append(p.Failures, word)
	return nil
}

// Expire ends a session's life now, as five hours passing would.
func (s *Server) Expire(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, err := s.open(id)
	if err != nil {
		return err
	}
	p.Status, p.ExpiresAt = wire.StatusExpired, s.opts.Now()
	return nil
}

// deliver posts a signed webhook, retrying a few times until a 2xx (Alif
// reportedly retries for about an hour; the sandbox keeps it short).
func (s *Server) deliver(id string, body []byte) {
	defer s.hooks.Done()
	m := hmac.New(sha256.New, []byte(s.opts.WebhookSecret))
	m.Write(body)
	sig := base64.StdEncoding.EncodeToString(m.Sum(nil))
	client := &http.Client{Timeout: 5 * time.Second}
	for attempt := 0; attempt < 3; attempt++ {
		if attempt > 0 {
			select {
			case <-time.After(200 * time.Millisecond):
			case <-s.closing:
				return
			}
		}
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			select {
			case <-s.closing:
			case <-ctx.Done():
			}
			cancel()
		}()
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.opts.WebhookTarget, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(wire.HeaderSignature, sig)
		d := Delivery{SessionID: id, URL: s.opts.WebhookTarget, Time: s.opts.Now()}
		resp, err := client.Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			d.Status = resp.StatusCode
		} else {
			d.Error = err.Error()
		}
		cancel()
		s.mu.Lock()
		s.deliveries = append(s.deliveries, d)
		s.mu.Unlock()
		if err == nil && d.Status >= 200 && d.Status <= 299 {
			return
		}
	}
}

// statusOf is the status answer of a session. mu held.
func statusOf(p *Session) wire.StatusResponse {
	amount := p.Amount
	r := wire.StatusResponse{ID: p.ID, Amount: &amount, Meta: p.Meta}
	if p.Status != "" {
		r.Payment = &wire.Payment{Status: p.Status}
		if p.PaidAmount > 0 {
			paid := p.PaidAmount
			r.Payment.Amount = &paid
		}
	}
	return r
}

var opByPath = map[string]alif.Op{
	wire.PathCreate: alif.OpCreate,
	wire.PathStatus: alif.OpStatus,
	wire.PathRefund: alif.OpRefund,
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/v2/", s.handleAPI)
	mux.HandleFunc("GET /{$}", s.checkoutPage)
	mux.HandleFunc("POST /pay", s.payForm)
	s.adminRoutes(mux)
	return mux
}

type reply struct {
	status int
	body   any
}

func errReply(code, msg, field string) reply {
	return reply{status: http.StatusOK, body: wire.NewError(code, msg, field)}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func (s *Server) takeFault(op alif.Op, kinds ...Kind) *Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.faults.Take(func(f *Fault) bool { return f.matches(op) && slices.Contains(kinds, f.Kind) })
	if !ok {
		return nil
	}
	return &f
}

func (s *Server) record(r Request) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	r.Time = s.opts.Now()
	s.journal = append(s.journal, r)
	return len(s.journal) - 1
}

func (s *Server) finish(idx, status int, fault Kind) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.journal[idx].Status = status
	if fault != "" {
		s.journal[idx].Fault = fault
	}
}

// dropConn closes the client's connection unanswered: with reset, a TCP
// RST; otherwise a plain close (the client reads EOF).
func dropConn(w http.ResponseWriter, reset bool) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic(http.ErrAbortHandler)
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	if tcp, ok := conn.(*net.TCPConn); ok && reset {
		tcp.SetLinger(0)
	}
	conn.Close()
}

// handleAPI serves the contract: journal, token, transport faults, then
// the call with its own faults.
func (s *Server) handleAPI(w http.ResponseWriter, r *http.Request) {
	op := opByPath[r.URL.Path]
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	tokenOK := hmac.Equal([]byte(r.Header.Get(wire.HeaderToken)), []byte(s.opts.Token))
	idx := s.record(Request{Op: op, Path: r.URL.Path, Body: string(body), TokenOK: tokenOK})
	s.log.Debug("request", "op", op, "path", r.URL.Path)
	answer := func(rep reply, fault Kind) {
		s.finish(idx, rep.status, fault)
		writeJSON(w, rep.status, rep.body)
	}
	if op == "" {
		answer(reply{status: http.StatusNotFound, body: wire.NewError(wire.ErrNotFound, "no such method", "")}, "")
		return
	}
	if r.Method != http.MethodPost {
		answer(reply{status: http.StatusMethodNotAllowed, body: wire.NewError("method_not_allowed", "POST only", "")}, "")
		return
	}
	if f := s.takeFault(op, Latency); f != nil {
		s.finish(idx, 0, Latency)
		// Not tied to the request's context: Alif keeps working after the
		// client gave up.
		select {
		case <-time.After(f.Delay):
		case <-s.closing:
			panic(http.ErrAbortHandler)
		}
	}
	if f := s.takeFault(op, ServerError, HTTPStatus); f != nil {
		st := f.Status
		if st == 0 {
			st = http.StatusInternalServerError
		}
		answer(reply{status: st, body: wire.NewError(wire.ErrInternal, "injected HTTP "+fmt.Sprint(st), "")}, f.Kind)
		return
	}
	if s.takeFault(op, Reset) != nil {
		s.finish(idx, 0, Reset)
		dropConn(w, true)
		return
	}
	if !tokenOK {
		answer(reply{status: http.StatusUnauthorized, body: wire.NewError(wire.ErrUnauthorized, "invalid token", "")}, "")
		return
	}
	if f := s.takeFault(op, Refusal); f != nil {
		answer(errReply(f.Code, f.Message, f.Field), Refusal)
		return
	}
	lost := s.takeFault(op, ReplyLost) != nil
	garbage := s.takeFault(op, Garbage) != nil
	rep, fault := s.apply(op, body)
	switch {
	case lost:
		s.finish(idx, 0, ReplyLost)
		dropConn(w, false)
	case garbage:
		s.finish(idx, http.StatusOK, Garbage)
		w.Header().Set("Content-Type", "text/html")
		io.WriteString(w, "<html>upstream hiccup</html>")
	default:
		answer(rep, fault)
	}
}

// apply performs one call under the lock.
func (s *Server) apply(op alif.Op, body []byte) (reply, Kind) {
	decode := func(v any) bool {
		d := json.NewDecoder(bytes.NewReader(body))
		d.DisallowUnknownFields()
		return d.Decode(v) == nil
	}
	if op == alif.OpCreate {
		var req wire.CreateRequest
		if !decode(&req) {
			return errReply(wire.ErrValidation, "malformed request", ""), ""
		}
		return s.create(req), ""
	}
	var req wire.IDRequest
	if !decode(&req) || req.ID == "" {
		return errReply(wire.ErrValidation, "id is required", "id"), ""
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.sessions[req.ID]
	if !ok {
		return errReply(wire.ErrNotFound, "invoice not found", ""), ""
	}
	s.settle(p)
	if op == alif.OpRefund {
		if p.Status != wire.StatusSucceeded {
			return errReply(wire.ErrInvalidState, "only a succeeded payment can be reverted; it is "+p.Status, ""), ""
		}
		p.Status = wire.StatusReverted
		p.Refunds++
		return reply{status: http.StatusOK, body: statusOf(p)}, ""
	}
	st := statusOf(p)
	var fault Kind
	for _, f := range s.takeFaultLocked(op, StatusWord, PaidAmount) {
		fault = f.Kind
		if st.Payment == nil {
			st.Payment = &wire.Payment{}
		}
		if f.Kind == StatusWord {
			st.Payment.Status = f.Word
		} else {
			amt := f.Amount
			st.Payment.Amount = &amt
		}
	}
	return reply{status: http.StatusOK, body: st}, fault
}

// takeFaultLocked takes at most one fault of each kind, mu held.
func (s *Server) takeFaultLocked(op alif.Op, kinds ...Kind) []Fault {
	var out []Fault
	for _, k := range kinds {
		if f, ok := s.faults.Take(func(f *Fault) bool { return f.Kind == k && f.matches(op) }); ok {
			out = append(out, f)
		}
	}
	return out
}

func httpsURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && strings.HasPrefix(s, "https://") && u.Hostname() != ""
}

// create validates as Alif is assumed to (HTTP 200 + validation_error
// naming the field) and makes the session.
func (s *Server) create(req wire.CreateRequest) reply {
	if len(req.Items) == 0 {
		return errReply(wire.ErrValidation, "items must not be empty", "items")
	}
	var total int64
	for i, it := range req.Items {
		at := func(f string) string { return fmt.Sprintf("items[%d].%s", i, f) }
		switch {
		case strings.TrimSpace(it.Name) == "":
			return errReply(wire.ErrValidation, "name is required", at("name"))
		case it.Price < 0:
			return errReply(wire.ErrValidation, "price must not be negative", at("price"))
		case it.Amount < 1:
			return errReply(wire.ErrValidation, "amount must be a positive integer", at("amount"))
		}
		if it.Price > 0 && it.Amount > (1<<63-1-total)/it.Price {
			return errReply(wire.ErrValidation, "total out of range", at("price"))
		}
		total += it.Price * it.Amount
	}
	if total <= 0 {
		return errReply(wire.ErrValidation, "the total must be positive", "items")
	}
	if !httpsURL(req.RedirectURL) {
		return errReply(wire.ErrValidation, "must be a valid https URL", "redirect_url")
	}
	if !httpsURL(req.CancelURL) {
		return errReply(wire.ErrValidation, "must be a valid https URL", "cancel_url")
	}
	if req.WebhookURL != "" && !httpsURL(req.WebhookURL) {
		return errReply(wire.ErrValidation, "must be a valid https URL", "webhook_url")
	}
	if len(req.Meta) == 0 || !json.Valid(req.Meta) {
		return errReply(wire.ErrValidation, "must be valid JSON", "meta")
	}
	if req.EPOS == "" {
		return errReply(wire.ErrValidation, "epos is required", "epos")
	}
	now := s.opts.Now()
	p := &Session{ID: newSessionID(), Items: req.Items, Amount: total, Meta: req.Meta, EPOS: req.EPOS,
		RedirectURL: req.RedirectURL, CancelURL: req.CancelURL, WebhookURL: req.WebhookURL,
		CreatedAt: now, ExpiresAt: now.Add(wire.SessionTTL)}
	s.mu.Lock()
	s.sessions[p.ID] = p
	s.order = append(s.order, p.ID)
	s.mu.Unlock()
	return reply{status: http.StatusOK, body: wire.CreateResponse{ID: p.ID}}
}
