package shtrihsim

import (
	"encoding/binary"
	"fmt"
	"strings"
	"time"

	"kassa-agent/fiscal/shtrih"
)

const adminPassword = 30

// execute runs one command and returns the reply body. Called with s.mu held.
func (s *Sim) execute(cmd uint16, p []byte, f Fault) []byte {
	s.commands++
	if f.Kind == DeviceError {
		return shtrih.ReplyBody(cmd, f.Code, nil)
	}
	code, data := s.run(cmd, p)
	if f.Kind == PaperOut && code == shtrih.ErrCodeStillPrinting {
		// Not run yet: the fault waits for the retry.
		f.Count = 1
		s.faults = append([]Fault{f}, s.faults...)
		s.fired = s.fired[:len(s.fired)-1]
		f = Fault{}
	}
	if f.Kind == PaperOut { // even when the command itself failed: the paper ran out while printing
		s.st.Paper = 2
		s.st.PaperBack = time.Time{}
		if f.Delay > 0 {
			s.st.PaperBack = time.Now().Add(f.Delay)
		}
		s.print("~~~~~~~~ paper out ~~~~~~~~")
	}
	if code == 0 {
		if err := s.save(); err != nil {
			code, data = shtrih.FNErrFailure, nil
		}
	}
	return shtrih.ReplyBody(cmd, code, data)
}

func (s *Sim) run(cmd uint16, p []byte) (byte, []byte) {
	if cmd == shtrih.CmdDeviceType {
		name := shtrih.Win1251("ШТРИХ-М-01Ф (симулятор)")
		return 0, append([]byte{0, 0, 1, 0, 0, 0}, name...)
	}
	if len(p) < 4 {
		return shtrih.ErrCodeBadParams, nil
	}
	pw := binary.LittleEndian.Uint32(p)
	p = p[4:]
	if pw == 0 || pw > adminPassword || (cmd > 0xFF && pw != adminPassword) {
		return shtrih.ErrCodeWrongPassword, nil
	}
	op := byte(pw)
	switch cmd {
	case shtrih.CmdShortStatus:
		return 0, shtrih.EncodeShortStatus(shtrih.ShortStatus{Operator: op, Flags: 0x0292, Mode: s.mode(), Submode: s.submode(),
			ReceiptOps: s.receiptOps(), BatteryVolts: 0x9F, PowerVolts: 0xE5})
	case shtrih.CmdStatus:
		return 0, s.fullStatus(op)
	case shtrih.CmdFNStatus:
		phase := byte(3) // fiscal mode
		if s.opt.Unregistered {
			phase = 1 // ready for fiscalization
		}
		d := []byte{phase, s.fnDocument(), 0, b2b(s.st.ShiftOpen), s.opt.FNWarnings}
		d = shtrih.PutFNTime(d, s.now())
		d = append(d, pad(s.opt.FNNumber, 16)...)
		return 0, binary.LittleEndian.AppendUint32(d, s.lastFD())
	case shtrih.CmdFNNumber:
		return 0, pad(s.opt.FNNumber, 16)
	case shtrih.CmdFNExpiry:
		t := s.local(s.st.Docs[0].Time).AddDate(1, 1, 0)
		return 0, []byte{byte(t.Year() % 100), byte(t.Month()), byte(t.Day()), 11, 1}
	case shtrih.CmdFNFiscalResult:
		if s.opt.Unregistered {
			return shtrih.FNErrState, nil
		}
		r := s.st.Docs[0]
		d := shtrih.PutFNTime(nil, s.local(r.Time))
		d = append(d, padSpace(s.opt.INN, 12)...)
		d = append(d, padSpace(s.opt.RegNumber, 20)...)
		d = append(d, 1, 0)
		d = binary.LittleEndian.AppendUint32(d, r.FD)
		return 0, binary.LittleEndian.AppendUint32(d, r.FP)
	case shtrih.CmdFNFindDocument:
		return s.find(p)
	case shtrih.CmdFNReadDocument:
		return s.readDocument(p)
	case shtrih.CmdFNReadDocumentTLV:
		return s.readDocumentTLV()
	case shtrih.CmdReadTable:
		if len(p) < 4 {
			return shtrih.ErrCodeBadParams, nil
		}
		if p[0] == shtrih.TableRegion && binary.LittleEndian.Uint16(p[1:3]) == 1 && p[3] == shtrih.FieldVAT22Mode {
			return 0, []byte{byte(s.opt.VATMode)} // T17П71
		}
		row, ok := s.row(int(binary.LittleEndian.Uint16(p[1:3])))
		if p[0] != shtrih.TableTaxes || !ok {
			return shtrih.ErrCodeBadParams, nil
		}
		switch p[3] {
		case shtrih.FieldTaxRate:
			return 0, binary.LittleEndian.AppendUint16(nil, uint16(max(row.pct, 0)*100))
		case shtrih.FieldTaxName:
			return 0, pad(string(shtrih.Win1251(row.name)), 60)
		}
		return shtrih.ErrCodeBadParams, nil
	case shtrih.CmdFNOFDStatus:
		return 0, s.ofd()
	case shtrih.CmdFNShiftParams:
		d := []byte{b2b(s.st.ShiftOpen)}
		d = binary.LittleEndian.AppendUint16(d, uint16(s.st.Shift))
		return 0, binary.LittleEndian.AppendUint16(d, uint16(s.st.ShiftReceipts))
	case shtrih.CmdPrintLine:
		if c := s.printable(); c != 0 {
			return c, nil
		}
		if len(p) < 1 {
			return shtrih.ErrCodeBadParams, nil
		}
		s.print(strings.TrimRight(shtrih.DecodeWin1251(p[1:]), " \x00"))
		s.printed()
		return 0, []byte{op}
	case shtrih.CmdCut:
		s.print("✂- - - - - - - - - - - - - - - - - - - -")
		return 0, []byte{op}
	case shtrih.CmdContinuePrint:
		if s.submode() == 3 {
			s.st.Paper = 0
			s.print("~~~~~~ printing continued ~~~~~~")
			s.printed()
		}
		return 0, []byte{op}
	case shtrih.CmdOpenShift:
		code, _ := s.openShift()
		return code, []byte{op}
	case shtrih.CmdFNOpenShift: // an FN command: the FN's error for the wrong state
		if s.st.ShiftOpen {
			return shtrih.FNErrState, nil
		}
		code, doc := s.openShift()
		return code, shiftReply(doc)
	case shtrih.CmdXReport, shtrih.CmdZReport:
		code, _ := s.report(cmd == shtrih.CmdZReport)
		return code, []byte{op}
	case shtrih.CmdFNCloseShift:
		if !s.st.ShiftOpen || s.st.Receipt != nil {
			return shtrih.FNErrState, nil
		}
		code, doc := s.report(true)
		return code, shiftReply(doc)
	case shtrih.CmdFNBeginOpen:
		if s.st.ShiftOpen || s.fnDocumentBegun() {
			return shtrih.FNErrState, nil
		}
		s.st.ShiftBegin = &shiftBegin{}
		return 0, nil
	case shtrih.CmdFNBeginClose:
		if !s.st.ShiftOpen || s.st.Receipt != nil || s.fnDocumentBegun() {
			return shtrih.FNErrState, nil
		}
		s.st.ShiftBegin = &shiftBegin{Close: true}
		return 0, nil
	case shtrih.CmdSale, shtrih.CmdReturnSale:
		return s.legacySale(op, cmd, p)
	case shtrih.CmdCloseReceipt:
		return s.legacyCloseReceipt(op, p)
	case shtrih.CmdCashIn, shtrih.CmdCashOut:
		return s.cash(cmd == shtrih.CmdCashIn, op, p)
	case shtrih.CmdOpenReceipt:
		return s.openReceipt(op, p)
	case shtrih.CmdFNOperation:
		return s.operation(p)
	case shtrih.CmdFNSendTLV, shtrih.CmdFNOperationTLV:
		return s.tlv(cmd, p)
	case shtrih.CmdCancelReceipt:
		if s.st.Receipt == nil {
			return shtrih.ErrCodeWrongMode, nil
		}
		s.st.Receipt, s.st.Correction = nil, nil
		s.receiptMarkingDone()
		s.print("        ЧЕК АННУЛИРОВАН", "")
		return 0, []byte{op}
	case shtrih.CmdFNCloseReceipt:
		return s.closeReceipt(p)
	case shtrih.CmdFNBeginCorrection:
		if c := s.shiftReady(); c != 0 || s.fnDocumentBegun() {
			return shtrih.FNErrState, nil
		}
		s.st.Correction = &openReceipt{}
		return 0, nil
	case shtrih.CmdFNCorrection:
		return s.correction(p)
	case shtrih.CmdFNVoidDocument:
		if !s.fnDocumentBegun() {
			return shtrih.FNErrState, nil
		}
		s.st.ShiftBegin, s.st.Correction = nil, nil
		s.print("    ДОКУМЕНТ ФН ОТМЕНЕН", "")
		return 0, nil
	case shtrih.CmdLoadData:
		_, typ, n, block, err := shtrih.DecodeLoadData(append(make([]byte, 4), p...))
		if err != nil || typ != 0 || n > 127 {
			return shtrih.ErrCodeBadParams, nil
		}
		if s.blocks == nil {
			s.blocks = map[byte][]byte{}
		}
		s.blocks[n] = append([]byte(nil), block...)
		return 0, []byte{op}
	case shtrih.CmdPrint2D:
		return s.print2D(op, p)
	case shtrih.CmdPrintCopy:
		return s.printCopy(op)
	case shtrih.CmdFNCheckMarking, shtrih.CmdFNAcceptMarking, shtrih.CmdFNMarkingStatus, shtrih.CmdFNBindMarking:
		return s.marking(cmd, p)
	}
	return shtrih.ErrCodeNotSupported, nil
}

func b2b(b bool) byte {
	if b {
		return 1
	}
	return 0
}

func pad(s string, n int) []byte {
	b := make([]byte, n)
	copy(b, s)
	return b
}

func padSpace(s string, n int) []byte {
	b := []byte(s)
	for len(b) < n {
		b = append(b, ' ')
	}
	return b[:n]
}

func (s *Sim) receiptOps() int {
	if s.st.Receipt == nil {
		return 0
	}
	return len(s.st.Receipt.Items)
}

func (s *Sim) fullStatus(op byte) []byte {
	now := s.now()
	d := []byte{op, 'A', '4'}
	d = binary.LittleEndian.AppendUint16(d, 25000)
	d = append(d, 1, 6, 25, 1)
	d = binary.LittleEndian.AppendUint16(d, uint16(s.st.DevDoc))
	d = binary.LittleEndian.AppendUint16(d, 0x0292)
	d = append(d, s.mode(), s.submode(), 1, 'A', '4')
	d = binary.LittleEndian.AppendUint16(d, 25000)
	d = append(d, 1, 6, 25)
	d = append(d, byte(now.Day()), byte(now.Month()), byte(now.Year()%100), byte(now.Hour()), byte(now.Minute()), byte(now.Second()))
	d = append(d, 0)
	d = binary.LittleEndian.AppendUint32(d, s.opt.Serial)
	last := s.st.Shift
	if s.st.ShiftOpen {
		last--
	}
	d = binary.LittleEndian.AppendUint16(d, uint16(last))
	d = binary.LittleEndian.AppendUint16(d, 2000)
	d = append(d, 1, 11)
	var inn uint64
	fmt.Sscan(s.opt.INN, &inn)
	for i := 0; i < 6; i++ {
		d = append(d, byte(inn>>(8*i)))
	}
	return d
}

// document is the FN's document fd.
func (s *Sim) document(fd uint32) (Document, bool) {
	for _, doc := range s.st.Docs {
		if doc.FD == fd {
			return doc, true
		}
	}
	return Document{}, false
}

func (s *Sim) find(p []byte) (byte, []byte) {
	if len(p) < 4 {
		return shtrih.FNErrBadParam, nil
	}
	if doc, ok := s.document(binary.LittleEndian.Uint32(p)); ok {
		d := []byte{byte(doc.Type), b2b(doc.SentToOFD)}
		d = shtrih.PutFNTime(d, s.local(doc.Time))
		d = binary.LittleEndian.AppendUint32(d, doc.FD)
		d = binary.LittleEndian.AppendUint32(d, doc.FP)
		switch doc.Type {
		case DocReceipt, DocCorrection:
			d = append(d, byte(doc.Operation))
			d = append(d, shtrih.Money5(doc.Total)...)
		case DocShiftOpen, DocShiftClose:
			d = binary.LittleEndian.AppendUint16(d, uint16(doc.Shift))
		}
		return 0, d
	}
	return shtrih.FNErrNoData, nil
}

func (s *Sim) ofd() []byte {
	var n int
	var first *Document
	for i := range s.st.Docs {
		if !s.st.Docs[i].SentToOFD {
			if first == nil {
				first = &s.st.Docs[i]
			}
			n++
		}
	}
	d := []byte{0, 0}
	d = binary.LittleEndian.AppendUint16(d, uint16(n))
	if first == nil {
		return append(d, make([]byte, 9)...)
	}
	d = binary.LittleEndian.AppendUint32(d, first.FD)
	return shtrih.PutFNTime(d, s.local(first.Time))
}

// commit appends an FN document.
func (s *Sim) commit(doc Document) Document {
	doc.FD = s.lastFD() + 1
	doc.Time = s.now().Truncate(time.Minute)
	doc.FP = s.fp(doc.FD, doc.Total, doc.Time)
	doc.SentToOFD = s.opt.OFDOnline
	s.st.Docs = append(s.st.Docs, doc)
	s.st.DevDoc++ // every printed document takes the device's through number
	return doc
}

// shiftBegin is an FFD 1.05+ shift open or close begun with FF41h/FF42h: the tags
// sent since (FF0Ch: 1021 cashier, 1203 cashier INN) go into the shift document
// made by the command that completes it (E0h or FF0Bh; 41h or FF43h).
type shiftBegin struct {
	Close bool           `json:"close"`
	Tags  map[int]string `json:"tags,omitempty"`
}

// shiftTags takes the tags of a begun shift open (close = false) or close.
func (s *Sim) shiftTags(close bool) map[int]string {
	b := s.st.ShiftBegin
	if b == nil || b.Close != close {
		return nil
	}
	s.st.ShiftBegin = nil
	return b.Tags
}

// shiftReply is the FF0Bh/FF43h reply: shift number(2), FD number(4), FP(4)
// (pyshtrih handlers/commands.py).
func shiftReply(doc Document) []byte {
	d := binary.LittleEndian.AppendUint16(nil, uint16(doc.Shift))
	d = binary.LittleEndian.AppendUint32(d, doc.FD)
	return binary.LittleEndian.AppendUint32(d, doc.FP)
}

// cashierLines print the cashier tags of a document.
func cashierLines(tags map[int]string) []string {
	var out []string
	if v := tags[shtrih.TagCashier]; v != "" {
		out = append(out, kv("КАССИР", v))
	}
	if v := tags[shtrih.TagCashierINN]; v != "" {
		out = append(out, kv("ИНН КАССИРА", v))
	}
	return out
}

func (s *Sim) openShift() (byte, Document) {
	if c := s.printable(); c != 0 {
		return c, Document{}
	}
	if s.st.ShiftOpen {
		return shtrih.ErrCodeWrongMode, Document{}
	}
	s.st.Shift++
	s.st.ShiftOpen, s.st.ShiftOpened, s.st.ShiftReceipts = true, s.now(), 0
	doc := s.commit(Document{Type: DocShiftOpen, Shift: s.st.Shift, Tags: s.shiftTags(false)})
	lines := append([]string{center("ОТЧЕТ ОБ ОТКРЫТИИ СМЕНЫ"), kv("СМЕНА", fmt.Sprint(s.st.Shift))}, cashierLines(doc.Tags)...)
	s.print(append(lines, s.footer(doc)...)...)
	s.printed()
	return 0, doc
}

func (s *Sim) report(z bool) (byte, Document) {
	if c := s.printable(); c != 0 {
		return c, Document{}
	}
	if s.st.Receipt != nil {
		return shtrih.ErrCodeReceiptOpen, Document{}
	}
	if !s.st.ShiftOpen {
		if z {
			return shtrih.ErrCodeShiftNotOpen, Document{}
		}
		s.print(center("X-ОТЧЕТ"), center("смена закрыта"), "")
		return 0, Document{}
	}
	var sales, cnt int64
	for _, d := range s.st.Docs {
		if d.Type == DocReceipt && d.Shift == s.st.Shift {
			cnt++
			if d.Operation == 1 {
				sales += d.Total
			} else if d.Operation == 2 {
				sales -= d.Total
			}
		}
	}
	lines := []string{kv("СМЕНА", fmt.Sprint(s.st.Shift)), kv("ЧЕКОВ ЗА СМЕНУ", fmt.Sprint(cnt)),
		kv("ПРИХОД (НЕТТО)", money(sales)), kv("НАЛИЧНЫХ В КАССЕ", money(s.st.Cash))}
	if !z {
		s.st.DevDoc++
		s.print(append([]string{center("X-ОТЧЕТ (без гашения)")}, append(lines, "")...)...)
		s.printed()
		return 0, Document{}
	}
	s.st.ShiftOpen = false
	doc := s.commit(Document{Type: DocShiftClose, Shift: s.st.Shift, Tags: s.shiftTags(true)})
	lines = append(append([]string{center("ОТЧЕТ О ЗАКРЫТИИ СМЕНЫ")}, lines...), cashierLines(doc.Tags)...)
	s.print(append(lines, s.footer(doc)...)...)
	s.printed()
	return 0, doc
}

func (s *Sim) shiftReady() byte {
	switch s.mode() & 0x0F {
	case shtrih.ModeShiftClosed:
		return shtrih.ErrCodeShiftNotOpen
	case shtrih.ModeShiftExpired:
		return shtrih.ErrCodeShiftOver24h
	case shtrih.ModeDocumentOpen:
		return shtrih.ErrCodeReceiptOpen
	}
	return 0
}

func (s *Sim) cash(in bool, op byte, p []byte) (byte, []byte) {
	if c := s.printable(); c != 0 {
		return c, nil
	}
	if c := s.shiftReady(); c != 0 {
		return c, nil
	}
	if len(p) < 5 {
		return shtrih.ErrCodeBadParams, nil
	}
	sum := int64(shtrih.GetUint(p[:5]))
	if sum == 0 {
		return shtrih.ErrCodeBadParams, nil
	}
	title := "ВНЕСЕНИЕ"
	if in {
		s.st.Cash += sum
	} else {
		if sum > s.st.Cash {
			return shtrih.ErrCodeNotEnoughCash, nil
		}
		s.st.Cash -= sum
		title = "ВЫПЛАТА"
	}
	s.st.DevDoc++
	s.print(center(title), kv("СУММА", money(sum)), kv("НАЛИЧНЫХ В КАССЕ", money(s.st.Cash)), "")
	s.printed()
	return 0, binary.LittleEndian.AppendUint16([]byte{op}, uint16(s.st.DevDoc))
}

func (s *Sim) openReceipt(op byte, p []byte) (byte, []byte) {
	if c := s.printable(); c != 0 {
		return c, nil
	}
	if c := s.shiftReady(); c != 0 {
		return c, nil
	}
	if len(p) < 1 || p[0] > 3 {
		return shtrih.ErrCodeBadParams, nil
	}
	s.ensureReceipt(int(p[0]))
	return 0, []byte{op}
}

// ensureReceipt opens a receipt of type t (as 8Dh) unless one is open.
func (s *Sim) ensureReceipt(t int) {
	if s.st.Receipt != nil {
		return
	}
	if c := s.st.Correction; c != nil {
		// FFD 1.2: a correction begun with FF35h takes lines like a receipt;
		// the tags sent since FF35h are its own.
		s.st.Receipt, s.st.Correction = &openReceipt{Type: t, Tags: c.Tags, Correction: true}, nil
		s.print(center("КАССОВЫЙ ЧЕК КОРРЕКЦИИ"), center(strings.ToUpper(opName(opOf(t)))))
		s.printed()
		return
	}
	s.st.Receipt = &openReceipt{Type: t}
	s.print(center("КАССОВЫЙ ЧЕК"), center(strings.ToUpper(opName(opOf(t)))))
	s.printed()
}

// addItem records a checked line in the open receipt and prints it.
func (s *Sim) addItem(it Item, rate taxRow) {
	s.st.Receipt.Items = append(s.st.Receipt.Items, it)
	taxLine := "   " + rate.name
	if rate.pct > 0 {
		taxLine = kv(taxLine, "="+money(it.Tax))
	}
	s.print(it.Name, rightKV(fmt.Sprintf("%s x %s", qty(it.Quantity), money(it.Price)), "="+money(it.Sum)), taxLine)
	if m := markLine(it); m != "" {
		s.print(m)
	}
	s.printed()
}

func (s *Sim) operation(p []byte) (byte, []byte) {
	if c := s.printable(); c != 0 {
		return c, nil
	}
	_, o, err := shtrih.DecodeOperation(append(make([]byte, 4), p...))
	if err != nil {
		return shtrih.ErrCodeBadParams, nil
	}
	// With no receipt open the first operation opens one of its own kind, as
	// on the device (hosts that never send 8Dh).
	t, known := receiptOf(int(o.Type))
	if s.st.Receipt == nil {
		if c := s.shiftReady(); c != 0 {
			return c, nil
		}
		if !known {
			return shtrih.ErrCodeBadParams, nil
		}
	} else {
		t = s.st.Receipt.Type
	}
	rate, ok := s.rate(int(o.TaxRate))
	if int(o.Type) != opOf(t) || o.Quantity <= 0 || !ok || len(p) > 26+128 ||
		strings.TrimSpace(o.Name) == "" || o.Department > 16 {
		return shtrih.ErrCodeBadParams, nil
	}
	sum := o.Sum
	if sum < 0 {
		sum = (o.Price*o.Quantity + 500_000) / 1_000_000
	}
	// The device computes the line's tax itself; a host that sends a different
	// one computed it at another rate (e.g. 20 % after the switch to 22 %), and the
	// simulator refuses it so that shows in tests rather than on paper.
	tax := rate.tax(sum)
	if o.Tax >= 0 && o.Tax != tax {
		return shtrih.ErrCodeBadParams, nil
	}
	it := Item{Name: o.Name, Quantity: o.Quantity, Price: o.Price, Sum: sum, Tax: tax, TaxRate: int(o.TaxRate),
		Method: int(o.Method), Object: int(o.Object), Department: int(o.Department), RateName: rate.name}
	if s.ffd12() {
		if code := s.bindLine(&it); code != 0 {
			return code, nil
		}
	}
	s.ensureReceipt(t)
	s.addItem(it, rate)
	return 0, nil
}

func (s *Sim) tlv(cmd uint16, p []byte) (byte, []byte) {
	if s.st.Receipt == nil && (cmd != shtrih.CmdFNSendTLV || (s.st.ShiftBegin == nil && s.st.Correction == nil)) {
		return shtrih.FNErrState, nil
	}
	if len(p) < 4 {
		return shtrih.FNErrBadParam, nil
	}
	tag := int(binary.LittleEndian.Uint16(p))
	n := int(binary.LittleEndian.Uint16(p[2:]))
	if len(p) != 4+n {
		return shtrih.FNErrBadParam, nil
	}
	v := p[4:]
	if s.st.Receipt == nil && s.st.Correction != nil { // a begun correction receipt
		c := s.st.Correction
		if c.Tags == nil {
			c.Tags = map[int]string{}
		}
		if tag == shtrih.TagCorrectionType { // 1 byte: 0 self-initiated, 1 by order
			if len(v) != 1 || v[0] > 1 {
				return shtrih.FNErrBadParam, nil
			}
			c.Tags[tag] = fmt.Sprint(v[0])
			return 0, nil
		}
		if tag != shtrih.TagCorrectionBase {
			c.Tags[tag] = shtrih.DecodeCP866(v)
			return 0, nil
		}
		date, number, err := shtrih.DecodeCorrectionBase(v)
		if err != nil {
			return shtrih.FNErrBadParam, nil
		}
		c.Tags[shtrih.TagCorrectionDate] = date.Format(time.DateOnly)
		if number != "" {
			c.Tags[shtrih.TagCorrectionOrder] = number
		}
		return 0, nil
	}
	if s.st.Receipt == nil { // a begun shift open or close: the tag goes into its document
		b := s.st.ShiftBegin
		if b.Tags == nil {
			b.Tags = map[int]string{}
		}
		b.Tags[tag] = shtrih.DecodeCP866(v)
		return 0, nil
	}
	if cmd == shtrih.CmdFNOperationTLV && s.ffd12() {
		return s.lineTLV(tag, v)
	}
	if cmd == shtrih.CmdFNOperationTLV {
		if len(s.st.Receipt.Items) == 0 {
			return shtrih.FNErrState, nil
		}
		s.st.Receipt.Items[len(s.st.Receipt.Items)-1].Marking = string(v)
		s.print("   [М] код маркировки")
		return 0, nil
	}
	if s.st.Receipt.Tags == nil {
		s.st.Receipt.Tags = map[int]string{}
	}
	s.st.Receipt.Tags[tag] = shtrih.DecodeCP866(v)
	return 0, nil
}

func (s *Sim) closeReceipt(p []byte) (byte, []byte) {
	if c := s.printable(); c != 0 {
		return c, nil
	}
	if s.st.Receipt == nil {
		return shtrih.ErrCodeWrongMode, nil
	}
	_, c, err := shtrih.DecodeClose(append(make([]byte, 4), p...))
	if err != nil {
		return shtrih.ErrCodeBadParams, nil
	}
	code, doc := s.finishReceipt(c)
	if code != 0 {
		return code, nil
	}
	d := shtrih.Money5(doc.Change)
	d = binary.LittleEndian.AppendUint32(d, doc.FD)
	d = binary.LittleEndian.AppendUint32(d, doc.FP)
	return 0, shtrih.PutFNTime(d, s.local(doc.Time))
}

// finishReceipt checks the payments against the open receipt and closes it in the
// FN (FF45h and the legacy 85h).
func (s *Sim) finishReceipt(c shtrih.Close) (byte, Document) {
	r := s.st.Receipt
	var total, paid int64
	for _, it := range r.Items {
		total += it.Sum
	}
	if total == 0 {
		return shtrih.ErrCodeZeroTotal, Document{}
	}
	for _, x := range c.Payments {
		paid += x
	}
	if paid < total {
		return shtrih.ErrCodePaymentsLess, Document{}
	}
	change := paid - total
	if change > c.Payments[0] {
		return shtrih.ErrCodeBadParams, Document{} // change only from cash
	}
	if c.TaxSystem != 0 && c.TaxSystem&(c.TaxSystem-1) != 0 {
		return shtrih.ErrCodeBadParams, Document{}
	}
	if r.Correction {
		// A correction needs its type (1173) and base (1174: 1178, and 1179
		// when by order); the FN refuses to close it otherwise.
		kind, ok := r.Tags[shtrih.TagCorrectionType]
		if !ok || r.Tags[shtrih.TagCorrectionDate] == "" || (kind == "1" && r.Tags[shtrih.TagCorrectionOrder] == "") {
			return shtrih.FNErrBadParam, Document{}
		}
	}
	// FF45h's six tax sums belong to rows 1..6; a non-zero one must be what the
	// device itself computes from the lines (zero leaves it to the device).
	var want [6]int64
	for _, it := range r.Items {
		if it.TaxRate < 1 || it.TaxRate > 6 {
			continue
		}
		if it.TaxRate == 3 || it.TaxRate == 4 {
			want[it.TaxRate-1] += it.Sum // turnover
		} else {
			want[it.TaxRate-1] += it.Tax
		}
	}
	for i, t := range c.Taxes {
		if t != 0 && t != want[i] {
			return shtrih.ErrCodeBadParams, Document{}
		}
	}
	s.st.ShiftReceipts++
	s.st.Cash += c.Payments[0] - change
	if op := opOf(r.Type); op == 2 || op == 3 { // sale return and purchase pay cash out
		s.st.Cash -= 2 * (c.Payments[0] - change)
	}
	typ := DocReceipt
	if r.Correction {
		typ = DocCorrection
	}
	doc := s.commit(Document{Type: typ, Shift: s.st.Shift, Number: s.st.ShiftReceipts, Operation: opOf(r.Type),
		Total: total, Items: r.Items, Payments: c.Payments, Change: change, TaxSystem: int(c.TaxSystem), Tags: r.Tags})
	s.st.Receipt = nil
	s.receiptMarkingDone()
	var lines []string
	if r.Correction {
		lines = correctionLines(r.Tags)
	}
	lines = append(lines, kv("ИТОГ", "="+money(total)))
	names := map[int]string{0: "НАЛИЧНЫМИ", 1: "БЕЗНАЛИЧНЫМИ", 13: "ПРЕДОПЛАТА", 14: "ПОСТОПЛАТА", 15: "ВСТРЕЧНОЕ ПРЕДОСТАВЛЕНИЕ"}
	for i, x := range c.Payments {
		if x != 0 {
			n, ok := names[i]
			if !ok {
				n = fmt.Sprintf("ОПЛАТА %d", i+1)
			}
			lines = append(lines, kv(n, "="+money(x)))
		}
	}
	if change > 0 {
		lines = append(lines, kv("СДАЧА", "="+money(change)))
	}
	for _, t := range taxTotals(r.Items) {
		lines = append(lines, kv(t.label, "="+money(t.sum)))
	}
	lines = append(lines, cashierLines(r.Tags)...)
	if v := r.Tags[shtrih.TagBuyerContact]; v != "" {
		lines = append(lines, kv("ЭЛ. АДР. ПОКУПАТЕЛЯ", v))
	}
	lines = append(lines, kv("ЧЕК", fmt.Sprintf("%d  СМЕНА %d", doc.Number, doc.Shift)))
	s.print(append(lines, s.footer(doc)...)...)
	s.printed()
	return 0, doc
}

// Tape layout helpers: 40 columns, as the device prints.
const width = 40

func (s *Sim) footer(doc Document) []string {
	return []string{
		kv("ДАТА ВРЕМЯ", s.local(doc.Time).Format("02.01.06 15:04")),
		kv("РН ККТ", s.opt.RegNumber),
		kv("ФН", s.opt.FNNumber),
		kv("ФД", fmt.Sprint(doc.FD)),
		kv("ФП", fmt.Sprintf("%010d", doc.FP)),
		strings.Repeat("=", width),
	}
}

func center(s string) string {
	n := len([]rune(s))
	if n >= width {
		return s
	}
	return strings.Repeat(" ", (width-n)/2) + s
}

func kv(k, v string) string {
	n := len([]rune(k)) + len([]rune(v))
	if n >= width {
		return k + " " + v
	}
	return k + strings.Repeat(" ", width-n) + v
}

func rightKV(k, v string) string { return kv("  "+k, v) }

func money(v int64) string {
	sign := ""
	if v < 0 {
		sign, v = "-", -v
	}
	return fmt.Sprintf("%s%d.%02d", sign, v/100, v%100)
}

func qty(q int64) string {
	s := strings.TrimRight(strings.TrimRight(fmt.Sprintf("%d.%06d", q/1_000_000, q%1_000_000), "0"), ".")
	return s
}

// taxRow is one row of table 6 (tax rates) as it applies to a line now.
type taxRow struct {
	pct  int64 // percent; -1 = no VAT
	name string
}

// tax is the VAT included in sum: sum × pct / (100 + pct), rounded half up.
func (r taxRow) tax(sum int64) int64 {
	if r.pct <= 0 {
		return 0
	}
	return (2*sum*r.pct + 100 + r.pct) / (2 * (100 + r.pct))
}

// vat22From is when 22 % replaced 20 % (Federal Law 425-FZ).
var vat22From = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// tableSix are the rows of Shtrih-M table 6. Rows 11 and 12 (22 %, 22/122) are the
// vendor's (fr_drv_ng issue #328); rows 7..10 (5 %, 7 %, 5/105, 7/107) follow the
// order of tag 1199 and the DrvFR Tax1 numbering seen in host software — the same
// assumption as the driver's defaults, which a register may configure differently.
var tableSix = map[int]taxRow{
	1: {20, "НДС 20%"}, 2: {10, "НДС 10%"}, 3: {0, "НДС 0%"}, 4: {-1, "БЕЗ НДС"}, 5: {20, "НДС 20/120"}, 6: {10, "НДС 10/110"},
	7: {5, "НДС 5%"}, 8: {7, "НДС 7%"}, 9: {5, "НДС 5/105"}, 10: {7, "НДС 7/107"}, 11: {22, "НДС 22%"}, 12: {22, "НДС 22/122"},
}

// row is row n of table 6 as configured (Options.TaxRows).
func (s *Sim) row(n int) (taxRow, bool) {
	if pct, ok := s.opt.TaxRows[n]; ok {
		return taxRow{pct: int64(pct), name: fmt.Sprintf("НДС %d%%", pct)}, true
	}
	r, ok := tableSix[n]
	return r, ok
}

// rate is table-6 row n on the device's date: with T17П71 = 1 rows 1 and 5 turn
// into 22 % and 22/122 on 2026-01-01 (device clock).
func (s *Sim) rate(n int) (taxRow, bool) {
	r, ok := s.row(n)
	if s.opt.VATMode == 1 && (n == 1 || n == 5) {
		now := s.now()
		if !time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC).Before(vat22From) {
			r = tableSix[map[int]int{1: 11, 5: 12}[n]]
		}
	}
	return r, ok
}

type taxTotal struct {
	label string
	sum   int64
}

// taxTotals are the receipt's tax sums (turnover for 0 % and no VAT) per rate, in
// row order, as printed under the total.
func taxTotals(items []Item) []taxTotal {
	var out []taxTotal
	idx := map[string]int{}
	for _, it := range items {
		label, v := "СУММА "+it.RateName, it.Tax
		switch it.RateName {
		case "НДС 0%":
			label, v = "СУММА С НДС 0%", it.Sum
		case "БЕЗ НДС":
			label, v = "СУММА БЕЗ НДС", it.Sum
		}
		i, ok := idx[label]
		if !ok {
			i = len(out)
			idx[label] = i
			out = append(out, taxTotal{label: label})
		}
		out[i].sum += v
	}
	return out
}

func opName(t int) string {
	return [...]string{"", "Приход", "Возврат прихода", "Расход", "Возврат расхода"}[t]
}

// opOf maps the 8Dh receipt type (0 sale, 1 purchase, 2 sale return, 3 purchase
// return) to the calculation sign of FF46h and tag 1054 (1 sale, 2 sale return,
// 3 purchase, 4 purchase return).
func opOf(t int) int { return [...]int{1, 3, 2, 4}[t&3] }

// receiptOf is the inverse of opOf: the receipt type an FF46h operation opens.
func receiptOf(op int) (int, bool) {
	switch op {
	case 1, 2, 3, 4:
		return [...]int{0, 2, 1, 3}[op-1], true
	}
	return 0, false
}

// correction is FF4Ah (layout in shtrih/correction.go): it needs a correction
// begun with FF35h and its base (tag 1174, kept as 1178/1179); the payments must
// equal the total; the FN records a correction receipt (type 31).
func (s *Sim) correction(p []byte) (byte, []byte) {
	if c := s.printable(); c != 0 {
		return c, nil
	}
	b := s.st.Correction
	if b == nil || b.Tags[shtrih.TagCorrectionDate] == "" {
		return shtrih.FNErrState, nil
	}
	_, c, err := shtrih.DecodeCorrection(append(make([]byte, 4), p...))
	if err != nil || c.Type > 1 || c.Sign < 1 || c.Sign > 4 || c.Total == 0 ||
		(c.TaxSystem != 0 && c.TaxSystem&(c.TaxSystem-1) != 0) {
		return shtrih.FNErrBadParam, nil
	}
	if c.Type == 1 && b.Tags[shtrih.TagCorrectionOrder] == "" {
		return shtrih.FNErrBadParam, nil // by order: the order's number is required
	}
	var paid int64
	for _, x := range c.Payments {
		paid += x
	}
	if paid != c.Total {
		return shtrih.ErrCodePaymentsLess, nil
	}
	tags := b.Tags
	tags[shtrih.TagCorrectionType] = fmt.Sprint(c.Type)
	var pay [16]int64
	pay[0], pay[1], pay[13], pay[14], pay[15] = c.Payments[0], c.Payments[1], c.Payments[2], c.Payments[3], c.Payments[4]
	s.st.ShiftReceipts++
	doc := s.commit(Document{Type: DocCorrection, Shift: s.st.Shift, Number: s.st.ShiftReceipts, Operation: int(c.Sign),
		Total: c.Total, Payments: pay, TaxSystem: int(c.TaxSystem), Tags: tags})
	s.st.Correction = nil
	lines := append([]string{center("КАССОВЫЙ ЧЕК КОРРЕКЦИИ"), center(strings.ToUpper(opName(int(c.Sign))))}, correctionLines(tags)...)
	lines = append(lines, kv("ИТОГ", "="+money(c.Total)))
	lines = append(lines, cashierLines(tags)...)
	lines = append(lines, kv("ЧЕК", fmt.Sprintf("%d  СМЕНА %d", doc.Number, doc.Shift)))
	s.print(append(lines, s.footer(doc)...)...)
	s.printed()
	d := binary.LittleEndian.AppendUint16(nil, uint16(doc.Number))
	d = binary.LittleEndian.AppendUint32(d, doc.FD)
	return 0, binary.LittleEndian.AppendUint32(d, doc.FP)
}

// correctionLines print a correction's kind and base.
func correctionLines(tags map[int]string) []string {
	kind := "САМОСТОЯТЕЛЬНО"
	if tags[shtrih.TagCorrectionType] == "1" {
		kind = "ПО ПРЕДПИСАНИЮ"
	}
	lines := []string{kv("КОРРЕКЦИЯ", kind), kv("ДАТА РАСЧЕТА", tags[shtrih.TagCorrectionDate])}
	if n := tags[shtrih.TagCorrectionOrder]; n != "" {
		lines = append(lines, kv("ПРЕДПИСАНИЕ", n))
	}
	return lines
}

// print2D prints a 2D barcode from the loaded blocks as a marker line with its
// text: "[QR] text".
func (s *Sim) print2D(op byte, p []byte) (byte, []byte) {
	if c := s.printable(); c != 0 {
		return c, nil
	}
	_, r, err := shtrih.DecodePrint2D(append(make([]byte, 4), p...))
	if err != nil || r.Type > 3 || r.Align > 2 || r.Length == 0 || (r.Type == shtrih.Barcode2DQR && (r.Params[2] < 3 || r.Params[2] > 8 || r.Params[4] > 3)) {
		return shtrih.ErrCodeBadParams, nil
	}
	var data []byte
	for n := int(r.FirstBlock); len(data) < r.Length; n++ {
		b, ok := s.blocks[byte(n)]
		if !ok || n > 127 {
			return shtrih.ErrCodeBadParams, nil
		}
		data = append(data, b...)
	}
	data = data[:r.Length]
	if len(data) > 0 && data[len(data)-1] == 0 {
		data = data[:len(data)-1]
	}
	s.blocks = nil
	s.print(fmt.Sprintf("[%s] %s", [...]string{"PDF417", "DATAMATRIX", "AZTEC", "QR"}[r.Type], data))
	s.printed()
	return 0, []byte{op}
}

// printCopy is 8Ch: a copy of the last document.
func (s *Sim) printCopy(op byte) (byte, []byte) {
	if c := s.printable(); c != 0 {
		return c, nil
	}
	if s.st.Receipt != nil {
		return shtrih.ErrCodeReceiptOpen, nil
	}
	doc := s.st.Docs[len(s.st.Docs)-1]
	lines := []string{center("КОПИЯ"), kv("ДОКУМЕНТ", fmt.Sprint(doc.Type))}
	if doc.Total != 0 {
		lines = append(lines, kv("ИТОГ", "="+money(doc.Total)))
	}
	s.print(append(lines, s.footer(doc)...)...)
	s.printed()
	return 0, []byte{op}
}

// fnDocumentBegun: the FN has a document begun (FF41h, FF42h, FF35h) and not
// completed; it takes no other begin until the document is completed or voided.
func (s *Sim) fnDocumentBegun() bool { return s.st.ShiftBegin != nil || s.st.Correction != nil }

// fnDocument is FF01h's "current document" byte for a begun FN document: 02h
// shift open, 08h shift close, 14h correction receipt (04h receipt, as the FN
// protocol numbers them); 0 when none.
func (s *Sim) fnDocument() byte {
	switch {
	case s.st.ShiftBegin != nil && !s.st.ShiftBegin.Close:
		return 0x02
	case s.st.ShiftBegin != nil:
		return 0x08
	case s.st.Correction != nil, s.st.Receipt != nil && s.st.Receipt.Correction:
		return 0x14
	}
	return 0
}
