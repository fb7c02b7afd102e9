package shtrihsim_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"kassa-agent/fiscal/shtrih"
	"kassa-agent/fiscal/shtrihsim"
)

// The tests here drive the simulator as other host software does: raw frames,
// literal command codes, a connection per command where network drivers do that.

// listen serves s on a fresh loopback port until the test ends.
func listen(t *testing.T, s *shtrihsim.Sim) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = s.ServeTCP(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	return ln.Addr().String()
}

// host is one connection of raw host software.
type host struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func dial(t *testing.T, addr string) *host {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &host{t: t, c: c, r: bufio.NewReader(c)}
}

func (h *host) send(b []byte) {
	h.t.Helper()
	if _, err := h.c.Write(b); err != nil {
		h.t.Fatal(err)
	}
}

func (h *host) byte1() byte {
	h.t.Helper()
	_ = h.c.SetReadDeadline(time.Now().Add(2 * time.Second))
	b, err := h.r.ReadByte()
	if err != nil {
		h.t.Fatalf("read: %v", err)
	}
	return b
}

// frame reads one reply frame (skipping nothing: the next byte must be STX).
func (h *host) frame() (cmd uint16, code byte, data []byte) {
	h.t.Helper()
	if b := h.byte1(); b != shtrih.STX {
		h.t.Fatalf("want STX, got %02X", b)
	}
	n := h.byte1()
	rest := make([]byte, int(n)+1)
	_ = h.c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.ReadFull(h.r, rest); err != nil {
		h.t.Fatalf("read frame: %v", err)
	}
	if shtrih.LRC(rest[:n]) != rest[n] {
		h.t.Fatalf("bad LRC in % X", rest)
	}
	cmd, code, data, err := shtrih.SplitReply(rest[:n])
	if err != nil {
		h.t.Fatal(err)
	}
	return cmd, code, data
}

// do sends one command, reads ACK and the reply, ACKs it.
func (h *host) do(cmd uint16, params ...[]byte) (byte, []byte) {
	h.t.Helper()
	p := shtrih.Password(30)
	for _, x := range params {
		p = append(p, x...)
	}
	h.send(shtrih.Frame(shtrih.CommandBody(cmd, p)))
	if b := h.byte1(); b != shtrih.ACK {
		h.t.Fatalf("%X: want ACK, got %02X", cmd, b)
	}
	got, code, data := h.frame()
	if got != cmd {
		h.t.Fatalf("reply to %X is for %X", cmd, got)
	}
	h.send([]byte{shtrih.ACK})
	return code, data
}

// ok is do that fails the test on a device error.
func (h *host) ok(cmd uint16, params ...[]byte) []byte {
	h.t.Helper()
	code, data := h.do(cmd, params...)
	if code != 0 {
		h.t.Fatalf("command %X: error %02X", cmd, code)
	}
	return data
}

func newSim(t *testing.T, opt shtrihsim.Options) *shtrihsim.Sim {
	t.Helper()
	s, err := shtrihsim.New(opt)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func money5(v int64) []byte { return shtrih.Money5(v) }

func text40(s string) []byte {
	b := make([]byte, 40)
	copy(b, shtrih.Win1251(s))
	return b
}

// legacySale is the 0x80/0x82 params after the password: quantity(5, thousandths),
// price(5), department(1), tax1..tax4(1 each), text(40).
func legacySale(qty, price int64, dept, tax1 byte, name string) []byte {
	p := append(money5(qty), money5(price)...)
	p = append(p, dept, tax1, 0, 0, 0)
	return append(p, text40(name)...)
}

// legacyClose is the 0x85 params after the password: cash, sum2..sum4 (5 each),
// discount(2), tax1..tax4(1 each), text(40).
func legacyClose(cash, sum2 int64) []byte {
	p := append(money5(cash), money5(sum2)...)
	p = append(p, money5(0)...)
	p = append(p, money5(0)...)
	p = append(p, 0, 0, 0, 0, 0, 0)
	return append(p, text40("")...)
}

// closeWait counts the simulator side's connections on port stuck in CLOSE-WAIT
// (state 08 in /proc/net/tcp: the peer has gone and the socket was never closed).
func closeWait(t *testing.T, port int) int {
	t.Helper()
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		t.Skipf("no /proc/net/tcp: %v", err)
	}
	want := strings.ToUpper(strconv.FormatInt(int64(port), 16))
	for len(want) < 4 {
		want = "0" + want
	}
	n := 0
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 4 {
			continue
		}
		if strings.HasSuffix(f[1], ":"+want) && f[3] == "08" {
			n++
		}
	}
	return n
}

// TestClosedPeerConnectionIsClosed: a host that opens a connection per command and
// closes it must not leave the simulator's side of each one in CLOSE-WAIT.
func TestClosedPeerConnectionIsClosed(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("counts sockets in /proc/net/tcp")
	}
	// With the collector off, a socket the simulator forgot is not closed behind
	// its back by the finalizer of a garbage net.Conn.
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	s := newSim(t, shtrihsim.Options{})
	addr := listen(t, s)
	_, ps, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(ps)
	const conns = 8
	for range conns {
		h := dial(t, addr)
		h.ok(shtrih.CmdShortStatus)
		_ = h.c.Close()
	}
	deadline := time.Now().Add(2 * time.Second)
	n := closeWait(t, port)
	for n > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
		n = closeWait(t, port)
	}
	if n != 0 {
		t.Fatalf("%d of %d closed connections left in CLOSE-WAIT", n, conns)
	}
}

// TestPendingReplyPerConnection: each connection holds its own unACKed reply. A
// host that opens a new connection per command asks with ENQ first; it must hear
// "idle" (NAK), not the reply another connection did not ACK.
func TestPendingReplyPerConnection(t *testing.T) {
	s := newSim(t, shtrihsim.Options{})
	addr := listen(t, s)
	a := dial(t, addr)
	a.send(shtrih.Frame(shtrih.CommandBody(shtrih.CmdShortStatus, shtrih.Password(30))))
	if b := a.byte1(); b != shtrih.ACK {
		t.Fatalf("want ACK, got %02X", b)
	}
	a.frame() // not ACKed: held for a

	for i := range 3 { // a new connection for every command
		b := dial(t, addr)
		b.send([]byte{shtrih.ENQ})
		if got := b.byte1(); got != shtrih.NAK {
			t.Fatalf("connection %d: ENQ answered %02X (another connection's held reply), want NAK", i, got)
		}
		b.ok(shtrih.CmdFNStatus)
		_ = b.c.Close()
	}
	// a still gets its own reply on ENQ.
	a.send([]byte{shtrih.ENQ})
	if got := a.byte1(); got != shtrih.ACK {
		t.Fatalf("ENQ on the first connection answered %02X, want ACK", got)
	}
	if cmd, _, _ := a.frame(); cmd != shtrih.CmdShortStatus {
		t.Fatalf("held reply is for %X", cmd)
	}
}

// writeCounter is the host side of a byte stream that records each Write the
// simulator makes.
type writeCounter struct {
	in *io.PipeReader // what the host sends
	mu sync.Mutex
	w  [][]byte
}

func (c *writeCounter) Read(p []byte) (int, error) { return c.in.Read(p) }
func (c *writeCounter) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.w = append(c.w, append([]byte(nil), p...))
	c.mu.Unlock()
	return len(p), nil
}
func (c *writeCounter) writes() [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([][]byte(nil), c.w...)
}

// waitWrites waits until the simulator has written n times (and a little longer,
// to see one write too many).
func (c *writeCounter) waitWrites(t *testing.T, n int) [][]byte {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for len(c.writes()) < n && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
	return c.writes()
}

// TestReplyInOneWrite: everything the device sends in answer to one host byte or
// frame (ACK, a stray 0xFF, the reply frame) leaves in one write, so host
// software that reads the answer with one recv() gets all of it.
func TestReplyInOneWrite(t *testing.T) {
	for _, stray := range []bool{false, true} {
		t.Run("stray_ff="+strconv.FormatBool(stray), func(t *testing.T) {
			s := newSim(t, shtrihsim.Options{StrayFF: stray})
			pr, pw := io.Pipe()
			wc := &writeCounter{in: pr}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { defer close(done); _ = s.Serve(ctx, wc) }()
			t.Cleanup(func() { cancel(); _ = pw.Close(); <-done })

			frame := shtrih.Frame(shtrih.CommandBody(shtrih.CmdShortStatus, shtrih.Password(30)))
			_, _ = pw.Write(frame)
			w := wc.waitWrites(t, 1)
			if len(w) != 1 {
				t.Fatalf("command answered in %d writes: % X", len(w), w)
			}
			// Not ACKed: ENQ gets the held reply, ACK and frame together.
			_, _ = pw.Write([]byte{shtrih.ENQ})
			w = wc.waitWrites(t, 2)
			if len(w) != 2 {
				t.Fatalf("ENQ with a held reply answered in %d writes: % X", len(w)-1, w[1:])
			}
			ack := []byte{shtrih.ACK}
			if stray {
				ack = []byte{0xFF, shtrih.ACK}
			}
			if !bytes.HasPrefix(w[1], ack) || !bytes.Equal(w[1][len(ack):], w[0][len(ack):]) {
				t.Fatalf("ENQ answer % X, command answer % X", w[1], w[0])
			}
		})
	}
}

// TestReadOnlyCommandsKeepStateFile: status reads change nothing, so the state
// file is not rewritten (and fsynced) for them.
func TestReadOnlyCommandsKeepStateFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fn.json")
	s := newSim(t, shtrihsim.Options{StatePath: path})
	h := dial(t, listen(t, s))
	h.ok(shtrih.CmdOpenShift)
	before, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond) // a rewrite would show in the mtime too
	for _, cmd := range []uint16{shtrih.CmdShortStatus, shtrih.CmdStatus, shtrih.CmdFNStatus, shtrih.CmdFNNumber,
		shtrih.CmdFNFiscalResult, shtrih.CmdFNOFDStatus, shtrih.CmdFNShiftParams} {
		h.ok(cmd)
		after, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if !os.SameFile(before, after) || !after.ModTime().Equal(before.ModTime()) {
			t.Fatalf("read-only command %X rewrote the state file", cmd)
		}
	}
	// A change is still saved.
	h.ok(shtrih.CmdOpenReceipt, []byte{0})
	after, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if os.SameFile(before, after) && after.ModTime().Equal(before.ModTime()) {
		t.Fatal("opening a receipt did not save the state")
	}
	if !newSim(t, shtrihsim.Options{StatePath: path}).Snapshot().ReceiptOpen {
		t.Fatal("the open receipt is not in the saved state")
	}
}

// TestLegacyReceiptCommands: 0x80 sale (opens the receipt), 0x82 return sale,
// 0x85 close with change, 0x88 cancel, as older host software sends them.
func TestLegacyReceiptCommands(t *testing.T) {
	s := newSim(t, shtrihsim.Options{OFDOnline: true})
	h := dial(t, listen(t, s))
	h.ok(shtrih.CmdOpenShift)

	// Sale: 2.5 kg at 100.00, row 2 (10 %), then 1 pc at 40.00 without VAT.
	if d := h.ok(0x80, legacySale(2500, 10000, 1, 2, "Яблоки")); len(d) != 1 || d[0] != 30 {
		t.Fatalf("0x80 reply data % X, want the operator", d)
	}
	h.ok(0x80, legacySale(1000, 4000, 1, 0, "Пакет"))
	if code, _ := h.do(0x82, legacySale(1000, 100, 1, 0, "Возврат")); code != shtrih.ErrCodeWrongMode {
		t.Fatalf("return sale inside a sale receipt: %02X, want %02X", code, shtrih.ErrCodeWrongMode)
	}
	if code, _ := h.do(0x85, legacyClose(20000, 0)); code != shtrih.ErrCodePaymentsLess {
		t.Fatalf("underpaid close: %02X", code)
	}
	d := h.ok(0x85, legacyClose(30000, 0))
	if len(d) != 6 || d[0] != 30 || shtrih.GetUint(d[1:6]) != 1000 {
		t.Fatalf("0x85 reply data % X, want operator and change 10.00", d)
	}
	docs := s.Documents()
	r := docs[len(docs)-1]
	if r.Type != shtrihsim.DocReceipt || r.Operation != 1 || r.Total != 29000 || r.Change != 1000 || len(r.Items) != 2 {
		t.Fatalf("receipt %+v", r)
	}
	if it := r.Items[0]; it.Quantity != 2_500_000 || it.Sum != 25000 || it.TaxRate != 2 || it.Tax != 2273 {
		t.Fatalf("first line %+v", it)
	}
	if it := r.Items[1]; it.TaxRate != 4 || it.Tax != 0 {
		t.Fatalf("second line %+v", it)
	}

	// Return sale opens a return receipt; cancel drops it.
	h.ok(0x82, legacySale(1000, 4000, 1, 0, "Пакет"))
	if snap := s.Snapshot(); !snap.ReceiptOpen || snap.Mode != 8 {
		t.Fatalf("after 0x82: %+v", snap)
	}
	h.ok(0x88)
	if s.Snapshot().ReceiptOpen || len(s.Documents()) != len(docs) {
		t.Fatal("0x88 did not cancel the return receipt")
	}
	// Return sale and close: cash goes out.
	cash := s.Snapshot().Cash
	h.ok(0x82, legacySale(1000, 4000, 1, 0, "Пакет"))
	h.ok(0x85, legacyClose(4000, 0))
	docs = s.Documents()
	if r := docs[len(docs)-1]; r.Operation != 2 || r.Total != 4000 || s.Snapshot().Cash != cash-4000 {
		t.Fatalf("return receipt %+v, cash %d → %d", r, cash, s.Snapshot().Cash)
	}
}

// TestFF46OpensReceipt: the first FF46h opens the receipt when none is open, as on
// real devices (host software that never sends 8Dh).
func TestFF46OpensReceipt(t *testing.T) {
	s := newSim(t, shtrihsim.Options{})
	h := dial(t, listen(t, s))
	h.ok(shtrih.CmdOpenShift)
	op := shtrih.EncodeOperation(30, shtrih.Operation{Type: 2, Quantity: 1_000_000, Price: 5000, Sum: -1, Tax: -1,
		TaxRate: 4, Department: 1, Method: 4, Object: 1, Name: "Возврат товара"})
	h.ok(shtrih.CmdFNOperation, op[4:])
	if snap := s.Snapshot(); !snap.ReceiptOpen {
		t.Fatalf("FF46h did not open a receipt: %+v", snap)
	}
	var c shtrih.Close
	c.Payments[0] = 5000
	cl := shtrih.EncodeClose(30, c)
	d := h.ok(shtrih.CmdFNCloseReceipt, cl[4:])
	res, err := shtrih.DecodeCloseResult(d)
	if err != nil {
		t.Fatal(err)
	}
	if doc := s.Documents()[len(s.Documents())-1]; doc.FD != res.FD || doc.Operation != 2 {
		t.Fatalf("receipt %+v, reply %+v", doc, res)
	}
}

// TestFFD105ShiftSequence: FF41h begin → FF0Ch cashier tags → E0h opens the shift
// with the tags; FF42h begin → 41h closes it. FF0Bh/FF43h are the FN's own open and
// close commands with FD and FP in the reply.
func TestFFD105ShiftSequence(t *testing.T) {
	s := newSim(t, shtrihsim.Options{})
	h := dial(t, listen(t, s))
	tlv := func(tag int, v string) []byte {
		b := binary.LittleEndian.AppendUint16(nil, uint16(tag))
		b = binary.LittleEndian.AppendUint16(b, uint16(len(shtrih.CP866(v))))
		return append(b, shtrih.CP866(v)...)
	}
	if code, _ := h.do(0xFF42); code == 0 {
		t.Fatal("begin close shift accepted with the shift closed")
	}
	h.ok(0xFF41)
	h.ok(shtrih.CmdFNSendTLV, tlv(1021, "Иванова А."))
	h.ok(shtrih.CmdFNSendTLV, tlv(1203, "771234567890"))
	h.ok(shtrih.CmdOpenShift)
	docs := s.Documents()
	open := docs[len(docs)-1]
	if open.Type != shtrihsim.DocShiftOpen || open.Tags[1203] != "771234567890" || open.Tags[1021] != "Иванова А." {
		t.Fatalf("shift-open document %+v", open)
	}
	if code, _ := h.do(0xFF41); code == 0 {
		t.Fatal("begin open shift accepted with the shift open")
	}
	h.ok(0xFF42)
	h.ok(shtrih.CmdFNSendTLV, tlv(1203, "771234567890"))
	h.ok(shtrih.CmdZReport)
	docs = s.Documents()
	if cl := docs[len(docs)-1]; cl.Type != shtrihsim.DocShiftClose || cl.Tags[1203] != "771234567890" || s.Snapshot().ShiftOpen {
		t.Fatalf("shift-close document %+v", cl)
	}

	// The FN-level pair: FF41h … FF0Bh, FF42h … FF43h; replies: shift(2) FD(4) FP(4).
	h.ok(0xFF41)
	d := h.ok(0xFF0B)
	docs = s.Documents()
	if len(d) != 10 || int(binary.LittleEndian.Uint16(d)) != s.Snapshot().Shift ||
		binary.LittleEndian.Uint32(d[2:]) != docs[len(docs)-1].FD || binary.LittleEndian.Uint32(d[6:]) != docs[len(docs)-1].FP {
		t.Fatalf("FF0Bh reply % X, last document %+v", d, docs[len(docs)-1])
	}
	h.ok(0xFF42)
	d = h.ok(0xFF43)
	docs = s.Documents()
	if len(d) != 10 || docs[len(docs)-1].Type != shtrihsim.DocShiftClose || binary.LittleEndian.Uint32(d[2:]) != docs[len(docs)-1].FD {
		t.Fatalf("FF43h reply % X, last document %+v", d, docs[len(docs)-1])
	}
	// A TLV with neither a receipt nor a shift begun is refused, as before.
	if code, _ := h.do(shtrih.CmdFNSendTLV, tlv(1008, "a@b.c")); code != shtrih.FNErrState {
		t.Fatalf("stray TLV: %02X", code)
	}
}

// TestStrayBytesBeforeSTX: line noise before a frame is skipped; the frame after it
// is answered.
func TestStrayBytesBeforeSTX(t *testing.T) {
	s := newSim(t, shtrihsim.Options{})
	h := dial(t, listen(t, s))
	h.send([]byte{0xFF, 0x00, 0x7E, 0xFF})
	if code, _ := h.do(shtrih.CmdShortStatus); code != 0 {
		t.Fatalf("short status after noise: %02X", code)
	}
}

// TestFullStatusINN: the INN in the 11h reply is six bytes, least significant
// first, like every integer of the protocol (the vendor's Java driver reads it so:
// shtrih-m/javapos_shtrih LongPrinterStatus, CommandInputStream.readLong).
func TestFullStatusINN(t *testing.T) {
	s := newSim(t, shtrihsim.Options{INN: "7701234567"})
	d := dial(t, listen(t, s)).ok(shtrih.CmdStatus)
	if len(d) < 46 {
		t.Fatalf("11h reply %d bytes", len(d))
	}
	want := []byte{0x87, 0x83, 0x07, 0xCB, 0x01, 0x00} // 7701234567 = 0x01CB078387
	if !bytes.Equal(d[40:46], want) {
		t.Fatalf("INN bytes % X, want % X", d[40:46], want)
	}
	st, err := shtrih.DecodeFullStatus(d)
	if err != nil || st.INN != "7701234567" {
		t.Fatalf("driver reads INN %q (%v)", st.INN, err)
	}
}

// BenchmarkStatusWithStateFile: a status read against a simulator that keeps its
// state in a file (the read must not cost a rewrite and fsync).
func BenchmarkStatusWithStateFile(b *testing.B) {
	s, err := shtrihsim.New(shtrihsim.Options{StatePath: filepath.Join(b.TempDir(), "fn.json")})
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = s.ServeTCP(ctx, ln) }()
	defer func() { cancel(); <-done }()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	frame := shtrih.Frame(shtrih.CommandBody(shtrih.CmdShortStatus, shtrih.Password(30)))
	reply := make([]byte, 1+19)
	for b.Loop() {
		if _, err := c.Write(frame); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, reply); err != nil {
			b.Fatal(err)
		}
		if _, err := c.Write([]byte{shtrih.ACK}); err != nil {
			b.Fatal(err)
		}
	}
}
