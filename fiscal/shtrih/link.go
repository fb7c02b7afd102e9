package shtrih

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"
)

// Timeouts of the link. Production defaults follow the protocol notes; tests use
// short ones on loopback.
type Timeouts struct {
	Byte     time.Duration // between bytes of a frame, and for ACK/NAK after a frame
	ENQ      time.Duration // for the answer to ENQ
	Reply    time.Duration // for a reply to an ordinary command
	Long     time.Duration // open shift, Z/X report, close receipt (FFD 1.2: 20–30 s)
	Tries    int           // resends of a frame / ENQs
	BusyWait time.Duration // how long to wait while the device is printing (0x50, submode 5)
}

// DefaultTimeouts are for real devices.
var DefaultTimeouts = Timeouts{
	Byte:     100 * time.Millisecond,
	ENQ:      500 * time.Millisecond,
	Reply:    5 * time.Second,
	Long:     35 * time.Second,
	Tries:    10,
	BusyWait: 30 * time.Second,
}

// Stats counts link traffic; the benchmark reports it.
type Stats struct {
	RoundTrips int64 // command frames (and ENQs) sent
	BytesOut   int64
	BytesIn    int64
}

// link is the host side of protocol v1 over a Port.
type link struct {
	port   Port
	to     Timeouts
	buf    []byte
	rbuf   [512]byte
	curTO  time.Duration
	synced bool // the device has no reply pending that we have not read

	roundTrips, bytesOut, bytesIn atomic.Int64
}

// errNoLink: nothing answers at all.
var errNoLink = errors.New("shtrih: no answer from the device")

// errLostReply: the command was accepted (ACK) or may have been executed, but its
// reply could not be read. For commands that change state the outcome is unknown.
var errLostReply = errors.New("shtrih: reply lost")

func (l *link) write(b []byte) error {
	l.bytesOut.Add(int64(len(b)))
	_, err := l.port.Write(b)
	if err != nil {
		return fmt.Errorf("shtrih: write: %w", err)
	}
	return nil
}

// readByte returns the next byte within d, or ok=false on timeout.
func (l *link) readByte(ctx context.Context, d time.Duration) (byte, bool, error) {
	deadline := time.Now().Add(d)
	for len(l.buf) == 0 {
		if err := ctx.Err(); err != nil {
			return 0, false, err
		}
		left := time.Until(deadline)
		if left <= 0 {
			return 0, false, nil
		}
		// Short slices so a cancelled context is seen soon.
		if left > 200*time.Millisecond {
			left = 200 * time.Millisecond
		}
		if left != l.curTO {
			if err := l.port.SetReadTimeout(left); err != nil {
				return 0, false, fmt.Errorf("shtrih: set timeout: %w", err)
			}
			l.curTO = left
		}
		n, err := l.port.Read(l.rbuf[:])
		if err != nil {
			return 0, false, fmt.Errorf("shtrih: read: %w", err)
		}
		l.bytesIn.Add(int64(n))
		l.buf = append(l.buf, l.rbuf[:n]...)
	}
	b := l.buf[0]
	l.buf = l.buf[1:]
	return b, true, nil
}

// waitControl waits for ACK, NAK or STX, skipping anything else (the stray 0xFF of
// TCP/RNDIS models, garbage on the line).
func (l *link) waitControl(ctx context.Context, d time.Duration) (byte, bool, error) {
	deadline := time.Now().Add(d)
	for {
		b, ok, err := l.readByte(ctx, time.Until(deadline))
		if err != nil || !ok {
			return 0, false, err
		}
		switch b {
		case ACK, NAK, STX:
			return b, true, nil
		}
	}
}

// readFrameAfterSTX reads LEN, body and LRC with the byte timeout.
func (l *link) readFrameAfterSTX(ctx context.Context) ([]byte, error) {
	n, ok, err := l.readByte(ctx, l.to.Byte)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, ErrShortFrame
	}
	body := make([]byte, int(n)+1)
	for i := range body {
		b, ok, err := l.readByte(ctx, l.to.Byte)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, ErrShortFrame
		}
		body[i] = b
	}
	if LRC(body[:n]) != body[n] {
		return nil, ErrBadLRC
	}
	return body[:n], nil
}

func (l *link) resetInput() {
	l.buf = l.buf[:0]
	_ = l.port.ResetInputBuffer()
}

// enq asks the device for its state. It returns pending=nil when the device is idle
// (NAK), or the reply the device was holding (ACK + frame), which it acknowledges.
func (l *link) enq(ctx context.Context, wait time.Duration) (pending []byte, idle bool, err error) {
	l.resetInput()
	l.roundTrips.Add(1)
	if err := l.write([]byte{ENQ}); err != nil {
		return nil, false, err
	}
	b, ok, err := l.waitControl(ctx, l.to.ENQ)
	if err != nil {
		return nil, false, err
	}
	if !ok {
		return nil, false, nil
	}
	switch b {
	case NAK:
		return nil, true, nil
	case ACK:
		s, ok, err := l.waitControl(ctx, wait)
		if err != nil {
			return nil, false, err
		}
		if !ok || s != STX {
			return nil, false, nil
		}
	}
	// STX: a reply frame.
	body, err := l.readFrameAfterSTX(ctx)
	if err != nil {
		if errors.Is(err, ErrBadLRC) || errors.Is(err, ErrShortFrame) {
			_ = l.write([]byte{NAK})
			return nil, false, nil
		}
		return nil, false, err
	}
	if err := l.write([]byte{ACK}); err != nil {
		return nil, false, err
	}
	return body, false, nil
}

// sync brings the link to a known idle state, returning the last reply the device
// was holding (if any) so a lost reply can still be used.
func (l *link) sync(ctx context.Context) ([]byte, error) {
	var last []byte
	for range max(l.to.Tries, 1) * 2 {
		p, idle, err := l.enq(ctx, l.to.Reply)
		if err != nil {
			return last, err
		}
		if idle {
			l.synced = true
			return last, nil
		}
		if p != nil {
			last = p
		}
	}
	return last, errNoLink
}

// exchange sends a command and returns the reply body (CMD ERR data). replyWait is
// how long the command may take. Errors: errNoLink when the frame could not even be
// delivered (the device did not execute it), errLostReply when it may have been
// executed, or an I/O / context error.
func (l *link) exchange(ctx context.Context, cmd uint16, params []byte, replyWait time.Duration) ([]byte, error) {
	if !l.synced {
		if _, err := l.sync(ctx); err != nil {
			return nil, err
		}
	}
	frame := Frame(CommandBody(cmd, params))
	delivered := false
	for try := 0; try < max(l.to.Tries, 1); try++ {
		l.roundTrips.Add(1)
		if err := l.write(frame); err != nil {
			l.synced = false
			return nil, err
		}
		b, ok, err := l.waitControl(ctx, l.to.ENQ)
		if err != nil {
			l.synced = false
			return nil, err
		}
		if ok && b == NAK {
			continue // frame damaged on the way: resend
		}
		if !ok {
			// No answer: ask whether the device got it. A command is resent only
			// after the device says it is idle (NAK to ENQ), never on silence, so a
			// frame whose ACK was lost is not executed twice.
			l.synced = false
			p, idle, err := l.enqUntilAnswer(ctx, replyWait)
			if err != nil {
				return nil, err
			}
			switch {
			case p != nil && matchReply(p, cmd):
				return p, nil
			case idle:
				l.synced = true
				continue
			case p != nil:
				continue
			}
			if delivered {
				return nil, errLostReply
			}
			return nil, errNoLink
		}
		delivered = true
		if b == ACK {
			b, ok, err = l.waitControl(ctx, replyWait)
			if err != nil {
				l.synced = false
				return nil, err
			}
		}
		if ok && b == STX {
			body, err := l.readFrameAfterSTX(ctx)
			if err == nil && matchReply(body, cmd) {
				if err := l.write([]byte{ACK}); err != nil {
					l.synced = false
					return nil, err
				}
				l.synced = true
				return body, nil
			}
			if err == nil {
				_ = l.write([]byte{ACK}) // a stale reply to something else
			} else if errors.Is(err, ErrBadLRC) || errors.Is(err, ErrShortFrame) {
				_ = l.write([]byte{NAK})
			} else {
				l.synced = false
				return nil, err
			}
		}
		// The reply was lost, late or damaged: ask for it with ENQ.
		l.synced = false
		return l.recoverReply(ctx, cmd, replyWait)
	}
	l.synced = false
	if delivered {
		return l.recoverReply(ctx, cmd, replyWait)
	}
	return nil, errNoLink
}

// enqUntilAnswer sends ENQ until the device answers (idle, or with a held reply).
func (l *link) enqUntilAnswer(ctx context.Context, replyWait time.Duration) ([]byte, bool, error) {
	for range max(l.to.Tries, 1) {
		p, idle, err := l.enq(ctx, replyWait)
		if err != nil || p != nil || idle {
			return p, idle, err
		}
	}
	return nil, false, nil
}

// recoverReply uses ENQ to get the reply to cmd the device may still hold.
func (l *link) recoverReply(ctx context.Context, cmd uint16, replyWait time.Duration) ([]byte, error) {
	deadline := time.Now().Add(replyWait)
	for try := 0; try < max(l.to.Tries, 1) || time.Now().Before(deadline); try++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		p, idle, err := l.enq(ctx, replyWait)
		if err != nil {
			return nil, err
		}
		if p != nil && matchReply(p, cmd) {
			// Make sure nothing else is pending before the next command.
			if _, err := l.sync(ctx); err != nil {
				l.synced = false
			}
			return p, nil
		}
		if idle {
			l.synced = true
			return nil, errLostReply
		}
	}
	return nil, errLostReply
}

func matchReply(body []byte, cmd uint16) bool {
	c, _, _, err := SplitReply(body)
	return err == nil && c == cmd
}
