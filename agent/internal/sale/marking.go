package sale

// Marked goods (FFD 1.2). Before a marked line is sold or taken back its code
// is checked through the FN and the result accepted in it; the receipt then
// binds each line to its accepted code. The FN holds accepted codes until a
// receipt uses them or they are cleared, so the engine remembers what it has
// accepted (in memory: a restart forgets, and the first marked receipt after
// it clears the FN first) and re-checks whenever what the FN holds is not
// known to be exactly the receipt's codes.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"kassa-agent/agent/internal/localapi"
	"kassa-agent/fiscal"
)

type markKey struct {
	code   string
	status fiscal.PlannedStatus
}

// keyOf is the key of what a check asks: the code and its planned status.
func keyOf(q fiscal.MarkingRequest) markKey { return markKey{q.Code, q.Status} }

// lineKey is the key of a marked line of a receipt of type t.
func lineKey(t fiscal.ReceiptType, it fiscal.Item) markKey {
	return keyOf(fiscal.MarkingRequestFor(t, it))
}

func hasMarked(r fiscal.Receipt) bool {
	return slices.ContainsFunc(r.Items, fiscal.Item.Marked)
}

// policy is the unchecked-code policy of a product group.
func (e *Engine) policy(group string) fiscal.OfflinePolicy {
	if p, ok := e.o.Marking.Groups[group]; ok {
		return p
	}
	return e.o.Marking.Unchecked
}

// markingRefused is the API's answer for a code that may not be sold: an
// invalid one (by law) or an unchecked one the policy refuses.
func markingRefused(field string, res fiscal.MarkingResult, why error) error {
	msg := res.Message()
	if res.Verdict() == fiscal.NotChecked {
		msg += "; продажа без проверки запрещена настройкой (marking.unchecked = \"refuse\")"
	}
	return localapi.Wrap("marking_refused", field+": "+msg, why)
}

// markingErr words a register error of the marking flow for the API; field
// names the code as the request sent it.
func markingErr(field string, err error) error {
	var fe *fiscal.Error
	if !errors.As(err, &fe) {
		return err
	}
	switch fe.Code {
	case fiscal.CodeNotSupported:
		return localapi.Wrap("marking_unsupported", "marking codes are checked on an FFD 1.2 register only (register.ffd = \"1.2\"): "+err.Error(), err)
	case fiscal.CodeBadReceipt:
		text := fe.Text
		if fe.Field != "" {
			// fiscal names the request's fields (marking_code, measure, …).
			text = strings.TrimPrefix(text, fe.Field+": ")
			if fe.Field != "marking_code" {
				field = strings.TrimSuffix(field, "marking_code") + fe.Field
			}
		}
		return localapi.Wrap("validation_failed", field+": "+text, err)
	}
	return err
}

// clearMarking drops every code the FN holds accepted; markMu held.
func (e *Engine) clearMarking(ctx context.Context) error {
	if err := e.o.Register.ClearMarking(ctx); err != nil {
		return err
	}
	clear(e.accepted)
	e.markDirty = false
	return nil
}

// checkCode checks one code and accepts the result if it may be sold under
// the group's policy, else declines it; markMu held.
func (e *Engine) checkCode(ctx context.Context, q fiscal.MarkingRequest, group, field string, log *slog.Logger) (fiscal.MarkingResult, error) {
	if e.markDirty {
		if err := e.clearMarking(ctx); err != nil {
			return fiscal.MarkingResult{}, err
		}
	}
	res, err := e.o.Register.CheckMarking(ctx, q)
	if err != nil {
		return res, markingErr(field, err)
	}
	log = log.With("verdict", res.Verdict().String(), "result_2106", int(res.Result), "status", q.Status.String())
	if why := res.Acceptable(e.policy(group)); why != nil {
		if derr := e.o.Register.DeclineMarking(ctx); derr != nil {
			// The next check declines a code left awaiting the decision.
			log.Warn("declining the refused marking code failed", "err", derr)
		}
		log.Warn("marking code refused: not accepted in the FN", "group", group)
		return res, markingRefused(field, res, why)
	}
	if err := e.o.Register.AcceptMarking(ctx, res); err != nil {
		// What the FN holds is not known now: the next check clears it.
		e.markDirty = true
		return res, markingErr(field, err)
	}
	e.accepted[keyOf(q)] = res
	log.Info("marking code accepted in the FN")
	return res, nil
}

// acceptCodes checks and accepts every marked line of r not accepted yet and
// returns r with each line's result attached; markMu held. field gives a
// line's marking_code field as the request names it.
func (e *Engine) acceptCodes(ctx context.Context, r fiscal.Receipt, field func(i int) string, log *slog.Logger) (fiscal.Receipt, error) {
	out := r
	out.Items = slices.Clone(r.Items)
	for i := range out.Items {
		it := &out.Items[i]
		if !it.Marked() {
			continue
		}
		q := fiscal.MarkingRequestFor(r.Type, *it)
		if res, ok := e.accepted[keyOf(q)]; ok && !e.markDirty {
			it.MarkingResult = &res
			continue
		}
		res, err := e.checkCode(ctx, q, it.MarkingGroup, field(i), log)
		if err != nil {
			return r, err
		}
		it.MarkingResult = &res
	}
	return out, nil
}

// holdsExactly: the FN is known to hold accepted exactly r's codes.
func (e *Engine) holdsExactly(r fiscal.Receipt) bool {
	if e.markDirty {
		return false
	}
	n := 0
	for _, it := range r.Items {
		if !it.Marked() {
			continue
		}
		n++
		if _, ok := e.accepted[lineKey(r.Type, it)]; !ok {
			return false
		}
	}
	return n == len(e.accepted)
}

// mustRecheck: the register refused the receipt because the FN holds fewer
// accepted codes than it has marked lines (a restart, a cancelled receipt).
func mustRecheck(err error) bool {
	var fe *fiscal.Error
	return errors.As(err, &fe) && fe.Code == fiscal.CodeBadReceipt && fe.Field == "items"
}

func receiptCodeField(i int) string { return fmt.Sprintf("receipt.items[%d].marking_code", i) }

// printReceipt prints r as document id. A receipt with marked lines prints
// under markMu: its codes are used as accepted when the FN holds exactly
// them, else the FN is cleared and each is checked and accepted again. point
// records the recovery point with the receipt as it is sent (check results
// included). resumed says an earlier attempt may have printed it: then the
// register's journal is asked first (with the FN cleared, an unprinted
// receipt is refused before anything prints and is re-checked) — checking a
// code already sold would be refused and the printed receipt lost.
func (e *Engine) printReceipt(ctx context.Context, id string, r fiscal.Receipt, resumed bool, point func(fiscal.Receipt) error, log *slog.Logger) (fiscal.Document, error) {
	if !hasMarked(r) || e.o.Marking.NoChecks {
		if err := point(r); err != nil {
			return fiscal.Document{}, err
		}
		return e.o.Register.PrintReceipt(ctx, id, r)
	}
	e.markMu.Lock()
	defer e.markMu.Unlock()
	stored := !slices.ContainsFunc(r.Items, func(it fiscal.Item) bool { return it.Marked() && it.MarkingResult == nil })
	var err error
	switch {
	case resumed && stored:
		if err = e.clearMarking(ctx); err != nil {
			return fiscal.Document{}, err
		}
	case e.holdsExactly(r):
		// Every code is remembered: acceptCodes only attaches the results.
		if r, err = e.acceptCodes(ctx, r, receiptCodeField, log); err != nil {
			return fiscal.Document{}, err
		}
	default:
		if err = e.clearMarking(ctx); err != nil {
			return fiscal.Document{}, err
		}
		if r, err = e.acceptCodes(ctx, r, receiptCodeField, log); err != nil {
			return fiscal.Document{}, err
		}
	}
	if err := point(r); err != nil {
		return fiscal.Document{}, err
	}
	doc, err := e.o.Register.PrintReceipt(ctx, id, r)
	if mustRecheck(err) {
		log.Info("the FN no longer holds the receipt's marking codes; checking them again", "err", err)
		if err = e.clearMarking(ctx); err == nil {
			if r, err = e.acceptCodes(ctx, r, receiptCodeField, log); err == nil {
				doc, err = e.o.Register.PrintReceipt(ctx, id, r)
			}
		}
	}
	if err != nil {
		// Whether the FN still holds them is not known: the next sequence clears it.
		e.markDirty = true
		return doc, err
	}
	for _, it := range r.Items {
		if it.Marked() {
			delete(e.accepted, lineKey(r.Type, it))
		}
	}
	return doc, nil
}

// checkReceiptCodes checks and accepts a receipt's codes before money is
// taken for it (a payment, a refund): a code that may not be sold refuses the
// request while nothing has happened. The results are attached to r.
func (e *Engine) checkReceiptCodes(ctx context.Context, r *fiscal.Receipt, log *slog.Logger) error {
	if !hasMarked(*r) || e.o.Marking.NoChecks {
		return nil
	}
	e.markMu.Lock()
	defer e.markMu.Unlock()
	out, err := e.acceptCodes(ctx, *r, receiptCodeField, log)
	if err != nil {
		return err
	}
	*r = out
	return nil
}

// checkable is r as the register's own checks would see it once its codes
// are accepted: the receipt is checked (limits, code page, one piece per
// code) before anything is stored, while the codes are checked only on the
// way to the register. The stand-in results never leave this check.
func checkable(r fiscal.Receipt) fiscal.Receipt {
	out := r
	out.Items = slices.Clone(r.Items)
	for i := range out.Items {
		it := &out.Items[i]
		if it.Marked() && it.MarkingResult == nil {
			it.MarkingResult = &fiscal.MarkingResult{Code: it.MarkingCode, Status: fiscal.PlannedStatusFor(r.Type, *it),
				Local: fiscal.CheckedByFN | fiscal.FNResultOK}
		}
	}
	return out
}

// returned is a sale receipt's lines as a return: the sale's check results
// are of the sold status, the return checks its codes again.
func returned(r fiscal.Receipt) fiscal.Receipt {
	out := r
	out.Type = fiscal.SaleReturn
	out.Items = slices.Clone(r.Items)
	for i := range out.Items {
		out.Items[i].MarkingResult = nil
	}
	return out
}

// errCode is the stable code a failed print is recorded with.
func errCode(err error) string {
	var ae *localapi.Error
	if errors.As(err, &ae) {
		return ae.Code
	}
	var c interface{ ErrorCode() string }
	if errors.As(err, &c) {
		return c.ErrorCode()
	}
	return "register_error"
}

// cannotPrint is the API's answer when the register's own checks refuse a
// receipt before anything is stored; a field is named as the POS sent it.
func cannotPrint(err error) error {
	msg := err.Error()
	var fe *fiscal.Error
	if errors.As(err, &fe) && fe.Code == fiscal.CodeBadReceipt && fe.Field != "" && strings.HasPrefix(fe.Text, fe.Field) {
		msg = "receipt." + fe.Text
	}
	return localapi.Wrap("validation_failed", "the register cannot print this receipt: "+msg, err)
}
