package shtrih

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"time"

	"kassa-agent/fiscal"
)

// Correction receipts (чек коррекции). The vendor's OPOS driver
// (shtrih-m/opos, FiscalPrinterDevice.pas: FSStartCorrectionReceipt,
// FSPrintCorrectionReceipt2) forms one as FF35h (begin), then FF0Ch tags, then
// FF4Ah "correction receipt V2":
//
//	password(4) | correction type(1, tag 1173) | calculation sign(1, tag 1054) |
//	total(5) | cash(5) | electronic(5) | prepayment(5) | credit(5) |
//	counter-provision(5) | VAT 20 %(5) | VAT 10 %(5) | turnover at 0 %(5) |
//	turnover without VAT(5) | VAT 20/120(5) | VAT 10/110(5) | tax system(1)
//
// reply: receipt number(2) | FD(4) | FP(4). FF4Ah carries no lines: the items of
// a fiscal.Correction give its total and tax sums. The base of the correction
// goes before it as the STLV tag 1174 holding 1178 (the corrected settlement's
// date, unixtime) and 1179 (the order's number).
//
// Under FFD 1.2 a correction carries its lines like a receipt, and that is how
// this driver forms it on an FFD 1.2 register (the default): FF35h, FF0Ch 1173
// (one byte) and 1174, then one FF46h per line (the first opens the document),
// the cashier's tags and FF45h, whose reply gives FD and FP as for a receipt.
// The vendor's answers in shtrih-m/fr_drv_ng issues #150 and #216 give this
// sequence (FNBeginCorrectionReceipt, the correction tags, FNOperation,
// FNCloseCheckEx). Only this form carries 5 %, 7 % and 22 % lines; FF4Ah stays
// for registers configured with an earlier FFD (ffd = "1.05").
const (
	CmdFNBeginCorrection uint16 = 0xFF35
	CmdFNCorrection      uint16 = 0xFF4A

	TagCorrectionType  = 1173
	TagCorrectionBase  = 1174
	TagCorrectionDate  = 1178
	TagCorrectionOrder = 1179
)

// CorrectionV2 is the FF4Ah request.
type CorrectionV2 struct {
	Type      byte     // tag 1173: 0 self-initiated, 1 by order
	Sign      byte     // tag 1054: 1 sale, 2 sale return, 3 purchase, 4 purchase return
	Total     int64    // kopecks
	Payments  [5]int64 // cash, electronic, prepayment, credit, counter-provision
	Taxes     [6]int64 // as FF45h's: VAT20, VAT10, turnover 0 %, turnover no VAT, 20/120, 10/110
	TaxSystem byte
}

const correctionLen = 4 + 1 + 1 + 5 + 5*5 + 6*5 + 1 // 67 bytes of params

// EncodeCorrection builds the params of FF4Ah.
func EncodeCorrection(pw uint32, c CorrectionV2) []byte {
	b := append(password(pw), c.Type, c.Sign)
	b = putUint(b, uint64(c.Total), 5)
	for _, p := range c.Payments {
		b = putUint(b, uint64(p), 5)
	}
	for _, t := range c.Taxes {
		b = putUint(b, uint64(t), 5)
	}
	return append(b, c.TaxSystem)
}

// DecodeCorrection parses FF4Ah params (the simulator's side).
func DecodeCorrection(p []byte) (pw uint32, c CorrectionV2, err error) {
	if len(p) != correctionLen {
		return 0, c, fmt.Errorf("shtrih: FF4A params are %d bytes, want %d", len(p), correctionLen)
	}
	pw = binary.LittleEndian.Uint32(p)
	c.Type, c.Sign = p[4], p[5]
	c.Total = int64(getUint(p[6:11]))
	o := 11
	for i := range c.Payments {
		c.Payments[i] = int64(getUint(p[o : o+5]))
		o += 5
	}
	for i := range c.Taxes {
		c.Taxes[i] = int64(getUint(p[o : o+5]))
		o += 5
	}
	c.TaxSystem = p[o]
	return pw, c, nil
}

// CorrectionResult is the FF4Ah reply.
type CorrectionResult struct {
	Number int // receipt number in the shift
	FD     uint32
	FP     uint32
}

// DecodeCorrectionResult decodes the FF4Ah reply's data.
func DecodeCorrectionResult(d []byte) (CorrectionResult, error) {
	if len(d) < 10 {
		return CorrectionResult{}, short("correction receipt", 10, len(d))
	}
	return CorrectionResult{Number: int(binary.LittleEndian.Uint16(d[0:2])), FD: binary.LittleEndian.Uint32(d[2:6]),
		FP: binary.LittleEndian.Uint32(d[6:10])}, nil
}

// CorrectionBase is the STLV 1174 value: 1178 (unixtime of the date, 00:00 UTC)
// and 1179 when an order number is given.
func CorrectionBase(date time.Time, number string) []byte {
	day := time.Date(date.Year(), date.Month(), date.Day(), 0, 0, 0, 0, time.UTC)
	v := TLV(TagCorrectionDate, binary.LittleEndian.AppendUint32(nil, uint32(day.Unix())))
	if number != "" {
		v = append(v, TLV(TagCorrectionOrder, CP866(number))...)
	}
	return v
}

// DecodeCorrectionBase parses an STLV 1174 value into the date and number.
func DecodeCorrectionBase(v []byte) (date time.Time, number string, err error) {
	for len(v) > 0 {
		if len(v) < 4 {
			return date, number, short("STLV 1174", 4, len(v))
		}
		tag, n := binary.LittleEndian.Uint16(v), int(binary.LittleEndian.Uint16(v[2:]))
		if len(v) < 4+n {
			return date, number, short("STLV 1174 value", 4+n, len(v))
		}
		val := v[4 : 4+n]
		switch tag {
		case TagCorrectionDate:
			if n != 4 {
				return date, number, fmt.Errorf("shtrih: tag 1178 is %d bytes, want 4", n)
			}
			date = time.Unix(int64(binary.LittleEndian.Uint32(val)), 0).UTC()
		case TagCorrectionOrder:
			number = DecodeCP866(val)
		}
		v = v[4+n:]
	}
	if date.IsZero() {
		return date, number, fmt.Errorf("shtrih: STLV 1174 lacks tag 1178")
	}
	return date, number, nil
}

// correctionFor maps a fiscal.Correction to FF4Ah: payments as FF45h's (all
// electronic kinds in one sum), tax sums per table-6 rows 1..6. A rate that has
// no FF4Ah sum (rows 7..12: 5 %, 7 %, 22 % and their fractions) is refused
// naming the item, as the register could not total its tax.
func (d *Driver) correctionFor(c fiscal.Correction) (CorrectionV2, error) {
	r := c.Receipt
	v := CorrectionV2{Type: byte(c.Type), Sign: byte(r.Type), Total: r.Total(), TaxSystem: byte(r.TaxSystem)}
	for i, it := range r.Items {
		row, err := d.row(it.VAT)
		if err != nil {
			return v, err
		}
		if row < 1 || row > 6 {
			return v, &fiscal.Error{Code: fiscal.CodeBadReceipt, Field: fmt.Sprintf("items[%d].vat", i),
				Text: fmt.Sprintf("items[%d].vat: the correction receipt command (FF4Ah) has no tax sum for this rate", i)}
		}
		sum := it.Sum()
		if it.VAT == fiscal.VAT0 || it.VAT == fiscal.NoVAT {
			v.Taxes[row-1] += sum
		} else {
			v.Taxes[row-1] += it.VAT.Tax(sum)
		}
	}
	for _, p := range r.Payments {
		switch {
		case p.Kind == fiscal.Cash:
			v.Payments[0] += p.Amount
		case p.Kind >= fiscal.Electronic && p.Kind < fiscal.Prepayment:
			v.Payments[1] += p.Amount
		default:
			v.Payments[p.Kind-fiscal.Prepayment+2] += p.Amount
		}
	}
	return v, checkCorrectionPaid(r)
}

// checkCorrectionPaid: a correction records a settlement already made, so its
// payments equal its total; no change is given.
func checkCorrectionPaid(r fiscal.Receipt) error {
	var paid int64
	for _, p := range r.Payments {
		paid += p.Amount
	}
	if total := r.Total(); paid != total {
		return &fiscal.Error{Code: fiscal.CodeBadReceipt, Field: "payments",
			Text: fmt.Sprintf("payments: a correction's payments %d must equal its total %d (no change is given)", paid, total)}
	}
	return nil
}

// PrintCorrection prints a correction receipt exactly once for id: FF35h, FF0Ch
// with STLV 1174 (1178, 1179), FF4Ah. Its rates are checked against the date of
// the corrected settlement (a 2025 settlement is corrected at 20 %). A lost reply
// is settled from the FN like a receipt's: a correction document (type 31) of the
// same sign and total after the recorded last FD.
func (d *Driver) PrintCorrection(ctx context.Context, id string, c fiscal.Correction) (fiscal.Document, error) {
	if err := c.Validate(d.opt.Limits, d.now()); err != nil {
		return fiscal.Document{}, err
	}
	if err := checkEncodable(c.Receipt); err != nil {
		return fiscal.Document{}, err
	}
	if err := c.Receipt.CheckRatesAt(c.BaseDate); err != nil {
		return fiscal.Document{}, err
	}
	var v CorrectionV2
	var rows []byte
	if d.ffd12() {
		var err error
		if rows, err = d.rows(c.Receipt); err != nil {
			return fiscal.Document{}, err
		}
		if err := checkCorrectionPaid(c.Receipt); err != nil {
			return fiscal.Document{}, err
		}
	} else {
		var err error
		if v, err = d.correctionFor(c); err != nil {
			return fiscal.Document{}, err
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.once(ctx, fiscal.Pending{ID: id, Kind: fiscal.OpCorrection, Correction: &c}, func(op *fiscal.Pending) error {
		if _, err := d.prepare(ctx); err != nil {
			return err
		}
		if d.ffd12() {
			if err := d.checkLineRates(ctx, c.Receipt, rows); err != nil {
				return err
			}
		}
		return d.recoveryPoint(ctx, op)
	}, func() (fiscal.Document, error) {
		if d.ffd12() {
			return d.printCorrectionLines(ctx, c)
		}
		if _, err := d.do(ctx, CmdFNBeginCorrection, d.pw(), d.opt.Timeouts.Reply); err != nil {
			return fiscal.Document{}, err
		}
		if _, err := d.do(ctx, CmdFNSendTLV, append(d.pw(), TLV(TagCorrectionBase, CorrectionBase(c.BaseDate, c.BaseNumber))...), d.opt.Timeouts.Reply); err != nil {
			return fiscal.Document{}, err
		}
		for _, t := range []struct {
			tag uint16
			v   string
		}{{TagCashier, c.Receipt.Cashier}, {TagCashierINN, c.Receipt.CashierINN}} {
			if t.v == "" {
				continue
			}
			if _, err := d.do(ctx, CmdFNSendTLV, append(d.pw(), TLV(t.tag, CP866(t.v))...), d.opt.Timeouts.Reply); err != nil {
				return fiscal.Document{}, err
			}
		}
		data, err := d.do(ctx, CmdFNCorrection, EncodeCorrection(d.opt.Password, v), d.opt.Timeouts.Long)
		if err != nil {
			return fiscal.Document{}, err
		}
		cr, err := DecodeCorrectionResult(data)
		if err != nil {
			return fiscal.Document{}, &fiscal.Error{Code: fiscal.CodeOutcomeUnknown, Command: CmdFNCorrection, Err: err}
		}
		in, err := d.identity(ctx)
		if err != nil {
			return fiscal.Document{}, err
		}
		doc := fiscal.Document{FD: cr.FD, FP: cr.FP, FNNumber: in.FNNumber, RegNumber: in.RegNumber, ReceiptNumber: cr.Number,
			Time: d.now().Truncate(time.Minute), Total: v.Total, Type: c.Receipt.Type}
		if f, err := d.findDocument(ctx, cr.FD); err == nil && !f.Time.IsZero() {
			doc.Time = InZone(f.Time, d.opt.Location)
		}
		if sp, err := d.shiftParams(ctx); err == nil {
			doc.Shift = sp.Number
		}
		doc.QR = fiscal.QRString(doc, doc.Type)
		return doc, nil
	})
}

// printCorrectionLines is the FFD 1.2 form: FF35h, its type and base, then the
// lines and close of a receipt.
func (d *Driver) printCorrectionLines(ctx context.Context, c fiscal.Correction) (fiscal.Document, error) {
	in, err := d.identity(ctx)
	if err != nil {
		return fiscal.Document{}, err
	}
	doc, err := d.printDocument(ctx, c.Receipt, in, func() error {
		if _, err := d.do(ctx, CmdFNBeginCorrection, d.pw(), d.opt.Timeouts.Reply); err != nil {
			return err
		}
		for _, v := range [][]byte{TLV(TagCorrectionType, []byte{byte(c.Type)}), TLV(TagCorrectionBase, CorrectionBase(c.BaseDate, c.BaseNumber))} {
			if _, err := d.do(ctx, CmdFNSendTLV, append(d.pw(), v...), d.opt.Timeouts.Reply); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return doc, err
	}
	if sp, err := d.shiftParams(ctx); err == nil {
		doc.Shift, doc.ReceiptNumber = sp.Number, sp.Receipt
	}
	return doc, nil
}

// checkLineRates refuses, before the document begins, a correction line the
// register would total at another rate: the rows table 6 must hold (5 %, 7 %),
// and 20 % or 20/120 (a 2025 settlement), which a register left at T17П71 = 1
// turns into 22 % itself on a date from 2026.
func (d *Driver) checkLineRates(ctx context.Context, r fiscal.Receipt, rows []byte) error {
	if err := d.checkRows(ctx, r, rows); err != nil {
		return err
	}
	i := slices.IndexFunc(r.Items, func(it fiscal.Item) bool { return it.VAT == fiscal.VAT20 || it.VAT == fiscal.VAT20120 })
	if i < 0 || d.now().Before(fiscal.VAT22From) {
		return nil
	}
	// Read each time: a technician may change it while the agent runs.
	mode, err := d.vat22Mode(ctx)
	if err != nil {
		return err
	}
	if mode != 2 {
		return &fiscal.Error{Code: fiscal.CodeBadReceipt, Field: fmt.Sprintf("items[%d].vat", i),
			Text: fmt.Sprintf("items[%d].vat: the register turns 20 %% into 22 %% itself (setting T17П71 = %d); a correction of a settlement made at 20 %% needs T17П71 = 2 (a technician sets it in table 17)", i, mode)}
	}
	return nil
}
