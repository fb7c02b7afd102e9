package sale

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"kassa-agent/agent/internal/localapi"
)

// maxWait bounds a long-poll; it stays below the server's write timeout.
const maxWait = 60 * time.Second

// Routes adds the payment, scanner and event endpoints to the local API.
func (e *Engine) Routes(s *localapi.Server) {
	e.stopped = s.Stopping()
	s.Handle("POST /v1/payments", e.apiCreate)
	s.Handle("GET /v1/payments", e.apiList)
	s.Handle("GET /v1/payments/{id}", e.apiGet)
	s.Handle("POST /v1/payments/{id}/cancel", e.apiCancel)
	s.Handle("POST /v1/scanner/codes", e.apiScan)
	s.Handle("POST /v1/smartpay/held/release", e.apiReleaseHeld)
	s.Handle("GET /v1/events", s.Stream(e.apiEvents))
	s.Handle("POST /v1/receipts", e.apiCreateReceipt)
	s.Handle("GET /v1/receipts", e.apiListReceipts)
	s.Handle("GET /v1/receipts/{id}", e.apiGetReceipt)
	s.Handle("POST /v1/payments/{id}/refunds", e.apiCreateRefund)
	s.Handle("GET /v1/refunds/{id}", e.apiGetRefund)
	s.Handle("POST /v1/marking/check", e.apiCheckMarking)
	e.registerRoutes(s)
	s.Handle("POST /v1/providers/{name}/webhook", e.apiNotice)
	s.Handle("GET /v1/providers/{name}/notify", e.apiNotice)
}

func (e *Engine) apiCreate(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			localapi.WriteError(w, localapi.Wrap("body_too_large", "the body is larger than 1 MiB", err))
			return
		}
		localapi.WriteError(w, localapi.Wrap("bad_request", "cannot read the body", err))
		return
	}
	var req CreateRequest
	r.Body = io.NopCloser(strings.NewReader(string(body)))
	if err := localapi.DecodeJSON(r, &req); err != nil {
		localapi.WriteError(w, err)
		return
	}
	key, err := localapi.IdempotencyKey(r)
	if err != nil {
		localapi.WriteError(w, err)
		return
	}
	p, created, err := e.Create(r.Context(), key, body, req)
	if err != nil {
		localapi.WriteError(w, err)
		return
	}
	status := http.StatusCreated
	if !created {
		status = http.StatusOK
		w.Header().Set("Idempotent-Replayed", "true")
	}
	w.Header().Set("Location", "/v1/payments/"+p.ID)
	localapi.WriteJSON(w, status, p)
}

func (e *Engine) apiGet(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	wait, err := parseWait(r.URL.Query().Get("wait"))
	if err != nil {
		localapi.WriteError(w, err)
		return
	}
	p, err := e.waitChange(r.Context(), id, wait)
	if err != nil {
		localapi.WriteError(w, err)
		return
	}
	localapi.WriteJSON(w, http.StatusOK, p)
}

// parseLimit reads a list's page size (default 100).
func parseLimit(v string) (int, error) {
	if v == "" {
		return 100, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 1000 {
		return 0, localapi.Errorf("bad_request", "limit must be from 1 to 1000")
	}
	return n, nil
}

func parseWait(v string) (time.Duration, error) {
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, localapi.Errorf("bad_request", "wait must be a duration such as 30s")
	}
	return min(d, maxWait), nil
}

// waitChange returns the payment once it differs from what it was when the
// call came in, or when wait runs out.
func (e *Engine) waitChange(ctx context.Context, id string, wait time.Duration) (*Payment, error) {
	changed := e.hub.Changed()
	p, err := e.Get(id)
	if isNoSuchRecord(err) {
		return nil, localapi.Errorf("not_found", "no payment "+id)
	}
	if err != nil || wait == 0 || p.State.Final() {
		return p, err // a final payment will not change: no point waiting
	}
	first := p.Version
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return p, nil
		case <-e.stopped:
			return p, nil
		case <-t.C:
			return p, nil
		case <-changed:
		}
		changed = e.hub.Changed()
		if p, err = e.Get(id); err != nil {
			return nil, err
		}
		if p.Version != first {
			return p, nil
		}
	}
}

// listAnswer is the body of GET /v1/payments.
type listAnswer struct {
	Payments []*Payment `json:"payments"`
	// Next is the id to pass as after= for the next page ("" at the end).
	Next string `json:"next,omitempty"`
}

func (e *Engine) apiList(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var since time.Time
	if v := q.Get("since"); v != "" {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			localapi.WriteError(w, localapi.Errorf("bad_request", "since must be an RFC 3339 time such as 2026-11-23T10:00:00Z"))
			return
		}
		since = t
	}
	limit, err := parseLimit(q.Get("limit"))
	if err != nil {
		localapi.WriteError(w, err)
		return
	}
	ps, err := e.List(q.Get("after"), since, limit)
	if err != nil {
		localapi.WriteError(w, err)
		return
	}
	ans := listAnswer{Payments: ps}
	if ans.Payments == nil {
		ans.Payments = []*Payment{}
	}
	if len(ps) == limit {
		ans.Next = ps[len(ps)-1].ID
	}
	localapi.WriteJSON(w, http.StatusOK, ans)
}

func (e *Engine) apiCancel(w http.ResponseWriter, r *http.Request) {
	p, err := e.Cancel(r.Context(), r.PathValue("id"))
	if err != nil {
		localapi.WriteError(w, err)
		return
	}
	localapi.WriteJSON(w, http.StatusOK, p)
}

// apiReleaseHeld: the sale ended another way (cash, card) after the buyer
// showed a Smart Pay code; the code is given back so the next sale cannot take it.
func (e *Engine) apiReleaseHeld(w http.ResponseWriter, r *http.Request) {
	n, err := e.ReleaseHeld(r.Context())
	if err != nil {
		localapi.WriteError(w, err)
		return
	}
	localapi.WriteJSON(w, http.StatusOK, map[string]int{"released": n})
}

// ScanRequest is the body of POST /v1/scanner/codes.
type ScanRequest struct {
	Code string `json:"code"`
}

// ScanSink takes codes handed over by the POS; the scanner's own filter (double
// reads) applies to them as to codes read from the port. It reports whether the
// code was taken (false: the same code was just read).
type ScanSink func(code string) bool

// SetScanSink routes API-submitted codes through the scanner. Without a
// scanner they go straight to OnScan.
func (e *Engine) SetScanSink(s ScanSink) { e.scanSink = s }

func (e *Engine) apiScan(w http.ResponseWriter, r *http.Request) {
	var req ScanRequest
	if err := localapi.DecodeJSON(r, &req); err != nil {
		localapi.WriteError(w, err)
		return
	}
	if req.Code == "" || len(req.Code) > 4096 {
		localapi.WriteError(w, localapi.Errorf("validation_failed", "code must be 1 to 4096 bytes"))
		return
	}
	if e.scanSink != nil {
		if !e.scanSink(req.Code) {
			localapi.WriteJSON(w, http.StatusOK, map[string]string{"status": "duplicate",
				"message": "the same code was read moments ago; it was taken once"})
			return
		}
	} else {
		go e.OnScan(context.WithoutCancel(r.Context()), req.Code, "api", time.Now())
	}
	localapi.WriteJSON(w, http.StatusAccepted, map[string]string{"status": "accepted"})
}

// apiEvents streams server-sent events until the client goes away. A comment
// line every 15 s keeps proxies and the POS's HTTP client from timing out.
func (e *Engine) apiEvents(w http.ResponseWriter, r *http.Request) {
	fl, ok := w.(http.Flusher)
	if !ok {
		localapi.WriteError(w, localapi.Errorf("internal", "streaming not supported"))
		return
	}
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Time{}) // a stream has no write deadline
	events, stop := e.hub.Subscribe()
	defer stop()
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	fmt.Fprint(w, ": kassa-agent events\n\n")
	fl.Flush()
	tick := time.NewTicker(15 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-e.stopped:
			return // the agent is stopping; the POS reconnects to the next one
		case <-tick.C:
			fmt.Fprint(w, ": keep-alive\n\n")
		case ev := <-events:
			b, err := json.Marshal(ev.Data)
			if err != nil {
				continue
			}
			fmt.Fprintf(w, "id: %d\nevent: %s\ndata: %s\n\n", ev.ID, ev.Type, b)
		}
		fl.Flush()
	}
}
