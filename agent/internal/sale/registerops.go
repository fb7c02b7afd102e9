package sale

// The register's other operations the POS asks for: shifts (open, Z), the X
// report, cash in and out, correction receipts, non-fiscal print (with a QR
// code), a copy of the last document, and recovery. Each is an operation like
// a receipt: stored with its request before the register hears of it,
// keyed by the POS's Idempotency-Key, fed to the register by the one worker.
// Those that make a document are exactly-once by the register's journal
// (keyed by the operation id); the others (print, copy, X report, recover)
// are at most once: one interrupted by a crash is not done again, and says so.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"kassa-agent/agent/internal/localapi"
	"kassa-agent/fiscal"
)

// Operation kinds on the register besides receipts and refunds.
const (
	OpKindShiftOpen  = "shift_open"
	OpKindShiftClose = "shift_close"
	OpKindXReport    = "x_report"
	OpKindCashIn     = "cash_in"
	OpKindCashOut    = "cash_out"
	OpKindCorrection = "correction"
	OpKindPrint      = "print"
	OpKindCopy       = "copy"
	OpKindRecover    = "recover"
)

// atMostOnce are the kinds that make no FN document the journal could find
// again: after a crash mid-way they are not repeated.
var atMostOnce = map[string]bool{OpKindXReport: true, OpKindPrint: true, OpKindCopy: true, OpKindRecover: true}

// ShiftRequest is the body of POST /v1/shift/open and /v1/shift/close.
type ShiftRequest struct {
	Cashier fiscal.Cashier `json:"cashier"`
}

// CashRequest is the body of POST /v1/cash/in and /v1/cash/out.
type CashRequest struct {
	Amount int64 `json:"amount"` // kopecks
}

// CorrectionRequest is the body of POST /v1/corrections.
type CorrectionRequest struct {
	Type       string     `json:"type"`      // self or by_order (tag 1173)
	BaseDate   string     `json:"base_date"` // YYYY-MM-DD, the corrected settlement (tag 1178)
	BaseNumber string     `json:"base_number,omitempty"`
	Receipt    ReceiptIn  `json:"receipt"`
	Payments   PaymentsIn `json:"payments"`
}

// PrintRequest is the body of POST /v1/print: non-fiscal lines and an
// optional QR code (say, a payment link for a till without a customer display).
type PrintRequest struct {
	Lines []string `json:"lines"`
	QR    string   `json:"qr,omitempty"`
}

// CopyRequest is the body of a copy (the document is named in the path).
type CopyRequest struct{}

// RecoveryAnswer is what recovering the register found and did.
type RecoveryAnswer struct {
	Mode           int      `json:"mode"`
	Submode        int      `json:"submode"`
	PaperOut       bool     `json:"paper_out"`
	CancelledOpen  bool     `json:"cancelled_open_receipt"`
	ContinuedPrint bool     `json:"continued_printing"`
	Completed      []string `json:"completed,omitempty"`
	NotPrinted     []string `json:"not_printed,omitempty"`
	Found          []string `json:"found,omitempty"`
}

// registerOp is one kind's validation and its call to the register.
type registerOp struct {
	check func(args json.RawMessage, now time.Time) error
	run   func(ctx context.Context, reg Register, id string, args json.RawMessage, op *Operation) error
}

func decodeArgs[T any](args json.RawMessage) (T, error) {
	var v T
	err := json.Unmarshal(args, &v)
	return v, err
}

func correction(c CorrectionRequest, e *Engine, now time.Time) (fiscal.Correction, error) {
	var out fiscal.Correction
	switch c.Type {
	case "self", "":
		out.Type = fiscal.CorrectionSelf
	case "by_order":
		out.Type = fiscal.CorrectionByOrder
	default:
		return out, fmt.Errorf("type %q is not self or by_order", c.Type)
	}
	d, err := time.ParseInLocation(time.DateOnly, c.BaseDate, time.Local)
	if err != nil {
		return out, fmt.Errorf("base_date %q is not a date such as 2026-03-31", c.BaseDate)
	}
	out.BaseDate, out.BaseNumber = d, c.BaseNumber
	var total int64
	for _, it := range c.Receipt.Items {
		total += fiscal.Item{Quantity: it.Quantity * 1000, Price: it.Price}.Sum()
	}
	pays, err := c.Payments.fiscalPayments(total)
	if err != nil {
		return out, err
	}
	// Rates are those of the corrected settlement's date.
	r, err := c.Receipt.convert(receiptOptions{tax: e.o.TaxSystem, cashier: e.o.Cashier, payments: pays, types: AllReceiptTypes, at: d})
	if err != nil {
		return out, err
	}
	out.Receipt = r
	if err := out.Validate(fiscal.DefaultLimits, now); err != nil {
		return out, receiptErr(err)
	}
	return out, nil
}

func (e *Engine) registerOps() map[string]registerOp {
	doc := func(op *Operation, d fiscal.Document) {
		op.Document = &d
	}
	shift := func(open bool) registerOp {
		return registerOp{
			check: func(args json.RawMessage, _ time.Time) error {
				r, err := decodeArgs[ShiftRequest](args)
				if err != nil {
					return err
				}
				if r.Cashier.Name == "" {
					r.Cashier.Name = e.o.Cashier
				}
				return r.Cashier.Validate(fiscal.DefaultLimits)
			},
			run: func(ctx context.Context, reg Register, id string, args json.RawMessage, op *Operation) error {
				r, _ := decodeArgs[ShiftRequest](args)
				if r.Cashier.Name == "" {
					r.Cashier.Name = e.o.Cashier
				}
				var d fiscal.Document
				var err error
				if open {
					d, err = reg.OpenShiftAs(ctx, id, r.Cashier)
				} else {
					d, err = reg.CloseShiftAs(ctx, id, r.Cashier)
				}
				if err == nil {
					doc(op, d)
				}
				return err
			},
		}
	}
	cash := func(in bool) registerOp {
		return registerOp{
			check: func(args json.RawMessage, _ time.Time) error {
				r, err := decodeArgs[CashRequest](args)
				if err != nil {
					return err
				}
				return fiscal.CheckCash(r.Amount, fiscal.DefaultLimits)
			},
			run: func(ctx context.Context, reg Register, id string, args json.RawMessage, op *Operation) error {
				r, _ := decodeArgs[CashRequest](args)
				var d fiscal.Document
				var err error
				if in {
					d, err = reg.CashInOnce(ctx, id, r.Amount)
				} else {
					d, err = reg.CashOutOnce(ctx, id, r.Amount)
				}
				if err == nil {
					doc(op, d)
				}
				return err
			},
		}
	}
	return map[string]registerOp{
		OpKindShiftOpen:  shift(true),
		OpKindShiftClose: shift(false),
		OpKindCashIn:     cash(true),
		OpKindCashOut:    cash(false),
		OpKindXReport: {
			check: func(json.RawMessage, time.Time) error { return nil },
			run: func(ctx context.Context, reg Register, _ string, _ json.RawMessage, _ *Operation) error {
				return reg.XReport(ctx)
			},
		},
		OpKindCorrection: {
			check: func(args json.RawMessage, now time.Time) error {
				r, err := decodeArgs[CorrectionRequest](args)
				if err != nil {
					return err
				}
				_, err = correction(r, e, now)
				return err
			},
			run: func(ctx context.Context, reg Register, id string, args json.RawMessage, op *Operation) error {
				r, _ := decodeArgs[CorrectionRequest](args)
				c, err := correction(r, e, op.Created)
				if err != nil {
					return &fiscal.Error{Code: fiscal.CodeBadReceipt, Text: err.Error()}
				}
				d, err := reg.PrintCorrection(ctx, id, c)
				if err == nil {
					doc(op, d)
				}
				return err
			},
		},
		OpKindPrint: {
			check: func(args json.RawMessage, _ time.Time) error {
				r, err := decodeArgs[PrintRequest](args)
				if err != nil {
					return err
				}
				if len(r.Lines) == 0 && r.QR == "" {
					return errors.New("lines: give something to print (lines, qr)")
				}
				if len(r.Lines) > 200 {
					return errors.New("lines: at most 200 lines")
				}
				for i, l := range r.Lines {
					if err := fiscal.CheckText(fmt.Sprintf("lines[%d]", i), l); err != nil {
						return err
					}
				}
				if len(r.QR) > 1024 {
					return errors.New("qr: at most 1024 bytes")
				}
				return fiscal.CheckText("qr", r.QR)
			},
			// Line by line, counting what is on the tape: when the paper runs
			// out part-way, the retry prints the rest, not the whole again.
			run: func(ctx context.Context, reg Register, _ string, args json.RawMessage, op *Operation) error {
				r, _ := decodeArgs[PrintRequest](args)
				for op.progress < len(r.Lines) {
					if err := reg.PrintText(ctx, r.Lines[op.progress:op.progress+1]); err != nil {
						return err
					}
					op.progress++
				}
				if r.QR != "" && op.progress == len(r.Lines) {
					if err := reg.PrintQR(ctx, r.QR); err != nil {
						return err
					}
					op.progress++
				}
				return nil
			},
		},
		OpKindCopy: {
			check: func(json.RawMessage, time.Time) error { return nil },
			run: func(ctx context.Context, reg Register, _ string, args json.RawMessage, _ *Operation) error {
				var a struct{ FD uint64 }
				if err := json.Unmarshal(args, &a); err != nil {
					return err
				}
				return reg.PrintCopy(ctx, uint32(a.FD))
			},
		},
		OpKindRecover: {
			check: func(json.RawMessage, time.Time) error { return nil },
			run: func(ctx context.Context, reg Register, _ string, _ json.RawMessage, op *Operation) error {
				rep, err := reg.RecoverRegister(ctx)
				op.Recovery = &RecoveryAnswer{Mode: rep.Mode, Submode: rep.Submode, PaperOut: rep.PaperOut, CancelledOpen: rep.CancelledOpen,
					ContinuedPrint: rep.ContinuedPrint, Completed: rep.Completed, NotPrinted: rep.NotPrinted, Found: rep.Found}
				return err
			},
		},
	}
}

// CreateRegisterOp stores a register operation of kind exactly once per key.
func (e *Engine) CreateRegisterOp(ctx context.Context, key, kind string, args any) (*Operation, bool, error) {
	if e.o.Register == nil {
		return nil, false, localapi.Errorf("register_unavailable", "no fiscal register is configured ([register] enabled = true)")
	}
	ro, ok := e.registerOps()[kind]
	if !ok {
		return nil, false, localapi.Errorf("not_found", "no operation "+kind)
	}
	raw, err := json.Marshal(args)
	if err != nil {
		return nil, false, localapi.Wrap("bad_request", "the request cannot be read", err)
	}
	hash, err := canonicalHash(kind, args)
	if err != nil {
		return nil, false, localapi.Wrap("bad_request", "the request cannot be read", err)
	}
	if op, err := e.replayOp(key, hash); op != nil || err != nil {
		return op, false, err
	}
	if err := ro.check(raw, e.now()); err != nil {
		return nil, false, localapi.Errorf("validation_failed", err.Error())
	}
	if err := e.registerOpReady(ctx, kind); err != nil {
		return nil, false, err
	}
	op, err := e.newOp(ctx, kind)
	if err != nil {
		return nil, false, err
	}
	op.args = raw
	if replayed, err := e.storeOp(ctx, key, hash, op, nil); replayed != nil || err != nil {
		return replayed, false, err
	}
	e.log.Info("register operation queued", "op_id", op.ID, "kind", kind)
	e.hub.Publish("operation", op)
	e.pokeOps()
	return op, true, nil
}

// cashierMustAct: register states only the cashier can cure (a Z report, a
// shift opened, a new FN). An operation that meets one fails: retried, it
// would hold every later operation behind it, the Z report too.
func cashierMustAct(code string) bool {
	switch code {
	case fiscal.CodeShiftClosed, fiscal.CodeShiftExpired, fiscal.CodeFNExhausted, fiscal.CodeNotRegistered:
		return true
	}
	return false
}

// mustActMessage is err's message with what the cashier must do before the
// operation is sent again (under a new Idempotency-Key: this one has failed).
func mustActMessage(code string, err error) string {
	do := map[string]string{
		fiscal.CodeShiftClosed:   "open a shift (POST /v1/shift/open)",
		fiscal.CodeShiftExpired:  "close the shift with a Z report (POST /v1/shift/close)",
		fiscal.CodeFNExhausted:   "have the fiscal drive replaced",
		fiscal.CodeNotRegistered: "have the register registered",
	}[code]
	return err.Error() + ". Nothing was printed: " + do + ", then send it again with a new Idempotency-Key"
}

// registerOpReady refuses, before anything is stored or sent, an operation
// the register cannot do in its present state, with what to do about it:
// queued, it would be retried in front of every later operation, including
// the Z report that would cure it. Recovery is never refused: it is what
// clears a stuck register.
func (e *Engine) registerOpReady(ctx context.Context, kind string) error {
	if kind == OpKindRecover {
		return nil
	}
	// Behind other operations it meets the register as they leave it (a
	// shift open sent just before a cash in), not as it is now: it is
	// queued, and a state it then meets that only the cashier can cure
	// fails it there.
	if e.queuedAhead() {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	st, err := e.o.Register.Status(ctx)
	if err != nil {
		return localapi.Wrap("register_unavailable", "the fiscal register does not answer ("+err.Error()+"); nothing was sent", err)
	}
	const tail = "Nothing was sent"
	if st.PaperOut {
		return readyError(fiscal.ErrPaperOut, tail)
	}
	// An expired FN makes no fiscal document; the Z report is left to the
	// register, which may still close the shift with it before the FN is replaced.
	fnDoc := kind == OpKindShiftOpen || kind == OpKindCorrection
	if fnDoc && !st.FNExpiry.IsZero() && e.now().After(st.FNExpiry) {
		return localapi.Errorf("register_fn_exhausted", fmt.Sprintf("the fiscal drive (FN %s) expired on %s: it makes no more fiscal documents; replace it (close the shift first). Nothing was sent",
			st.FNNumber, st.FNExpiry.Format(time.DateOnly)))
	}
	switch kind {
	case OpKindShiftOpen:
		if st.ShiftExpired {
			return readyError(fiscal.ErrShiftExpired, tail)
		}
	case OpKindShiftClose:
		if !st.ShiftOpen {
			return localapi.Errorf("register_shift_closed", "the shift is already closed: there is no shift to close with a Z report. Nothing was sent")
		}
	case OpKindCashIn, OpKindCashOut, OpKindCorrection:
		// These need an open shift, as a receipt does; Ready already allows
		// for the driver opening one (auto_open_shift) or closing an expired
		// one first (auto_close_expired_shift).
		return readyError(st.Ready, tail)
	}
	return nil
}

// runRegisterOp makes one attempt at a register operation; it reports whether
// it is settled.
func (e *Engine) runRegisterOp(ctx context.Context, op *Operation) bool {
	log := e.log.With("op_id", op.ID, "kind", op.Kind)
	ro, ok := e.registerOps()[op.Kind]
	if !ok {
		_, _ = e.changeOp(context.WithoutCancel(ctx), op.ID, func(q *Operation) error {
			q.State, q.Error = OpFailed, &ErrorInfo{Code: "internal", Message: "unknown operation kind " + op.Kind}
			return nil
		})
		return true
	}
	if op.State == OpPrinting && atMostOnce[op.Kind] {
		_, _ = e.changeOp(context.WithoutCancel(ctx), op.ID, func(q *Operation) error {
			q.State = OpDone
			q.Error = &ErrorInfo{Code: "interrupted", Message: "the agent stopped while the register did this; it is not done again (it makes no fiscal document). Check the register's paper"}
			return nil
		})
		return true
	}
	op, err := e.markPrinting(ctx, op.ID)
	if err != nil {
		return false
	}
	res := *op
	err = ro.run(ctx, e.o.Register, op.ID, op.args, &res)
	if err == nil {
		if _, err := e.changeOp(context.WithoutCancel(ctx), op.ID, func(q *Operation) error {
			q.State, q.Error, q.Document, q.Recovery = OpDone, nil, res.Document, res.Recovery
			return nil
		}); err != nil {
			log.Error("register operation done but not yet recorded; retrying (the register's journal returns the same document)", "err", err)
			return false
		}
		log.Info("register operation done")
		return true
	}
	code, permanent := "register_error", false
	var fe *fiscal.Error
	if errors.As(err, &fe) {
		code = fe.Code
		permanent = fe.Code == fiscal.CodeBadReceipt || fe.Code == fiscal.CodeRejected || cashierMustAct(fe.Code)
	}
	// An operation that is not journaled fails rather than risk a second
	// print, unless the register said it is out of paper: then the command
	// was not run, and it waits for paper like a receipt does.
	final := permanent || (atMostOnce[op.Kind] && (code != fiscal.CodePaperOut || op.Kind == OpKindRecover))
	info := errInfo(code, err)
	if cashierMustAct(code) {
		info.Message = mustActMessage(code, err)
	}
	if atMostOnce[op.Kind] && code == fiscal.CodeOutcomeUnknown {
		info.Message = unknownPrint(op.Kind, res.progress) + " (" + err.Error() + ")"
	}
	_, _ = e.changeOp(context.WithoutCancel(ctx), op.ID, func(q *Operation) error {
		q.State, q.Error, q.Recovery, q.progress = OpQueued, info, res.Recovery, res.progress
		if final {
			q.State = OpFailed
		}
		return nil
	})
	if final {
		log.Warn("the register refused the operation", "err", err)
		return true
	}
	log.Warn("register operation not done yet; it stays queued and is retried", "err", err)
	return false
}

// unknownPrint says what is known of an operation that is not journaled whose
// reply was lost for good, and what the cashier can do.
func unknownPrint(kind string, progress int) string {
	what := "it may or may not have printed"
	if kind == OpKindPrint {
		what = fmt.Sprintf("part %d may or may not have printed", progress+1)
		if progress > 0 {
			what = fmt.Sprintf("lines 1–%d printed; part %d may or may not have, the rest did not", progress, progress+1)
		}
	}
	return "the register's answer was lost: " + what + ". It is not done again (it makes no fiscal document): check the tape, and send it again with a new Idempotency-Key if it is needed"
}

// Routes for the register's operations and reads.
func (e *Engine) registerRoutes(s *localapi.Server) {
	post := func(pattern, kind string, body func() any) {
		s.Handle("POST "+pattern, func(w http.ResponseWriter, r *http.Request) {
			req := body()
			e.apiCreateOp(w, r, req, "/v1/operations/", func(key string) (*Operation, bool, error) {
				return e.CreateRegisterOp(r.Context(), key, kind, req)
			})
		})
	}
	post("/v1/shift/open", OpKindShiftOpen, func() any { return &ShiftRequest{} })
	post("/v1/shift/close", OpKindShiftClose, func() any { return &ShiftRequest{} })
	post("/v1/reports/x", OpKindXReport, func() any { return &struct{}{} })
	post("/v1/cash/in", OpKindCashIn, func() any { return &CashRequest{} })
	post("/v1/cash/out", OpKindCashOut, func() any { return &CashRequest{} })
	post("/v1/corrections", OpKindCorrection, func() any { return &CorrectionRequest{} })
	post("/v1/print", OpKindPrint, func() any { return &PrintRequest{} })
	post("/v1/register/recover", OpKindRecover, func() any { return &struct{}{} })
	s.Handle("POST /v1/documents/{fd}/copy", func(w http.ResponseWriter, r *http.Request) {
		fd, err := strconv.ParseUint(r.PathValue("fd"), 10, 32)
		if err != nil {
			localapi.WriteError(w, localapi.Errorf("bad_request", "fd must be a fiscal document number"))
			return
		}
		last, err := e.o.Register.LastDocument(r.Context())
		if err != nil {
			localapi.WriteError(w, registerErr(err))
			return
		}
		if fd == 0 || uint32(fd) > last.FD {
			localapi.WriteError(w, localapi.Errorf("validation_failed", fmt.Sprintf("fd: the FN has no document %d (its last is FD %d)", fd, last.FD)))
			return
		}
		req := &CopyRequest{}
		e.apiCreateOp(w, r, req, "/v1/operations/", func(key string) (*Operation, bool, error) {
			return e.CreateRegisterOp(r.Context(), key, OpKindCopy, struct{ FD uint64 }{fd})
		})
	})
	s.Handle("GET /v1/operations/{id}", func(w http.ResponseWriter, r *http.Request) {
		op, err := e.GetOp(r.PathValue("id"))
		if err != nil {
			localapi.WriteError(w, localapi.Errorf("not_found", "no operation "+r.PathValue("id")))
			return
		}
		e.apiGetOp(w, r, op.Kind)
	})
	s.Handle("GET /v1/register", func(w http.ResponseWriter, r *http.Request) {
		info, err := e.o.Register.Info(r.Context())
		if err != nil {
			localapi.WriteError(w, registerErr(err))
			return
		}
		localapi.WriteJSON(w, http.StatusOK, registerAnswer(info))
	})
	s.Handle("GET /v1/shift", func(w http.ResponseWriter, r *http.Request) {
		info, err := e.o.Register.Info(r.Context())
		if err != nil {
			localapi.WriteError(w, registerErr(err))
			return
		}
		localapi.WriteJSON(w, http.StatusOK, registerAnswer(info).Shift)
	})
	s.Handle("GET /v1/documents/last", func(w http.ResponseWriter, r *http.Request) {
		d, err := e.o.Register.LastDocument(r.Context())
		if err != nil {
			localapi.WriteError(w, registerErr(err))
			return
		}
		localapi.WriteJSON(w, http.StatusOK, documentAnswer(d))
	})
	s.Handle("GET /v1/documents/{fd}", func(w http.ResponseWriter, r *http.Request) {
		fd, err := strconv.ParseUint(r.PathValue("fd"), 10, 32)
		if err != nil || fd == 0 {
			localapi.WriteError(w, localapi.Errorf("bad_request", "fd must be a fiscal document number"))
			return
		}
		d, err := e.o.Register.FindDocument(r.Context(), uint32(fd))
		if err != nil {
			localapi.WriteError(w, registerErr(err))
			return
		}
		localapi.WriteJSON(w, http.StatusOK, documentAnswer(d))
	})
}

// registerErr is a register error at the API edge, with its stable code.
func registerErr(err error) error {
	var fe *fiscal.Error
	if errors.As(err, &fe) {
		switch {
		case fe.Code == fiscal.CodePaperOut:
			return localapi.Wrap("register_paper_out", "the register is out of paper: "+err.Error(), err)
		case fe.Code == fiscal.CodeUnavailable:
			return localapi.Wrap("register_unavailable", "the register does not answer: "+err.Error(), err)
		case strings.HasPrefix(fe.Code, "register_"):
			return localapi.Wrap("register_error", err.Error(), err)
		}
	}
	return localapi.Wrap("register_unavailable", "the register does not answer: "+err.Error(), err)
}

type shiftAnswer struct {
	Open       bool      `json:"open"`
	Number     int       `json:"number"`
	OpenedAt   time.Time `json:"opened_at,omitzero"`
	AgeSeconds int64     `json:"age_seconds"`
	Expired    bool      `json:"expired"` // over 24 h: a Z report is needed
}

type documentInfo struct {
	FD        uint32    `json:"fd"`
	FP        uint32    `json:"fp"`
	Type      int       `json:"type"` // FN document type: 1 registration, 2 shift open, 3 receipt, 5 shift close, 31 correction, …
	Time      time.Time `json:"time"`
	Operation string    `json:"operation,omitempty"` // receipts: sale, sale_return, …
	Total     int64     `json:"total,omitempty"`
	Shift     int       `json:"shift,omitempty"`
	SentToOFD bool      `json:"sent_to_ofd"`
}

func documentAnswer(d fiscal.FoundDocument) documentInfo {
	out := documentInfo{FD: d.FD, FP: d.FP, Type: d.Kind, Time: d.Time, Total: d.Total, Shift: d.Shift, SentToOFD: d.SentToOFD}
	if d.Operation != 0 {
		out.Operation = d.Operation.String()
	}
	return out
}

// registerInfo is GET /v1/register: fiscal.Info with durations in seconds.
type registerInfo struct {
	Model             string            `json:"model"`
	Serial            string            `json:"serial"`
	Firmware          string            `json:"firmware"`
	FFD               string            `json:"ffd"`
	FNNumber          string            `json:"fn_number"`
	FNPhase           int               `json:"fn_phase"`
	FNExpiry          time.Time         `json:"fn_expiry"`
	FNDaysLeft        int               `json:"fn_days_left"`
	FNWarnings        fiscal.FNWarnings `json:"fn_warnings"`
	RegNumber         string            `json:"reg_number"`
	INN               string            `json:"inn"`
	TaxSystems        []string          `json:"tax_systems"`
	LastFD            uint32            `json:"last_fd"`
	Mode              int               `json:"mode"`
	Submode           int               `json:"submode"`
	Shift             shiftAnswer       `json:"shift"`
	PaperOut          bool              `json:"paper_out"`
	OFDBacklog        int               `json:"ofd_backlog"`
	OFDOldestFD       uint32            `json:"ofd_oldest_fd,omitempty"`
	OFDOldest         time.Time         `json:"ofd_oldest,omitzero"`
	Clock             time.Time         `json:"clock"`
	ClockDriftSeconds int64             `json:"clock_drift_seconds"`
}

func registerAnswer(i fiscal.Info) registerInfo {
	out := registerInfo{Model: i.Model, Serial: i.Serial, Firmware: i.Firmware, FFD: i.FFD, FNNumber: i.FNNumber, FNPhase: i.FNPhase,
		FNExpiry: i.FNExpiry, FNDaysLeft: i.FNDaysLeft, FNWarnings: i.FNWarnings, RegNumber: i.RegNumber, INN: i.INN, LastFD: i.LastFD,
		Mode: i.Mode, Submode: i.Submode, PaperOut: i.PaperOut, OFDBacklog: i.OFDBacklog, OFDOldestFD: i.OFDOldestFD, OFDOldest: i.OFDOldest,
		Clock: i.Clock, ClockDriftSeconds: int64(i.ClockDrift / time.Second), TaxSystems: []string{},
		Shift: shiftAnswer{Open: i.ShiftOpen, Number: i.ShiftNumber, OpenedAt: i.ShiftOpened, AgeSeconds: int64(i.ShiftAge / time.Second), Expired: i.ShiftExpired}}
	for name, bit := range TaxSystems {
		if i.TaxSystems&bit != 0 {
			out.TaxSystems = append(out.TaxSystems, name)
		}
	}
	sort.Strings(out.TaxSystems)
	return out
}
