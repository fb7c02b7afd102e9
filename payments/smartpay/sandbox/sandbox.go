// Package sandbox is a faithful fake of the Smart Pay kassa API for tests
// and the demo: an HTTPS server on loopback that requires the till's client
// certificate (a CA, server and client certificate are generated at start;
// none is committed), keeps real state (issued codes, committed purchases,
// payments progressing from processing to success, sessions that expire),
// records every request, and injects faults on demand: latency, 5xx,
// connection reset, reply lost after the change was applied, code expired,
// declined, stuck in processing, odd status words, 401.
//
// It speaks the contract assumed in payments/smartpay/internal/wire, the
// same file the client uses.
//
// Admin endpoints live under /sandbox/ on the same server. They do not need
// the client certificate (the demo drives them with plain curl -k or
// --cacert), unless Options.RequireCertAtHandshake is set, in which case
// every connection needs it:
//
//	GET    /sandbox/                  this list
//	POST   /sandbox/codes             a fresh QR code {"code": "..."}; ?format=text for the bare code
//	GET    /sandbox/faults            pending faults
//	POST   /sandbox/faults            inject {"op":"release","kind":"reply_lost","times":1,"delay":"2s",...}
//	DELETE /sandbox/faults            clear faults
//	GET    /sandbox/requests          the request journal
//	GET    /sandbox/purchases         every purchase with its counters
//	POST   /sandbox/sessions/expire   expire every session (next call gets 401)
package sandbox

import (
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"kassa-agent/payments/internal/faultq"
	"kassa-agent/payments/smartpay"
	"kassa-agent/payments/smartpay/internal/wire"
)

// DefaultProcessingDelay is how long a released payment stays processing
// before it succeeds when Options.ProcessingDelay is zero.
const DefaultProcessingDelay = time.Second

// Immediate as Options.ProcessingDelay makes payments succeed at the first
// status after release (tests).
const Immediate time.Duration = -1

// Options configures a sandbox. The zero value is usable.
type Options struct {
	// Addr is the loopback address to listen on; default "127.0.0.1:0"
	// (a free port). The demo sets a fixed port.
	Addr string
	// Dir receives the CA and client certificate/key PEM files. Empty: a
	// temporary directory removed by Close.
	Dir string
	// ProcessingDelay: release → success. Zero: DefaultProcessingDelay;
	// Immediate (negative): at once.
	ProcessingDelay time.Duration
	// AuthTTL is the session cookie's life; default 30 min.
	AuthTTL time.Duration
	// CodeTTL is how long an issued code, and a commit not yet released,
	// stays valid; default 10 min.
	CodeTTL time.Duration
	// ClientCertValidity is the client certificate's remaining life;
	// default one year. Negative makes an already expired certificate.
	ClientCertValidity time.Duration
	// RequireCertAtHandshake refuses TLS without a client certificate at
	// the handshake (admin endpoints then need it too). Default: the
	// handshake asks for one, and /v1 calls without it get 403.
	RequireCertAtHandshake bool
	// Now is the clock (sessions, codes, processing, TLS checks); default
	// time.Now.
	Now func() time.Time
	// Logger receives the sandbox's own debug lines; nil discards.
	Logger *slog.Logger
}

// Request is one journal entry.
type Request struct {
	Op     smartpay.Op `json:"op"` // "" for paths outside the contract
	Path   string      `json:"path"`
	Body   string      `json:"body"`
	Time   time.Time   `json:"time"`
	Status int         `json:"status"`          // 0 when no answer was sent
	Fault  Kind        `json:"fault,omitempty"` // the fault that acted, if any
}

// Purchase is the sandbox's view of one purchase.
type Purchase struct {
	ID              string               `json:"purchase_id"`
	KassaPurchaseID string               `json:"kassa_purchase_id"`
	Code            string               `json:"code"`
	State           string               `json:"state"` // a wire status word
	Reason          string               `json:"reason,omitempty"`
	Amount          int64                `json:"amount"`   // kopecks, once released
	Releases        int                  `json:"releases"` // releases applied
	Confirms        int                  `json:"confirms"` // kassa/status completed received (duplicates counted)
	Fiscals         []wire.FiscalRequest `json:"fiscals"`  // fiscal submissions received (duplicates kept)
	Cancels         int                  `json:"cancels"`
	CommittedAt     time.Time            `json:"committed_at"`
	ReleasedAt      time.Time            `json:"released_at,omitzero"`
	outcome         string               // what processing turns into: success, declined or "" (stuck)
}

type code struct {
	issued   time.Time
	purchase string // committed to
	expired  bool
}

// Server is a running sandbox.
type Server struct {
	opts    Options
	pki     *pki
	files   Files
	tempDir bool
	ln      net.Listener
	srv     *http.Server
	url     string
	log     *slog.Logger
	closing chan struct{}

	mu        sync.Mutex
	codes     map[string]*code
	purchases map[string]*Purchase
	byKassa   map[string]string
	sessions  map[string]time.Time
	faults    faultq.List[Fault, *Fault]
	journal   []Request
	seq       int
}

// Start generates the certificates, writes the client files and serves.
func Start(opts Options) (*Server, error) {
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.ProcessingDelay == 0 {
		opts.ProcessingDelay = DefaultProcessingDelay
	}
	if opts.ProcessingDelay < 0 {
		opts.ProcessingDelay = 0
	}
	if opts.AuthTTL <= 0 {
		opts.AuthTTL = 30 * time.Minute
	}
	if opts.CodeTTL <= 0 {
		opts.CodeTTL = 10 * time.Minute
	}
	if opts.ClientCertValidity == 0 {
		opts.ClientCertValidity = 365 * 24 * time.Hour
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
		opts:      opts,
		log:       log.With("component", "smartpay-sandbox"),
		closing:   make(chan struct{}),
		codes:     map[string]*code{},
		purchases: map[string]*Purchase{},
		byKassa:   map[string]string{},
		sessions:  map[string]time.Time{},
	}
	if s.pki, err = newPKI(opts.Now(), opts.ClientCertValidity); err != nil {
		return nil, fmt.Errorf("sandbox: certificates: %w", err)
	}
	dir := opts.Dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "smartpay-sandbox-"); err != nil {
			return nil, err
		}
		s.tempDir = true
	}
	if s.files, err = s.pki.write(dir); err != nil {
		s.removeTemp()
		return nil, err
	}
	clientAuth := tls.VerifyClientCertIfGiven
	if opts.RequireCertAtHandshake {
		clientAuth = tls.RequireAndVerifyClientCert
	}
	tlsCfg := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{s.pki.server},
		ClientCAs:    s.pki.caPool,
		ClientAuth:   clientAuth,
		NextProtos:   []string{"http/1.1"}, // HTTP/1.1 only: faults hijack the connection
		Time:         opts.Now,
	}
	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		s.removeTemp()
		return nil, fmt.Errorf("sandbox: listen: %w", err)
	}
	s.ln = ln
	s.url = "https://" + ln.Addr().String()
	s.srv = &http.Server{
		Handler:           s.routes(),
		ReadHeaderTimeout: 10 * time.Second,
		TLSConfig:         tlsCfg,
		TLSNextProto:      map[string]func(*http.Server, *tls.Conn, http.Handler){},
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	go func() {
		if err := s.srv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("sandbox stopped", "error", err)
		}
	}()
	return s, nil
}

// URL is the base URL of the API, e.g. "https://127.0.0.1:41234".
func (s *Server) URL() string { return s.url }

// Files names the CA and client certificate/key files written at start.
func (s *Server) Files() Files { return s.files }

// ClientConfig is a client configuration pointing at the sandbox.
func (s *Server) ClientConfig() smartpay.Config {
	return smartpay.Config{BaseURL: s.url, CertFile: s.files.CertFile, KeyFile: s.files.KeyFile, CAFile: s.files.CAFile}
}

// WriteClientFiles writes the CA and the client certificate/key into dir
// (for an agent config that lives elsewhere).
func (s *Server) WriteClientFiles(dir string) (Files, error) { return s.pki.write(dir) }

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

func randomText(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// NewCode issues a fresh QR code, as if a buyer opened the app. It matches
// smartpay.DefaultCodePattern.
func (s *Server) NewCode() string {
	c := wire.CodePrefix + randomText(18) // 24 characters
	s.mu.Lock()
	s.codes[c] = &code{issued: s.opts.Now()}
	s.mu.Unlock()
	return c
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

// ExpireSessions ends every session: the next call gets 401.
func (s *Server) ExpireSessions() {
	s.mu.Lock()
	clear(s.sessions)
	s.mu.Unlock()
}

// SessionIDs lists the live session cookie values, so tests can prove
// they never reach a log.
func (s *Server) SessionIDs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := make([]string, 0, len(s.sessions))
	for id := range s.sessions {
		ids = append(ids, id)
	}
	return ids
}

// Requests returns the journal of every request received, in order.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.journal)
}

// Count is how many requests of op arrived (applied or not).
func (s *Server) Count(op smartpay.Op) int {
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

// Purchase returns a purchase by the service's id.
func (s *Server) Purchase(id string) (Purchase, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.purchases[id]
	if !ok {
		return Purchase{}, false
	}
	s.settle(p)
	return p.snapshot(), true
}

// PurchaseByKassaID returns a purchase by the kassa's own id.
func (s *Server) PurchaseByKassaID(kassaPurchaseID string) (Purchase, bool) {
	s.mu.Lock()
	id, ok := s.byKassa[kassaPurchaseID]
	s.mu.Unlock()
	if !ok {
		return Purchase{}, false
	}
	return s.Purchase(id)
}

// Purchases lists every purchase, oldest first.
func (s *Server) Purchases() []Purchase {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Purchase, 0, len(s.purchases))
	for _, p := range s.purchases {
		s.settle(p)
		out = append(out, p.snapshot())
	}
	slices.SortFunc(out, func(a, b Purchase) int { return strings.Compare(a.ID, b.ID) })
	return out
}

func (p *Purchase) snapshot() Purchase {
	c := *p
	c.Fiscals = slices.Clone(p.Fiscals)
	return c
}

// settle moves a purchase along with time: a processing payment ends after
// the processing delay (unless stuck), an unreleased commit lapses after
// CodeTTL. Called with mu held.
func (s *Server) settle(p *Purchase) {
	now := s.opts.Now()
	switch p.State {
	case wire.StatusProcessing:
		if p.outcome != "" && !now.Before(p.ReleasedAt.Add(s.opts.ProcessingDelay)) {
			p.State = p.outcome
		}
	case wire.StatusCommitted:
		if !now.Before(p.CommittedAt.Add(s.opts.CodeTTL)) {
			p.State, p.Reason = wire.StatusExpired, "the code lapsed before release"
		}
	}
}

// Settle decides a purchase that is processing, as the buyer's bank would:
// success (the buyer confirmed) or declined. It is how a test or the demo
// ends a purchase left processing by the Stuck fault.
func (s *Server) Settle(purchaseID string, success bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.purchases[purchaseID]
	if !ok {
		return fmt.Errorf("no purchase %q", purchaseID)
	}
	if p.State != wire.StatusProcessing {
		return fmt.Errorf("purchase %s is %s, not processing", purchaseID, p.State)
	}
	p.State, p.Reason = wire.StatusSuccess, ""
	if !success {
		p.State, p.Reason = wire.StatusDeclined, "declined by the bank"
	}
	return nil
}

// takeFault consumes the first pending fault for op that pred accepts.
// Called with mu held.
func (s *Server) takeFault(op smartpay.Op, pred func(Fault) bool) *Fault {
	f, ok := s.faults.Take(func(f *Fault) bool { return f.matches(op) && pred(*f) })
	if !ok {
		return nil
	}
	return &f
}

func (s *Server) takeTransportFault(op smartpay.Op, kind Kind) *Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.takeFault(op, func(f Fault) bool { return f.Kind == kind })
}

// record appends to the journal and returns the entry's index.
func (s *Server) record(op smartpay.Op, path string, body []byte) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.journal = append(s.journal, Request{Op: op, Path: path, Body: string(body), Time: s.opts.Now()})
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

// dropConn closes the client's connection without an answer: with reset,
// a TCP RST; otherwise a TLS close (the client reads EOF).
func dropConn(w http.ResponseWriter, reset bool) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic(http.ErrAbortHandler)
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	if reset {
		if tc, ok := conn.(*tls.Conn); ok {
			if tcp, ok := tc.NetConn().(*net.TCPConn); ok {
				tcp.SetLinger(0)
				tcp.Close()
				return
			}
		}
	}
	conn.Close()
}

func newSession() string {
	b := make([]byte, 32)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

type reply struct {
	status int
	body   any
	cookie *http.Cookie
}

func errReply(status int, code, msg string) reply {
	return reply{status: status, body: wire.ErrorBody{Error: wire.ErrorDetail{Code: code, Message: msg}}}
}

var opByPath = map[string]smartpay.Op{
	wire.PathAuth:    smartpay.OpAuth,
	wire.PathCommit:  smartpay.OpCommit,
	wire.PathRelease: smartpay.OpRelease,
	wire.PathStatus:  smartpay.OpStatus,
	wire.PathConfirm: smartpay.OpConfirm,
	wire.PathFiscal:  smartpay.OpFiscal,
	wire.PathCancel:  smartpay.OpCancel,
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/", s.handleAPI)
	s.adminRoutes(mux)
	return mux
}

// handleAPI serves the contract: journal, client certificate, transport
// faults, session, then the operation (with its own faults).
func (s *Server) handleAPI(w http.ResponseWriter, r *http.Request) {
	op := opByPath[r.URL.Path]
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	idx := s.record(op, r.URL.Path, body)
	s.log.Debug("request", "op", op, "path", r.URL.Path)

	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		s.answer(w, idx, errReply(http.StatusForbidden, wire.ErrCertificateRequired, "a client certificate is required"), "")
		return
	}
	if op == "" {
		s.answer(w, idx, errReply(http.StatusNotFound, "not_found", "no such method"), "")
		return
	}
	if r.Method != http.MethodPost {
		s.answer(w, idx, errReply(http.StatusMethodNotAllowed, wire.ErrInvalidRequest, "POST only"), "")
		return
	}

	if f := s.takeTransportFault(op, Latency); f != nil {
		s.finish(idx, 0, Latency)
		// Not tied to the request's context: a real service keeps working
		// after the client gave up.
		select {
		case <-time.After(f.Delay):
		case <-s.closing:
			panic(http.ErrAbortHandler)
		}
	}
	if f := s.takeTransportFault(op, ServerError); f != nil {
		st := f.Status
		if st == 0 {
			st = http.StatusInternalServerError
		}
		s.answer(w, idx, errReply(st, wire.ErrInternal, "injected server error"), ServerError)
		return
	}
	if s.takeTransportFault(op, Reset) != nil {
		s.finish(idx, 0, Reset)
		dropConn(w, true)
		return
	}
	if s.takeTransportFault(op, Unauthorized) != nil {
		s.answer(w, idx, errReply(http.StatusUnauthorized, wire.ErrUnauthorized, "session expired"), Unauthorized)
		return
	}
	lost := s.takeTransportFault(op, ReplyLost) != nil

	var rep reply
	var fault Kind
	if op == smartpay.OpAuth {
		rep = s.auth()
	} else if !s.sessionValid(r) {
		rep = errReply(http.StatusUnauthorized, wire.ErrUnauthorized, "no valid session")
	} else {
		rep, fault = s.apply(op, body)
	}
	if lost {
		s.finish(idx, 0, ReplyLost)
		dropConn(w, false)
		return
	}
	s.answer(w, idx, rep, fault)
}

func (s *Server) answer(w http.ResponseWriter, idx int, rep reply, fault Kind) {
	s.finish(idx, rep.status, fault)
	if rep.cookie != nil {
		http.SetCookie(w, rep.cookie)
	}
	if rep.body == nil {
		rep.body = struct{}{}
	}
	writeJSON(w, rep.status, rep.body)
}

func (s *Server) auth() reply {
	id := newSession()
	s.mu.Lock()
	s.sessions[id] = s.opts.Now().Add(s.opts.AuthTTL)
	s.mu.Unlock()
	return reply{status: http.StatusOK, body: struct{}{}, cookie: &http.Cookie{
		Name: wire.SessionCookie, Value: id, Path: "/", HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode,
	}}
}

func (s *Server) sessionValid(r *http.Request) bool {
	ck, err := r.Cookie(wire.SessionCookie)
	if err != nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	exp, ok := s.sessions[ck.Value]
	if ok && !s.opts.Now().Before(exp) {
		delete(s.sessions, ck.Value)
		return false
	}
	return ok
}

// apply performs one purchase operation under the lock.
func (s *Server) apply(op smartpay.Op, body []byte) (reply, Kind) {
	s.mu.Lock()
	defer s.mu.Unlock()
	bad := func(msg string) (reply, Kind) {
		return errReply(http.StatusBadRequest, wire.ErrInvalidRequest, msg), ""
	}
	decode := func(v any) bool {
		d := json.NewDecoder(strings.NewReader(string(body)))
		d.DisallowUnknownFields()
		return d.Decode(v) == nil
	}
	lookup := func(id string) (*Purchase, *reply) {
		p, ok := s.purchases[id]
		if !ok {
			r := errReply(http.StatusNotFound, wire.ErrPurchaseNotFound, "no such purchase")
			return nil, &r
		}
		s.settle(p)
		return p, nil
	}
	conflict := func(p *Purchase) (reply, Kind) {
		return errReply(wire.HTTPConflict, wire.ErrInvalidState, "purchase is "+p.State), ""
	}
	refuseRepeat := func() (reply, Kind, bool) {
		if s.takeFault(op, func(f Fault) bool { return f.Kind == RepeatConflict }) == nil {
			return reply{}, "", false
		}
		return errReply(wire.HTTPConflict, wire.ErrInvalidState, "already done"), RepeatConflict, true
	}
	now := s.opts.Now()

	switch op {
	case smartpay.OpCommit:
		var req wire.CommitRequest
		if !decode(&req) || req.Code == "" || req.KassaPurchaseID == "" {
			return bad("code and kassa_purchase_id are required")
		}
		c, ok := s.codes[req.Code]
		if !ok {
			return errReply(wire.HTTPCodeRejected, wire.ErrCodeUnknown, "unknown code"), ""
		}
		if c.purchase != "" {
			p := s.purchases[c.purchase]
			if p.KassaPurchaseID == req.KassaPurchaseID {
				if r, k, ok := refuseRepeat(); ok {
					return r, k
				}
				// The same commit again (the kassa lost our answer): same purchase.
				return reply{status: http.StatusOK, body: wire.CommitResponse{PurchaseID: p.ID}}, ""
			}
			return errReply(wire.HTTPConflict, wire.ErrCodeCommitted, "code already committed"), ""
		}
		if f := s.takeFault(op, func(f Fault) bool { return f.Kind == CodeExpired }); f != nil {
			c.expired = true
			return errReply(wire.HTTPCodeRejected, wire.ErrCodeExpired, "code expired"), CodeExpired
		}
		if c.expired || !now.Before(c.issued.Add(s.opts.CodeTTL)) {
			c.expired = true
			return errReply(wire.HTTPCodeRejected, wire.ErrCodeExpired, "code expired"), ""
		}
		if _, used := s.byKassa[req.KassaPurchaseID]; used {
			return errReply(wire.HTTPConflict, wire.ErrInvalidState, "kassa_purchase_id already used with another code"), ""
		}
		s.seq++
		p := &Purchase{ID: fmt.Sprintf("sp-%06d-%s", s.seq, randomText(6)), KassaPurchaseID: req.KassaPurchaseID,
			Code: req.Code, State: wire.StatusCommitted, CommittedAt: now}
		s.purchases[p.ID] = p
		s.byKassa[p.KassaPurchaseID] = p.ID
		c.purchase = p.ID
		return reply{status: http.StatusOK, body: wire.CommitResponse{PurchaseID: p.ID}}, ""

	case smartpay.OpRelease:
		var req wire.ReleaseRequest
		if !decode(&req) || req.PurchaseID == "" {
			return bad("purchase_id is required")
		}
		if req.Amount <= 0 {
			return errReply(http.StatusUnprocessableEntity, wire.ErrInvalidRequest, "amount must be a positive number of kopecks"), ""
		}
		p, r := lookup(req.PurchaseID)
		if r != nil {
			return *r, ""
		}
		if p.State == wire.StatusExpired && p.Releases == 0 {
			return errReply(wire.HTTPCodeRejected, wire.ErrCodeExpired, "the commit lapsed"), ""
		}
		if p.State != wire.StatusCommitted {
			return conflict(p)
		}
		if f := s.takeFault(op, func(f Fault) bool { return f.Kind == CodeExpired }); f != nil {
			p.State, p.Reason = wire.StatusExpired, "the commit lapsed"
			return errReply(wire.HTTPCodeRejected, wire.ErrCodeExpired, "the commit lapsed"), CodeExpired
		}
		var fault Kind
		p.outcome, p.Reason = wire.StatusSuccess, ""
		if f := s.takeFault(op, func(f Fault) bool { return f.Kind == Declined || f.Kind == Stuck }); f != nil {
			fault = f.Kind
			if f.Kind == Declined {
				p.outcome, p.Reason = wire.StatusDeclined, f.Reason
				if p.Reason == "" {
					p.Reason = "declined by the bank"
				}
			} else {
				p.outcome = ""
			}
		}
		p.State, p.Amount, p.ReleasedAt = wire.StatusProcessing, req.Amount, now
		p.Releases++
		return reply{status: http.StatusOK, body: wire.StatusResponse{Status: wire.StatusProcessing}}, fault

	case smartpay.OpStatus:
		var req wire.PurchaseRequest
		if !decode(&req) || req.PurchaseID == "" {
			return bad("purchase_id is required")
		}
		p, r := lookup(req.PurchaseID)
		if r != nil {
			return *r, ""
		}
		if f := s.takeFault(op, func(f Fault) bool { return f.Kind == StatusWord }); f != nil {
			return reply{status: http.StatusOK, body: wire.StatusResponse{Status: f.Word}}, StatusWord
		}
		st := wire.StatusResponse{Status: p.State, Reason: p.Reason}
		return reply{status: http.StatusOK, body: st}, ""

	case smartpay.OpConfirm:
		var req wire.ConfirmRequest
		if !decode(&req) || req.PurchaseID == "" || req.Status != wire.ConfirmCompleted {
			return bad("purchase_id and status \"completed\" are required")
		}
		p, r := lookup(req.PurchaseID)
		if r != nil {
			return *r, ""
		}
		if p.State != wire.StatusSuccess {
			return conflict(p)
		}
		if p.Confirms > 0 {
			if r, k, ok := refuseRepeat(); ok {
				return r, k
			}
		}
		p.Confirms++
		return reply{status: http.StatusOK}, ""

	case smartpay.OpFiscal:
		var req wire.FiscalRequest
		if !decode(&req) || req.PurchaseID == "" || req.KKTRegNumber == "" || req.FiscalSign == "" ||
			req.FNNumber == "" || req.FDNumber == 0 || req.Amount <= 0 {
			return bad("every fiscal field is required")
		}
		if _, err := time.Parse(wire.ReceiptTimeLayout, req.ReceiptTime); err != nil {
			return bad("receipt_time: " + err.Error())
		}
		p, r := lookup(req.PurchaseID)
		if r != nil {
			return *r, ""
		}
		if p.State != wire.StatusSuccess {
			return conflict(p)
		}
		if req.Amount != p.Amount {
			return errReply(http.StatusUnprocessableEntity, wire.ErrInvalidRequest, "amount differs from the released amount"), ""
		}
		if len(p.Fiscals) > 0 {
			if r, k, ok := refuseRepeat(); ok {
				return r, k
			}
		}
		p.Fiscals = append(p.Fiscals, req)
		return reply{status: http.StatusOK}, ""

	case smartpay.OpCancel:
		var req wire.PurchaseRequest
		if !decode(&req) || req.PurchaseID == "" {
			return bad("purchase_id is required")
		}
		p, r := lookup(req.PurchaseID)
		if r != nil {
			return *r, ""
		}
		switch p.State {
		case wire.StatusCommitted, wire.StatusExpired, wire.StatusCanceled:
			if p.Releases > 0 {
				return conflict(p)
			}
			p.State, p.Reason = wire.StatusCanceled, "canceled by the kassa"
			p.Cancels++
			return reply{status: http.StatusOK}, ""
		}
		return conflict(p)
	}
	return errReply(http.StatusNotFound, "not_found", "no such method"), ""
}
