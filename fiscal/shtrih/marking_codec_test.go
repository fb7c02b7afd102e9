package shtrih

import (
	"bytes"
	"testing"

	"kassa-agent/fiscal"
)

// traceCode, traceRequest and traceReply are the FF61h exchange logged in
// shtrih-m/fr_drv_ng issue #145 (a real register, FFD 1.2): planned status 1,
// a 29-byte tobacco code, no TLV; the OISM answered with 2106 = 5.
const traceCode = "04606203103348a3=EfODAB=UpGbL"

var (
	traceRequest = "02 27 FF 61 1E 00 00 00 01 00 1D 00 30 34 36 30 36 32 30 33 31 30 33 33 34 38 61 33 3D 45 66 4F 44 41 42 3D 55 70 47 62 4C 86"
	traceReply   = "00 01 01 14 00 05 42 08 04 00 80 07 15 61 39 08 01 00 00 D5 07 01 00 05"
)

// TestCheckMarkingMatchesTrace: our FF61h frame is byte for byte the one the
// vendor's driver sent, and its reply decodes to what the fields say.
func TestCheckMarkingMatchesTrace(t *testing.T) {
	p, err := EncodeCheckMarking(30, fiscal.MarkingRequest{Code: traceCode, Status: fiscal.PieceSold})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := Frame(CommandBody(CmdFNCheckMarking, p)), unhex(t, traceRequest); !bytes.Equal(got, want) {
		t.Fatalf("frame\n% X\nwant\n% X", got, want)
	}
	r, err := DecodeCheckMarking(unhex(t, traceReply))
	if err != nil {
		t.Fatal(err)
	}
	if r.Local != 0 || r.LocalReason != 1 || r.CodeType != 1 || !r.Online || r.FNCode != 0 || r.Result != 0x05 ||
		r.ProcessingCode != 0 || r.Processing != 5 || r.ItemStatus != -1 || len(r.ServerTLV) != 18 {
		t.Fatalf("decoded %+v", r)
	}
	// 2106 = 0101b: the OISM answered, its result negative: not to be sold.
	if r.Verdict() != fiscal.Invalid {
		t.Fatalf("verdict %s", r.Verdict())
	}
}

// TestCheckMarkingMeasuredTLV: a weighed item is checked with 2108 and 1023
// (FVLN), a part of a pack with 2108 and 1291 (1293/1294).
func TestCheckMarkingMeasuredTLV(t *testing.T) {
	p, err := EncodeCheckMarking(30, fiscal.MarkingRequest{Code: "01x", Status: fiscal.MeasuredSold, Quantity: 512_000, Measure: fiscal.Kilogram})
	if err != nil {
		t.Fatal(err)
	}
	want := unhex(t, "1E 00 00 00 02 00 03 0C 30 31 78 3C 08 01 00 0B FF 03 03 00 03 00 02")
	if !bytes.Equal(p, want) {
		t.Fatalf("weighed % X, want % X", p, want)
	}
	p, err = EncodeCheckMarking(30, fiscal.MarkingRequest{Code: "01x", Status: fiscal.MeasuredReturned, Quantity: 200_000, Fraction: &fiscal.Fraction{Numerator: 2, Denominator: 10}})
	if err != nil {
		t.Fatal(err)
	}
	want = unhex(t, "1E 00 00 00 04 00 03 13 30 31 78 3C 08 01 00 00 0B 05 0A 00 0D 05 01 00 02 0E 05 01 00 0A")
	if !bytes.Equal(p, want) {
		t.Fatalf("fraction % X, want % X", p, want)
	}
	if _, err := EncodeCheckMarking(30, fiscal.MarkingRequest{Code: string(make([]byte, maxMarkingData+1)), Status: fiscal.PieceSold}); err == nil {
		t.Fatal("a code over one frame accepted")
	}
}

func FuzzMarkingDecoders(f *testing.F) {
	f.Add(unhex(f, traceReply))
	f.Add([]byte{0x03, 0, 2, 0})                                                           // offline
	f.Add([]byte{0x03, 0, 2, 1, 0xFF})                                                     // the OISM did not answer in time
	f.Add([]byte{0x03, 0, 2, 2, 0x20, 0x01})                                               // FN refused the online request
	f.Add([]byte{0x03, 0, 2, 12, 0, 0x0F, 0x6D, 0x08, 0x01, 0, 1, 0x39, 0x08, 0x01, 0, 0}) // valid
	f.Add([]byte{0x01, 0, 2, 7, 0, 0x05, 0x6D, 0x08, 0x09, 0})                             // truncated TLV
	f.Add([]byte{'D', 'M', 0})
	f.Add(append([]byte{'D', 'M', 0}, unhex(f, traceReply)...))
	f.Add(EncodeMarkingStatus(MarkingStatus{CheckState: 4, Allowed: 3, Saved: 2, Queued: 513}))
	f.Fuzz(func(t *testing.T, d []byte) {
		if r, err := DecodeCheckMarking(d); err == nil {
			if r.Online && (len(d) < 6 || r.Result != fiscal.CheckResult(d[5]) || r.FNCode != 0 || len(r.ServerTLV) != int(d[3])-2) {
				t.Fatalf("online result %+v from % X", r, d)
			}
			if r.Verdict() == fiscal.Valid && (!r.Online || r.Result&fiscal.OISResultOK == 0) {
				t.Fatalf("valid without the OISM's yes: %+v", r)
			}
			if r.Message() == "" {
				t.Fatal("no message for the cashier")
			}
		}
		if b, err := DecodeBindMarking(d); err == nil && (len(d) < 3 || (b.Check != nil) != (len(d) > 3)) {
			t.Fatalf("bind %+v from % X", b, d)
		}
		if s, err := DecodeMarkingStatus(d); err == nil {
			if s2, err := DecodeMarkingStatus(EncodeMarkingStatus(s)); err != nil || s2 != s {
				t.Fatalf("status round trip %+v → %+v %v", s, s2, err)
			}
		}
	})
}
