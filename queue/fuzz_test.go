package queue

import (
	"bytes"
	"testing"
	"time"
)

func FuzzDecodeMessage(f *testing.F) {
	full := Message{ID: 7, Kind: "smartpay.confirm", Key: "purchase-1", Payload: []byte(`{"a":1}`),
		Created: time.Unix(1700000000, 5), Attempts: 3, NextAttempt: time.Unix(1700000100, 0),
		LastError: "503", Parked: true, ParkedReason: "limit", ParkedAt: time.Unix(1700000200, 0), RetriedAt: time.Unix(1700000300, 0)}
	f.Add(encodeMessage(&full))
	f.Add(encodeMessage(&Message{ID: 1, Kind: "k", Key: "a"}))
	f.Add(encodeMessage(&Message{ID: 9, Key: "purchase-2", Parked: true, ParkedReason: "undecodable record", LastError: "bad varint",
		Damaged: true, Raw: []byte("\x07not an outbox record")}))
	f.Add([]byte{})
	f.Add([]byte{1})
	f.Add([]byte{2, 0, 0})
	f.Add([]byte{1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, raw []byte) {
		m, err := decodeMessage(raw)
		if err != nil {
			return
		}
		// Whatever decodes must survive a round trip unchanged.
		again, err := decodeMessage(encodeMessage(&m))
		if err != nil {
			t.Fatalf("re-decoding: %v", err)
		}
		if again.ID != m.ID || again.Kind != m.Kind || again.Key != m.Key || !bytes.Equal(again.Payload, m.Payload) ||
			!again.Created.Equal(m.Created) || again.Attempts != m.Attempts || again.Parked != m.Parked ||
			again.LastError != m.LastError || again.ParkedReason != m.ParkedReason || !again.RetriedAt.Equal(m.RetriedAt) ||
			again.Damaged != m.Damaged || !bytes.Equal(again.Raw, m.Raw) {
			t.Fatalf("round trip changed %+v into %+v", m, again)
		}
	})
}

func TestMessageRoundTrip(t *testing.T) {
	m := Message{ID: 42, Kind: "fiscal", Key: "p", Payload: []byte{0, 1, 2}, Created: time.Unix(0, 1_700_000_000_123_456_789),
		Attempts: 2, NextAttempt: time.Unix(1_700_000_100, 0), LastError: "x", Parked: true, ParkedReason: "y", ParkedAt: time.Unix(1_700_000_200, 0)}
	got, err := decodeMessage(encodeMessage(&m))
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != 42 || got.Kind != "fiscal" || !bytes.Equal(got.Payload, m.Payload) || !got.Created.Equal(m.Created) ||
		got.Attempts != 2 || !got.NextAttempt.Equal(m.NextAttempt) || !got.Parked || got.ParkedReason != "y" || !got.ParkedAt.Equal(m.ParkedAt) || !got.RetriedAt.IsZero() {
		t.Fatalf("round trip: %+v", got)
	}
	if _, err := decodeMessage(encodeMessage(&m)[:10]); err == nil {
		t.Fatal("truncated record decoded")
	}
}

func FuzzDecodeIdempotency(f *testing.F) {
	f.Add([]byte(`{"h":"aGFzaA==","r":"pay-1","s":201,"b":"e30=","c":"2025-03-01T12:00:00Z"}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"c":"not a time"}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		_, _ = decodeIdem(raw)
	})
}
