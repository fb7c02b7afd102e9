package device

// PortInfo describes one serial port present on the system.
type PortInfo struct {
	Name         string // /dev/ttyACM0, COM3
	IsUSB        bool
	VID, PID     string // upper-case hex, "" when not USB
	SerialNumber string
	Manufacturer string
	Product      string
}

// Enumerator lists the serial ports present now.
type Enumerator interface {
	Ports() ([]PortInfo, error)
}

// EnumeratorFunc adapts a function to Enumerator.
type EnumeratorFunc func() ([]PortInfo, error)

// Ports calls f.
func (f EnumeratorFunc) Ports() ([]PortInfo, error) { return f() }

// SystemEnumerator lists the system's serial ports: through
// go.bug.st/serial/enumerator on Windows and macOS; on Linux by reading sysfs
// directly (see enumerate_linux.go for why).
type SystemEnumerator struct{}

// Ports lists the ports present now.
func (SystemEnumerator) Ports() ([]PortInfo, error) { return systemPorts() }
