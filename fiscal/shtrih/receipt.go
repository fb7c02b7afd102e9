package shtrih

import (
	"context"
	"errors"
	"fmt"
	"unicode/utf8"

	"kassa-agent/fiscal"
)

// PrintReceipt prints r exactly once for id. The flow: resolve anything pending from
// before; bring the device to "shift open, idle"; read the FN's last FD number and
// record it with the receipt in the journal; then 8Dh, FF46h per item, FF0Ch for the
// buyer contact and cashier, FF45h. When the reply is lost the outcome is learned from
// the FN (ENQ, then the FD counter, then the document's FP) before returning.
func (d *Driver) PrintReceipt(ctx context.Context, id string, r fiscal.Receipt) (fiscal.Document, error) {
	if id == "" {
		return fiscal.Document{}, &fiscal.Error{Code: fiscal.CodeBadReceipt, Text: "empty operation id"}
	}
	if err := d.CheckReceipt(r); err != nil {
		return fiscal.Document{}, err
	}
	j := d.opt.Journal
	if j == nil {
		return fiscal.Document{}, &fiscal.Error{Code: fiscal.CodeJournal, Text: "no journal configured"}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	log := d.log.With("payment_id", id)

	e, err := j.Get(ctx, id)
	switch {
	case err == nil && e.Op.Kind != fiscal.OpReceipt:
		return fiscal.Document{}, fiscal.KindMismatch(id, e.Op.Kind, fiscal.OpReceipt)
	case err == nil && e.Done:
		return d.withIdentity(ctx, e.Doc)
	case err == nil:
		doc, printed, err := d.resolve(ctx, e.Op)
		if err != nil {
			return fiscal.Document{}, err
		}
		if printed {
			log.Info("receipt found in the FN after an interrupted print", "fd", doc.FD)
			return doc, nil
		}
	case !errors.Is(err, fiscal.ErrJournalNotFound):
		return fiscal.Document{}, &fiscal.Error{Code: fiscal.CodeJournal, Err: err}
	}
	// A new receipt: its rates must be in force on the register's date. (A receipt
	// already printed or pending is settled above whatever the date now.)
	if err := r.CheckRatesAt(d.now()); err != nil {
		return fiscal.Document{}, err
	}
	rows, err := d.rows(r)
	if err != nil {
		return fiscal.Document{}, err
	}
	// Others' pending receipts must be settled before the device is touched.
	if err := d.resolvePending(ctx, nil); err != nil {
		return fiscal.Document{}, err
	}
	// Every document must carry РН and ФН: without them the fiscal submission is
	// refused. Read them before anything prints; failing, nothing is printed.
	in, err := d.identity(ctx)
	if err != nil {
		return fiscal.Document{}, err
	}
	if err := d.checkRows(ctx, r, rows); err != nil {
		return fiscal.Document{}, err
	}
	if _, err := d.prepare(ctx); err != nil {
		return fiscal.Document{}, err
	}
	if err := d.checkSaved(ctx, r); err != nil {
		return fiscal.Document{}, err
	}
	fn, err := d.fnStatus(ctx)
	if err != nil {
		return fiscal.Document{}, err
	}
	op := fiscal.Pending{ID: id, Receipt: r, LastFD: fn.LastFD, FN: fn.Number, Started: d.opt.Now()}
	if err := j.Begin(ctx, op); err != nil {
		return fiscal.Document{}, &fiscal.Error{Code: fiscal.CodeJournal, Err: err}
	}
	log.Info("printing receipt", "last_fd", fn.LastFD, "total", r.Total())

	doc, err := d.printBody(ctx, r, in)
	if err == nil {
		sp, serr := d.shiftParams(ctx)
		if serr == nil {
			doc.Shift, doc.ReceiptNumber = sp.Number, sp.Receipt
		}
		// The receipt exists now: recording it must not be cut short by a
		// shutdown, or only the FN search would find it again.
		if ferr := j.Finish(context.WithoutCancel(ctx), id, doc); ferr != nil {
			// The document exists; the pending entry resolves to it on the next call.
			log.Error("fiscal journal finish failed", "fd", doc.FD, "err", ferr)
		}
		log.Info("receipt printed", "fd", doc.FD)
		return doc, nil
	}
	log.Warn("receipt interrupted; checking the FN", "err", err)
	rdoc, printed, rerr := d.resolve(ctx, op)
	switch {
	case rerr == nil && printed:
		log.Info("receipt found in the FN", "fd", rdoc.FD)
		return rdoc, nil
	case rerr == nil:
		// Proved not printed: the journal entry is gone, the same id may print again.
		return fiscal.Document{}, err
	}
	log.Warn("receipt outcome unknown; retry with the same id", "err", rerr)
	return fiscal.Document{}, &fiscal.Error{Code: fiscal.CodeOutcomeUnknown, Text: "receipt outcome not yet known; retry with the same id", Err: err}
}

// CheckReceipt says whether this register can print r, without sending anything:
// the model's limits and every character of every name in its code page. Callers
// ask it before taking money for the receipt.
func (d *Driver) CheckReceipt(r fiscal.Receipt) error {
	if err := r.Validate(d.opt.Limits); err != nil {
		return err
	}
	if err := d.checkMarked(r); err != nil {
		return err
	}
	return checkEncodable(r)
}

func checkEncodable(r fiscal.Receipt) error {
	for i, it := range r.Items {
		for _, c := range it.Name {
			if c == utf8.RuneError {
				return &fiscal.Error{Code: fiscal.CodeBadReceipt, Text: fmt.Sprintf("item %d: name is not valid UTF-8", i+1)}
			}
			if _, ok := encodeWin1251Rune(c); !ok {
				return &fiscal.Error{Code: fiscal.CodeBadReceipt, Text: fmt.Sprintf("item %d: character %q cannot be printed by the register", i+1, c)}
			}
		}
	}
	return nil
}

// row is the table-6 row FF46h carries for a rate. 22 % and 22/122 are rows 11
// and 12 whatever the register's setting T17П71: in mode 1 the register would
// also turn row 1 into 22 % from 2026, in mode 2 it would not, and row 11 means
// 22 % in both (fr_drv_ng issue #328); 20 % is refused from 2026 before this.
// Rows 1..6 also name FF45h's six tax sums (slot row-1); rows 7..12 have no sum
// there and are left to the register to total from the lines' tax amounts.
func (d *Driver) row(v fiscal.VATRate) (byte, error) {
	if b, ok := d.opt.VATRows[v]; ok {
		return b, nil
	}
	switch v {
	case fiscal.VAT20, fiscal.VAT10, fiscal.VAT0, fiscal.NoVAT, fiscal.VAT20120, fiscal.VAT10110, fiscal.VAT22, fiscal.VAT22122:
		return byte(v), nil
	}
	if b, ok := DefaultVATRows[v]; ok {
		return b, nil
	}
	return 0, &fiscal.Error{Code: fiscal.CodeBadReceipt, Text: fmt.Sprintf("VAT rate %d has no table-6 row", v)}
}

// rows maps every line's rate to its row.
func (d *Driver) rows(r fiscal.Receipt) ([]byte, error) {
	out := make([]byte, len(r.Items))
	for i, it := range r.Items {
		b, err := d.row(it.VAT)
		if err != nil {
			return nil, err
		}
		out[i] = b
	}
	return out, nil
}

// checkRows reads, once per row, the rate that table 6 holds in each row chosen
// by DefaultVATRows or Options.VATRows (the rows no vendor document settles), and
// refuses the receipt before anything prints when it is not the rate asked for.
func (d *Driver) checkRows(ctx context.Context, r fiscal.Receipt, rows []byte) error {
	for i, it := range r.Items {
		switch it.VAT {
		case fiscal.VAT5, fiscal.VAT7, fiscal.VAT5105, fiscal.VAT7107:
		default:
			if _, set := d.opt.VATRows[it.VAT]; !set {
				continue
			}
		}
		want := int(it.VAT.Percent()) * 100
		got, ok := d.rowRates[rows[i]]
		if !ok {
			v, err := query(ctx, d, CmdReadTable, EncodeReadTable(d.opt.Password, TableTaxes, uint16(rows[i]), FieldTaxRate), DecodeTaxRate)
			if err != nil {
				return err
			}
			if d.rowRates == nil {
				d.rowRates = map[byte]int{}
			}
			d.rowRates[rows[i]], got = v, v
		}
		if it.VAT.Percent() >= 0 && got != want {
			return &fiscal.Error{Code: fiscal.CodeBadReceipt, Field: fmt.Sprintf("items[%d].vat", i),
				Text: fmt.Sprintf("items[%d].vat: the register's table 6 row %d holds %d.%02d %%, not %d %%; set register.vat_rows to the row that holds it",
					i, rows[i], got/100, got%100, want/100)}
		}
	}
	return nil
}

// withIdentity completes a stored document that lacks РН or ФН (kept by an older
// version) from the register, when it is of the FN now in the register.
func (d *Driver) withIdentity(ctx context.Context, doc fiscal.Document) (fiscal.Document, error) {
	if doc.QR == "" && doc.FNNumber != "" && doc.FD != 0 { // kept by a version without it
		doc.QR = fiscal.QRString(doc, doc.Type)
	}
	if doc.RegNumber != "" && doc.FNNumber != "" {
		return doc, nil
	}
	id, err := d.identity(ctx)
	if err != nil {
		return fiscal.Document{}, err
	}
	if doc.FNNumber != "" && doc.FNNumber != id.FNNumber {
		return fiscal.Document{}, &fiscal.Error{Code: fiscal.CodeFNError,
			Text: fmt.Sprintf("document %d of FN %s lacks the registration number and the register now has FN %s; complete it by hand", doc.FD, doc.FNNumber, id.FNNumber)}
	}
	doc.RegNumber, doc.FNNumber = id.RegNumber, id.FNNumber
	doc.QR = fiscal.QRString(doc, doc.Type)
	return doc, nil
}

func (d *Driver) printBody(ctx context.Context, r fiscal.Receipt, in fiscal.Identity) (fiscal.Document, error) {
	return d.printDocument(ctx, r, in, func() error {
		_, err := d.do(ctx, CmdOpenReceipt, append(d.pw(), openType(r.Type)), d.opt.Timeouts.Reply)
		return err
	})
}

// printDocument prints r's lines, tags and close after open has begun the
// document (8Dh for a receipt; FF35h and the correction's tags for an FFD 1.2
// correction, whose first line opens it).
func (d *Driver) printDocument(ctx context.Context, r fiscal.Receipt, in fiscal.Identity, open func() error) (fiscal.Document, error) {
	rows, err := d.rows(r)
	if err != nil {
		return fiscal.Document{}, err
	}
	if err := open(); err != nil {
		return fiscal.Document{}, err
	}
	var c Close
	for i, it := range r.Items {
		method, object, dep := it.Method, it.Object, it.Department
		if method == 0 {
			method = fiscal.FullPayment
		}
		if object == 0 {
			object = fiscal.Goods
		}
		if dep == 0 {
			dep = 1
		}
		sum := it.Sum()
		tax := it.VAT.Tax(sum)
		if slot := int(rows[i]) - 1; slot >= 0 && slot < len(c.Taxes) {
			if it.VAT == fiscal.VAT0 || it.VAT == fiscal.NoVAT {
				c.Taxes[slot] += sum // turnover
			} else {
				c.Taxes[slot] += tax
			}
		}
		ffd12 := d.ffd12()
		if ffd12 {
			// FFD 1.2: the line's tags and the code's binding go before FF46h.
			if err := d.lineTags(ctx, r, it); err != nil {
				return fiscal.Document{}, err
			}
			if it.Marked() {
				object = markedObject(object)
			}
		}
		op := Operation{Type: byte(r.Type), Quantity: it.Quantity, Price: it.Price, Sum: sum, Tax: tax,
			TaxRate: rows[i], Department: byte(dep), Method: byte(method), Object: byte(object), Name: it.Name}
		if _, err := d.do(ctx, CmdFNOperation, EncodeOperation(d.opt.Password, op), d.opt.Timeouts.Reply); err != nil {
			return fiscal.Document{}, err
		}
		// Below FFD 1.2 the code goes as tag 1162 after the line; FFD 1.2 has no
		// host-built 1162 (the register forms 1163 from FF67h).
		if !ffd12 && it.MarkingCode != "" {
			if _, err := d.do(ctx, CmdFNOperationTLV, append(d.pw(), TLV(TagProductCode, []byte(it.MarkingCode))...), d.opt.Timeouts.Reply); err != nil {
				return fiscal.Document{}, err
			}
		}
	}
	if r.Buyer != "" {
		if _, err := d.do(ctx, CmdFNSendTLV, append(d.pw(), TLV(TagBuyerContact, CP866(r.Buyer))...), d.opt.Timeouts.Reply); err != nil {
			return fiscal.Document{}, err
		}
	}
	if r.Cashier != "" {
		if _, err := d.do(ctx, CmdFNSendTLV, append(d.pw(), TLV(TagCashier, CP866(r.Cashier))...), d.opt.Timeouts.Reply); err != nil {
			return fiscal.Document{}, err
		}
	}
	if r.CashierINN != "" {
		if _, err := d.do(ctx, CmdFNSendTLV, append(d.pw(), TLV(TagCashierINN, CP866(r.CashierINN))...), d.opt.Timeouts.Reply); err != nil {
			return fiscal.Document{}, err
		}
	}
	for _, p := range r.Payments {
		c.Payments[p.Kind-1] += p.Amount
	}
	c.TaxSystem = byte(r.TaxSystem)
	data, err := d.do(ctx, CmdFNCloseReceipt, EncodeClose(d.opt.Password, c), d.opt.Timeouts.Long)
	if err != nil {
		return fiscal.Document{}, err
	}
	cr, err := DecodeCloseResult(data)
	if err != nil {
		// The document is closed but the reply is unreadable: recovery reads it back.
		return fiscal.Document{}, &fiscal.Error{Code: fiscal.CodeOutcomeUnknown, Command: CmdFNCloseReceipt, Err: err}
	}
	t := InZone(cr.Time, d.opt.Location)
	if t.IsZero() {
		t = d.now()
	}
	doc := fiscal.Document{FD: cr.FD, FP: cr.FP, FNNumber: in.FNNumber, RegNumber: in.RegNumber, Time: t, Total: r.Total(), Type: r.Type, Change: cr.Change}
	doc.QR = fiscal.QRString(doc, r.Type)
	return doc, nil
}

// resolvePending resolves every pending journal entry except skip.
func (d *Driver) resolvePending(ctx context.Context, rep *fiscal.RecoveryReport) error {
	j := d.opt.Journal
	if j == nil {
		return nil
	}
	ps, err := j.Pending(ctx)
	if err != nil {
		return &fiscal.Error{Code: fiscal.CodeJournal, Err: err}
	}
	for _, p := range ps {
		_, printed, err := d.resolve(ctx, p)
		if err != nil {
			return err
		}
		if rep != nil {
			if printed {
				rep.Completed = append(rep.Completed, p.ID)
			} else {
				rep.NotPrinted = append(rep.NotPrinted, p.ID)
			}
		}
	}
	return nil
}

// resolveReceipt settles one pending receipt from the FN's own record: ENQ first (a held reply
// to FF45h is used directly), a receipt still open is cancelled (it never reached the
// FN), then the FN's last FD number is compared with op.LastFD and the new documents
// are searched for a receipt of this type and total. Found ⇒ finished in the journal;
// not found ⇒ aborted (proved not printed).
func (d *Driver) resolveReceipt(ctx context.Context, op fiscal.Pending) (fiscal.Document, bool, error) {
	j := d.opt.Journal
	log := d.log.With("payment_id", op.ID)
	// A document found below is recorded with the register's identity: read it
	// first, so a failing read leaves the entry pending rather than blank.
	in, err := d.identity(ctx)
	if err != nil {
		return fiscal.Document{}, false, err
	}
	held, err := d.l.sync(ctx)
	if err != nil {
		return fiscal.Document{}, false, linkError(0, err)
	}
	if held != nil {
		if cmd, code, data, err := SplitReply(held); err == nil && cmd == CmdFNCloseReceipt && code == 0 {
			if cr, err := DecodeCloseResult(data); err == nil && cr.FD > op.LastFD {
				log.Info("close-receipt reply recovered with ENQ", "fd", cr.FD)
			}
		}
	}
	ss, err := d.shortStatus(ctx)
	if err != nil {
		return fiscal.Document{}, false, err
	}
	if ss.Submode == SubmodeAfterPaperOut {
		if _, err := d.do(ctx, CmdContinuePrint, d.pw(), d.opt.Timeouts.Long); err != nil {
			return fiscal.Document{}, false, err
		}
	}
	if ss.ModeNumber() == ModeDocumentOpen {
		log.Warn("cancelling the interrupted receipt left open on the register")
		if _, err := d.do(ctx, CmdCancelReceipt, d.pw(), d.opt.Timeouts.Reply); err != nil {
			return fiscal.Document{}, false, err
		}
	}
	fn, err := d.fnStatus(ctx)
	if err != nil {
		return fiscal.Document{}, false, err
	}
	if op.FN != "" && fn.Number != "" && fn.Number != op.FN {
		return fiscal.Document{}, false, &fiscal.Error{Code: fiscal.CodeFNError,
			Text: fmt.Sprintf("the FN was replaced (%s, receipt started on %s); check receipt %s by hand", fn.Number, op.FN, op.ID)}
	}
	total := op.Receipt.Total()
	for fd := op.LastFD + 1; fd <= fn.LastFD && fd > op.LastFD; fd++ {
		f, err := d.findDocument(ctx, fd)
		if err != nil {
			return fiscal.Document{}, false, err
		}
		if f.Type != 3 || f.Operation != byte(op.Receipt.Type) || f.Total != total {
			continue
		}
		fnNumber := fn.Number
		if fnNumber == "" {
			fnNumber = in.FNNumber
		}
		doc := fiscal.Document{FD: f.FD, FP: f.FP, FNNumber: fnNumber, RegNumber: in.RegNumber, Time: InZone(f.Time, d.opt.Location),
			Total: total, Type: op.Receipt.Type, Change: op.Receipt.Change(), Recovered: true}
		doc.QR = fiscal.QRString(doc, op.Receipt.Type)
		if sp, err := d.shiftParams(ctx); err == nil {
			doc.Shift = sp.Number
			if fd == fn.LastFD {
				doc.ReceiptNumber = sp.Receipt
			}
		}
		if err := j.Finish(context.WithoutCancel(ctx), op.ID, doc); err != nil {
			return fiscal.Document{}, false, &fiscal.Error{Code: fiscal.CodeJournal, Err: err}
		}
		return doc, true, nil
	}
	if err := j.Abort(ctx, op.ID); err != nil {
		return fiscal.Document{}, false, &fiscal.Error{Code: fiscal.CodeJournal, Err: err}
	}
	log.Info("interrupted receipt is not in the FN", "last_fd", fn.LastFD)
	return fiscal.Document{}, false, nil
}

// Recover resolves what a crash left: printing stopped by paper out is continued,
// pending journal entries are settled from the FN, and a receipt still open on the
// device (not ours, or ours but never closed) is cancelled. Receipts proved not
// printed are not printed here: their callers print them again with the same id.
func (d *Driver) Recover(ctx context.Context) (fiscal.RecoveryReport, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var rep fiscal.RecoveryReport
	if _, err := d.l.sync(ctx); err != nil {
		return rep, linkError(0, err)
	}
	ss, err := d.shortStatus(ctx)
	if err != nil {
		return rep, err
	}
	if ss.Submode == SubmodeAfterPaperOut {
		if _, err := d.do(ctx, CmdContinuePrint, d.pw(), d.opt.Timeouts.Long); err != nil {
			return rep, err
		}
		rep.ContinuedPrint = true
	}
	if err := d.resolvePending(ctx, &rep); err != nil {
		return rep, err
	}
	if ss, err = d.shortStatus(ctx); err != nil {
		return rep, err
	}
	if ss.ModeNumber() == ModeDocumentOpen {
		if _, err := d.do(ctx, CmdCancelReceipt, d.pw(), d.opt.Timeouts.Reply); err != nil {
			return rep, err
		}
		rep.CancelledOpen = true
	}
	return rep, nil
}

// RecoverRegister is Recover at any time, reporting what it found: the mode,
// paper out (printing continues once paper is loaded), pending operations
// settled, a document left open (a foreign receipt) cancelled.
func (d *Driver) RecoverRegister(ctx context.Context) (fiscal.RecoveryReport, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var rep fiscal.RecoveryReport
	if _, err := d.l.sync(ctx); err != nil {
		return rep, linkError(0, err)
	}
	ss, err := d.shortStatus(ctx)
	if err != nil {
		return rep, err
	}
	rep.Mode, rep.Submode = ss.ModeNumber(), int(ss.Submode)
	switch ss.Submode {
	case SubmodePassivePaperOut, SubmodeActivePaperOut:
		rep.PaperOut = true
		rep.Found = append(rep.Found, "no paper: load it; printing continues then")
		// Nothing prints without paper: pending operations wait for it.
		return rep, &fiscal.Error{Code: fiscal.CodePaperOut, Text: "no receipt paper"}
	case SubmodeAfterPaperOut:
		if _, err := d.do(ctx, CmdContinuePrint, d.pw(), d.opt.Timeouts.Long); err != nil {
			return rep, err
		}
		rep.ContinuedPrint = true
		rep.Found = append(rep.Found, "printing stopped by paper out was continued")
	}
	if err := d.resolvePending(ctx, &rep); err != nil {
		return rep, err
	}
	for _, id := range rep.Completed {
		rep.Found = append(rep.Found, fmt.Sprintf("operation %s was found done on the register and recorded", id))
	}
	for _, id := range rep.NotPrinted {
		rep.Found = append(rep.Found, fmt.Sprintf("operation %s was not done; run it again with the same id", id))
	}
	if ss, err = d.shortStatus(ctx); err != nil {
		return rep, err
	}
	if ss.ModeNumber() == ModeDocumentOpen {
		if _, err := d.do(ctx, CmdCancelReceipt, d.pw(), d.opt.Timeouts.Reply); err != nil {
			return rep, err
		}
		rep.CancelledOpen = true
		rep.Found = append(rep.Found, "a receipt left open by other software was cancelled")
	}
	if voided, err := d.voidBegun(ctx); err != nil {
		return rep, err
	} else if voided {
		rep.Found = append(rep.Found, "a document begun in the FN and never completed was voided")
	}
	if len(rep.Found) == 0 {
		rep.Found = append(rep.Found, "nothing to recover")
	}
	return rep, nil
}

// openType maps a receipt type to 8Dh's numbering (0 sale, 1 purchase, 2 sale
// return, 3 purchase return), which differs from tag 1054's.
func openType(t fiscal.ReceiptType) byte {
	switch t {
	case fiscal.Purchase:
		return 1
	case fiscal.SaleReturn:
		return 2
	case fiscal.PurchaseReturn:
		return 3
	}
	return 0
}
