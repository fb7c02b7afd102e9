package shtrihsim_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"kassa-agent/fiscal/shtrih"
	"kassa-agent/fiscal/shtrihsim"
)

// exchange talks to the simulator as raw host software would.
func exchange(t *testing.T, c net.Conn, out []byte, want int) []byte {
	t.Helper()
	if _, err := c.Write(out); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, want)
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read: %v (got % X)", err, got)
	}
	return got
}

func unhex(s string) []byte {
	b, _ := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	return b
}

func serve(t *testing.T, s *shtrihsim.Sim) net.Conn {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = s.ServeTCP(ctx, ln) }()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(); cancel(); <-done })
	return c
}

// TestCapturedFramesAnswered: the simulator answers the spec's captured requests with
// the captured replies' layout.
func TestCapturedFramesAnswered(t *testing.T) {
	s, err := shtrihsim.New(shtrihsim.Options{})
	if err != nil {
		t.Fatal(err)
	}
	c := serve(t, s)
	if got := exchange(t, c, []byte{shtrih.ENQ}, 1); got[0] != shtrih.NAK {
		t.Fatalf("idle ENQ answered % X", got)
	}
	// Open a shift and a receipt so the device is in mode 8 as in the capture.
	for _, body := range [][]byte{shtrih.CommandBody(shtrih.CmdOpenShift, shtrih.Password(30)), shtrih.CommandBody(shtrih.CmdOpenReceipt, append(shtrih.Password(30), 0))} {
		exchange(t, c, shtrih.Frame(body), 7)
		exchange(t, c, []byte{shtrih.ACK}, 0)
	}
	real := unhex("02 10 10 00 1E 92 02 08 00 01 9F E5 18 01 00 8B 02 00 6D")
	got := exchange(t, c, unhex("02 05 10 1E 00 00 00 0B"), 1+len(real))
	if got[0] != shtrih.ACK || !bytes.Equal(got[1:10], real[:9]) || len(got)-1 != len(real) {
		t.Fatalf("short status in mode 8:\n got % X\nreal    % X", got[1:], real)
	}
	// The reply is held until ACK: ENQ gets it again.
	if again := exchange(t, c, []byte{shtrih.ENQ}, len(got)); !bytes.Equal(again, got) {
		t.Fatalf("ENQ with a held reply: % X", again)
	}
	exchange(t, c, []byte{shtrih.ACK}, 0)
	if got := exchange(t, c, unhex("02 05 88 1E 00 00 00 93"), 7); !bytes.Equal(got, append([]byte{shtrih.ACK}, unhex("02 03 88 00 1E 95")...)) {
		t.Fatalf("cancel reply % X", got)
	}
	exchange(t, c, []byte{shtrih.ACK}, 0)
	// A damaged frame is NAKed.
	if got := exchange(t, c, unhex("02 05 10 1E 00 00 00 0C"), 1); got[0] != shtrih.NAK {
		t.Fatalf("bad LRC answered % X", got)
	}
	// Unknown command: 37h, reply carries only CMD and ERR.
	if got := exchange(t, c, shtrih.Frame(shtrih.CommandBody(0x99, shtrih.Password(30))), 6); !bytes.Equal(got[1:], shtrih.Frame([]byte{0x99, 0x37})) {
		t.Fatalf("unknown command % X", got)
	}
}

func TestStateSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	opt := shtrihsim.Options{StatePath: filepath.Join(dir, "fn.json"), TapePath: filepath.Join(dir, "tape.txt")}
	s, err := shtrihsim.New(opt)
	if err != nil {
		t.Fatal(err)
	}
	c := serve(t, s)
	exchange(t, c, shtrih.Frame(shtrih.CommandBody(shtrih.CmdOpenShift, shtrih.Password(30))), 7)
	before := s.Documents()
	s2, err := shtrihsim.New(opt)
	if err != nil {
		t.Fatal(err)
	}
	after := s2.Documents()
	if len(after) != 2 || len(before) != 2 || after[1].FP != before[1].FP || !s2.Snapshot().ShiftOpen || s2.Snapshot().Shift != 1 {
		t.Fatalf("restart lost state: %+v vs %+v", after, before)
	}
}
