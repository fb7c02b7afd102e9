package shtrih

import (
	"errors"
	"net"
	"os"
	"sync"
	"time"
)

// Port is the byte link to the device. It has the semantics of the project's serial
// port (device.Port satisfies it): Read waits at most the read timeout and returns
// (0, nil) when nothing came.
type Port interface {
	Read(p []byte) (int, error)
	Write(p []byte) (int, error)
	SetReadTimeout(d time.Duration) error
	ResetInputBuffer() error
	Close() error
}

// TCPPort is a Port over TCP for network models. A broken connection is redialled on
// the next call, because network registers drop idle connections and reboot.
type TCPPort struct {
	addr    string
	dialTO  time.Duration
	mu      sync.Mutex
	conn    net.Conn
	timeout time.Duration
	closed  bool
}

// DialTCP connects to a network register (the port is often 7778 or 12345).
func DialTCP(addr string, dialTimeout time.Duration) (*TCPPort, error) {
	p := NewTCPPort(addr, dialTimeout)
	if _, err := p.get(); err != nil {
		return nil, err
	}
	return p, nil
}

// NewTCPPort is DialTCP without the first dial: the connection is made on first
// use, so a service can start while its register is still booting.
func NewTCPPort(addr string, dialTimeout time.Duration) *TCPPort {
	if dialTimeout <= 0 {
		dialTimeout = 3 * time.Second
	}
	return &TCPPort{addr: addr, dialTO: dialTimeout, timeout: 100 * time.Millisecond}
}

func (p *TCPPort) get() (net.Conn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, net.ErrClosed
	}
	if p.conn != nil {
		return p.conn, nil
	}
	c, err := net.DialTimeout("tcp", p.addr, p.dialTO)
	if err != nil {
		return nil, err
	}
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	p.conn = c
	return c, nil
}

func (p *TCPPort) drop(c net.Conn) {
	p.mu.Lock()
	if p.conn == c {
		p.conn = nil
	}
	p.mu.Unlock()
	_ = c.Close()
}

func (p *TCPPort) Read(b []byte) (int, error) {
	c, err := p.get()
	if err != nil {
		return 0, err
	}
	p.mu.Lock()
	to := p.timeout
	p.mu.Unlock()
	_ = c.SetReadDeadline(time.Now().Add(to))
	n, err := c.Read(b)
	if err != nil && n == 0 {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return 0, nil
		}
		p.drop(c)
		return 0, err
	}
	return n, nil
}

func (p *TCPPort) Write(b []byte) (int, error) {
	c, err := p.get()
	if err != nil {
		return 0, err
	}
	_ = c.SetWriteDeadline(time.Now().Add(p.dialTO))
	n, err := c.Write(b)
	if err != nil {
		p.drop(c)
	}
	return n, err
}

func (p *TCPPort) SetReadTimeout(d time.Duration) error {
	p.mu.Lock()
	p.timeout = d
	p.mu.Unlock()
	return nil
}

// ResetInputBuffer discards whatever already arrived.
func (p *TCPPort) ResetInputBuffer() error {
	c, err := p.get()
	if err != nil {
		return err
	}
	var buf [256]byte
	for {
		// A deadline already in the past would not read buffered bytes.
		_ = c.SetReadDeadline(time.Now().Add(time.Millisecond))
		n, err := c.Read(buf[:])
		if n == 0 || err != nil {
			if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
				p.drop(c)
			}
			return nil
		}
	}
}

func (p *TCPPort) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	if p.conn != nil {
		err := p.conn.Close()
		p.conn = nil
		return err
	}
	return nil
}
