package device

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Port is an open serial link. All drivers behave the same way:
//
//   - Read waits at most the read timeout for at least one byte. On timeout it
//     returns (0, nil), never io.EOF. A timeout of 0 polls (returns at once);
//     NoTimeout waits until data, Close or unplug.
//   - Any non-timeout failure after open is reported as ErrUnplugged (the
//     device went away), so callers never guess from driver-specific errors.
//   - Close unblocks a pending Read, which then returns ErrClosed; Read and
//     Write after Close return ErrClosed; a second Close returns nil.
//
// One goroutine at a time may use Read, SetReadTimeout and
// ResetInputBuffer; Write and Close may be called from any goroutine.
//
// A timeout-based read loop must not be wrapped in bufio.Scanner: (0, nil)
// is a normal answer.
type Port interface {
	Read(p []byte) (int, error)
	Write(p []byte) (int, error)
	SetReadTimeout(d time.Duration) error
	ResetInputBuffer() error
	Close() error
}

// NoTimeout passed to SetReadTimeout makes Read wait without limit.
const NoTimeout time.Duration = -1

var (
	// ErrUnplugged means the device went away: any non-timeout I/O error after
	// a successful open. The port must be closed and the device found again.
	ErrUnplugged = errors.New("serial device went away")
	// ErrClosed is returned by operations on a port after Close.
	ErrClosed = errors.New("serial port closed")
	// ErrNotFound means no port with that name, or no USB device matching the
	// configured VID/PID/serial number, is present.
	ErrNotFound = errors.New("serial port not found")
	// ErrBusy means another program (or another open in this one) holds the port.
	ErrBusy = errors.New("serial port busy")
	// ErrPermission means the OS refused access (on Linux: the dialout group).
	ErrPermission = errors.New("serial port permission denied")
)

// Driver names accepted in PortConfig.Driver.
const (
	DriverBugst = "bugst" // go.bug.st/serial, the default
	DriverTarm  = "tarm"  // github.com/tarm/serial, opt-in for field cases
)

// PortConfig says which device to open and how. It maps onto a device's
// section in the agent config (driver, port, vid, pid, serial, baud, ...).
type PortConfig struct {
	// Driver is DriverBugst ("" means the same) or DriverTarm.
	Driver string
	// Name is a port name: /dev/ttyACM0, /dev/serial/by-id/..., COM3.
	// When empty, the port is found by VID/PID/Serial.
	Name string
	// VID and PID are 4-digit hex USB ids (case-insensitive, "0x" allowed).
	VID, PID string
	// Serial optionally narrows the USB match to one device's serial number.
	Serial string
	// Baud defaults to 9600.
	Baud int
	// DataBits defaults to 8.
	DataBits int
	// Parity is "none" (default), "odd" or "even".
	Parity string
	// StopBits is 1 (default) or 2.
	StopBits int

	// Enumerator finds USB devices; nil means the system's (SystemEnumerator).
	// Tests inject their own.
	Enumerator Enumerator
}

// Label is a short human description of the configured device for logs and
// listings: the port name, or the USB match.
func (c PortConfig) Label() string {
	if c.Name != "" {
		return c.Name
	}
	if c.VID == "" && c.PID == "" {
		return "(no port configured)"
	}
	s := "usb " + normHex(c.VID) + ":" + normHex(c.PID)
	if c.Serial != "" {
		s += " serial " + c.Serial
	}
	return s
}

func (c PortConfig) withDefaults() PortConfig {
	if c.Driver == "" {
		c.Driver = DriverBugst
	}
	if c.Baud == 0 {
		c.Baud = 9600
	}
	if c.DataBits == 0 {
		c.DataBits = 8
	}
	if c.Parity == "" {
		c.Parity = "none"
	}
	if c.StopBits == 0 {
		c.StopBits = 1
	}
	return c
}

// Validate reports a configuration that can never open.
func (c PortConfig) Validate() error {
	c = c.withDefaults()
	switch c.Driver {
	case DriverBugst, DriverTarm:
	default:
		return fmt.Errorf("serial driver %q: want %q or %q", c.Driver, DriverBugst, DriverTarm)
	}
	if c.Name == "" && (c.VID == "" || c.PID == "") {
		return errors.New("serial device: set port, or both vid and pid")
	}
	for _, h := range []string{c.VID, c.PID} {
		if h != "" && !isHex4(normHex(h)) {
			return fmt.Errorf("usb id %q: want 4 hex digits", h)
		}
	}
	if c.Baud < 0 {
		return fmt.Errorf("baud %d: must be positive", c.Baud)
	}
	if c.DataBits < 5 || c.DataBits > 8 {
		return fmt.Errorf("data bits %d: want 5..8", c.DataBits)
	}
	switch strings.ToLower(c.Parity) {
	case "none", "odd", "even":
	default:
		return fmt.Errorf("parity %q: want none, odd or even", c.Parity)
	}
	if c.StopBits != 1 && c.StopBits != 2 {
		return fmt.Errorf("stop bits %d: want 1 or 2", c.StopBits)
	}
	return nil
}

// Open finds the configured device and opens it with the configured driver.
// With Name empty the port is found by USB VID/PID/Serial through the
// enumerator. Errors wrap ErrNotFound, ErrBusy or ErrPermission where they
// apply.
func Open(cfg PortConfig) (Port, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	name, err := Resolve(cfg)
	if err != nil {
		return nil, err
	}
	return openName(name, cfg)
}

func openName(name string, cfg PortConfig) (Port, error) {
	if cfg.Driver == DriverTarm {
		return openTarm(name, cfg)
	}
	return openBugst(name, cfg)
}

// Resolve returns the port name Open would use for cfg: Name as given, or the
// name of the one enumerated USB port matching VID/PID/Serial.
func Resolve(cfg PortConfig) (string, error) {
	if cfg.Name != "" {
		return cfg.Name, nil
	}
	enum := cfg.Enumerator
	if enum == nil {
		enum = SystemEnumerator{}
	}
	ports, err := enum.Ports()
	if err != nil {
		return "", fmt.Errorf("list serial ports: %w", err)
	}
	var found []string
	for _, p := range ports {
		if matchUSB(cfg, p) {
			found = append(found, p.Name)
		}
	}
	switch len(found) {
	case 0:
		return "", fmt.Errorf("%s: %w", cfg.Label(), ErrNotFound)
	case 1:
		return found[0], nil
	default:
		// Two identical scanners without a serial number: picking one at
		// random would make the till behave differently after each re-plug.
		return "", fmt.Errorf("%s matches %d ports (%s); set serial or port", cfg.Label(), len(found), strings.Join(found, ", "))
	}
}

func matchUSB(cfg PortConfig, p PortInfo) bool {
	if !p.IsUSB || cfg.VID == "" || cfg.PID == "" {
		return false
	}
	if normHex(p.VID) != normHex(cfg.VID) || normHex(p.PID) != normHex(cfg.PID) {
		return false
	}
	return cfg.Serial == "" || p.SerialNumber == cfg.Serial
}

func normHex(s string) string {
	s = strings.ToUpper(strings.TrimSpace(s))
	s = strings.TrimPrefix(s, "0X")
	return s
}

func isHex4(s string) bool {
	if len(s) != 4 {
		return false
	}
	for _, r := range s {
		if !(r >= '0' && r <= '9' || r >= 'A' && r <= 'F') {
			return false
		}
	}
	return true
}

// portError builds the error for a failed operation on an open port.
func portError(op, name string, kind, cause error) error {
	if cause == nil {
		return fmt.Errorf("%s %s: %w", op, name, kind)
	}
	return fmt.Errorf("%s %s: %w: %w", op, name, kind, cause)
}
