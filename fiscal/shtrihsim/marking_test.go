package shtrihsim

import (
	"bytes"
	"encoding/binary"
	"path/filepath"
	"testing"

	"kassa-agent/fiscal"
	"kassa-agent/fiscal/shtrih"
)

func call(t testing.TB, s *Sim, cmd uint16, params []byte) (byte, []byte) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	_, code, data, err := shtrih.SplitReply(s.execute(cmd, append(binary.LittleEndian.AppendUint32(nil, adminPassword), params...), Fault{}))
	if err != nil {
		t.Fatal(err)
	}
	return code, data
}

// TestMarkingStatePersists: a check awaiting the decision and the accepted
// codes are the FN's: they survive a restart of the simulator through its
// state file, and a code is accepted once.
func TestMarkingStatePersists(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fn.json")
	s, err := New(Options{StatePath: path})
	if err != nil {
		t.Fatal(err)
	}
	code := "0104650118041019215'WCKI\x1d93Zdh1"
	p, err := shtrih.EncodeCheckMarking(adminPassword, fiscal.MarkingRequest{Code: code, Status: fiscal.PieceSold})
	if err != nil {
		t.Fatal(err)
	}
	if c, _ := call(t, s, shtrih.CmdFNCheckMarking, p[4:]); c != 0 {
		t.Fatalf("check: %02X", c)
	}
	if c, _ := call(t, s, shtrih.CmdFNCheckMarking, p[4:]); c != shtrih.FNErrState {
		t.Fatalf("a second check while one awaits: %02X", c)
	}
	s, err = New(Options{StatePath: path})
	if err != nil {
		t.Fatal(err)
	}
	c, d := call(t, s, shtrih.CmdFNMarkingStatus, nil)
	if st, err := shtrih.DecodeMarkingStatus(d); c != 0 || err != nil || !st.Awaiting() || st.Saved != 0 {
		t.Fatalf("restarted: %+v %v", st, err)
	}
	if c, _ := call(t, s, shtrih.CmdFNAcceptMarking, []byte{shtrih.MarkingAccept}); c != 0 {
		t.Fatalf("accept: %02X", c)
	}
	if c, _ := call(t, s, shtrih.CmdFNAcceptMarking, []byte{shtrih.MarkingAccept}); c != shtrih.FNErrState {
		t.Fatalf("accept twice: %02X", c)
	}
	s, err = New(Options{StatePath: path})
	if err != nil {
		t.Fatal(err)
	}
	if len(s.st.MarkSaved) != 1 || s.st.MarkSaved[0].Code != code || s.st.MarkSaved[0].Result != 0x0F || s.st.MarkCheck != nil {
		t.Fatalf("state after restart %+v", s.st)
	}
	// A legacy register knows none of it.
	l, err := New(Options{FFD: "1.05"})
	if err != nil {
		t.Fatal(err)
	}
	if c, _ := call(t, l, shtrih.CmdFNCheckMarking, p[4:]); c != shtrih.ErrCodeNotSupported {
		t.Fatalf("FFD 1.05 check: %02X", c)
	}
}

// FuzzSimMarking: whatever FF61h, FF67h and FF4Dh parameters arrive, the
// simulator does not panic, holds a check only of the code it was given, and
// binds only a code it accepted; the TLV readers give back what the driver's
// encoders wrote.
func FuzzSimMarking(f *testing.F) {
	p, _ := shtrih.EncodeCheckMarking(0, fiscal.MarkingRequest{Code: "01x\x1d93", Status: fiscal.MeasuredSold, Quantity: 512_000, Measure: fiscal.Kilogram})
	f.Add(p[4:], []byte{3, '0', '1', 'x'}, shtrih.TLV(shtrih.TagMeasure, []byte{11}), int64(512_000))
	p, _ = shtrih.EncodeCheckMarking(0, fiscal.MarkingRequest{Code: "01x", Status: fiscal.MeasuredReturned, Quantity: 200_000, Fraction: &fiscal.Fraction{Numerator: 2, Denominator: 10}})
	f.Add(p[4:], []byte{3, '0', '1', 'x', 0xFF}, shtrih.TLV(shtrih.TagFraction, []byte{0x0D, 5, 1, 0, 2, 0x0E, 5, 1, 0, 10}), int64(1))
	f.Add([]byte{1, 0, 0, 0}, []byte{0}, []byte{0x6C, 0x08, 0, 0}, int64(0))
	f.Add([]byte{1, 0, 200, 0, 'x'}, []byte{}, shtrih.TLV(shtrih.TagIndustry, []byte{0x6E, 0x04, 3, 0, '0', '3', '0'}), int64(-1))
	f.Fuzz(func(t *testing.T, check, bind, tlv []byte, q int64) {
		s, err := New(Options{})
		if err != nil {
			t.Fatal(err)
		}
		s.st.ShiftOpen, s.st.Receipt = true, &openReceipt{Type: 0}
		if c, _ := s.checkMarking(check); c == 0 {
			if s.st.MarkCheck == nil || s.st.MarkCheck.Code != string(check[4:4+int(check[2])]) {
				t.Fatalf("held %+v for % X", s.st.MarkCheck, check)
			}
			if c, _ := s.marking(shtrih.CmdFNAcceptMarking, []byte{1}); c != 0 {
				t.Fatalf("accept: %02X", c)
			}
		}
		if c, _ := s.bindMarking(bind); c == 0 {
			if len(s.st.MarkSaved) != 1 || !s.st.MarkSaved[0].Bound || s.st.Line.Code.Code != string(bind[1:1+int(bind[0])]) {
				t.Fatalf("bound %+v from % X", s.st.Line, bind)
			}
		}
		if tags, ok := readTLVs(tlv); ok && len(tlv) >= 4 {
			tag := int(binary.LittleEndian.Uint16(tlv))
			if v := tags[tag]; v == nil {
				t.Fatalf("tag %d lost from % X", tag, tlv)
			}
			_, _ = s.lineTLV(tag, tags[tag])
		}
		if q >= 0 && q < 1<<48 {
			if v, ok := fvln(shtrih.PutFVLN(q)); !ok || v != q {
				t.Fatalf("FVLN %d → % X → %d", q, shtrih.PutFVLN(q), v)
			}
		}
		if n, d, ok := fraction(tlv); ok && (n < 1 || n >= d || !bytes.Equal(tlv[:2], []byte{0x0D, 0x05}) && !bytes.Equal(tlv[:2], []byte{0x0E, 0x05})) {
			t.Fatalf("fraction %d/%d from % X", n, d, tlv)
		}
		var it Item
		it.Quantity, it.Object = q, 33
		_ = s.bindLine(&it)
	})
}
