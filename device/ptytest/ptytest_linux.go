//go:build linux

package ptytest

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Device is the device side of a simulated serial port. Code under test opens
// Path(); the test talks to it with Write and Read.
type Device struct {
	tb   testing.TB
	link string

	mu      sync.Mutex
	master  *os.File
	slave   string
	plugged bool
}

// New creates a PTY pair behind a symlink in a fresh temporary directory and
// closes it when the test ends. It skips the test when PTYs are unavailable.
func New(tb testing.TB) *Device {
	tb.Helper()
	return NewAt(tb, filepath.Join(tb.TempDir(), "ttyKASSA0"))
}

// NewAt is New with a chosen symlink path (the directory must exist).
func NewAt(tb testing.TB, link string) *Device {
	tb.Helper()
	if _, err := os.Stat("/dev/ptmx"); err != nil {
		tb.Skipf("ptytest: no /dev/ptmx on this system (%v); serial tests need Linux pseudo-terminals", err)
	}
	d := &Device{tb: tb, link: link}
	if err := d.plug(); err != nil {
		tb.Skipf("ptytest: cannot create a pseudo-terminal: %v", err)
	}
	tb.Cleanup(d.Close)
	return d
}

// Create makes a PTY-backed device behind link for programs rather than tests
// (the demo's simulated scanner and register). The caller closes it.
func Create(link string) (*Device, error) {
	if _, err := os.Stat("/dev/ptmx"); err != nil {
		return nil, fmt.Errorf("ptytest: no /dev/ptmx on this system: %w", err)
	}
	d := &Device{link: link}
	if err := d.plug(); err != nil {
		return nil, err
	}
	return d, nil
}

func (d *Device) helper() {
	if d.tb != nil {
		d.tb.Helper()
	}
}

func (d *Device) fail(fatal bool, format string, a ...any) {
	switch {
	case d.tb == nil:
	case fatal:
		d.tb.Fatalf(format, a...)
	default:
		d.tb.Errorf(format, a...)
	}
}

// Path is the symlink the code under test opens, stable across re-plugs.
func (d *Device) Path() string { return d.link }

// SlavePath is the /dev/pts/N node the symlink currently points to.
func (d *Device) SlavePath() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.slave
}

// Master returns the current device-side file (nil while unplugged).
func (d *Device) Master() *os.File {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.master
}

// Write sends bytes as the device would (they arrive at the port's Read).
func (d *Device) Write(p []byte) (int, error) {
	m := d.Master()
	if m == nil {
		return 0, fmt.Errorf("ptytest: write while unplugged")
	}
	return m.Write(p)
}

// Read receives what the code under test wrote to the port. Read honours
// SetReadDeadline on Master(); it fails once the device is unplugged.
func (d *Device) Read(p []byte) (int, error) {
	m := d.Master()
	if m == nil {
		return 0, fmt.Errorf("ptytest: read while unplugged")
	}
	return m.Read(p)
}

// ReadFull reads exactly len(p) bytes or fails after timeout.
func (d *Device) ReadFull(p []byte, timeout time.Duration) error {
	m := d.Master()
	if m == nil {
		return fmt.Errorf("ptytest: read while unplugged")
	}
	if err := m.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	defer m.SetReadDeadline(time.Time{})
	for got := 0; got < len(p); {
		n, err := m.Read(p[got:])
		got += n
		if err != nil {
			return fmt.Errorf("ptytest: read %d of %d bytes: %w", got, len(p), err)
		}
	}
	return nil
}

// Unplug makes the device go away: the master closes (the port's pending and
// later reads fail with EIO, as a USB CDC port does) and the symlink is
// removed, as udev removes /dev/serial/by-id links.
func (d *Device) Unplug() {
	d.helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.plugged {
		return
	}
	d.plugged = false
	if err := d.master.Close(); err != nil {
		d.fail(false, "ptytest: close master: %v", err)
	}
	d.master = nil
	if err := os.Remove(d.link); err != nil && !os.IsNotExist(err) {
		d.fail(false, "ptytest: remove link: %v", err)
	}
}

// Replug plugs a new device in under the same symlink name: a fresh PTY pair
// (usually a different /dev/pts/N, as a re-plugged USB port may get another
// ttyACM index or COM number).
func (d *Device) Replug() {
	d.helper()
	d.Unplug()
	if err := d.plug(); err != nil {
		d.fail(true, "ptytest: replug: %v", err)
	}
}

// Close unplugs the device for good.
func (d *Device) Close() { d.Unplug() }

func (d *Device) plug() error {
	// A re-plugged device should come back under another node, as a USB
	// scanner may return as ttyACM1 or COM4; the kernel hands out the
	// lowest free pts number, so hold that one while taking the next.
	prev := d.slave
	for range 4 {
		fd, slave, err := openPair()
		if err != nil {
			return err
		}
		if slave == prev {
			defer unix.Close(fd)
			continue
		}
		return d.install(fd, slave)
	}
	return fmt.Errorf("ptytest: kernel keeps handing out %s", prev)
}

func openPair() (int, string, error) {
	fd, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, "", fmt.Errorf("open /dev/ptmx: %w", err)
	}
	fail := func(err error) error { unix.Close(fd); return err }
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		return -1, "", fail(fmt.Errorf("TIOCGPTN: %w", err))
	}
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		return -1, "", fail(fmt.Errorf("unlock pty: %w", err))
	}
	slave := "/dev/pts/" + strconv.Itoa(n)
	// A fresh pty line is in cooked mode with echo; a real serial device
	// line is not. Make it raw now so bytes the device sends before the code
	// under test opens the port are neither echoed nor translated.
	sfd, err := unix.Open(slave, unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, "", fail(fmt.Errorf("open %s: %w", slave, err))
	}
	t, err := unix.IoctlGetTermios(sfd, unix.TCGETS)
	if err == nil {
		t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON | unix.IXOFF
		t.Oflag &^= unix.OPOST
		t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
		t.Cflag &^= unix.CSIZE | unix.PARENB
		t.Cflag |= unix.CS8
		t.Cc[unix.VMIN] = 1
		t.Cc[unix.VTIME] = 0
		err = unix.IoctlSetTermios(sfd, unix.TCSETS, t)
	}
	unix.Close(sfd)
	if err != nil {
		return -1, "", fail(fmt.Errorf("make %s raw: %w", slave, err))
	}
	return fd, slave, nil
}

func (d *Device) install(fd int, slave string) error {
	// The fd is non-blocking, so os.NewFile registers it with the poller:
	// Close then interrupts a pending Read and read deadlines work.
	master := os.NewFile(uintptr(fd), "/dev/ptmx")

	tmp := d.link + ".new"
	os.Remove(tmp)
	if err := os.Symlink(slave, tmp); err != nil {
		master.Close()
		return fmt.Errorf("symlink: %w", err)
	}
	if err := os.Rename(tmp, d.link); err != nil {
		master.Close()
		return fmt.Errorf("symlink: %w", err)
	}
	d.mu.Lock()
	d.master, d.slave, d.plugged = master, slave, true
	d.mu.Unlock()
	return nil
}
