package sale

import (
	"context"
	"net/http"
	"time"

	"kassa-agent/agent/internal/localapi"
)

// defaultOpWait is how long POST /v1/receipts waits for the document before
// answering 202 with the operation as it stands.
const defaultOpWait = 30 * time.Second

func (e *Engine) apiCreateReceipt(w http.ResponseWriter, r *http.Request) {
	var req ReceiptRequest
	e.apiCreateOp(w, r, &req, "/v1/receipts/", func(key string) (*Operation, bool, error) {
		return e.CreateReceipt(r.Context(), key, req)
	})
}

func (e *Engine) apiCreateRefund(w http.ResponseWriter, r *http.Request) {
	var req RefundRequest
	e.apiCreateOp(w, r, &req, "/v1/refunds/", func(key string) (*Operation, bool, error) {
		return e.CreateRefund(r.Context(), key, r.PathValue("id"), req)
	})
}

// apiCreateOp is the shape of every operation-creating call: a strict body,
// an Idempotency-Key, and a wait (default 30 s) for the operation to settle
// before answering 201 (or 200 for a replay), else 202 with it as it stands.
func (e *Engine) apiCreateOp(w http.ResponseWriter, r *http.Request, body any, path string, create func(key string) (*Operation, bool, error)) {
	if err := localapi.DecodeJSON(r, body); err != nil {
		localapi.WriteError(w, err)
		return
	}
	key, err := localapi.IdempotencyKey(r)
	if err != nil {
		localapi.WriteError(w, err)
		return
	}
	wait := defaultOpWait
	if v := r.URL.Query().Get("wait"); v != "" {
		if wait, err = parseWait(v); err != nil {
			localapi.WriteError(w, err)
			return
		}
	}
	op, created, err := create(key)
	if err != nil {
		localapi.WriteError(w, err)
		return
	}
	if !created {
		w.Header().Set("Idempotent-Replayed", "true")
	}
	op = e.waitOp(r.Context(), op, wait, func(o *Operation) bool { return o.State == OpDone || o.State == OpFailed })
	w.Header().Set("Location", path+op.ID)
	status := http.StatusOK
	switch {
	case op.State != OpDone && op.State != OpFailed:
		status = http.StatusAccepted // still queued or printing: GET it, or follow /v1/events
	case created:
		status = http.StatusCreated
	}
	localapi.WriteJSON(w, status, op)
}

func (e *Engine) apiGetReceipt(w http.ResponseWriter, r *http.Request) { e.apiGetOp(w, r, "receipt") }

func (e *Engine) apiGetRefund(w http.ResponseWriter, r *http.Request) { e.apiGetOp(w, r, "refund") }

// apiGetOp answers one operation of the given kind; ?wait= long-polls.
func (e *Engine) apiGetOp(w http.ResponseWriter, r *http.Request, kind string) {
	wait, err := parseWait(r.URL.Query().Get("wait"))
	if err != nil {
		localapi.WriteError(w, err)
		return
	}
	op, err := e.GetOp(r.PathValue("id"))
	if isNoSuchRecord(err) || (err == nil && op.Kind != kind) {
		localapi.WriteError(w, localapi.Errorf("not_found", "no "+kind+" "+r.PathValue("id")))
		return
	}
	if err != nil {
		localapi.WriteError(w, mapStoreErr(err))
		return
	}
	first := op.Version
	op = e.waitOp(r.Context(), op, wait, func(o *Operation) bool { return o.Version != first })
	localapi.WriteJSON(w, http.StatusOK, op)
}

// receiptList is the body of GET /v1/receipts.
type receiptList struct {
	Receipts []*Operation `json:"receipts"`
	Next     string       `json:"next,omitempty"` // pass as after= for the next page
}

func (e *Engine) apiListReceipts(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, err := parseLimit(q.Get("limit"))
	if err != nil {
		localapi.WriteError(w, err)
		return
	}
	ops, err := e.ListOps(q.Get("after"), limit)
	if err != nil {
		localapi.WriteError(w, mapStoreErr(err))
		return
	}
	ans := receiptList{Receipts: []*Operation{}}
	for _, op := range ops {
		if op.Kind == "receipt" {
			ans.Receipts = append(ans.Receipts, op)
		}
	}
	if len(ops) == limit {
		ans.Next = ops[len(ops)-1].ID
	}
	localapi.WriteJSON(w, http.StatusOK, ans)
}

// waitOp returns op once done(op) holds, or when wait runs out, the caller
// goes away or the agent stops.
func (e *Engine) waitOp(ctx context.Context, op *Operation, wait time.Duration, done func(*Operation) bool) *Operation {
	if wait <= 0 || done(op) {
		return op
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		changed := e.hub.Changed()
		if cur, err := e.GetOp(op.ID); err == nil {
			op = cur
		}
		if done(op) {
			return op
		}
		select {
		case <-ctx.Done():
			return op
		case <-e.stopped:
			return op
		case <-t.C:
			return op
		case <-changed:
		}
	}
}
