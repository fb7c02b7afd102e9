package shtrih

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"kassa-agent/fiscal"
)

// once makes a document-producing operation exactly-once for op.ID the way
// PrintReceipt is: a finished entry returns its document; a pending one is
// settled from the device first; otherwise start brings the device to where the
// op can run and records its recovery point (FN last FD, device document
// number) in op, the entry is written, run sends the commands, and an
// interrupted run is settled from the device before returning. Called with d.mu held.
func (d *Driver) once(ctx context.Context, op fiscal.Pending, start func(*fiscal.Pending) error, run func() (fiscal.Document, error)) (fiscal.Document, error) {
	if op.ID == "" {
		return fiscal.Document{}, &fiscal.Error{Code: fiscal.CodeBadReceipt, Field: "id", Text: "empty operation id"}
	}
	j := d.opt.Journal
	if j == nil {
		return fiscal.Document{}, &fiscal.Error{Code: fiscal.CodeJournal, Text: "no journal configured"}
	}
	log := d.log.With("op_id", op.ID, "kind", string(op.Kind))
	e, err := j.Get(ctx, op.ID)
	switch {
	case err == nil && e.Op.Kind != op.Kind:
		return fiscal.Document{}, fiscal.KindMismatch(op.ID, e.Op.Kind, op.Kind)
	case err == nil && e.Done:
		return e.Doc, nil
	case err == nil:
		doc, done, err := d.resolve(ctx, e.Op)
		if err != nil {
			return fiscal.Document{}, err
		}
		if done {
			return doc, nil
		}
	case !errors.Is(err, fiscal.ErrJournalNotFound):
		return fiscal.Document{}, &fiscal.Error{Code: fiscal.CodeJournal, Err: err}
	}
	if err := d.resolvePending(ctx, nil); err != nil {
		return fiscal.Document{}, err
	}
	if err := start(&op); err != nil {
		return fiscal.Document{}, err
	}
	op.Started = d.opt.Now()
	if err := j.Begin(ctx, op); err != nil {
		return fiscal.Document{}, &fiscal.Error{Code: fiscal.CodeJournal, Err: err}
	}
	doc, err := run()
	if err == nil {
		doc.Kind = op.Kind
		if ferr := j.Finish(context.WithoutCancel(ctx), op.ID, doc); ferr != nil {
			log.Error("fiscal journal finish failed", "fd", doc.FD, "err", ferr)
		}
		log.Info("operation done", "fd", doc.FD, "doc_number", doc.DocNumber)
		return doc, nil
	}
	log.Warn("operation interrupted; checking the register", "err", err)
	rdoc, done, rerr := d.resolve(ctx, op)
	switch {
	case rerr == nil && done:
		return rdoc, nil
	case rerr == nil:
		return fiscal.Document{}, err // proved not done: the same id may run again
	}
	log.Warn("operation outcome unknown; retry with the same id", "err", rerr)
	return fiscal.Document{}, &fiscal.Error{Code: fiscal.CodeOutcomeUnknown, Text: "outcome not yet known; retry with the same id", Err: err}
}

// resolve settles one pending op by its kind.
func (d *Driver) resolve(ctx context.Context, op fiscal.Pending) (fiscal.Document, bool, error) {
	switch op.Kind {
	case fiscal.OpReceipt:
		return d.resolveReceipt(ctx, op)
	case fiscal.OpShiftOpen:
		return d.resolveFN(ctx, op, func(f FoundDocument) bool { return f.Type == DocShiftOpen })
	case fiscal.OpShiftClose:
		return d.resolveFN(ctx, op, func(f FoundDocument) bool { return f.Type == DocShiftClose })
	case fiscal.OpCorrection:
		if op.Correction == nil {
			return fiscal.Document{}, false, &fiscal.Error{Code: fiscal.CodeJournal, Text: "correction entry without its correction"}
		}
		c := *op.Correction
		return d.resolveFN(ctx, op, func(f FoundDocument) bool {
			return f.Type == DocCorrection && f.Operation == byte(c.Receipt.Type) && f.Total == c.Receipt.Total()
		})
	case fiscal.OpCashIn, fiscal.OpCashOut:
		return d.resolveCash(ctx, op)
	}
	return fiscal.Document{}, false, &fiscal.Error{Code: fiscal.CodeJournal, Text: fmt.Sprintf("unknown operation kind %q", op.Kind)}
}

// FN document types (FF0Ah).
const (
	DocRegistration = 1
	DocShiftOpen    = 2
	DocReceipt      = 3
	DocShiftClose   = 5
	DocCorrection   = 31
)

// settleDevice is the start of every settlement: ENQ for a held reply, printing
// continued after paper out, a document left open cancelled (it never reached
// the FN).
func (d *Driver) settleDevice(ctx context.Context) ([]byte, error) {
	held, err := d.l.sync(ctx)
	if err != nil {
		return nil, linkError(0, err)
	}
	ss, err := d.shortStatus(ctx)
	if err != nil {
		return held, err
	}
	if ss.Submode == SubmodeAfterPaperOut {
		if _, err := d.do(ctx, CmdContinuePrint, d.pw(), d.opt.Timeouts.Long); err != nil {
			return held, err
		}
	}
	if ss.ModeNumber() == ModeDocumentOpen {
		d.log.Warn("cancelling the interrupted document left open on the register")
		if _, err := d.do(ctx, CmdCancelReceipt, d.pw(), d.opt.Timeouts.Reply); err != nil {
			return held, err
		}
	}
	if _, err := d.voidBegun(ctx); err != nil {
		return held, err
	}
	return held, nil
}

// voidBegun voids a document begun in the FN and never completed (a shift open
// or close begun with FF41h/FF42h, a correction begun with FF35h, when the
// agent died before the completing command): the FN takes no new document
// until it is gone. It never reached the FN's archive, so nothing is lost.
func (d *Driver) voidBegun(ctx context.Context) (bool, error) {
	fn, err := d.fnStatus(ctx)
	if err != nil || fn.Document == 0 {
		return false, err
	}
	d.log.Warn("voiding a document begun in the FN and never completed", "fn_document", fn.Document)
	if _, err := d.do(ctx, CmdFNVoidDocument, d.pw(), d.opt.Timeouts.Reply); err != nil {
		return false, err
	}
	return true, nil
}

// resolveFN settles an op that makes an FN document: the documents after
// op.LastFD are searched for one that match accepts. Found ⇒ finished; not
// found ⇒ aborted (proved not made).
func (d *Driver) resolveFN(ctx context.Context, op fiscal.Pending, match func(FoundDocument) bool) (fiscal.Document, bool, error) {
	in, err := d.identity(ctx)
	if err != nil {
		return fiscal.Document{}, false, err
	}
	if _, err := d.settleDevice(ctx); err != nil {
		return fiscal.Document{}, false, err
	}
	fn, err := d.fnStatus(ctx)
	if err != nil {
		return fiscal.Document{}, false, err
	}
	if op.FN != "" && fn.Number != "" && fn.Number != op.FN {
		return fiscal.Document{}, false, &fiscal.Error{Code: fiscal.CodeFNError,
			Text: fmt.Sprintf("the FN was replaced (%s, operation started on %s); check %s by hand", fn.Number, op.FN, op.ID)}
	}
	for fd := op.LastFD + 1; fd <= fn.LastFD && fd > op.LastFD; fd++ {
		f, err := d.findDocument(ctx, fd)
		if err != nil {
			return fiscal.Document{}, false, err
		}
		if !match(f) {
			continue
		}
		doc := d.fnDocument(ctx, op, f, in, fn.Number)
		doc.Recovered = true
		if err := d.opt.Journal.Finish(context.WithoutCancel(ctx), op.ID, doc); err != nil {
			return fiscal.Document{}, false, &fiscal.Error{Code: fiscal.CodeJournal, Err: err}
		}
		d.log.Info("operation found in the FN", "op_id", op.ID, "kind", string(op.Kind), "fd", f.FD)
		return doc, true, nil
	}
	if err := d.opt.Journal.Abort(ctx, op.ID); err != nil {
		return fiscal.Document{}, false, &fiscal.Error{Code: fiscal.CodeJournal, Err: err}
	}
	d.log.Info("interrupted operation is not in the FN", "op_id", op.ID, "kind", string(op.Kind), "last_fd", fn.LastFD)
	return fiscal.Document{}, false, nil
}

// fnDocument is the Document of an FN document of op found in the archive.
func (d *Driver) fnDocument(ctx context.Context, op fiscal.Pending, f FoundDocument, in fiscal.Identity, fnNumber string) fiscal.Document {
	if fnNumber == "" {
		fnNumber = in.FNNumber
	}
	doc := fiscal.Document{FD: f.FD, FP: f.FP, FNNumber: fnNumber, RegNumber: in.RegNumber, Time: InZone(f.Time, d.opt.Location), Kind: op.Kind}
	if f.Type == DocShiftOpen || f.Type == DocShiftClose {
		doc.Shift = f.Shift
	} else if sp, err := d.shiftParams(ctx); err == nil {
		doc.Shift = sp.Number
	}
	if op.Correction != nil {
		doc.Total, doc.Type, doc.Change = op.Correction.Receipt.Total(), op.Correction.Receipt.Type, op.Correction.Receipt.Change()
		doc.QR = fiscal.QRString(doc, doc.Type)
	}
	return doc
}

// OpenShiftAs opens a shift in the cashier's name exactly once for id (FFD
// 1.05+: FF41h begin, FF0Ch tags 1021 and 1203, E0h) and returns the shift-open
// report's FN document. A shift already open is refused (register_rejected):
// no document is made for id.
func (d *Driver) OpenShiftAs(ctx context.Context, id string, c fiscal.Cashier) (fiscal.Document, error) {
	if err := c.Validate(d.opt.Limits); err != nil {
		return fiscal.Document{}, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.once(ctx, fiscal.Pending{ID: id, Kind: fiscal.OpShiftOpen, Cashier: &c}, func(op *fiscal.Pending) error {
		ss, err := d.readyToPrint(ctx)
		if err != nil {
			return err
		}
		switch ss.ModeNumber() {
		case ModeShiftClosed:
		case ModeShiftExpired:
			return &fiscal.Error{Code: fiscal.CodeShiftExpired, Text: "the shift is over 24 hours; close it first"}
		default:
			return &fiscal.Error{Code: fiscal.CodeRejected, Text: "a shift is already open"}
		}
		return d.recoveryPoint(ctx, op)
	}, func() (fiscal.Document, error) {
		return d.shiftDocument(ctx, CmdFNBeginOpen, CmdOpenShift, c)
	})
}

// CloseShiftAs closes the shift with the Z report in the cashier's name exactly
// once for id (FF42h begin, FF0Ch 1021/1203, 41h). A receipt left open is
// cancelled first; a closed shift is refused (register_shift_closed).
func (d *Driver) CloseShiftAs(ctx context.Context, id string, c fiscal.Cashier) (fiscal.Document, error) {
	if err := c.Validate(d.opt.Limits); err != nil {
		return fiscal.Document{}, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.once(ctx, fiscal.Pending{ID: id, Kind: fiscal.OpShiftClose, Cashier: &c}, func(op *fiscal.Pending) error {
		if err := d.cancelOpen(ctx); err != nil {
			return err
		}
		ss, err := d.readyToPrint(ctx)
		if err != nil {
			return err
		}
		if ss.ModeNumber() == ModeShiftClosed {
			return &fiscal.Error{Code: fiscal.CodeShiftClosed, Text: "the shift is already closed"}
		}
		return d.recoveryPoint(ctx, op)
	}, func() (fiscal.Document, error) {
		return d.shiftDocument(ctx, CmdFNBeginClose, CmdZReport, c)
	})
}

// readyToPrint waits out printing and continues after paper out; no paper is
// register_paper_out.
func (d *Driver) readyToPrint(ctx context.Context) (ShortStatus, error) {
	for range 8 {
		ss, err := d.shortStatus(ctx)
		if err != nil {
			return ss, err
		}
		switch ss.Submode {
		case SubmodePrinting, SubmodePrintingReport:
			if err := sleep(ctx, d.pollInterval()); err != nil {
				return ss, err
			}
			continue
		case SubmodeAfterPaperOut:
			if _, err := d.do(ctx, CmdContinuePrint, d.pw(), d.opt.Timeouts.Long); err != nil {
				return ss, err
			}
			continue
		case SubmodePassivePaperOut, SubmodeActivePaperOut:
			return ss, &fiscal.Error{Code: fiscal.CodePaperOut, Text: "no receipt paper"}
		}
		return ss, nil
	}
	return ShortStatus{}, &fiscal.Error{Code: fiscal.CodeBusy, Text: "register did not become ready"}
}

// recoveryPoint records the FN's number and last FD before an FN document.
func (d *Driver) recoveryPoint(ctx context.Context, op *fiscal.Pending) error {
	if _, err := d.identity(ctx); err != nil {
		return err
	}
	fn, err := d.fnStatus(ctx)
	if err != nil {
		return err
	}
	op.LastFD, op.FN = fn.LastFD, fn.Number
	return nil
}

// shiftDocument sends begin, the cashier tags and the completing command, then
// reads the new document back from the FN (E0h and 41h reply only the operator).
func (d *Driver) shiftDocument(ctx context.Context, begin, complete uint16, c fiscal.Cashier) (fiscal.Document, error) {
	if _, err := d.do(ctx, begin, d.pw(), d.opt.Timeouts.Reply); err != nil {
		return fiscal.Document{}, err
	}
	if _, err := d.do(ctx, CmdFNSendTLV, append(d.pw(), TLV(TagCashier, CP866(c.Name))...), d.opt.Timeouts.Reply); err != nil {
		return fiscal.Document{}, err
	}
	if c.INN != "" {
		if _, err := d.do(ctx, CmdFNSendTLV, append(d.pw(), TLV(TagCashierINN, CP866(c.INN))...), d.opt.Timeouts.Reply); err != nil {
			return fiscal.Document{}, err
		}
	}
	if _, err := d.do(ctx, complete, d.pw(), d.opt.Timeouts.Long); err != nil {
		return fiscal.Document{}, err
	}
	return d.lastFNDocument(ctx)
}

// lastFNDocument reads the FN's last document.
func (d *Driver) lastFNDocument(ctx context.Context) (fiscal.Document, error) {
	in, err := d.identity(ctx)
	if err != nil {
		return fiscal.Document{}, err
	}
	fn, err := d.fnStatus(ctx)
	if err != nil {
		return fiscal.Document{}, err
	}
	f, err := d.findDocument(ctx, fn.LastFD)
	if err != nil {
		return fiscal.Document{}, err
	}
	return d.fnDocument(ctx, fiscal.Pending{}, f, in, fn.Number), nil
}

// CashInOnce and CashOutOnce put cash into / take it out of the drawer exactly
// once for id. The slip is a device document, not an FN one: a lost reply is
// settled by the device's through document number (11h), read before the
// command and after. The Document has DocNumber and Total; FD and FP are 0.
func (d *Driver) CashInOnce(ctx context.Context, id string, amount int64) (fiscal.Document, error) {
	return d.cashOnce(ctx, id, fiscal.OpCashIn, amount)
}

func (d *Driver) CashOutOnce(ctx context.Context, id string, amount int64) (fiscal.Document, error) {
	return d.cashOnce(ctx, id, fiscal.OpCashOut, amount)
}

func (d *Driver) cashOnce(ctx context.Context, id string, kind fiscal.OpKind, amount int64) (fiscal.Document, error) {
	if err := fiscal.CheckCash(amount, d.opt.Limits); err != nil {
		return fiscal.Document{}, err
	}
	cmd := CmdCashIn
	if kind == fiscal.OpCashOut {
		cmd = CmdCashOut
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.once(ctx, fiscal.Pending{ID: id, Kind: kind, Amount: amount}, func(op *fiscal.Pending) error {
		if _, err := d.prepare(ctx); err != nil {
			return err
		}
		s, err := d.fullStatus(ctx)
		if err != nil {
			return err
		}
		op.DocNumber = s.DocNumber
		return nil
	}, func() (fiscal.Document, error) {
		data, err := d.do(ctx, cmd, append(d.pw(), Money5(amount)...), d.opt.Timeouts.Long)
		if err != nil {
			return fiscal.Document{}, err
		}
		doc := fiscal.Document{Total: amount, Time: d.now()}
		if len(data) >= 3 {
			doc.DocNumber = int(binary.LittleEndian.Uint16(data[1:3]))
		}
		return doc, nil
	})
}

func (d *Driver) fullStatus(ctx context.Context) (FullStatus, error) {
	return query(ctx, d, CmdStatus, d.pw(), DecodeFullStatus)
}

// docAdvanced says from the device's through document number (16 bits, it
// wraps) before a command and now whether the command printed its document.
// Nothing else of ours runs between (the driver's lock; pending ops are settled
// before any new one), so any advance is it.
func docAdvanced(before, now int) bool { return uint16(now-before) != 0 }

// resolveCash settles a cash in/out: a held reply is read by ENQ, then the
// device's document number is compared with the one before the command.
func (d *Driver) resolveCash(ctx context.Context, op fiscal.Pending) (fiscal.Document, bool, error) {
	if _, err := d.settleDevice(ctx); err != nil {
		return fiscal.Document{}, false, err
	}
	s, err := d.fullStatus(ctx)
	if err != nil {
		return fiscal.Document{}, false, err
	}
	if !docAdvanced(op.DocNumber, s.DocNumber) {
		if err := d.opt.Journal.Abort(ctx, op.ID); err != nil {
			return fiscal.Document{}, false, &fiscal.Error{Code: fiscal.CodeJournal, Err: err}
		}
		d.log.Info("interrupted cash operation did not print", "op_id", op.ID, "doc_number", s.DocNumber)
		return fiscal.Document{}, false, nil
	}
	doc := fiscal.Document{Kind: op.Kind, Total: op.Amount, DocNumber: int(uint16(op.DocNumber + 1)), Time: d.now(), Recovered: true}
	if err := d.opt.Journal.Finish(context.WithoutCancel(ctx), op.ID, doc); err != nil {
		return fiscal.Document{}, false, &fiscal.Error{Code: fiscal.CodeJournal, Err: err}
	}
	d.log.Info("interrupted cash operation printed", "op_id", op.ID, "doc_number", doc.DocNumber)
	return doc, true, nil
}
