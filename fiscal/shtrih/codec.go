package shtrih

import (
	"encoding/binary"
	"fmt"
	"strings"
	"time"

	"golang.org/x/text/encoding/charmap"
)

// Command codes used by the driver.
const (
	CmdShortStatus    uint16 = 0x10
	CmdStatus         uint16 = 0x11
	CmdPrintLine      uint16 = 0x17
	CmdReadTable      uint16 = 0x1F
	CmdCut            uint16 = 0x25
	CmdXReport        uint16 = 0x40
	CmdZReport        uint16 = 0x41
	CmdCashIn         uint16 = 0x50
	CmdCashOut        uint16 = 0x51
	CmdSale           uint16 = 0x80 // legacy receipt commands, sent by other host software
	CmdReturnSale     uint16 = 0x82
	CmdCloseReceipt   uint16 = 0x85
	CmdCancelReceipt  uint16 = 0x88
	CmdOpenReceipt    uint16 = 0x8D
	CmdPrintCopy      uint16 = 0x8C // repeat (print a copy of) the last document
	CmdContinuePrint  uint16 = 0xB0
	CmdLoadData       uint16 = 0xDD // load a data block (for 2D barcodes)
	CmdPrint2D        uint16 = 0xDE // print a 2D barcode from loaded blocks
	CmdOpenShift      uint16 = 0xE0
	CmdDeviceType     uint16 = 0xFC
	CmdFNStatus       uint16 = 0xFF01
	CmdFNNumber       uint16 = 0xFF02
	CmdFNExpiry       uint16 = 0xFF03
	CmdFNVoidDocument uint16 = 0xFF08 // void the document begun in the FN (vendor OPOS driver: "FS: Void document")
	CmdFNFiscalResult uint16 = 0xFF09
	CmdFNFindDocument uint16 = 0xFF0A
	CmdFNOpenShift    uint16 = 0xFF0B
	CmdFNSendTLV      uint16 = 0xFF0C
	CmdFNOFDStatus    uint16 = 0xFF39
	CmdFNShiftParams  uint16 = 0xFF40
	CmdFNBeginOpen    uint16 = 0xFF41 // FFD 1.05+: begin opening a shift; tags follow
	CmdFNBeginClose   uint16 = 0xFF42 // FFD 1.05+: begin closing a shift; tags follow
	CmdFNCloseShift   uint16 = 0xFF43
	CmdFNCloseReceipt uint16 = 0xFF45
	CmdFNOperation    uint16 = 0xFF46
	CmdFNOperationTLV uint16 = 0xFF4D
)

// Device modes (low nibble of the mode byte) and submodes.
const (
	ModeShiftOpen    = 2
	ModeShiftExpired = 3
	ModeShiftClosed  = 4
	ModeDocumentOpen = 8

	SubmodePaperOK         = 0
	SubmodePassivePaperOut = 1
	SubmodeActivePaperOut  = 2
	SubmodeAfterPaperOut   = 3
	SubmodePrintingReport  = 4
	SubmodePrinting        = 5
)

// TLV tags sent by the driver.
const (
	TagBuyerContact = 1008
	TagCashier      = 1021
	TagCashierINN   = 1203
	TagProductCode  = 1162
)

// Passwords prefix every command.
func password(pw uint32) []byte {
	return binary.LittleEndian.AppendUint32(nil, pw)
}

// putUint appends v little-endian in n bytes.
func putUint(b []byte, v uint64, n int) []byte {
	for i := 0; i < n; i++ {
		b = append(b, byte(v>>(8*i)))
	}
	return b
}

func getUint(b []byte) uint64 {
	var v uint64
	for i := len(b) - 1; i >= 0; i-- {
		v = v<<8 | uint64(b[i])
	}
	return v
}

// Win1251 encodes print text and item names; unknown characters become '?'.
func Win1251(s string) []byte {
	b, err := charmap.Windows1251.NewEncoder().Bytes([]byte(s))
	if err == nil {
		return b
	}
	var out []byte
	for _, r := range s {
		e, ok := charmap.Windows1251.EncodeRune(r)
		if !ok {
			e = '?'
		}
		out = append(out, e)
	}
	return out
}

// CP866 encodes TLV strings for the FN.
func CP866(s string) []byte {
	var out []byte
	for _, r := range s {
		e, ok := charmap.CodePage866.EncodeRune(r)
		if !ok {
			e = '?'
		}
		out = append(out, e)
	}
	return out
}

// DecodeWin1251 and DecodeCP866 turn device bytes back into text.
func DecodeWin1251(b []byte) string {
	s, _ := charmap.Windows1251.NewDecoder().Bytes(b)
	return string(s)
}

func DecodeCP866(b []byte) string {
	s, _ := charmap.CodePage866.NewDecoder().Bytes(b)
	return string(s)
}

// TLV encodes tag(2 LE) len(2 LE) value.
func TLV(tag uint16, value []byte) []byte {
	b := binary.LittleEndian.AppendUint16(nil, tag)
	b = binary.LittleEndian.AppendUint16(b, uint16(len(value)))
	return append(b, value...)
}

// FNTime decodes the FN's 5-byte date-time YY MM DD hh mm. The FN keeps the
// till's wall clock without a zone; it is returned as that wall clock in UTC, and
// the driver places it in the register's zone (InZone), so no host zone and no
// daylight-saving gap of the host can shift it.
func FNTime(b []byte) time.Time {
	if len(b) < 5 || b[1] == 0 || b[2] == 0 {
		return time.Time{}
	}
	return time.Date(2000+int(b[0]), time.Month(b[1]), int(b[2]), int(b[3]), int(b[4]), 0, 0, time.UTC)
}

// InZone reads the wall clock of a decoded FN time (see FNTime) in loc.
func InZone(t time.Time, loc *time.Location) time.Time {
	if t.IsZero() {
		return t
	}
	t = t.UTC()
	return time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(), 0, loc)
}

// PutFNTime encodes t as YY MM DD hh mm.
func PutFNTime(b []byte, t time.Time) []byte {
	return append(b, byte(t.Year()%100), byte(t.Month()), byte(t.Day()), byte(t.Hour()), byte(t.Minute()))
}

func short(what string, need, got int) error {
	return fmt.Errorf("%w: %s reply needs %d bytes, got %d", ErrShortFrame, what, need, got)
}

// ShortStatus is the 10h reply.
type ShortStatus struct {
	Operator     byte
	Flags        uint16
	Mode         byte // full mode byte; low nibble is the mode, high nibble its variant
	Submode      byte
	ReceiptOps   int
	BatteryVolts byte
	PowerVolts   byte
}

// ModeNumber is the low nibble of Mode.
func (s ShortStatus) ModeNumber() int { return int(s.Mode & 0x0F) }

// DecodeShortStatus decodes the data of a 10h reply (after ERR).
func DecodeShortStatus(d []byte) (ShortStatus, error) {
	if len(d) < 9 {
		return ShortStatus{}, short("short status", 9, len(d))
	}
	s := ShortStatus{Operator: d[0], Flags: binary.LittleEndian.Uint16(d[1:3]), Mode: d[3], Submode: d[4],
		ReceiptOps: int(d[5]), BatteryVolts: d[6], PowerVolts: d[7]}
	if len(d) >= 11 {
		s.ReceiptOps |= int(d[10]) << 8
	}
	return s, nil
}

// EncodeShortStatus builds the 14-byte data of a 10h reply (the simulator's side).
func EncodeShortStatus(s ShortStatus) []byte {
	d := []byte{s.Operator}
	d = binary.LittleEndian.AppendUint16(d, s.Flags)
	return append(d, s.Mode, s.Submode, byte(s.ReceiptOps), s.BatteryVolts, s.PowerVolts, 0, 0, byte(s.ReceiptOps>>8), 0, 0, 0)
}

// FullStatus is the part of the 11h reply the driver uses.
type FullStatus struct {
	Operator  byte
	Firmware  string // e.g. "A.4 build 12345"
	DocNumber int    // device's own through document number
	Mode      byte
	Submode   byte
	Serial    string
	LastShift int
	INN       string
	Clock     time.Time // the device's date-time, a wall clock in UTC (as FNTime)
}

// DecodeFullStatus decodes an 11h reply's data.
func DecodeFullStatus(d []byte) (FullStatus, error) {
	if len(d) < 46 {
		return FullStatus{}, short("full status", 46, len(d))
	}
	fw := fmt.Sprintf("%c.%c build %d", d[1], d[2], binary.LittleEndian.Uint16(d[3:5]))
	return FullStatus{
		Operator:  d[0],
		Firmware:  fw,
		DocNumber: int(binary.LittleEndian.Uint16(d[9:11])),
		Mode:      d[13],
		Submode:   d[14],
		Serial:    fmt.Sprintf("%d", binary.LittleEndian.Uint32(d[30:34])),
		LastShift: int(binary.LittleEndian.Uint16(d[34:36])),
		INN:       fmt.Sprintf("%d", getUint(d[40:46])),
		Clock:     deviceClock(d[23:29]),
	}, nil
}

// deviceClock reads DD MM YY hh mm ss; zero when not a valid date-time.
func deviceClock(b []byte) time.Time {
	if b[1] < 1 || b[1] > 12 || b[0] < 1 || b[0] > 31 || b[3] > 23 || b[4] > 59 || b[5] > 59 {
		return time.Time{}
	}
	t := time.Date(2000+int(b[2]), time.Month(b[1]), int(b[0]), int(b[3]), int(b[4]), int(b[5]), 0, time.UTC)
	if t.Day() != int(b[0]) {
		return time.Time{}
	}
	return t
}

// DeviceType is the FCh reply.
type DeviceType struct {
	Type, Subtype, Protocol, Subprotocol, Model, Language byte
	Name                                                  string
}

func DecodeDeviceType(d []byte) (DeviceType, error) {
	if len(d) < 6 {
		return DeviceType{}, short("device type", 6, len(d))
	}
	return DeviceType{Type: d[0], Subtype: d[1], Protocol: d[2], Subprotocol: d[3], Model: d[4], Language: d[5],
		Name: strings.TrimRight(DecodeWin1251(d[6:]), "\x00 ")}, nil
}

// FNStatus is the FF01h reply.
type FNStatus struct {
	Phase     byte
	Document  byte // current document type open in the FN (0 none)
	DocData   byte
	ShiftOpen bool
	Warnings  byte
	Time      time.Time
	Number    string
	LastFD    uint32
}

func DecodeFNStatus(d []byte) (FNStatus, error) {
	if len(d) < 30 {
		return FNStatus{}, short("FN status", 30, len(d))
	}
	return FNStatus{Phase: d[0], Document: d[1], DocData: d[2], ShiftOpen: d[3] != 0, Warnings: d[4],
		Time: FNTime(d[5:10]), Number: strings.TrimRight(string(d[10:26]), "\x00 "),
		LastFD: binary.LittleEndian.Uint32(d[26:30])}, nil
}

func DecodeFNNumber(d []byte) (string, error) {
	if len(d) < 16 {
		return "", short("FN number", 16, len(d))
	}
	return strings.TrimRight(string(d[:16]), "\x00 "), nil
}

func DecodeFNExpiry(d []byte) (time.Time, error) {
	if len(d) < 3 {
		return time.Time{}, short("FN expiry", 3, len(d))
	}
	if d[1] == 0 || d[1] > 12 || d[2] == 0 {
		return time.Time{}, nil
	}
	return time.Date(2000+int(d[0]), time.Month(d[1]), int(d[2]), 0, 0, 0, 0, time.UTC), nil // wall clock, see FNTime
}

// FiscalResult is the FF09h reply (the registration).
type FiscalResult struct {
	Time       time.Time
	INN        string
	RegNumber  string
	TaxSystems byte
	WorkMode   byte
	FD         uint32
	FP         uint32
}

func DecodeFiscalResult(d []byte) (FiscalResult, error) {
	if len(d) < 47 {
		return FiscalResult{}, short("fiscalization result", 47, len(d))
	}
	return FiscalResult{Time: FNTime(d[0:5]), INN: strings.TrimSpace(strings.TrimRight(string(d[5:17]), "\x00")),
		RegNumber: strings.TrimSpace(strings.TrimRight(string(d[17:37]), "\x00")), TaxSystems: d[37], WorkMode: d[38],
		FD: binary.LittleEndian.Uint32(d[39:43]), FP: binary.LittleEndian.Uint32(d[43:47])}, nil
}

// FoundDocument is the FF0Ah reply.
type FoundDocument struct {
	Type      byte
	SentToOFD bool
	Time      time.Time
	FD        uint32
	FP        uint32
	Operation byte  // receipts: 1 sale, 2 sale return, 3 purchase, 4 purchase return
	Total     int64 // receipts
	Shift     int   // shift open / close reports
	Raw       []byte
}

func DecodeFoundDocument(d []byte) (FoundDocument, error) {
	if len(d) < 2 {
		return FoundDocument{}, short("find document", 2, len(d))
	}
	f := FoundDocument{Type: d[0], SentToOFD: d[1] != 0, Raw: append([]byte(nil), d[2:]...)}
	r := d[2:]
	if len(r) >= 13 {
		f.Time = FNTime(r[0:5])
		f.FD = binary.LittleEndian.Uint32(r[5:9])
		f.FP = binary.LittleEndian.Uint32(r[9:13])
	}
	switch {
	case (f.Type == 3 || f.Type == 4 || f.Type == 31 || f.Type == 41) && len(r) >= 19: // receipts, correction receipts
		f.Operation = r[13]
		f.Total = int64(getUint(r[14:19]))
	case (f.Type == 2 || f.Type == 5) && len(r) >= 15: // shift open / close: shift number
		f.Shift = int(binary.LittleEndian.Uint16(r[13:15]))
	}
	return f, nil
}

// OFDStatus is the FF39h reply.
type OFDStatus struct {
	State     byte
	ReadState byte
	Waiting   int
	FirstFD   uint32
	FirstTime time.Time
}

func DecodeOFDStatus(d []byte) (OFDStatus, error) {
	if len(d) < 13 {
		return OFDStatus{}, short("OFD status", 13, len(d))
	}
	return OFDStatus{State: d[0], ReadState: d[1], Waiting: int(binary.LittleEndian.Uint16(d[2:4])),
		FirstFD: binary.LittleEndian.Uint32(d[4:8]), FirstTime: FNTime(d[8:13])}, nil
}

// ShiftParams is the FF40h reply.
type ShiftParams struct {
	Open    bool
	Number  int
	Receipt int // receipts in the shift so far
}

func DecodeShiftParams(d []byte) (ShiftParams, error) {
	if len(d) < 5 {
		return ShiftParams{}, short("shift params", 5, len(d))
	}
	return ShiftParams{Open: d[0] != 0, Number: int(binary.LittleEndian.Uint16(d[1:3])),
		Receipt: int(binary.LittleEndian.Uint16(d[3:5]))}, nil
}

// CloseResult is the FF45h reply.
type CloseResult struct {
	Change int64
	FD     uint32
	FP     uint32
	Time   time.Time // zero when the model does not send it
}

func DecodeCloseResult(d []byte) (CloseResult, error) {
	if len(d) < 13 {
		return CloseResult{}, short("close receipt", 13, len(d))
	}
	c := CloseResult{Change: int64(getUint(d[0:5])), FD: binary.LittleEndian.Uint32(d[5:9]), FP: binary.LittleEndian.Uint32(d[9:13])}
	if len(d) >= 18 {
		c.Time = FNTime(d[13:18])
	}
	return c, nil
}

// Operation is one FF46h line item.
type Operation struct {
	Type       byte  // 1 sale, 2 sale return, 3 purchase, 4 purchase return
	Quantity   int64 // millionths
	Price      int64 // kopecks
	Sum        int64 // kopecks; -1 = the device computes it
	Tax        int64 // kopecks; -1 = not given
	TaxRate    byte
	Department byte
	Method     byte // tag 1214
	Object     byte // tag 1212
	Name       string
}

// EncodeOperation builds the params of FF46h.
func EncodeOperation(pw uint32, op Operation) []byte {
	b := password(pw)
	b = append(b, op.Type)
	b = putUint(b, uint64(op.Quantity), 6)
	b = putUint(b, uint64(op.Price), 5)
	b = putOptional(b, op.Sum)
	b = putOptional(b, op.Tax)
	b = append(b, op.TaxRate, op.Department, op.Method, op.Object)
	name := Win1251(op.Name)
	if len(name) > 128 {
		name = name[:128]
	}
	return append(b, name...)
}

func putOptional(b []byte, v int64) []byte {
	if v < 0 {
		return append(b, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF)
	}
	return putUint(b, uint64(v), 5)
}

// DecodeOperation parses FF46h params (the simulator's side).
func DecodeOperation(p []byte) (pw uint32, op Operation, err error) {
	if len(p) < 4+1+6+5+5+5+4 {
		return 0, op, short("FF46 params", 30, len(p))
	}
	pw = binary.LittleEndian.Uint32(p)
	op.Type = p[4]
	op.Quantity = int64(getUint(p[5:11]))
	op.Price = int64(getUint(p[11:16]))
	op.Sum = optional(p[16:21])
	op.Tax = optional(p[21:26])
	op.TaxRate, op.Department, op.Method, op.Object = p[26], p[27], p[28], p[29]
	op.Name = DecodeWin1251(p[30:])
	return pw, op, nil
}

func optional(b []byte) int64 {
	for _, x := range b {
		if x != 0xFF {
			return int64(getUint(b))
		}
	}
	return -1
}

// Close is the FF45h request.
type Close struct {
	Payments  [16]int64
	Rounding  byte
	Taxes     [6]int64
	TaxSystem byte
	Text      string
}

// EncodeClose builds the params of FF45h.
func EncodeClose(pw uint32, c Close) []byte {
	b := password(pw)
	for _, p := range c.Payments {
		b = putUint(b, uint64(p), 5)
	}
	b = append(b, c.Rounding)
	for _, t := range c.Taxes {
		b = putUint(b, uint64(t), 5)
	}
	b = append(b, c.TaxSystem)
	t := Win1251(c.Text)
	if len(t) > 64 {
		t = t[:64]
	}
	return append(b, t...)
}

// DecodeClose parses FF45h params (the simulator's side).
func DecodeClose(p []byte) (pw uint32, c Close, err error) {
	const fixed = 4 + 16*5 + 1 + 6*5 + 1
	if len(p) < fixed {
		return 0, c, short("FF45 params", fixed, len(p))
	}
	pw = binary.LittleEndian.Uint32(p)
	o := 4
	for i := range c.Payments {
		c.Payments[i] = int64(getUint(p[o : o+5]))
		o += 5
	}
	c.Rounding = p[o]
	o++
	for i := range c.Taxes {
		c.Taxes[i] = int64(getUint(p[o : o+5]))
		o += 5
	}
	c.TaxSystem = p[o]
	c.Text = DecodeWin1251(p[o+1:])
	return pw, c, nil
}

// Money5 encodes a 5-byte sum.
func Money5(v int64) []byte { return putUint(nil, uint64(v), 5) }

// GetUint reads a little-endian unsigned integer of len(b) bytes.
func GetUint(b []byte) uint64 { return getUint(b) }

// Password encodes the 4-byte password prefix.
func Password(pw uint32) []byte { return password(pw) }

func encodeWin1251Rune(r rune) (byte, bool) { return charmap.Windows1251.EncodeRune(r) }

// EncodeReadTable builds the params of 1Fh: password, table, row (2), field.
func EncodeReadTable(pw uint32, table byte, row uint16, field byte) []byte {
	b := password(pw)
	b = append(b, table)
	b = binary.LittleEndian.AppendUint16(b, row)
	return append(b, field)
}

// TableTaxes is table 6 (tax rates): field 1 of a row is its rate in hundredths of
// a percent, field 2 its name.
const (
	TableTaxes   = 6
	FieldTaxRate = 1
	FieldTaxName = 2
)

// DecodeTaxRate reads a 1Fh reply holding table 6 field 1.
func DecodeTaxRate(d []byte) (int, error) {
	if len(d) < 2 {
		return 0, short("tax rate", 2, len(d))
	}
	return int(binary.LittleEndian.Uint16(d[:2])), nil
}
