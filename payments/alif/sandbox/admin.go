package sandbox

import (
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strings"

	"kassa-agent/payments"
)

const adminHelp = `Alif checkout sandbox
  GET    /?session_ref=ID               the buyer's checkout page (Pay button)
  POST   /pay  session_ref=ID           pay as the buyer (form post; 303 back to the page)
  GET    /sandbox/sessions              every session
  GET    /sandbox/sessions/{id}         one session
  POST   /sandbox/sessions/{id}/pay     pay in full
  POST   /sandbox/sessions/{id}/fail    a failed card attempt {"word":"INSUFFICIENT_FUNDS"} (default DECLINED)
  POST   /sandbox/sessions/{id}/expire  end the session's five hours now
  GET    /sandbox/faults                pending faults
  POST   /sandbox/faults                inject, e.g. {"op":"create","kind":"reply_lost"}
                                        kinds: latency (delay "2s"), server_error (status 5xx),
                                        http_status (status), reset, reply_lost, garbage,
                                        refusal (code, message, field), status_word (word),
                                        paid_amount (amount); times <0 = until cleared
  DELETE /sandbox/faults                clear faults
  GET    /sandbox/requests              request journal
  GET    /sandbox/webhooks              webhook deliveries
`

func (s *Server) adminRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /sandbox/{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprint(w, adminHelp)
	})
	mux.HandleFunc("GET /sandbox/sessions", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.Sessions())
	})
	mux.HandleFunc("GET /sandbox/sessions/{id}", func(w http.ResponseWriter, r *http.Request) {
		p, ok := s.Session(r.PathValue("id"))
		if !ok {
			adminError(w, http.StatusNotFound, "no such session")
			return
		}
		writeJSON(w, http.StatusOK, p)
	})
	control := func(do func(id string, r *http.Request) error) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			id := r.PathValue("id")
			if err := do(id, r); err != nil {
				adminError(w, http.StatusConflict, err.Error())
				return
			}
			p, _ := s.Session(id)
			writeJSON(w, http.StatusOK, p)
		}
	}
	mux.HandleFunc("POST /sandbox/sessions/{id}/pay", control(func(id string, _ *http.Request) error { return s.Pay(id) }))
	mux.HandleFunc("POST /sandbox/sessions/{id}/expire", control(func(id string, _ *http.Request) error { return s.Expire(id) }))
	mux.HandleFunc("POST /sandbox/sessions/{id}/fail", control(func(id string, r *http.Request) error {
		var in struct {
			Word string `json:"word"`
		}
		d := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 4096))
		d.DisallowUnknownFields()
		if err := d.Decode(&in); err != nil && err.Error() != "EOF" {
			return fmt.Errorf("body: %w", err)
		}
		return s.Fail(id, in.Word)
	}))
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
	mux.HandleFunc("GET /sandbox/webhooks", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.Deliveries())
	})
}

func adminError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

var page = template.Must(template.New("checkout").Funcs(template.FuncMap{
	"sum": func(tiyin int64) string { return payments.FormatDecimal(tiyin, 2) },
	"mul": func(a, b int64) int64 { return a * b },
}).Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>Alif checkout (sandbox)</title></head>
<body>
<h1>Alif checkout — sandbox</h1>
<p>Session {{.ID}} · terminal {{.EPOS}}</p>
<table border="1" cellpadding="4">
<tr><th>Item</th><th>Price, sum</th><th>Qty</th><th>Line, sum</th></tr>
{{range .Items}}<tr><td>{{.Name}}</td><td>{{sum .Price}}</td><td>{{.Amount}}</td><td>{{sum (mul .Price .Amount)}}</td></tr>
{{end}}</table>
<p><b>Total: {{sum .Amount}} UZS</b></p>
<p>Status: {{if .Status}}{{.Status}}{{else}}waiting for payment{{end}} · expires {{.ExpiresAt.Format "2006-01-02 15:04:05 MST"}}</p>
{{if .Payable}}<form method="post" action="/pay"><input type="hidden" name="session_ref" value="{{.ID}}"><button type="submit">Pay {{sum .Amount}} UZS</button></form>
<p><a href="{{.CancelURL}}">Return to the shop</a></p>
{{else if eq .Status "SUCCEEDED"}}<p>Paid. <a href="{{.RedirectURL}}">Back to the shop</a></p>{{end}}
</body></html>
`))

type pageData struct {
	Session
	Payable bool
}

// checkoutPage is the buyer's page, GET /?session_ref=ID.
func (s *Server) checkoutPage(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("session_ref")
	if id == "" {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprint(w, adminHelp)
		return
	}
	p, ok := s.Session(id)
	if !ok {
		http.Error(w, "no such session", http.StatusNotFound)
		return
	}
	s.mu.Lock()
	_, err := s.open(id)
	s.mu.Unlock()
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	page.Execute(w, pageData{Session: p, Payable: err == nil})
}

// payForm is the page's Pay button.
func (s *Server) payForm(w http.ResponseWriter, r *http.Request) {
	id := r.PostFormValue("session_ref")
	if err := s.Pay(id); err != nil {
		http.Error(w, err.Error(), http.StatusConflict)
		return
	}
	http.Redirect(w, r, "/?session_ref="+url.QueryEscape(id), http.StatusSeeOther)
}
