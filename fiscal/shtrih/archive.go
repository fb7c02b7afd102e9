package shtrih

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	"kassa-agent/fiscal"
)

// Reading a document back from the FN archive. The vendor's OPOS driver
// (shtrih-m/opos, FiscalPrinterDevice.pas: FSReadDocument, FSReadDocData,
// PrintFSDocument) prints a copy of any fiscal document this way, since the
// register's own copy command (8Ch) knows only the last one:
//
//	FF3Ah: password(4) | FD number(4)  →  document type(2, its STLV tag) | length(2)
//	FF3Bh: password(4)                 →  the document's next TLV
//
// FF3Bh is repeated until the length is read (or the FN answers 08h, no more
// data); the TLVs are then printed as text lines.
const (
	CmdFNReadDocument    uint16 = 0xFF3A
	CmdFNReadDocumentTLV uint16 = 0xFF3B
)

// Document tags a copy prints (FFD 1.2 numbering).
const (
	TagDateTime     = 1012 // unixtime(4), the register's local time
	TagUserINN      = 1018
	TagTotal        = 1020 // VLN, kopecks
	TagCash         = 1031
	TagRegNumber    = 1037
	TagShiftNumber  = 1038
	TagFD           = 1040
	TagFNNumber     = 1041
	TagNumInShift   = 1042
	TagItemSum      = 1043
	TagOperation    = 1054 // 1 sale, 2 sale return, 3 purchase, 4 purchase return
	TagTaxSystem    = 1055
	TagItem         = 1059 // STLV: one line
	TagFPD          = 1077 // 6 bytes; the printed FP is the last 4, big-endian
	TagItemPrice    = 1079
	TagElectronic   = 1081
	TagItemName     = 1030
	TagItemQuantity = 1023 // FVLN
	TagItemVAT      = 1199
	TagPrepayment   = 1215
	TagCredit       = 1216
	TagConsider     = 1217
)

// Field is one TLV of a document: its tag and raw value.
type Field struct {
	Tag   uint16
	Value []byte
}

// ParseTLVs splits b into TLVs (tag(2 LE) length(2 LE) value). A truncated
// TLV is an error: a copy must never print part of a line as if it were all.
func ParseTLVs(b []byte) ([]Field, error) {
	var out []Field
	for len(b) > 0 {
		if len(b) < 4 {
			return out, short("TLV header", 4, len(b))
		}
		tag, n := binary.LittleEndian.Uint16(b), int(binary.LittleEndian.Uint16(b[2:]))
		if len(b) < 4+n {
			return out, short(fmt.Sprintf("TLV %d value", tag), 4+n, len(b))
		}
		out = append(out, Field{Tag: tag, Value: b[4 : 4+n]})
		b = b[4+n:]
	}
	return out, nil
}

// DecodeReadDocument parses FF3Ah's reply: the document's type and length.
func DecodeReadDocument(d []byte) (typ, length uint16, err error) {
	if len(d) < 4 {
		return 0, 0, short("FF3A reply", 4, len(d))
	}
	return binary.LittleEndian.Uint16(d), binary.LittleEndian.Uint16(d[2:]), nil
}

// VLN is an FFD variable-length unsigned integer (little-endian, up to 8 bytes).
func VLN(v []byte) uint64 {
	var n uint64
	for i := len(v) - 1; i >= 0 && i < 8; i-- {
		n = n<<8 | uint64(v[i])
	}
	return n
}

// PutVLN is v in the fewest bytes (at least one).
func PutVLN(v uint64) []byte {
	b := []byte{byte(v)}
	for v >>= 8; v > 0; v >>= 8 {
		b = append(b, byte(v))
	}
	return b
}

// FVLN is an FFD fixed-point number: the first byte counts the decimal places,
// the rest is a VLN. It returns the value in millionths (fiscal.Quantity's unit).
func FVLN(v []byte) (int64, error) {
	if len(v) < 2 || v[0] > 6 {
		return 0, fmt.Errorf("shtrih: FVLN of %d bytes, point %d", len(v), firstByte(v))
	}
	n := int64(VLN(v[1:]))
	for range 6 - int(v[0]) {
		n *= 10
	}
	return n, nil
}

// PutFVLN writes a quantity in millionths as FVLN with the fewest places.
func PutFVLN(q int64) []byte {
	places := 6
	for places > 0 && q%10 == 0 {
		q /= 10
		places--
	}
	return append([]byte{byte(places)}, PutVLN(uint64(q))...)
}

func firstByte(v []byte) int {
	if len(v) == 0 {
		return -1
	}
	return int(v[0])
}

// FPFromFPD is the fiscal sign as printed: the last four bytes of tag 1077,
// big-endian.
func FPFromFPD(v []byte) uint32 {
	if len(v) < 4 {
		return 0
	}
	return binary.BigEndian.Uint32(v[len(v)-4:])
}

// docNames are the FFD document types by their STLV tag.
var docNames = map[uint16]string{1: "ОТЧЕТ О РЕГИСТРАЦИИ", 2: "ОТЧЕТ ОБ ОТКРЫТИИ СМЕНЫ", 3: "КАССОВЫЙ ЧЕК",
	4: "БСО", 5: "ОТЧЕТ О ЗАКРЫТИИ СМЕНЫ", 6: "ОТЧЕТ О ЗАКРЫТИИ ФН", 11: "ОТЧЕТ ОБ ИЗМЕНЕНИИ ПАРАМЕТРОВ РЕГИСТРАЦИИ",
	21: "ОТЧЕТ О ТЕКУЩЕМ СОСТОЯНИИ РАСЧЕТОВ", 31: "КАССОВЫЙ ЧЕК КОРРЕКЦИИ", 41: "БСО КОРРЕКЦИИ"}

var operationNames = map[uint64]string{1: "ПРИХОД", 2: "ВОЗВРАТ ПРИХОДА", 3: "РАСХОД", 4: "ВОЗВРАТ РАСХОДА"}

var vatNames = map[uint64]string{1: "НДС 20%", 2: "НДС 10%", 3: "НДС 20/120", 4: "НДС 10/110", 5: "НДС 0%", 6: "БЕЗ НДС",
	7: "НДС 5%", 8: "НДС 7%", 9: "НДС 5/105", 10: "НДС 7/107", 11: "НДС 22%", 12: "НДС 22/122"}

// sumLabels name the money sums of a receipt.
var sumLabels = map[uint16]string{TagTotal: "ИТОГ", TagCash: "НАЛИЧНЫМИ", TagElectronic: "БЕЗНАЛИЧНЫМИ",
	TagPrepayment: "ПРЕДОПЛАТА", TagCredit: "ПОСТОПЛАТА", TagConsider: "ВСТРЕЧНОЕ ПРЕДОСТАВЛЕНИЕ"}

// CopyLines renders a document read from the FN as the lines of its copy:
// what the buyer or an inspector needs to match it to the original (type,
// operation, lines, totals, payments, FN, РН, FD, FP, time). Tags it does not
// know are left out; a malformed value is an error, not a guess.
func CopyLines(typ uint16, fields []Field) ([]string, error) {
	name := docNames[typ]
	if name == "" {
		name = fmt.Sprintf("ДОКУМЕНТ ТИПА %d", typ)
	}
	lines := []string{"КОПИЯ ДОКУМЕНТА ИЗ ФН", name}
	money := func(v []byte) string { n := VLN(v); return fmt.Sprintf("=%d.%02d", n/100, n%100) }
	var foot []string
	for _, f := range fields {
		v := f.Value
		switch f.Tag {
		case TagOperation:
			lines = append(lines, operationNames[VLN(v)])
		case TagItem:
			item, err := ParseTLVs(v)
			if err != nil {
				return nil, fmt.Errorf("shtrih: line of the document: %w", err)
			}
			var name, qty, price, sum, vat string
			for _, g := range item {
				switch g.Tag {
				case TagItemName:
					name = DecodeCP866(g.Value)
				case TagItemQuantity:
					q, err := FVLN(g.Value)
					if err != nil {
						return nil, err
					}
					qty = strings.TrimRight(strings.TrimRight(fmt.Sprintf("%d.%06d", q/1_000_000, q%1_000_000), "0"), ".")
				case TagItemPrice:
					price = money(g.Value)[1:]
				case TagItemSum:
					sum = money(g.Value)
				case TagItemVAT:
					vat = vatNames[VLN(g.Value)]
				}
			}
			lines = append(lines, name, fmt.Sprintf("  %s x %s %s", qty, price, sum))
			if vat != "" {
				lines = append(lines, "  "+vat)
			}
		case TagTotal, TagCash, TagElectronic, TagPrepayment, TagCredit, TagConsider:
			lines = append(lines, sumLabels[f.Tag]+" "+money(v))
		case TagCashier:
			lines = append(lines, "КАССИР "+DecodeCP866(v))
		case TagCashierINN:
			lines = append(lines, "ИНН КАССИРА "+DecodeCP866(v))
		case TagShiftNumber:
			foot = append(foot, fmt.Sprintf("СМЕНА %d", VLN(v)))
		case TagNumInShift:
			foot = append(foot, fmt.Sprintf("ЧЕК %d", VLN(v)))
		case TagDateTime:
			if len(v) != 4 {
				return nil, fmt.Errorf("shtrih: tag 1012 is %d bytes, want 4", len(v))
			}
			foot = append(foot, time.Unix(int64(binary.LittleEndian.Uint32(v)), 0).UTC().Format("02.01.2006 15:04"))
		case TagFNNumber:
			foot = append(foot, "ФН "+strings.TrimSpace(DecodeCP866(v)))
		case TagRegNumber:
			foot = append(foot, "РН ККТ "+strings.TrimSpace(DecodeCP866(v)))
		case TagUserINN:
			foot = append(foot, "ИНН "+strings.TrimSpace(DecodeCP866(v)))
		case TagFD:
			foot = append(foot, fmt.Sprintf("ФД %d", VLN(v)))
		case TagFPD:
			foot = append(foot, fmt.Sprintf("ФП %d", FPFromFPD(v)))
		case TagCorrectionType:
			lines = append(lines, map[uint64]string{0: "КОРРЕКЦИЯ САМОСТОЯТЕЛЬНО", 1: "КОРРЕКЦИЯ ПО ПРЕДПИСАНИЮ"}[VLN(v)])
		case TagCorrectionBase:
			date, number, err := DecodeCorrectionBase(v)
			if err != nil {
				return nil, err
			}
			lines = append(lines, "ДАТА РАСЧЕТА "+date.Format("02.01.2006"))
			if number != "" {
				lines = append(lines, "ПРЕДПИСАНИЕ "+number)
			}
		}
	}
	return append(lines, foot...), nil
}

// readArchive reads document fd's TLVs from the FN (FF3Ah, then FF3Bh until
// its length is read).
func (d *Driver) readArchive(ctx context.Context, fd uint32) (uint16, []Field, error) {
	data, err := d.do(ctx, CmdFNReadDocument, binary.LittleEndian.AppendUint32(d.pw(), fd), d.opt.Timeouts.Reply)
	if err != nil {
		return 0, nil, err
	}
	typ, length, err := DecodeReadDocument(data)
	if err != nil {
		return 0, nil, &fiscal.Error{Code: fiscal.CodeProtocol, Command: CmdFNReadDocument, Err: err}
	}
	var all []byte
	for len(all) < int(length) {
		chunk, err := d.do(ctx, CmdFNReadDocumentTLV, d.pw(), d.opt.Timeouts.Reply)
		var fe *fiscal.Error
		if errors.As(err, &fe) && fe.Device == FNErrNoData {
			break
		}
		if err != nil {
			return 0, nil, err
		}
		if len(chunk) == 0 {
			return 0, nil, &fiscal.Error{Code: fiscal.CodeProtocol, Command: CmdFNReadDocumentTLV, Text: "empty TLV from the FN archive"}
		}
		all = append(all, chunk...)
	}
	fields, err := ParseTLVs(all)
	if err != nil {
		return 0, nil, &fiscal.Error{Code: fiscal.CodeProtocol, Command: CmdFNReadDocumentTLV, Err: err}
	}
	return typ, fields, nil
}

// PrintCopy prints a copy of fiscal document fd: the register's own copy (8Ch)
// for its last document, otherwise the document read back from the FN archive
// and printed as text. Neither is a fiscal document, so neither is journaled;
// a lost reply may at worst leave a second copy.
func (d *Driver) PrintCopy(ctx context.Context, fd uint32) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	fn, err := d.fnStatus(ctx)
	if err != nil {
		return err
	}
	if fd == 0 || fd > fn.LastFD {
		return &fiscal.Error{Code: fiscal.CodeBadReceipt, Field: "fd", Text: fmt.Sprintf("fd: the FN has no document %d (its last is %d)", fd, fn.LastFD)}
	}
	if _, err := d.readyToPrint(ctx); err != nil {
		return err
	}
	if fd == fn.LastFD {
		_, err := d.do(ctx, CmdPrintCopy, d.pw(), d.opt.Timeouts.Long)
		return err
	}
	typ, fields, err := d.readArchive(ctx, fd)
	if err != nil {
		return err
	}
	lines, err := CopyLines(typ, fields)
	if err != nil {
		return &fiscal.Error{Code: fiscal.CodeProtocol, Command: CmdFNReadDocumentTLV, Err: err}
	}
	if err := d.printLines(ctx, lines); err != nil {
		return err
	}
	_, err = d.do(ctx, CmdCut, append(d.pw(), 0), d.opt.Timeouts.Reply)
	return err
}
