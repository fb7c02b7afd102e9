package sandbox

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
)

const adminHelp = `Smart Pay sandbox admin (no client certificate needed):
  POST   /sandbox/codes              a fresh QR code {"code": "..."}; ?format=text for the bare code
  GET    /sandbox/faults             pending faults
  POST   /sandbox/faults             inject, e.g. {"op":"release","kind":"reply_lost","times":1}
                                     kinds: latency (delay "2s"), server_error (status 5xx), reset,
                                     reply_lost, unauthorized, code_expired, declined (reason),
                                     stuck, status_word (word); times <0 = until cleared
  DELETE /sandbox/faults             clear faults
  GET    /sandbox/requests           request journal
  GET    /sandbox/purchases          purchases with release/confirm/fiscal counters
  POST   /sandbox/sessions/expire    expire every session (next call gets 401)
`

func (s *Server) adminRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /sandbox/{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprint(w, adminHelp)
	})
	mux.HandleFunc("POST /sandbox/codes", func(w http.ResponseWriter, r *http.Request) {
		c := s.NewCode()
		if r.URL.Query().Get("format") == "text" {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			fmt.Fprintln(w, c)
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"code": c})
	})
	mux.HandleFunc("GET /sandbox/faults", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.Faults())
	})
	mux.HandleFunc("POST /sandbox/faults", func(w http.ResponseWriter, r *http.Request) {
		var f Fault
		d := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096))
		d.DisallowUnknownFields()
		if err := d.Decode(&f); err != nil {
			adminError(w, http.StatusBadRequest, err.Error())
			return
		}
		if err := s.Inject(f); err != nil {
			adminError(w, http.StatusBadRequest, strings.TrimPrefix(err.Error(), "sandbox: "))
			return
		}
		writeJSON(w, http.StatusCreated, s.Faults())
	})
	mux.HandleFunc("DELETE /sandbox/faults", func(w http.ResponseWriter, r *http.Request) {
		s.ClearFaults()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /sandbox/requests", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.Requests())
	})
	mux.HandleFunc("GET /sandbox/purchases", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.Purchases())
	})
	mux.HandleFunc("POST /sandbox/sessions/expire", func(w http.ResponseWriter, r *http.Request) {
		s.ExpireSessions()
		w.WriteHeader(http.StatusNoContent)
	})
}

func adminError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}
