//go:build unix

package device

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// portLock is an flock on the device node, held while the port is open.
// Drivers set TIOCEXCL, but the kernel does not enforce it for root (the
// agent often runs as root), and tarm does not set it at all; the lock keeps
// two agents, or two opens in one agent, off the same device.
type portLock struct{ fd int }

func lockPort(name string) (*portLock, error) {
	fd, err := unix.Open(name, unix.O_RDONLY|unix.O_NOCTTY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		if kind := classifyOSError(err); kind != nil {
			return nil, fmt.Errorf("open %s: %w: %w", name, kind, err)
		}
		return nil, fmt.Errorf("open %s: %w", name, err)
	}
	if err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		unix.Close(fd)
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("open %s: %w (another process or port holds it)", name, ErrBusy)
		}
		return nil, fmt.Errorf("lock %s: %w", name, err)
	}
	return &portLock{fd: fd}, nil
}

func (l *portLock) release() {
	if l != nil && l.fd >= 0 {
		unix.Close(l.fd) // closing the last descriptor drops the flock
		l.fd = -1
	}
}

func classifyOSError(err error) error {
	switch {
	case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ENXIO), errors.Is(err, unix.ENODEV), errors.Is(err, unix.EIO):
		// ENXIO/ENODEV/EIO: the node is left over from a device that is gone.
		return ErrNotFound
	case errors.Is(err, unix.EBUSY), errors.Is(err, unix.EWOULDBLOCK):
		return ErrBusy
	case errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM):
		return ErrPermission
	}
	return nil
}
