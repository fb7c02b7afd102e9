package device

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	tarm "github.com/tarm/serial"
)

// tarmPoll is the read timeout tarm/serial is opened with. tarm fixes the
// timeout at open (on Linux as VTIME, in 0.1 s steps) and a blocked Read can
// hold up Close, so the wrapper never lets a caller's Read reach tarm
// directly: one goroutine reads in tarmPoll slices and hands chunks over,
// and the caller's timeout, Close and unplug are served from that hand-over.
const tarmPoll = 100 * time.Millisecond

// tarmFastEOFs is how many zero-byte reads in a row, each returning well before
// tarmPoll, mean the line hung up. On Linux tarm reports a timeout as
// (0, io.EOF) - the same answer as a hung-up tty, except that a hung-up tty
// answers at once.
const tarmFastEOFs = 3

type tarmChunk struct {
	data []byte
	gen  uint64
}

type tarmPort struct {
	name string
	sp   *tarm.Port
	lock *portLock

	chunks   chan tarmChunk
	closing  chan struct{}
	pumpDone chan struct{}
	pumpErr  error // set before pumpDone closes

	gen     atomic.Uint64 // bumped by ResetInputBuffer
	closed  atomic.Bool
	closeMu sync.Mutex

	// Reader side; a Port has one reader at a time.
	timeout time.Duration
	pending []byte
	timer   *time.Timer
}

func openTarm(name string, cfg PortConfig) (Port, error) {
	lock, err := lockPort(name)
	if err != nil {
		return nil, err
	}
	c := &tarm.Config{Name: name, Baud: cfg.Baud, ReadTimeout: tarmPoll, Size: byte(cfg.DataBits)}
	switch strings.ToLower(cfg.Parity) {
	case "odd":
		c.Parity = tarm.ParityOdd
	case "even":
		c.Parity = tarm.ParityEven
	default:
		c.Parity = tarm.ParityNone
	}
	c.StopBits = tarm.Stop1
	if cfg.StopBits == 2 {
		c.StopBits = tarm.Stop2
	}
	sp, err := tarm.OpenPort(c)
	if err != nil {
		lock.release()
		return nil, openError(name, err)
	}
	t := &tarmPort{
		name:     name,
		sp:       sp,
		lock:     lock,
		chunks:   make(chan tarmChunk),
		closing:  make(chan struct{}),
		pumpDone: make(chan struct{}),
		timeout:  NoTimeout,
		timer:    time.NewTimer(time.Hour),
	}
	t.timer.Stop()
	go t.pump()
	return t, nil
}

func (t *tarmPort) pump() {
	defer close(t.pumpDone)
	buf := make([]byte, 4096)
	fast := 0
	for {
		start := time.Now()
		n, err := t.sp.Read(buf)
		select {
		case <-t.closing:
			return
		default:
		}
		if n > 0 {
			fast = 0
			c := tarmChunk{data: append([]byte(nil), buf[:n]...), gen: t.gen.Load()}
			select {
			case t.chunks <- c:
			case <-t.closing:
				return
			}
		}
		switch {
		case err == nil:
			continue // a Windows timeout is (0, nil)
		case errors.Is(err, io.EOF) && n == 0:
			if time.Since(start) >= tarmPoll/2 {
				fast = 0
				continue // a genuine VTIME timeout
			}
			if fast++; fast < tarmFastEOFs {
				continue
			}
			err = errors.New("line hung up (zero-byte reads without waiting)")
		case errors.Is(err, io.EOF):
			continue
		}
		t.pumpErr = err
		return
	}
}

func (t *tarmPort) Read(p []byte) (int, error) {
	if t.closed.Load() {
		return 0, portError("read", t.name, ErrClosed, nil)
	}
	if len(p) == 0 {
		return 0, nil
	}
	if len(t.pending) > 0 {
		n := copy(p, t.pending)
		t.pending = t.pending[n:]
		return n, nil
	}
	var expired <-chan time.Time
	switch {
	case t.timeout == 0:
		select {
		case c := <-t.chunks:
			return t.take(p, c)
		default:
			return t.doneOrNothing()
		}
	case t.timeout > 0:
		t.timer.Reset(t.timeout)
		defer t.timer.Stop()
		expired = t.timer.C
	}
	for {
		select {
		case c := <-t.chunks:
			if n, err := t.take(p, c); n > 0 || err != nil {
				return n, err
			}
			// a chunk read before ResetInputBuffer: keep waiting
		case <-t.pumpDone:
			return t.doneOrNothing()
		case <-t.closing:
			return 0, portError("read", t.name, ErrClosed, nil)
		case <-expired:
			return 0, nil
		}
	}
}

func (t *tarmPort) take(p []byte, c tarmChunk) (int, error) {
	if c.gen != t.gen.Load() {
		return 0, nil
	}
	n := copy(p, c.data)
	t.pending = c.data[n:]
	return n, nil
}

func (t *tarmPort) doneOrNothing() (int, error) {
	select {
	case <-t.pumpDone:
		if t.closed.Load() {
			return 0, portError("read", t.name, ErrClosed, nil)
		}
		return 0, portError("read", t.name, ErrUnplugged, t.pumpErr)
	default:
		return 0, nil
	}
}

func (t *tarmPort) Write(p []byte) (int, error) {
	if t.closed.Load() {
		return 0, portError("write", t.name, ErrClosed, nil)
	}
	n, err := t.sp.Write(p)
	if err != nil {
		if t.closed.Load() {
			return n, portError("write", t.name, ErrClosed, nil)
		}
		return n, portError("write", t.name, ErrUnplugged, err)
	}
	return n, nil
}

func (t *tarmPort) SetReadTimeout(d time.Duration) error {
	if d < 0 {
		d = NoTimeout
	}
	t.timeout = d
	return nil
}

// ResetInputBuffer drops what the wrapper holds and what the OS holds. tarm's
// Flush also discards output not yet sent; callers reset before writing a
// request, so nothing of theirs is pending then.
func (t *tarmPort) ResetInputBuffer() error {
	if t.closed.Load() {
		return portError("reset input", t.name, ErrClosed, nil)
	}
	t.pending = nil
	t.gen.Add(1)
	if err := t.sp.Flush(); err != nil {
		return portError("reset input", t.name, ErrUnplugged, err)
	}
	return nil
}

// Close never waits on tarm's Read: it stops the reading goroutine (which
// returns within tarmPoll), and only then closes the tarm port; if even that
// hangs (seen on Windows drivers), Close gives up waiting after a second and
// leaves the goroutine to finish on its own.
func (t *tarmPort) Close() error {
	t.closeMu.Lock()
	defer t.closeMu.Unlock()
	if t.closed.Swap(true) {
		return nil
	}
	close(t.closing)
	done := make(chan error, 1)
	go func() {
		select {
		case <-t.pumpDone:
		case <-time.After(2 * tarmPoll):
		}
		done <- t.sp.Close()
	}()
	var err error
	select {
	case err = <-done:
	case <-time.After(time.Second):
		err = errors.New("driver did not close within 1s")
	}
	t.lock.release()
	if err != nil {
		return fmt.Errorf("close %s: %w", t.name, err)
	}
	return nil
}
