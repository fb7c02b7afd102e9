// Package localapi is the HTTP/JSON API on the till's loopback interface that the
// store's POS software calls. It owns the security rules every endpoint shares:
// loopback Host only (DNS rebinding), no browser Origin, a bearer token, size and
// time limits, strict JSON, and one error shape with stable codes.
package localapi

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
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
	MaxConns          int
	IdleTimeout       time.Duration
	AnonIdleTimeout   time.Duration
	MaxStreams        int
}

func (s *Server) Stream(h http.HandlerFunc) http.HandlerFunc { return h }

// Server is the local API. Features add their endpoints with Handle before Serve.
type Server struct {
	opts    Options
	mux     *http.ServeMux
	log     *slog.Logger
	started time.Time
	routes  []string
	stop    chan struct{}
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
	s := &Server{opts: opts, mux: http.NewServeMux(), log: opts.Logger, started: time.Now(), stop: make(chan struct{})}
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

// Stopping is closed when the server begins to shut down. Handlers that wait
// (long-polls, event streams) end on it; Shutdown does not cancel them.
func (s *Server) Stopping() <-chan struct{} { return s.stop }

// Routes lists the registered endpoints ("METHOD /path").
func (s *Server) Routes() []string { return append([]string(nil), s.routes...) }

// Handler is the whole API with its security checks in front.
func (s *Server) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := s.admit(r); err != nil {
			s.log.Warn("local API request refused", "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr, "code", err.Code)
			WriteError(w, err)
			return
		}
		if r.Body != nil {
			r.Body = http.MaxBytesReader(w, r.Body, MaxBody)
		}
		// ServeMux answers 405 in plain text; keep our JSON shape instead.
		if _, pattern := s.mux.Handler(r); pattern == "" || pattern == "/" {
			if allowed := s.allowedMethods(r); allowed != "" {
				w.Header().Set("Allow", allowed)
				WriteError(w, Errorf("method_not_allowed", r.Method+" is not allowed on "+r.URL.Path+"; use "+allowed))
				return
			}
		}
		s.mux.ServeHTTP(w, r)
	})
}

func (s *Server) allowedMethods(r *http.Request) string {
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

// admit applies the rules every request must pass, in the order that leaks least.
func (s *Server) admit(r *http.Request) *Error {
	if !s.hostAllowed(r.Host) {
		return Errorf("forbidden_host", fmt.Sprintf("Host %q is not allowed; call http://127.0.0.1:%d", r.Host, s.opts.Port))
	}
	if _, ok := r.Header["Origin"]; ok {
		return Errorf("forbidden_origin", "requests from web pages are refused")
	}
	if r.URL.Path == "/v1/health" {
		return nil
	}
	const prefix = "Bearer "
	h := r.Header.Get("Authorization")
	if !strings.HasPrefix(h, prefix) || s.opts.Token == "" ||
		subtle.ConstantTimeCompare([]byte(strings.TrimPrefix(h, prefix)), []byte(s.opts.Token)) != 1 {
		return Errorf("unauthorized", "send Authorization: Bearer <token from the agent's api-token file>")
	}
	return nil
}

func (s *Server) hostAllowed(host string) bool {
	h, p, err := net.SplitHostPort(host)
	if err != nil || p != fmt.Sprint(s.opts.Port) {
		return false
	}
	return h == "127.0.0.1" || h == "localhost" || h == "::1"
}

// Serve answers on ln until ctx ends, then lets in-flight requests finish for up
// to grace before closing them.
func (s *Server) Serve(ctx context.Context, ln net.Listener, grace time.Duration) error {
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: s.opts.ReadHeaderTimeout,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      s.opts.WriteTimeout,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
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

// DecodeJSON reads a strict JSON body into v: application/json only, unknown
// fields and trailing data refused, size capped. The error is ready to answer.
func DecodeJSON(r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" {
			return Errorf("unsupported_media_type", "send Content-Type: application/json")
		}
	}
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Errorf("bad_request", "the body must hold exactly one JSON object")
	}
	return nil
}

func jsonError(err error) error {
	var tooBig *http.MaxBytesError
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &tooBig):
		return Wrap("body_too_large", fmt.Sprintf("the body is larger than %d bytes", MaxBody), err)
	case errors.Is(err, io.EOF):
		return Errorf("bad_request", "the body is empty; send a JSON object")
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return Wrap("unknown_field", strings.TrimPrefix(err.Error(), "json: ")+" (check the spelling)", err)
	case errors.As(err, &syn):
		return Wrap("bad_request", fmt.Sprintf("invalid JSON at byte %d: %v", syn.Offset, err), err)
	case errors.As(err, &typ):
		return Wrap("bad_request", fmt.Sprintf("field %q must be a %s", typ.Field, typ.Type), err)
	default:
		return Wrap("bad_request", "invalid JSON: "+err.Error(), err)
	}
}
