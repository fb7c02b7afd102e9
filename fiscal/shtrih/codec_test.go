package shtrih

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	"kassa-agent/fiscal"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Frames captured from real devices (LRC checked).
const (
	capShortStatusReq   = "02 05 10 1E 00 00 00 0B"
	capShortStatusMode8 = "02 10 10 00 1E 92 02 08 00 01 9F E5 18 01 00 8B 02 00 6D"
	capShortStatusMode2 = "02 10 10 00 1E 92 02 02 00 00 9F E5 18 01 00 92 08 00 75"
	capCancelReq        = "02 05 88 1E 00 00 00 93"
	capCancelReply      = "02 03 88 00 1E 95"
)

func TestCapturedFrames(t *testing.T) {
	if got := Frame(CommandBody(CmdShortStatus, Password(30))); !bytes.Equal(got, unhex(t, capShortStatusReq)) {
		t.Errorf("short status frame % X", got)
	}
	if got := Frame(CommandBody(CmdCancelReceipt, Password(30))); !bytes.Equal(got, unhex(t, capCancelReq)) {
		t.Errorf("cancel frame % X", got)
	}
	for _, tc := range []struct {
		frame         string
		mode, submode int
		flags         uint16
		ops           int
	}{{capShortStatusMode8, 8, 0, 0x0292, 1}, {capShortStatusMode2, 2, 0, 0x0292, 0}} {
		body, n, err := ParseFrame(unhex(t, tc.frame))
		if err != nil || n != len(unhex(t, tc.frame)) {
			t.Fatalf("ParseFrame(%s) = %v, %d", tc.frame, err, n)
		}
		cmd, code, data, err := SplitReply(body)
		if err != nil || cmd != CmdShortStatus || code != 0 {
			t.Fatalf("SplitReply: %x %d %v", cmd, code, err)
		}
		s, err := DecodeShortStatus(data)
		if err != nil {
			t.Fatal(err)
		}
		if s.ModeNumber() != tc.mode || int(s.Submode) != tc.submode || s.Flags != tc.flags || s.ReceiptOps != tc.ops || s.Operator != 30 {
			t.Errorf("%s decoded as %+v", tc.frame, s)
		}
		// The simulator's encoder must reproduce the layout of the real reply, byte
		// for byte where the fields are meaningful.
		re := Frame(ReplyBody(CmdShortStatus, 0, EncodeShortStatus(s)))
		want := unhex(t, tc.frame)
		if len(re) != len(want) || !bytes.Equal(re[:11], want[:11]) {
			t.Errorf("re-encoded % X, real % X", re, want)
		}
	}
	body, _, err := ParseFrame(unhex(t, capCancelReply))
	if err != nil {
		t.Fatal(err)
	}
	if cmd, code, data, err := SplitReply(body); err != nil || cmd != CmdCancelReceipt || code != 0 || !bytes.Equal(data, []byte{0x1E}) {
		t.Errorf("cancel reply: %x %d % X %v", cmd, code, data, err)
	}
	if got := Frame(ReplyBody(CmdCancelReceipt, 0, []byte{30})); !bytes.Equal(got, unhex(t, capCancelReply)) {
		t.Errorf("cancel reply encode % X", got)
	}
	bad := unhex(t, capCancelReply)
	bad[len(bad)-1] ^= 1
	if _, _, err := ParseFrame(bad); !errors.Is(err, ErrBadLRC) {
		t.Errorf("bad LRC not detected: %v", err)
	}
}

func TestFFCommandFraming(t *testing.T) {
	// FF commands carry the two-byte code; LEN counts both bytes.
	f := Frame(CommandBody(CmdFNStatus, Password(30)))
	if !bytes.Equal(f[:4], []byte{STX, 6, 0xFF, 0x01}) || f[len(f)-1] != LRC(f[2:len(f)-1]) {
		t.Fatalf("FF01 frame % X", f)
	}
	r := ReplyBody(CmdFNCloseReceipt, 0x02, []byte{1, 2, 3})
	if !bytes.Equal(r, []byte{0xFF, 0x45, 0x02}) {
		t.Fatalf("an error reply carries only CMD and ERR: % X", r)
	}
	// FF0Ah request as the official Java driver's test has it: FD 163.
	if got := CommandBody(CmdFNFindDocument, append(Password(30), 0xA3, 0, 0, 0)); !bytes.Equal(got, unhex(t, "FF0A1E000000A3000000")) {
		t.Fatalf("FF0A body % X", got)
	}
}

func TestDecodeFoundDocument(t *testing.T) {
	// A receipt record: type 3, not sent, 2017-03-24 20:53, FD 163, FP, sale, 200.00.
	d := unhex(t, "03 00 11 03 18 14 35 A3 00 00 00 EB EA 4B 2E 01 20 4E 00 00 00")
	f, err := DecodeFoundDocument(d)
	if err != nil {
		t.Fatal(err)
	}
	want := time.Date(2017, 3, 24, 20, 53, 0, 0, time.UTC)
	if f.Type != 3 || f.SentToOFD || f.FD != 163 || f.FP != 0x2E4BEAEB || f.Operation != 1 || f.Total != 20000 || !f.Time.Equal(want) {
		t.Fatalf("decoded %+v", f)
	}
}

func TestOperationAndCloseRoundTrip(t *testing.T) {
	op := Operation{Type: 1, Quantity: 1_500_000, Price: 12345, Sum: 18518, Tax: -1, TaxRate: 2, Department: 1, Method: 4, Object: 1, Name: "Хлеб ржаной"}
	p := EncodeOperation(30, op)
	if len(p) != 30+len("Хлеб ржаной")/2+1 { // WIN1251: one byte per letter
		t.Fatalf("FF46 params length %d", len(p))
	}
	if !bytes.Equal(p[21:26], []byte{0xFF, 0xFF, 0xFF, 0xFF, 0xFF}) {
		t.Fatalf("absent tax must be all 0xFF: % X", p[21:26])
	}
	pw, got, err := DecodeOperation(p)
	if err != nil || pw != 30 || got != op {
		t.Fatalf("round trip %+v %v", got, err)
	}
	c := Close{TaxSystem: 2, Text: "спасибо"}
	c.Payments[0], c.Payments[1], c.Taxes[1] = 10000, 8518, 1683
	p = EncodeClose(30, c)
	if len(p) != 4+80+1+30+1+len("спасибо")/2 {
		t.Fatalf("FF45 params length %d", len(p))
	}
	_, c2, err := DecodeClose(p)
	if err != nil || c2 != c {
		t.Fatalf("close round trip %+v %v", c2, err)
	}
	cr, err := DecodeCloseResult(unhex(t, "10 27 00 00 00 2A 00 00 00 78 56 34 12 1A 05 11 0C 1E"))
	if err != nil || cr.Change != 10000 || cr.FD != 42 || cr.FP != 0x12345678 || !cr.Time.Equal(time.Date(2026, 5, 17, 12, 30, 0, 0, time.UTC)) {
		t.Fatalf("close result %+v %v", cr, err)
	}
	if tlv := TLV(TagBuyerContact, CP866("a@b.ru")); !bytes.Equal(tlv, unhex(t, "F0 03 06 00 61 40 62 2E 72 75")) {
		t.Fatalf("TLV % X", tlv)
	}
}

func TestDeviceErrors(t *testing.T) {
	for _, tc := range []struct {
		cmd  uint16
		code byte
		want string
	}{
		{CmdOpenReceipt, 0x6B, fiscal.CodePaperOut},
		{CmdOpenReceipt, 0x4E, fiscal.CodeShiftExpired},
		{CmdFNOperation, 0x16, fiscal.CodeShiftExpired}, // FN meaning
		{CmdOpenReceipt, 0x16, fiscal.CodeRejected},     // unknown device code
		{CmdFNCloseReceipt, 0x45, fiscal.CodeRejected},
		{CmdFNCloseReceipt, 0x03, fiscal.CodeFNError},
		{CmdFNStatus, 0x06, fiscal.CodeFNExhausted},
		{CmdShortStatus, 0x50, fiscal.CodeBusy},
	} {
		e := DeviceError(tc.cmd, tc.code)
		if e.Code != tc.want || e.Device != tc.code || e.Text == "" {
			t.Errorf("DeviceError(%X, %02X) = %+v, want %s", tc.cmd, tc.code, e, tc.want)
		}
		if !errors.Is(e, &fiscal.Error{Code: tc.want}) {
			t.Errorf("errors.Is by code fails for %v", e)
		}
	}
}

// memPort is a Port fed from a byte slice; it answers (0, nil) once drained.
type memPort struct {
	in  []byte
	out bytes.Buffer
}

func (m *memPort) Read(p []byte) (int, error) {
	if len(m.in) == 0 {
		return 0, nil
	}
	n := copy(p, m.in[:min(len(m.in), 7)]) // arrive in small chunks
	m.in = m.in[n:]
	return n, nil
}
func (m *memPort) Write(p []byte) (int, error)        { return m.out.Write(p) }
func (m *memPort) SetReadTimeout(time.Duration) error { return nil }
func (m *memPort) ResetInputBuffer() error            { return nil }
func (m *memPort) Close() error                       { return nil }

var fuzzTimeouts = Timeouts{Byte: time.Microsecond, ENQ: time.Microsecond, Reply: time.Microsecond, Long: time.Microsecond, Tries: 2, BusyWait: time.Microsecond}

func TestLinkReadsReplyAmongNoise(t *testing.T) {
	// Stray 0xFF (TCP models), then ACK, noise, and the reply.
	in := append([]byte{0xFF, ACK, 0xFF, 0x33}, unhex(t, capShortStatusMode2)...)
	m := &memPort{in: in}
	l := &link{port: m, to: Timeouts{Byte: 5 * time.Millisecond, ENQ: 5 * time.Millisecond, Reply: 5 * time.Millisecond, Tries: 2}, synced: true}
	body, err := l.exchange(context.Background(), CmdShortStatus, Password(30), 10*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if s, _ := DecodeShortStatus(body[2:]); s.ModeNumber() != 2 {
		t.Fatalf("mode %d", s.ModeNumber())
	}
	if want := append(unhex(t, capShortStatusReq), ACK); !bytes.Equal(m.out.Bytes(), want) {
		t.Fatalf("host wrote % X, want % X", m.out.Bytes(), want)
	}
}

func FuzzLinkReader(f *testing.F) {
	f.Add(unhex(f, capShortStatusMode8))
	f.Add(append([]byte{ACK}, unhex(f, capShortStatusMode2)...))
	f.Add([]byte{NAK, ACK, STX, 0xFF})
	f.Add([]byte{0xFF, 0xFF, ACK, STX, 0})
	f.Add([]byte{ACK, STX, 3, 0x10, 0x00, 0x1E})
	f.Fuzz(func(t *testing.T, in []byte) {
		l := &link{port: &memPort{in: in}, to: fuzzTimeouts}
		ctx := context.Background()
		body, err := l.exchange(ctx, CmdShortStatus, Password(30), time.Microsecond)
		if err == nil && !matchReply(body, CmdShortStatus) {
			t.Fatalf("accepted a reply to another command: % X", body)
		}
		l2 := &link{port: &memPort{in: in}, to: fuzzTimeouts}
		_, _ = l2.sync(ctx)
		_, _, _ = ParseFrame(in)
	})
}

func FuzzDecoders(f *testing.F) {
	f.Add(unhex(f, "1E 92 02 08 00 01 9F E5 18 01 00 8B 02 00"))
	f.Add(unhex(f, "03 00 11 03 18 14 35 A3 00 00 00 EB EA 4B 2E 01 20 4E 00 00 00"))
	f.Add(make([]byte, 60))
	f.Add([]byte{0xD0, 0x07}) // table 6 field 1: 20.00 %
	f.Add([]byte{0x1A, 0x0C, 0x01, 0x17, 0x3B})
	f.Add(EncodeCorrection(30, CorrectionV2{Type: 1, Sign: 1, Total: 12345, Payments: [5]int64{12345}, Taxes: [6]int64{2058}, TaxSystem: 1}))
	f.Add(unhex(f, "07 00 2A 00 00 00 0E C1 17 E4"))                                   // correction reply: receipt 7, FD 42, FP
	f.Add(CorrectionBase(time.Date(2025, 12, 20, 0, 0, 0, 0, time.UTC), "ПР-77/2026")) // STLV 1174
	f.Add(EncodePrint2D(30, Print2D{Type: 3, Length: 70, Params: [5]byte{0, 0, 4, 0, 1}, Align: 1}))
	f.Add(EncodeLoadData(30, 1, []byte("t=20260101T1230&s=123.45")))
	f.Fuzz(func(t *testing.T, d []byte) {
		_, _ = DecodeShortStatus(d)
		_, _ = DecodeFullStatus(d)
		_, _ = DecodeDeviceType(d)
		_, _ = DecodeFNStatus(d)
		_, _ = DecodeFNNumber(d)
		_, _ = DecodeFNExpiry(d)
		_, _ = DecodeFiscalResult(d)
		_, _ = DecodeFoundDocument(d)
		_, _ = DecodeOFDStatus(d)
		_, _ = DecodeShiftParams(d)
		_, _ = DecodeCloseResult(d)
		if v, err := DecodeTaxRate(d); err == nil && (v < 0 || v > 0xFFFF) {
			t.Fatalf("tax rate %d from %x", v, d)
		}
		if tm := FNTime(d); !tm.IsZero() && tm.Location() != time.UTC {
			t.Fatalf("FN time %s is not a UTC wall clock", tm)
		}
		_, _, _ = DecodeOperation(d)
		_, _, _ = DecodeClose(d)
		_, _, _, _ = SplitReply(d)
		if _, c, err := DecodeCorrection(d); err == nil {
			if _, c2, err := DecodeCorrection(EncodeCorrection(0, c)); err != nil || c2 != c {
				t.Fatalf("correction round trip %+v → %+v, %v", c, c2, err)
			}
		}
		_, _ = DecodeCorrectionResult(d)
		if date, number, err := DecodeCorrectionBase(d); err == nil && date.IsZero() {
			t.Fatalf("STLV 1174 %x decoded without a date (%q)", d, number)
		}
		if _, p, err := DecodePrint2D(d); err == nil {
			if _, p2, err := DecodePrint2D(EncodePrint2D(0, p)); err != nil || p2 != p {
				t.Fatalf("2D round trip %+v → %+v, %v", p, p2, err)
			}
		}
		if _, _, _, b, err := DecodeLoadData(d); err == nil && len(b) > BlockSize2D {
			t.Fatalf("a %d-byte block accepted", len(b))
		}
		if len(d) > 0 {
			_ = DecodeFNWarnings(d[0])
		}
		_ = DecodeWin1251(d)
		_ = DecodeCP866(d)
	})
}

// TestCorrectionCodec: FF4Ah's 67 bytes of params in the vendor's order, its
// reply, and the STLV 1174 with 1178 as unixtime of the day and 1179 in CP866.
func TestCorrectionCodec(t *testing.T) {
	c := CorrectionV2{Type: 1, Sign: 3, Total: 0x0102030405, Payments: [5]int64{1, 2, 3, 4, 5}, Taxes: [6]int64{6, 7, 8, 9, 10, 11}, TaxSystem: 2}
	b := EncodeCorrection(30, c)
	if len(b) != 67 || b[4] != 1 || b[5] != 3 || b[6] != 0x05 || b[10] != 0x01 || b[11] != 1 || b[16] != 2 || b[36] != 6 || b[66] != 2 {
		t.Fatalf("FF4A params % x", b)
	}
	if _, c2, err := DecodeCorrection(b); err != nil || c2 != c {
		t.Fatalf("decode %+v %v", c2, err)
	}
	r, err := DecodeCorrectionResult(unhex(t, "07 00 2A 00 00 00 0E C1 17 E4"))
	if err != nil || r.Number != 7 || r.FD != 42 || r.FP != 0xE417C10E {
		t.Fatalf("reply %+v %v", r, err)
	}
	base := CorrectionBase(time.Date(2025, 12, 20, 15, 4, 0, 0, time.FixedZone("MSK", 3*3600)), "№5")
	// 1178 (0x049A) len 4: 2025-12-20 00:00 UTC = 1766188800 = 0x6945E700; 1179 (0x049B) len 2: CP866 "№5".
	if want := unhex(t, "9A 04 04 00 00 E7 45 69 9B 04 02 00 FC 35"); string(base) != string(want) {
		t.Fatalf("STLV 1174 % x, want % x", base, want)
	}
	if d, n, err := DecodeCorrectionBase(base); err != nil || d.Format(time.DateOnly) != "2025-12-20" || n != "№5" {
		t.Fatalf("decode base %s %q %v", d, n, err)
	}
}
