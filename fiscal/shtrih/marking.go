package shtrih

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"kassa-agent/fiscal"
)

// FFD 1.2 marked goods. Layouts and sources:
//
// FF61h check a code (vendor OPOS driver shtrih-m/opos,
// Source/SmFiscalPrinter/Units/FiscalPrinterDevice.pas, FSCheckItemCode, and a
// wire trace in shtrih-m/fr_drv_ng issue #145): password(4) | planned status
// 2003 (1) | mode 2102 (1, always 0) | code length X (1) | TLV length Y (1) |
// code (X, as scanned) | TLV (Y: 2108, 1023 or 1291, only for a measured
// status). Reply: 2004 local check (1) | reason it was not done (1) | 2100
// code type (1) | length N of what follows (1; 0 when offline or the OISM did
// not answer in time) | FN code of the online request (1; 0 ok, 0x20 + reason,
// 0xFF timeout) | 2106 (1) | OISM answer TLVs (N-2).
//
// FF69h accept or decline (same file, FSAcceptItemCode): password(4) |
// decision (1: 0 decline, 1 accept, 2 clear every saved result). Reply: no
// data. The vendor: "to be sent after the check of every code".
//
// FF67h bind a code to the line (same file, FSBindItemCode): password(4) |
// code length (1) | code (N) [| 0xFF for the volume-sort account, not used].
// Reply: code type (2) | Data Matrix type (1) [| a check result as FF61h's,
// when the register had to check the code itself].
//
// FF70h marking status (same file, FSReadMarkStatus): password(4). Reply:
// check state (1: 0 table full, 1 no code on check, 2..4 a code checked and
// awaiting the decision) | notice state (1) | allowed commands (1) | codes
// saved by accept (1) | codes in the notice (1) | notice area fill (1) |
// notices queued (2 LE).
//
// Order of a marked line (fr_drv_ng_examples issue #42, the vendor's answer):
// FF4Dh line tags, FF67h, then FF46h; FF46h refuses 1293/1294 without FF67h
// (fr_drv_ng issue #245). That the line's 1260 also goes before FF46h is not
// stated by any source found: it follows from FF4Dh tags before FF46h going to
// the next line in that order.
const (
	CmdFNCheckMarking  uint16 = 0xFF61
	CmdFNBindMarking   uint16 = 0xFF67
	CmdFNAcceptMarking uint16 = 0xFF69
	CmdFNMarkingStatus uint16 = 0xFF70
)

// FF69h decisions.
const (
	MarkingDecline byte = 0
	MarkingAccept  byte = 1
	MarkingClear   byte = 2
)

// FFD 1.2 tags the driver sends or reads for marked goods.
const (
	TagQuantity       = 1023
	TagIndustry       = 1260
	TagFOIV           = 1262
	TagDocDate        = 1263
	TagDocNumber      = 1264
	TagIndustryValue  = 1265
	TagFraction       = 1291
	TagNumerator      = 1293
	TagDenominator    = 1294
	TagProcessing     = 2005
	TagProcessingCode = 2105
	TagMeasure        = 2108
	TagItemStatus     = 2109
)

// Register error codes of the marking flow (fr_drv_ng issues #42, #245).
const (
	ErrCodeBadOperation  byte = 0x5E // marking step out of order (1293 without FF67h, FF67h in the wrong receipt)
	ErrCodeMarkingFormat byte = 0xD3 // the code cannot be decoded (GS1 format)
)

// MarkingStatus is the FF70h reply.
type MarkingStatus struct {
	CheckState  byte // 1 = no code on check; 2..4 = a code checked, awaiting the decision
	NoticeState byte
	Allowed     byte
	Saved       byte // codes accepted (FF69h 1) and held for the receipt
	InNotice    byte
	Fill        byte
	Queued      uint16
}

// Awaiting is true when a checked code waits for FF69h.
func (s MarkingStatus) Awaiting() bool { return s.CheckState >= 2 && s.CheckState <= 4 }

// DecodeMarkingStatus decodes FF70h's reply data.
func DecodeMarkingStatus(d []byte) (MarkingStatus, error) {
	if len(d) < 8 {
		return MarkingStatus{}, short("marking status", 8, len(d))
	}
	return MarkingStatus{CheckState: d[0], NoticeState: d[1], Allowed: d[2], Saved: d[3], InNotice: d[4], Fill: d[5],
		Queued: binary.LittleEndian.Uint16(d[6:8])}, nil
}

// EncodeMarkingStatus is the simulator's side of DecodeMarkingStatus.
func EncodeMarkingStatus(s MarkingStatus) []byte {
	return binary.LittleEndian.AppendUint16([]byte{s.CheckState, s.NoticeState, s.Allowed, s.Saved, s.InNotice, s.Fill}, s.Queued)
}

// checkTLV is FF61h's TLV list: what a measured status needs to be checked.
func checkTLV(q fiscal.MarkingRequest) []byte {
	if q.Status != fiscal.MeasuredSold && q.Status != fiscal.MeasuredReturned {
		return nil
	}
	b := TLV(TagMeasure, []byte{byte(q.Measure)})
	if q.Fraction != nil {
		return append(b, TLV(TagFraction, fractionSTLV(*q.Fraction))...)
	}
	return append(b, TLV(TagQuantity, PutFVLN(q.Quantity))...)
}

func fractionSTLV(f fiscal.Fraction) []byte {
	return append(TLV(TagNumerator, PutVLN(uint64(f.Numerator))), TLV(TagDenominator, PutVLN(uint64(f.Denominator)))...)
}

// IndustrySTLV is tag 1260's value: 1262, 1263 (dd.mm.yyyy), 1264, 1265.
func IndustrySTLV(q fiscal.IndustryRequisite) []byte {
	b := TLV(TagFOIV, CP866(q.FOIV))
	b = append(b, TLV(TagDocDate, []byte(q.Date.Format("02.01.2006")))...)
	b = append(b, TLV(TagDocNumber, CP866(q.Number))...)
	return append(b, TLV(TagIndustryValue, CP866(q.Value))...)
}

// maxMarkingData: a frame carries at most 255 bytes after LEN, two of them the
// command code; FF61h spends 8 more on the password and its four fields.
const maxMarkingData = 255 - 2 - 8

// EncodeCheckMarking builds FF61h's parameters.
func EncodeCheckMarking(pw uint32, q fiscal.MarkingRequest) ([]byte, error) {
	tlv := checkTLV(q)
	if len(q.Code)+len(tlv) > maxMarkingData {
		return nil, &fiscal.Error{Code: fiscal.CodeBadReceipt, Field: "marking_code",
			Text: fmt.Sprintf("marking_code: %d bytes with its tags, one FF61h frame carries %d", len(q.Code)+len(tlv), maxMarkingData)}
	}
	b := password(pw)
	b = append(b, byte(q.Status), 0, byte(len(q.Code)), byte(len(tlv)))
	b = append(b, q.Code...)
	return append(b, tlv...), nil
}

// DecodeCheckMarking decodes FF61h's reply data (and the check part of
// FF67h's). Code and Status are the caller's to fill.
func DecodeCheckMarking(d []byte) (fiscal.MarkingResult, error) {
	r := fiscal.MarkingResult{ItemStatus: -1, ProcessingCode: -1, Processing: -1}
	if len(d) < 4 {
		return r, short("marking check", 4, len(d))
	}
	r.Local, r.LocalReason, r.CodeType = fiscal.CheckResult(d[0]), int(d[1]), int(d[2])
	n := int(d[3])
	if len(d) < 4+n {
		return r, short("marking check", 4+n, len(d))
	}
	more := d[4 : 4+n]
	if len(more) == 0 {
		return r, nil // offline, or the OISM did not answer in time
	}
	r.FNCode = int(more[0])
	if r.FNCode != 0 || len(more) < 2 {
		return r, nil
	}
	r.Online, r.Result = true, fiscal.CheckResult(more[1])
	r.ServerTLV = append([]byte(nil), more[2:]...)
	for rest := more[2:]; len(rest) > 0; {
		if len(rest) < 4 {
			return r, fmt.Errorf("%w: OISM answer: truncated TLV header", ErrShortFrame)
		}
		tag, l := binary.LittleEndian.Uint16(rest), int(binary.LittleEndian.Uint16(rest[2:]))
		if len(rest) < 4+l {
			return r, fmt.Errorf("%w: OISM answer: tag %d needs %d bytes, %d left", ErrShortFrame, tag, l, len(rest)-4)
		}
		v := int(getUint(rest[4 : 4+min(l, 4)]))
		switch tag {
		case TagItemStatus:
			r.ItemStatus = v
		case TagProcessingCode:
			r.ProcessingCode = v
		case TagProcessing:
			r.Processing = v
		}
		rest = rest[4+l:]
	}
	return r, nil
}

// BindReply is FF67h's reply.
type BindReply struct {
	CodeType [2]byte // as the vendor lists them: 'D','M' is GS1 Data Matrix, 0,0 unrecognised
	DMType   byte
	Check    *fiscal.MarkingResult // present when the register checked the code itself
}

// DecodeBindMarking decodes FF67h's reply data.
func DecodeBindMarking(d []byte) (BindReply, error) {
	if len(d) < 3 {
		return BindReply{}, short("marking bind", 3, len(d))
	}
	b := BindReply{CodeType: [2]byte{d[0], d[1]}, DMType: d[2]}
	if len(d) > 3 {
		c, err := DecodeCheckMarking(d[3:])
		if err != nil {
			return BindReply{}, err
		}
		b.Check = &c
	}
	return b, nil
}

// EncodeBindMarking builds FF67h's parameters.
func EncodeBindMarking(pw uint32, code string) []byte {
	return append(append(password(pw), byte(len(code))), code...)
}

// ffd12 is true unless the register is configured for an FFD below 1.2.
func (d *Driver) ffd12() bool {
	switch d.opt.FFD {
	case "1.0", "1.05", "1.1":
		return false
	}
	return true
}

// CheckMarking checks a code through the FN (FF61h): the register asks the
// OISM when it can and answers with the FN's and the OISM's verdicts, or "not
// checked" when it is offline or the OISM did not answer in its time. A code
// left awaiting a decision by an abandoned or interrupted check is declined
// first. A lost reply is settled from FF70h and the check sent once more: a
// check is not a fiscal document and changes no counter.
func (d *Driver) CheckMarking(ctx context.Context, q fiscal.MarkingRequest) (fiscal.MarkingResult, error) {
	if !d.ffd12() {
		return fiscal.MarkingResult{}, &fiscal.Error{Code: fiscal.CodeNotSupported, Command: CmdFNCheckMarking,
			Text: "the register is configured for FFD " + d.opt.FFD + ": marking codes are sent as tag 1162 unchecked"}
	}
	if err := q.Validate(); err != nil {
		return fiscal.MarkingResult{}, err
	}
	params, err := EncodeCheckMarking(d.opt.Password, q)
	if err != nil {
		return fiscal.MarkingResult{}, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.lastCheck = nil
	if err := d.declineAwaiting(ctx); err != nil {
		return fiscal.MarkingResult{}, err
	}
	var data []byte
	for try := 0; ; try++ {
		data, err = d.do(ctx, CmdFNCheckMarking, params, d.opt.Timeouts.Long)
		if err == nil || try > 0 || !errors.Is(err, errLostReply) {
			break
		}
		// The reply is lost: whether the FN holds the check shows in FF70h;
		// a held one is declined, as its result is unknown, and checked again.
		if derr := d.declineAwaiting(ctx); derr != nil {
			return fiscal.MarkingResult{}, derr
		}
		d.log.Warn("marking check reply lost; checking again", "err", err)
	}
	if err != nil {
		return fiscal.MarkingResult{}, err
	}
	r, err := DecodeCheckMarking(data)
	if err != nil {
		return fiscal.MarkingResult{}, &fiscal.Error{Code: fiscal.CodeProtocol, Command: CmdFNCheckMarking, Err: err}
	}
	r.Code, r.Status = q.Code, q.Status
	d.lastCheck = &r
	d.log.Info("marking code checked", "verdict", r.Verdict().String(), "local", int(r.Local), "result_2106", int(r.Result), "online", r.Online)
	return r, nil
}

// declineAwaiting declines a check the FN holds awaiting a decision (FF70h
// says), whose result the caller does not have; d.mu held.
func (d *Driver) declineAwaiting(ctx context.Context) error {
	st, err := d.markingStatus(ctx)
	if err != nil || !st.Awaiting() {
		return err
	}
	d.log.Info("declining a marking code left awaiting the decision")
	_, err = d.do(ctx, CmdFNAcceptMarking, append(d.pw(), MarkingDecline), d.opt.Timeouts.Reply)
	return err
}

// AcceptMarking accepts the register's last check, which must be of r.Code
// and acceptable under Options.MarkingOffline; otherwise nothing is sent. A
// lost reply is settled from FF70h: the accepted count grew and no code
// awaits ⇒ accepted; the code still awaits and the count did not grow ⇒
// not executed, sent once more; anything else is an unknown outcome and the
// code must be checked again. So a code is never accepted twice.
func (d *Driver) AcceptMarking(ctx context.Context, r fiscal.MarkingResult) error {
	if err := r.Acceptable(d.opt.MarkingOffline); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.lastCheck == nil || d.lastCheck.Code != r.Code || d.lastCheck.Status != r.Status {
		return &fiscal.Error{Code: fiscal.CodeBadReceipt, Field: "marking_code",
			Text: "marking_code: the register's last check is not of this code; check it again"}
	}
	before, err := d.markingStatus(ctx)
	if err != nil {
		return err
	}
	if !before.Awaiting() {
		d.lastCheck = nil
		return &fiscal.Error{Code: fiscal.CodeBadReceipt, Field: "marking_code",
			Text: "marking_code: the register holds no check awaiting a decision; check the code again"}
	}
	for try := 0; ; try++ {
		_, err = d.do(ctx, CmdFNAcceptMarking, append(d.pw(), MarkingAccept), d.opt.Timeouts.Reply)
		if err == nil {
			break
		}
		if !errors.Is(err, errLostReply) && !errors.Is(err, context.DeadlineExceeded) {
			d.lastCheck = nil
			return err
		}
		after, serr := d.markingStatus(ctx)
		switch {
		case serr != nil:
			return &fiscal.Error{Code: fiscal.CodeOutcomeUnknown, Command: CmdFNAcceptMarking, Text: "accept reply lost and the marking status unreadable", Err: serr}
		case !after.Awaiting() && after.Saved == before.Saved+1:
			err = nil
		case after.Awaiting() && after.Saved == before.Saved && try == 0:
			continue
		default:
			d.lastCheck = nil
			return &fiscal.Error{Code: fiscal.CodeOutcomeUnknown, Command: CmdFNAcceptMarking,
				Text: "accept reply lost and the register's state does not tell; check the code again", Err: err}
		}
		break
	}
	d.lastCheck = nil
	d.log.Info("marking code accepted", "verdict", r.Verdict().String())
	return nil
}

// DeclineMarking declines the last check (FF69h 0); nothing awaiting is not an
// error.
func (d *Driver) DeclineMarking(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.lastCheck = nil
	st, err := d.markingStatus(ctx)
	if err != nil {
		return err
	}
	if !st.Awaiting() {
		return nil
	}
	if _, err := d.do(ctx, CmdFNAcceptMarking, append(d.pw(), MarkingDecline), d.opt.Timeouts.Reply); err != nil {
		if st, serr := d.markingStatus(ctx); serr == nil && !st.Awaiting() {
			return nil
		}
		return err
	}
	return nil
}

// ClearMarking drops every accepted code not yet bound and any check awaiting a
// decision (FF69h 2). Repeating it is harmless, so a lost reply is resent.
func (d *Driver) ClearMarking(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.lastCheck = nil
	_, err := d.do(ctx, CmdFNAcceptMarking, append(d.pw(), MarkingClear), d.opt.Timeouts.Reply)
	if errors.Is(err, errLostReply) {
		_, err = d.do(ctx, CmdFNAcceptMarking, append(d.pw(), MarkingClear), d.opt.Timeouts.Reply)
	}
	return err
}

// MarkingStatus reads the FN's marking state (FF70h): a check awaiting the
// decision, the count of accepted codes held for the receipt.
func (d *Driver) MarkingStatus(ctx context.Context) (MarkingStatus, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.markingStatus(ctx)
}

func (d *Driver) markingStatus(ctx context.Context) (MarkingStatus, error) {
	return query(ctx, d, CmdFNMarkingStatus, d.pw(), DecodeMarkingStatus)
}

var _ fiscal.MarkingChecker = (*Driver)(nil)

// checkMarked refuses, before anything is sent, an FFD 1.2 receipt whose
// marked lines the register cannot sell: no accepted check, a check the policy
// does not accept, a code too long for FF67h.
func (d *Driver) checkMarked(r fiscal.Receipt) error {
	if !d.ffd12() {
		return nil
	}
	if err := r.ValidateFFD12(); err != nil {
		return err
	}
	for i, it := range r.Items {
		if !it.Marked() {
			continue
		}
		if len(it.MarkingCode) > 255-2-5 {
			return &fiscal.Error{Code: fiscal.CodeBadReceipt, Field: fmt.Sprintf("items[%d].marking_code", i),
				Text: fmt.Sprintf("items[%d].marking_code: too long for the register's bind command", i)}
		}
		if err := it.MarkingResult.Acceptable(d.opt.MarkingOffline); err != nil {
			var fe *fiscal.Error
			if errors.As(err, &fe) {
				fe.Field = fmt.Sprintf("items[%d].marking_code", i)
				fe.Text = fe.Field + ": " + fe.Text
			}
			return err
		}
	}
	return nil
}

// checkSaved refuses a receipt with more marked lines than the FN holds
// accepted codes for (e.g. a restart dropped them): nothing is printed.
func (d *Driver) checkSaved(ctx context.Context, r fiscal.Receipt) error {
	if !d.ffd12() {
		return nil
	}
	n := 0
	for _, it := range r.Items {
		if it.Marked() {
			n++
		}
	}
	if n == 0 {
		return nil
	}
	st, err := d.markingStatus(ctx)
	if err != nil {
		return err
	}
	if int(st.Saved) < n {
		return &fiscal.Error{Code: fiscal.CodeBadReceipt, Field: "items",
			Text: fmt.Sprintf("items: the register holds %d accepted marking codes, the receipt has %d marked lines; check the codes again", st.Saved, n)}
	}
	return nil
}

// lineTags sends, before FF67h and FF46h, what an FFD 1.2 line carries beyond
// FF46h: measure 2108, fraction 1291, industry requisites 1260, then binds the
// code (FF67h). A line without a code and in pieces sends nothing.
func (d *Driver) lineTags(ctx context.Context, r fiscal.Receipt, it fiscal.Item) error {
	send := func(b []byte) error {
		_, err := d.do(ctx, CmdFNOperationTLV, append(d.pw(), b...), d.opt.Timeouts.Reply)
		return err
	}
	if it.Measure != fiscal.Pieces {
		if err := send(TLV(TagMeasure, []byte{byte(it.Measure)})); err != nil {
			return err
		}
	}
	if !it.Marked() {
		return nil
	}
	if it.Fraction != nil {
		if err := send(TLV(TagFraction, fractionSTLV(*it.Fraction))); err != nil {
			return err
		}
	}
	ind := it.Industry
	if len(ind) == 0 {
		ind = r.Industry
	}
	for _, q := range ind {
		if err := send(TLV(TagIndustry, IndustrySTLV(q))); err != nil {
			return err
		}
	}
	data, err := d.do(ctx, CmdFNBindMarking, EncodeBindMarking(d.opt.Password, it.MarkingCode), d.opt.Timeouts.Long)
	if err != nil {
		return err
	}
	if b, err := DecodeBindMarking(data); err == nil && b.Check != nil && b.Check.Verdict() == fiscal.Invalid {
		// The register checked the code itself and found it invalid: the line
		// must not be sold; the open receipt is cancelled by the caller's recovery.
		return &fiscal.Error{Code: fiscal.CodeRejected, Command: CmdFNBindMarking, Text: "the register's own check of the marking code is negative"}
	}
	return nil
}

// markedObject is tag 1212 for a marked line under FFD 1.2.
func markedObject(o fiscal.PaymentObject) fiscal.PaymentObject {
	switch o {
	case fiscal.Excise, fiscal.MarkedExcise:
		return fiscal.MarkedExcise
	}
	return fiscal.MarkedGoods
}
