package shtrihsim

import (
	"context"
	"fmt"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"
)

// ServePTY creates a pseudo-terminal, serves the protocol on its master side and
// returns the path of the slave (e.g. /dev/pts/7) for the serial driver to open, as a
// demo does to exercise the real serial path. It stops when ctx ends.
func (s *Sim) ServePTY(ctx context.Context) (string, error) {
	master, slave, err := pty.Open()
	if err != nil {
		return "", fmt.Errorf("shtrihsim: pty: %w", err)
	}
	// Raw mode: no echo, no CR/LF translation, every byte as sent.
	t, err := unix.IoctlGetTermios(int(slave.Fd()), unix.TCGETS)
	if err == nil {
		t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
		t.Oflag &^= unix.OPOST
		t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
		t.Cflag &^= unix.CSIZE | unix.PARENB
		t.Cflag |= unix.CS8
		t.Cc[unix.VMIN], t.Cc[unix.VTIME] = 1, 0
		err = unix.IoctlSetTermios(int(slave.Fd()), unix.TCSETS, t)
	}
	if err != nil {
		_ = master.Close()
		_ = slave.Close()
		return "", fmt.Errorf("shtrihsim: pty raw mode: %w", err)
	}
	go func() {
		// The slave stays open here so the master does not see EIO between the
		// driver's closes and reopens.
		defer slave.Close()
		_ = s.Serve(ctx, master)
	}()
	return slave.Name(), nil
}
