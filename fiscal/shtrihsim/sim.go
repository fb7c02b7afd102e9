// Package shtrihsim is a Shtrih-M fiscal register simulator: it speaks protocol v1
// over any byte stream (a PTY master, a TCP connection), keeps its FN journal in a
// file so it survives restarts, renders the paper tape as text, enforces the device's
// rules (modes, 24 h shift, payments against the total, error codes) and injects
// faults on demand. Tests, the demo and benchmarks drive the real driver against it.
package shtrihsim

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"kassa-agent/fiscal/internal/atomicfile"
	"kassa-agent/fiscal/shtrih"
)

// FaultKind is what goes wrong.
type FaultKind int

const (
	// NAK: the device answers the command frame with NAK as if it arrived damaged;
	// the command is not executed.
	NAK FaultKind = iota + 1
	// Garbage: noise bytes on the line before the reply.
	Garbage
	// DropReply: the command runs, the reply is lost on the wire; the device still
	// holds it for ENQ.
	DropReply
	// DelayReply: the reply comes Fault.Delay late.
	DelayReply
	// PaperOut: the paper runs out while the command prints (the command itself
	// takes effect); paper is back after Fault.Delay (0 = when LoadPaper is called).
	PaperOut
	// PowerCutAfterClose: the command runs (for FF45h: the FN closes the document),
	// then power fails before the reply; the device is deaf for Fault.Delay and
	// holds no reply afterwards.
	PowerCutAfterClose
	// CorruptReply: the reply arrives with a bad LRC (the device still holds it).
	CorruptReply
	// DeviceError: the command is not run; the reply carries error Fault.Code, as
	// when the FN answers a read (FF09h, FF02h) with a transient failure.
	DeviceError
)

func (k FaultKind) String() string {
	return [...]string{"none", "nak", "garbage", "drop_reply", "delay_reply", "paper_out", "power_cut", "corrupt_reply", "device_error"}[k]
}

// Fault is one injected failure. It fires on the next frames with code Command
// (0 = any command), Count times (0 = once), after skipping After matching frames.
type Fault struct {
	Kind    FaultKind
	Command uint16
	Count   int
	After   int
	Delay   time.Duration
	Code    byte // DeviceError: the error code replied
}

// Options configure a simulator.
type Options struct {
	StatePath string           // JSON file holding the FN journal and device state; "" = memory only
	TapePath  string           // the paper tape is appended here as it prints; "" = none
	Baud      int              // >0 emulates the wire time of every byte at this speed
	Now       func() time.Time // the device clock; nil = time.Now
	PrintTime time.Duration    // each printing command keeps the device busy this long (submode 5, error 50h)
	StrayFF   bool             // send a stray 0xFF before ACK/NAK, as TCP/RNDIS models do
	FNNumber  string
	RegNumber string
	INN       string
	Serial    uint32
	OFDOnline bool // documents count as sent to the OFD at once
	// Location is the zone of the device clock: the FN keeps zone-less wall-clock
	// times, written here in this zone. nil = time.Local.
	Location *time.Location
	// VATMode is setting T17П71: 1 (the factory default) = rows 1 and 5 mean 22 % and
	// 22/122 from 2026-01-01 on; 2 = every row means exactly its own rate. 0 = 1.
	VATMode int
	// TaxRows overrides rows of table 6: row → rate in percent (as a firmware that
	// numbers its rates otherwise).
	TaxRows map[int]int
	// Unregistered: the FN is ready for fiscalization but not registered (phase
	// 1): FF09h fails and there is no registration number.
	Unregistered bool
	// FNWarnings is FF01h's warning byte (bit 0 replace urgently, 1 replace
	// soon, 2 memory 99 % full, 3 OFD timeout, 7 critical).
	FNWarnings byte
	// FFD is the format the register is registered for: "" = "1.2" (marked goods
	// through FF61h/FF69h/FF67h, FF4Dh tags before the line); "1.05" or "1.1" =
	// FF4Dh binds tag 1162 to the last line and the marking commands are not
	// supported.
	FFD string
}

// Item is a receipt line as the FN recorded it.
type Item struct {
	Name       string `json:"name"`
	Quantity   int64  `json:"quantity"`
	Price      int64  `json:"price"`
	Sum        int64  `json:"sum"`
	Tax        int64  `json:"tax"`
	TaxRate    int    `json:"tax_rate"`
	Method     int    `json:"method"`
	Object     int    `json:"object"`
	Department int    `json:"department"`
	Marking    string `json:"marking,omitempty"`   // the code bytes as bound (FF67h) or sent as 1162
	RateName   string `json:"rate_name,omitempty"` // the rate the row meant when printed
	// FFD 1.2 marked goods: 2106 as the bound check found it, 2003, 2108 and
	// 1291's 1293/1294, and the line's 1260.
	MarkingCheck  int                 `json:"marking_check,omitempty"`
	PlannedStatus int                 `json:"planned_status,omitempty"`
	Measure       int                 `json:"measure,omitempty"`
	FractionNum   int64               `json:"fraction_num,omitempty"`
	FractionDen   int64               `json:"fraction_den,omitempty"`
	Industry      []IndustryRequisite `json:"industry,omitempty"`
}

// Document types in the FN.
const (
	DocRegistration = 1
	DocShiftOpen    = 2
	DocReceipt      = 3
	DocShiftClose   = 5
	DocCorrection   = 31 // кассовый чек коррекции
)

// Document is one FN document.
type Document struct {
	FD        uint32         `json:"fd"`
	FP        uint32         `json:"fp"`
	Type      int            `json:"type"`
	Time      time.Time      `json:"time"`
	Shift     int            `json:"shift"`
	Number    int            `json:"number,omitempty"`    // receipt number in the shift
	Operation int            `json:"operation,omitempty"` // receipts: 1 sale, 2 sale return, 3 purchase, 4 purchase return
	Total     int64          `json:"total,omitempty"`
	Items     []Item         `json:"items,omitempty"`
	Payments  [16]int64      `json:"payments"`
	Change    int64          `json:"change,omitempty"`
	TaxSystem int            `json:"tax_system,omitempty"`
	Tags      map[int]string `json:"tags,omitempty"`
	SentToOFD bool           `json:"sent_to_ofd"`
}

type openReceipt struct {
	Type  int            `json:"type"` // 0..3 as in 8Dh
	Items []Item         `json:"items"`
	Tags  map[int]string `json:"tags,omitempty"`
	// Correction: begun with FF35h and given lines (FFD 1.2); FF45h closes
	// it as a correction receipt.
	Correction bool `json:"correction,omitempty"`
}

type state struct {
	ShiftOpen     bool         `json:"shift_open"`
	Shift         int          `json:"shift"`
	ShiftOpened   time.Time    `json:"shift_opened"`
	ShiftReceipts int          `json:"shift_receipts"`
	Docs          []Document   `json:"docs"`
	Receipt       *openReceipt `json:"receipt,omitempty"`
	ShiftBegin    *shiftBegin  `json:"shift_begin,omitempty"`
	Correction    *openReceipt `json:"correction,omitempty"` // begun with FF35h: the tags sent since
	Cash          int64        `json:"cash"`
	DevDoc        int          `json:"dev_doc"`
	Paper         int          `json:"paper"` // submode: 0, 1, 2, 3
	PaperBack     time.Time    `json:"paper_back"`
	// FFD 1.2 marking: the check awaiting FF69h, the accepted codes, and what
	// FF4Dh/FF67h sent for the next line. The FN keeps them across power cuts.
	MarkCheck *markCheck  `json:"mark_check,omitempty"`
	MarkSaved []markCheck `json:"mark_saved,omitempty"`
	Line      *lineTags   `json:"line,omitempty"`
}

// Sim is a simulated device. One device: connections share its state.
type Sim struct {
	opt Options

	mu        sync.Mutex
	st        state
	faults    []Fault
	deadUntil time.Time
	busyUntil time.Time
	tape      strings.Builder
	fired     []string
	rnd       *rand.Rand
	commands  int
	saved     []byte          // the state as last written to StatePath
	blocks    map[byte][]byte // DDh data blocks (device RAM: lost on restart)
	archive   [][]byte        // FF3Ah: the TLVs of the document being read back
	verdicts  map[string]MarkingVerdict
}

// New creates a simulator, loading StatePath when it exists.
func New(opt Options) (*Sim, error) {
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.FNNumber == "" {
		opt.FNNumber = "9999078902012345"
	}
	if opt.RegNumber == "" {
		opt.RegNumber = "0000000001012345"
	}
	if opt.INN == "" {
		opt.INN = "7701234567"
	}
	if opt.Serial == 0 {
		opt.Serial = 12345678
	}
	if opt.Location == nil {
		opt.Location = time.Local
	}
	if opt.VATMode == 0 {
		opt.VATMode = 1
	}
	s := &Sim{opt: opt, rnd: rand.New(rand.NewPCG(1, 2))}
	if opt.StatePath != "" {
		b, err := os.ReadFile(opt.StatePath)
		switch {
		case err == nil:
			if err := json.Unmarshal(b, &s.st); err != nil {
				return nil, fmt.Errorf("shtrihsim: state %s: %w", opt.StatePath, err)
			}
			s.saved = b
		case !errors.Is(err, os.ErrNotExist):
			return nil, fmt.Errorf("shtrihsim: %w", err)
		}
	}
	if len(s.st.Docs) == 0 {
		now := opt.Now()
		s.st.Docs = append(s.st.Docs, Document{FD: 1, Type: DocRegistration, Time: now, FP: s.fp(1, 0, now), SentToOFD: true})
		if err := s.save(); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Inject queues a fault.
func (s *Sim) Inject(f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f.Count <= 0 {
		f.Count = 1
	}
	s.faults = append(s.faults, f)
}

// ClearFaults drops faults not yet fired.
func (s *Sim) ClearFaults() {
	s.mu.Lock()
	s.faults = nil
	s.mu.Unlock()
}

// Fired lists the faults that fired, as "kind@command".
func (s *Sim) Fired() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.fired...)
}

// Commands is the number of command frames executed.
func (s *Sim) Commands() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.commands
}

// SetPaper takes the paper out (passive paper-out) or puts it back.
func (s *Sim) SetPaper(present bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case !present && s.st.Paper == 0:
		s.st.Paper = 1
	case present && s.st.Paper == 1:
		s.st.Paper = 0
	case present && s.st.Paper == 2:
		s.st.Paper = 3
	}
}

// Documents returns a copy of the FN journal.
func (s *Sim) Documents() []Document {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Document, len(s.st.Docs))
	copy(out, s.st.Docs)
	return out
}

// Snapshot is the device state tests check.
type Snapshot struct {
	ShiftOpen   bool
	Shift       int
	ReceiptOpen bool
	Cash        int64
	LastFD      uint32
	Mode        int
	Submode     int
}

func (s *Sim) Snapshot() Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Snapshot{ShiftOpen: s.st.ShiftOpen, Shift: s.st.Shift, ReceiptOpen: s.st.Receipt != nil, Cash: s.st.Cash,
		LastFD: s.lastFD(), Mode: int(s.mode() & 0x0F), Submode: int(s.submode())}
}

// Tape is the paper tape printed so far (since this Sim was created).
func (s *Sim) Tape() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tape.String()
}

func (s *Sim) now() time.Time { return s.opt.Now().In(s.opt.Location) }

// local is t on the device's clock.
func (s *Sim) local(t time.Time) time.Time { return t.In(s.opt.Location) }

func (s *Sim) lastFD() uint32 { return s.st.Docs[len(s.st.Docs)-1].FD }

func (s *Sim) fp(fd uint32, total int64, t time.Time) uint32 {
	h := fnv.New32a()
	fmt.Fprintf(h, "%s/%d/%d/%d", s.opt.FNNumber, fd, total, t.Unix())
	return h.Sum32()
}

// save writes the state when it differs from what the file holds: most commands
// (every status read) change nothing, and an atomic rewrite with fsync costs
// about 1.5 ms, far more than encoding the state to compare.
func (s *Sim) save() error {
	if s.opt.StatePath == "" {
		return nil
	}
	b, err := json.Marshal(&s.st)
	if err != nil {
		return err
	}
	if bytes.Equal(b, s.saved) {
		return nil
	}
	if err := atomicfile.Write(s.opt.StatePath, b, 0o600); err != nil {
		return fmt.Errorf("shtrihsim: save: %w", err)
	}
	s.saved = b
	return nil
}

func (s *Sim) print(lines ...string) {
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	s.tape.WriteString(b.String())
	if s.opt.TapePath != "" {
		if f, err := os.OpenFile(s.opt.TapePath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644); err == nil {
			_, _ = f.WriteString(b.String())
			_ = f.Close()
		}
	}
}

// ServeTCP serves connections from ln until ctx ends.
func (s *Sim) ServeTCP(ctx context.Context, ln net.Listener) error {
	go func() {
		<-ctx.Done()
		_ = ln.Close()
	}()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetNoDelay(true)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Closed as soon as the peer goes: a host that connects per command
			// would otherwise leave a socket in CLOSE-WAIT for every command.
			defer c.Close()
			_ = s.Serve(ctx, c)
		}()
	}
}

// Serve speaks the protocol over rw (a PTY master, a connection) until ctx ends or
// rw fails. When rw is an io.Closer it is closed when ctx ends. Each Serve is one
// link with its own held reply: on TCP every connection is one.
func (s *Sim) Serve(ctx context.Context, rw io.ReadWriter) error {
	if c, ok := rw.(io.Closer); ok {
		stop := context.AfterFunc(ctx, func() { _ = c.Close() })
		defer stop()
	}
	cn := &conn{s: s, r: bufio.NewReader(rw), w: rw}
	err := cn.loop(ctx)
	if ctx.Err() != nil {
		return nil
	}
	return err
}

type conn struct {
	s       *Sim
	r       *bufio.Reader
	w       io.Writer
	pending []byte        // this link's reply frame, held until the host ACKs it
	owed    time.Duration // wire time of bytes received and not yet slept
	over    time.Duration // how much earlier sleeps overshot (timer slack), paid back
}

// wire accrues the time n bytes take on the line at the emulated speed.
func (c *conn) wire(n int) {
	if c.s.opt.Baud > 0 {
		c.owed += time.Duration(n) * 10 * time.Second / time.Duration(c.s.opt.Baud)
	}
}

// pay sleeps the accrued wire time in one go, correcting for timer overshoot so the
// emulated line is as fast as the real one overall, not slower by the OS's timer slack.
func (c *conn) pay() {
	want := c.owed - c.over
	c.owed = 0
	if want <= 0 {
		c.over = -want
		return
	}
	start := time.Now()
	time.Sleep(want)
	c.over = time.Since(start) - want
}

func (c *conn) write(b []byte) error {
	c.wire(len(b))
	c.pay()
	_, err := c.w.Write(b)
	return err
}

// ctl is a control byte as the device sends it: TCP/RNDIS models put a stray
// 0xFF before it (Options.StrayFF).
func (c *conn) ctl(b byte) []byte {
	if c.s.opt.StrayFF {
		return []byte{0xFF, b}
	}
	return []byte{b}
}

func (c *conn) control(b byte) error { return c.write(c.ctl(b)) }

func (c *conn) loop(ctx context.Context) error {
	for {
		b, err := c.r.ReadByte()
		if err != nil {
			return err
		}
		c.wire(1)
		s := c.s
		s.mu.Lock()
		dead := time.Now().Before(s.deadUntil)
		s.mu.Unlock()
		switch b {
		case shtrih.ENQ:
			if dead {
				continue
			}
			if c.pending == nil {
				err = c.control(shtrih.NAK)
			} else {
				// ACK and the held reply in one write, as one answer.
				err = c.write(append(c.ctl(shtrih.ACK), c.pending...))
			}
		case shtrih.ACK:
			c.pending = nil
		case shtrih.STX:
			err = c.frame(ctx, dead)
		}
		if err != nil {
			return err
		}
	}
}

func (c *conn) frame(ctx context.Context, dead bool) error {
	s := c.s
	n, err := c.r.ReadByte()
	if err != nil {
		return err
	}
	buf := make([]byte, int(n)+1)
	if _, err := io.ReadFull(c.r, buf); err != nil {
		return err
	}
	c.wire(len(buf) + 1)
	if dead {
		return nil
	}
	body := buf[:n]
	if shtrih.LRC(body) != buf[n] || n == 0 {
		return c.control(shtrih.NAK)
	}
	cmd, params, err := shtrih.SplitCommand(body)
	if err != nil {
		return c.control(shtrih.NAK)
	}
	s.mu.Lock()
	f := s.takeFault(cmd)
	s.mu.Unlock()
	if f.Kind == NAK {
		return c.control(shtrih.NAK)
	}
	if f.Kind != 0 {
		// A faulty exchange shows its parts apart: the ACK first, then
		// whatever happens to the reply.
		if err := c.control(shtrih.ACK); err != nil {
			return err
		}
	}
	c.pending = nil
	s.mu.Lock()
	reply := s.execute(cmd, params, f)
	if f.Kind == PowerCutAfterClose {
		s.deadUntil = time.Now().Add(f.Delay)
		s.print("~~~~~~~~ power cut ~~~~~~~~")
		s.mu.Unlock()
		return nil
	}
	frame := shtrih.Frame(reply)
	c.pending = frame
	s.mu.Unlock()
	switch f.Kind {
	case DropReply:
		return nil
	case DelayReply:
		t := time.NewTimer(f.Delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	case Garbage:
		g := make([]byte, 1+s.rnd.IntN(12))
		for i := range g {
			// Noise never forms a control byte, so the frame check is what catches it.
			for g[i] = byte(s.rnd.IntN(256)); g[i] == shtrih.STX || g[i] == shtrih.ACK || g[i] == shtrih.NAK || g[i] == shtrih.ENQ; g[i] = byte(s.rnd.IntN(256)) {
			}
		}
		if err := c.write(g); err != nil {
			return err
		}
	case CorruptReply:
		bad := append([]byte(nil), frame...)
		bad[len(bad)-1] ^= 0x5A
		return c.write(bad)
	case 0:
		// On a fault-free exchange the ACK and the reply leave in one write
		// after the command has run, so a host that reads the answer with one
		// recv() gets all of it.
		return c.write(append(c.ctl(shtrih.ACK), frame...))
	}
	return c.write(frame)
}

// takeFault returns the fault that fires for cmd, if any.
func (s *Sim) takeFault(cmd uint16) Fault {
	for i := range s.faults {
		f := &s.faults[i]
		if f.Command != 0 && f.Command != cmd {
			continue
		}
		if f.After > 0 {
			f.After--
			continue
		}
		fired := *f
		f.Count--
		if f.Count <= 0 {
			s.faults = append(s.faults[:i], s.faults[i+1:]...)
		}
		s.fired = append(s.fired, fmt.Sprintf("%s@%X", fired.Kind, cmd))
		return fired
	}
	return Fault{}
}

// mode is the device mode byte.
func (s *Sim) mode() byte {
	switch {
	case s.st.Receipt != nil:
		return shtrih.ModeDocumentOpen | byte(s.st.Receipt.Type)<<4
	case s.st.ShiftOpen && s.now().Sub(s.st.ShiftOpened) >= 24*time.Hour:
		return shtrih.ModeShiftExpired
	case s.st.ShiftOpen:
		return shtrih.ModeShiftOpen
	}
	return shtrih.ModeShiftClosed
}

func (s *Sim) submode() byte {
	if s.st.Paper == 2 && !s.st.PaperBack.IsZero() && !time.Now().Before(s.st.PaperBack) {
		s.st.Paper = 3
	}
	if s.st.Paper != 0 {
		return byte(s.st.Paper)
	}
	if time.Now().Before(s.busyUntil) {
		return shtrih.SubmodePrinting
	}
	return 0
}

// printable is 0 when the device can print now, else the error code.
func (s *Sim) printable() byte {
	switch s.submode() {
	case 1, 2:
		return shtrih.ErrCodeNoPaper
	case 3:
		return shtrih.ErrCodeWaitContinue
	case 5:
		return shtrih.ErrCodeStillPrinting
	}
	return 0
}

func (s *Sim) printed() {
	if s.opt.PrintTime > 0 {
		s.busyUntil = time.Now().Add(s.opt.PrintTime)
	}
}
