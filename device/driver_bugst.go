package device

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.bug.st/serial"
)

// bugstPort wraps go.bug.st/serial. The library already returns (0, nil) on a
// read timeout and unblocks a pending Read on Close; the wrapper adds the
// exclusive-open lock (TIOCEXCL is not enforced for root) and turns the
// library's errors into ErrClosed / ErrUnplugged.
type bugstPort struct {
	name   string
	p      serial.Port
	lock   *portLock
	closed atomic.Bool
	// closeMu makes a second Close wait until the first has released the
	// port, so "Close returned" always means "free to reopen".
	closeMu sync.Mutex
}

func openBugst(name string, cfg PortConfig) (Port, error) {
	lock, err := lockPort(name)
	if err != nil {
		return nil, err
	}
	mode := &serial.Mode{
		BaudRate: cfg.Baud,
		DataBits: cfg.DataBits,
		Parity:   serial.NoParity,
		StopBits: serial.OneStopBit,
		// InitialStatusBits stays nil: setting DTR/RTS needs modem-line
		// ioctls, which pseudo-terminals (and some USB CDC stacks) reject.
	}
	switch strings.ToLower(cfg.Parity) {
	case "odd":
		mode.Parity = serial.OddParity
	case "even":
		mode.Parity = serial.EvenParity
	}
	if cfg.StopBits == 2 {
		mode.StopBits = serial.TwoStopBits
	}
	p, err := serial.Open(name, mode)
	if err != nil {
		lock.release()
		return nil, openError(name, err)
	}
	return &bugstPort{name: name, p: p, lock: lock}, nil
}

func (b *bugstPort) Read(p []byte) (int, error) {
	if b.closed.Load() {
		return 0, portError("read", b.name, ErrClosed, nil)
	}
	if len(p) == 0 {
		return 0, nil
	}
	n, err := b.p.Read(p)
	if err != nil {
		return n, b.ioError("read", err)
	}
	return n, nil
}

func (b *bugstPort) Write(p []byte) (int, error) {
	if b.closed.Load() {
		return 0, portError("write", b.name, ErrClosed, nil)
	}
	n, err := b.p.Write(p)
	if err != nil {
		return n, b.ioError("write", err)
	}
	return n, nil
}

func (b *bugstPort) ioError(op string, err error) error {
	if b.closed.Load() {
		return portError(op, b.name, ErrClosed, nil)
	}
	return portError(op, b.name, ErrUnplugged, err)
}

func (b *bugstPort) SetReadTimeout(d time.Duration) error {
	if d < 0 {
		d = serial.NoTimeout
	}
	return b.p.SetReadTimeout(d)
}

func (b *bugstPort) ResetInputBuffer() error {
	if b.closed.Load() {
		return portError("reset input", b.name, ErrClosed, nil)
	}
	if err := b.p.ResetInputBuffer(); err != nil {
		return b.ioError("reset input", err)
	}
	return nil
}

func (b *bugstPort) Close() error {
	b.closeMu.Lock()
	defer b.closeMu.Unlock()
	if b.closed.Swap(true) {
		return nil
	}
	err := b.p.Close()
	b.lock.release()
	if err != nil {
		return fmt.Errorf("close %s: %w", b.name, err)
	}
	return nil
}

// openError classifies an open failure of either driver.
func openError(name string, err error) error {
	var pe *serial.PortError
	if errors.As(err, &pe) {
		switch pe.Code() {
		case serial.PortBusy:
			return fmt.Errorf("open %s: %w", name, ErrBusy)
		case serial.PortNotFound:
			return fmt.Errorf("open %s: %w", name, ErrNotFound)
		case serial.PermissionDenied:
			return fmt.Errorf("open %s: %w", name, ErrPermission)
		}
	}
	if kind := classifyOSError(err); kind != nil {
		return fmt.Errorf("open %s: %w: %w", name, kind, err)
	}
	return fmt.Errorf("open %s: %w", name, err)
}
