package sale

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"kassa-agent/agent/internal/localapi"
	"kassa-agent/fiscal"
)

// MarkingCheckRequest is the body of POST /v1/marking/check: one scanned code,
// checked as the receipt line that will sell (or take back) it.
type MarkingCheckRequest struct {
	// Code is the code as scanned, GS (0x1D, "\u001d" in JSON) kept.
	Code string `json:"code"`
	// Quantity in thousandths, as the receipt line's: 1000 (the default) for
	// a piece, the weight for a weighed item; left out for a fraction.
	Quantity int64       `json:"quantity,omitempty"`
	Measure  string      `json:"measure,omitempty"`
	Fraction *FractionIn `json:"fraction,omitempty"`
	Type     string      `json:"type,omitempty"`  // sale (default) or sale_return
	Group    string      `json:"group,omitempty"` // the marking.groups policy to apply
}

// MarkingCheckAnswer is the register's verdict on a code and what was done
// with it: accepted in the FN for the receipt, or declined.
type MarkingCheckAnswer struct {
	Code          string `json:"code"`
	PlannedStatus string `json:"planned_status"`
	Verdict       string `json:"verdict"` // valid, invalid, not_checked
	Message       string `json:"message"` // for the cashier
	Accepted      bool   `json:"accepted"`
	Online        bool   `json:"online"`      // the OISM answered
	Local         int    `json:"local"`       // tag 2004, the FN's own check (bit 0 done, bit 1 positive)
	Result        int    `json:"result"`      // tag 2106
	ItemStatus    int    `json:"item_status"` // tag 2109, -1 absent
	CodeType      int    `json:"code_type"`   // tag 2100
}

// markingRequest converts and checks the request; nothing is sent yet.
func (q MarkingCheckRequest) markingRequest() (fiscal.MarkingRequest, error) {
	bad := func(format string, a ...any) error {
		return localapi.Errorf("validation_failed", fmt.Sprintf(format, a...))
	}
	if q.Code == "" {
		return fiscal.MarkingRequest{}, bad("code: the marking code is required")
	}
	t, ok := map[string]fiscal.ReceiptType{"": fiscal.Sale, "sale": fiscal.Sale, "sale_return": fiscal.SaleReturn}[q.Type]
	if !ok {
		return fiscal.MarkingRequest{}, bad("type %q is not sale or sale_return", q.Type)
	}
	m, ok := Measures[q.Measure]
	if !ok {
		return fiscal.MarkingRequest{}, bad("measure %q is not one of %s", q.Measure, measureNames)
	}
	it := fiscal.Item{MarkingCode: q.Code, Measure: m}
	switch f := q.Fraction; {
	case f != nil:
		it.Fraction = &fiscal.Fraction{Numerator: f.Numerator, Denominator: f.Denominator}
		if !it.Fraction.Valid() {
			return fiscal.MarkingRequest{}, bad("fraction: a part of a pack is 0 < numerator < denominator")
		}
		if q.Quantity != 0 {
			return fiscal.MarkingRequest{}, bad("quantity: a part of a pack is counted by its fraction; leave quantity out")
		}
		it.Quantity = it.Fraction.Quantity()
	case q.Quantity < 0 || q.Quantity > maxQuantityThousandths:
		return fiscal.MarkingRequest{}, bad("quantity must be a positive number of thousandths (1000 = 1 piece)")
	case m == fiscal.Pieces && q.Quantity != 0 && q.Quantity != 1000:
		return fiscal.MarkingRequest{}, bad("quantity: a marked piece item is one piece per code (1000)")
	case m != fiscal.Pieces && q.Quantity == 0:
		return fiscal.MarkingRequest{}, bad("quantity: a weighed or measured item needs its quantity")
	case m == fiscal.Pieces:
		it.Quantity = fiscal.QuantityOne
	default:
		it.Quantity = q.Quantity * 1000
	}
	req := fiscal.MarkingRequestFor(t, it)
	if err := req.Validate(); err != nil {
		return req, markingErr("code", err)
	}
	return req, nil
}

// CheckMarking checks one code through the FN and accepts the result when
// the code may be sold under its group's policy (remembered for the receipt),
// else declines it. A refused code is a 200 answer with accepted false: the
// check itself succeeded.
func (e *Engine) CheckMarking(ctx context.Context, in MarkingCheckRequest) (*MarkingCheckAnswer, error) {
	q, err := in.markingRequest()
	if err != nil {
		return nil, err
	}
	if e.o.Register == nil {
		return nil, localapi.Errorf("register_unavailable", "no fiscal register is configured ([register] enabled = true)")
	}
	if e.o.Marking.NoChecks {
		return nil, localapi.Errorf("marking_unsupported", "marking codes are checked on an FFD 1.2 register only (register.ffd = \"1.2\"); this one is configured for an older format, where a code goes on its line unchecked")
	}
	e.markMu.Lock()
	defer e.markMu.Unlock()
	if _, ok := e.accepted[keyOf(q)]; ok {
		// Accepted twice, the FN would hold the code twice for one line: it
		// is cleared and the basket's other codes are checked again at the receipt.
		e.markDirty = true
	}
	res, err := e.checkCode(ctx, q, in.Group, "code", e.log.With("check", "api"))
	var ae *localapi.Error
	refused := errors.As(err, &ae) && ae.Code == "marking_refused"
	if err != nil && !refused {
		return nil, err
	}
	out := &MarkingCheckAnswer{Code: q.Code, PlannedStatus: q.Status.String(), Verdict: res.Verdict().String(),
		Message: res.Message(), Accepted: !refused, Online: res.Online, Local: int(res.Local), Result: int(res.Result),
		ItemStatus: res.ItemStatus, CodeType: res.CodeType}
	if refused {
		out.Message = strings.TrimPrefix(ae.Message, "code: ")
	}
	return out, nil
}

func (e *Engine) apiCheckMarking(w http.ResponseWriter, r *http.Request) {
	var req MarkingCheckRequest
	if err := localapi.DecodeJSON(r, &req); err != nil {
		localapi.WriteError(w, err)
		return
	}
	out, err := e.CheckMarking(r.Context(), req)
	if err != nil {
		localapi.WriteError(w, err)
		return
	}
	localapi.WriteJSON(w, http.StatusOK, out)
}
