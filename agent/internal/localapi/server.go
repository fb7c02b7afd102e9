// Package localapi is the HTTP/JSON API on the till's loopback interface that the
// store's POS software calls. It owns the security rules every endpoint shares:
// loopback Host only (DNS rebinding), no browser Origin, a bearer token, size and
// time limits, strict JSON, and one error shape with stable codes.
package localapi

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"
)

// MaxBody is the largest request body accepted.
const MaxBody = 1 << 20

// Options configure a Server.
type Options struct {
	Token  string // bearer token every endpoint but /v1/health requires
	Port   int    // the port the POS uses; Host headers must carry it
	Logger *slog.Logger
	Status func(context.Context) any // the body of GET /v1/status
	// WriteTimeout bounds one response; long-polls must stay below it.
	WriteTimeout time.Duration
	// ReadHeaderTimeout cuts off clients that send headers slowly (default 5 s).
	ReadHeaderTimeout time.Duration
	// MaxConns bounds the connections held open (default DefaultMaxConns);
	// a quarter of them is kept for connections that showed the token.
	MaxConns int
	// IdleTimeout closes a keep-alive connection that showed the token after
	// this long without a request (default 30 s).
	IdleTimeout time.Duration
	// AnonIdleTimeout closes a connection that has not shown the token after
	// this long without a request (default 5 s).
	AnonIdleTimeout time.Duration
	// MaxStreams bounds the event streams open at once (default 16).
	MaxStreams int
}

// DefaultMaxConns is the connection limit when none is configured: far more
// than a POS uses, far fewer than the descriptors the agent may open.
const DefaultMaxConns = 256

// Server is the local API. Features add their endpoints with Handle before Serve.
type Server struct {
	opts    Options
	mux     *http.ServeMux
	log     *slog.Logger
	started time.Time
	routes  []string
	stop    chan struct{}
	streams chan struct{} // one token per open stream
}

// New returns a server with /v1/health and /v1/status registered.
func New(opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.ReadHeaderTimeout == 0 {
		opts.ReadHeaderTimeout = 5 * time.Second
	}
	if opts.WriteTimeout == 0 {
		opts.WriteTimeout = 75 * time.Second
	}
	if opts.MaxConns <= 0 {
		opts.MaxConns = DefaultMaxConns
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = 30 * time.Second
	}
	if opts.AnonIdleTimeout <= 0 {
		opts.AnonIdleTimeout = 5 * time.Second
	}
	if opts.MaxStreams <= 0 {
		opts.MaxStreams = 16
	}
	s := &Server{opts: opts, mux: http.NewServeMux(), log: opts.Logger, started: time.Now(), stop: make(chan struct{}),
		streams: make(chan struct{}, opts.MaxStreams)}
	s.Handle("GET /v1/health", func(w http.ResponseWriter, r *http.Request) {
		WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	s.Handle("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		var body any = map[string]any{}
		if opts.Status != nil {
			body = opts.Status(r.Context())
		}
		WriteJSON(w, http.StatusOK, body)
	})
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		WriteError(w, Errorf("not_found", "no endpoint "+r.Method+" "+r.URL.Path+"; see /v1/openapi.json"))
	})
	return s
}

// Handle registers an endpoint ("METHOD /path" patterns, as net/http's ServeMux).
func (s *Server) Handle(pattern string, h http.HandlerFunc) {
	s.routes = append(s.routes, pattern)
	s.mux.HandleFunc(pattern, h)
}

// Stream wraps a handler that holds its request open (an event stream) so
// that at most MaxStreams run at once; beyond that the answer is 503 busy.
// Each stream holds a connection and a subscriber until the client goes away.
func (s *Server) Stream(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		select {
		case s.streams <- struct{}{}:
		default:
			WriteError(w, Errorf("busy", fmt.Sprintf("%d event streams are open already, the most the agent serves; close one the POS no longer reads", cap(s.streams))))
			return
		}
		defer func() { <-s.streams }()
		h(w, r)
	}
}

// Stopping is closed when the server begins to shut down. Handlers that wait
// (long-polls, event streams) end on it; Shutdown does not cancel them.
func (s *Server) Stopping() <-chan struct{} { return s.stop }

// Routes lists the registered endpoints ("METHOD /path").
func (s *Server) Routes() []string { return append([]string(nil), s.routes...) }

// Handler is the whole API with its security checks in front.
func (s *Server) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		authed, err := s.admit(r)
		if err != nil {
			s.log.Warn("local API request refused", "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr, "code", err.Code)
			WriteError(w, err)
			return
		}
		if gc := connOf(r); authed && gc != nil {
			gc.g.authenticated(gc)
		}
		// Refused before the body is read, so a client that asked for
		// "100 Continue" is not invited to send it.
		if r.ContentLength > MaxBody {
			WriteError(w, Errorf("body_too_large", fmt.Sprintf("the body is larger than %d bytes (1 MiB)", MaxBody)))
			return
		}
		if r.Body != nil {
			r.Body = http.MaxBytesReader(w, r.Body, MaxBody)
		}
		// ServeMux answers 404 and 405 in plain text (CONNECT, whose target is
		// not a path, finds no pattern at all); keep our JSON shape instead.
		if _, pattern := s.mux.Handler(r); pattern == "" || pattern == "/" {
			if allowed := s.allowedMethods(r); allowed != "" {
				w.Header().Set("Allow", allowed)
				WriteError(w, Errorf("method_not_allowed", r.Method+" is not allowed on "+r.URL.Path+"; use "+allowed))
				return
			}
			WriteError(w, Errorf("not_found", "no endpoint "+r.Method+" "+r.URL.Path+"; see /v1/openapi.json"))
			return
		}
		s.mux.ServeHTTP(w, r)
	})
}

func (s *Server) allowedMethods(r *http.Request) string {
	if !strings.HasPrefix(r.URL.Path, "/") {
		return "" // CONNECT's host:port target names no endpoint
	}
	var allowed []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete} {
		if m == r.Method {
			continue
		}
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, p := s.mux.Handler(probe); p != "" && p != "/" {
			allowed = append(allowed, m)
		}
	}
	return strings.Join(allowed, ", ")
}

// admit applies the rules every request must pass, in the order that leaks
// least. authed tells whether the request showed the token.
func (s *Server) admit(r *http.Request) (authed bool, _ *Error) {
	if !s.hostAllowed(r.Host) {
		return false, Errorf("forbidden_host", fmt.Sprintf("Host %q is not allowed; call http://127.0.0.1:%d", r.Host, s.opts.Port))
	}
	if _, ok := r.Header["Origin"]; ok {
		return false, Errorf("forbidden_origin", "requests from web pages are refused")
	}
	authed = s.tokenOK(r.Header.Get("Authorization"))
	if !authed && r.URL.Path != "/v1/health" {
		return false, Errorf("unauthorized", "send Authorization: Bearer <token from the agent's api-token file>")
	}
	return authed, nil
}

// tokenOK checks "Bearer <token>"; the scheme is case-insensitive (RFC 9110).
func (s *Server) tokenOK(h string) bool {
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || s.opts.Token == "" {
		return false
	}
	tok = strings.TrimLeft(tok, " ")
	return subtle.ConstantTimeCompare([]byte(tok), []byte(s.opts.Token)) == 1
}

func (s *Server) hostAllowed(host string) bool {
	h, p, err := net.SplitHostPort(host)
	if err != nil || p != fmt.Sprint(s.opts.Port) {
		return false
	}
	// Host names are case-insensitive; the IP literals have one spelling.
	return h == "127.0.0.1" || strings.EqualFold(h, "localhost") || h == "::1"
}

// Serve answers on ln until ctx ends, then lets in-flight requests finish for up
// to grace before closing them.
func (s *Server) Serve(ctx context.Context, ln net.Listener, grace time.Duration) error {
	g := newConnGuard(ln, s.opts.MaxConns, s.opts.AnonIdleTimeout, s.log)
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: s.opts.ReadHeaderTimeout,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      s.opts.WriteTimeout,
		IdleTimeout:       s.opts.IdleTimeout,
		ConnState:         g.state,
		ConnContext:       connContext,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(g) }()
	select {
	case err := <-errc:
		return fmt.Errorf("local API: %w", err)
	case <-ctx.Done():
	}
	close(s.stop)
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	err := srv.Shutdown(sctx)
	if errors.Is(err, context.DeadlineExceeded) {
		s.log.Warn("local API: requests still running after the shutdown grace period were cut off", "grace", grace)
		_ = srv.Close()
		return nil
	}
	return err
}

// MaxIdempotencyKey is the longest Idempotency-Key accepted, in bytes.
const MaxIdempotencyKey = 255

// IdempotencyKey reads the Idempotency-Key header of a creating call. A header
// that is absent and one that is present but empty are different mistakes.
func IdempotencyKey(r *http.Request) (string, error) {
	const use = "a fresh unique value per new payment, the same value when retrying"
	v, ok := r.Header["Idempotency-Key"]
	switch {
	case !ok:
		return "", Errorf("idempotency_key_missing", "send an Idempotency-Key header ("+use+")")
	case len(v) != 1:
		return "", Errorf("idempotency_key_invalid", "send one Idempotency-Key header, not several")
	case v[0] == "":
		return "", Errorf("idempotency_key_invalid", "the Idempotency-Key header is empty; send "+use)
	case len(v[0]) > MaxIdempotencyKey:
		return "", Errorf("idempotency_key_invalid", fmt.Sprintf("Idempotency-Key is %d bytes long; at most %d bytes are accepted", len(v[0]), MaxIdempotencyKey))
	}
	return v[0], nil
}
