package main

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"kassa-agent/device"
	"kassa-agent/fiscal/shtrih"
)

// reopeningPort is the register's serial link. It opens the port on first use
// and, after the device went away, on the next use again — finding it anew, since
// a re-plugged USB register may come back under another name. The driver's own
// retries (ENQ first) then recover any reply lost in between.
type reopeningPort struct {
	cfg     device.PortConfig
	mu      sync.Mutex
	p       device.Port
	timeout time.Duration
}

func newReopeningPort(cfg device.PortConfig) *reopeningPort {
	return &reopeningPort{cfg: cfg, timeout: 100 * time.Millisecond}
}

func (r *reopeningPort) get() (device.Port, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.p != nil {
		return r.p, nil
	}
	p, err := device.Open(r.cfg)
	if err != nil {
		return nil, fmt.Errorf("register port %s: %w", r.cfg.Label(), err)
	}
	if err := p.SetReadTimeout(r.timeout); err != nil {
		_ = p.Close()
		return nil, err
	}
	r.p = p
	return p, nil
}

// drop forgets a port that failed so the next call reopens it.
func (r *reopeningPort) drop(p device.Port, err error) {
	if !errors.Is(err, device.ErrUnplugged) {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.p == p {
		_ = r.p.Close()
		r.p = nil
	}
}

func (r *reopeningPort) Read(b []byte) (int, error) {
	p, err := r.get()
	if err != nil {
		return 0, err
	}
	n, err := p.Read(b)
	r.drop(p, err)
	return n, err
}

func (r *reopeningPort) Write(b []byte) (int, error) {
	p, err := r.get()
	if err != nil {
		return 0, err
	}
	n, err := p.Write(b)
	r.drop(p, err)
	return n, err
}

func (r *reopeningPort) SetReadTimeout(d time.Duration) error {
	r.mu.Lock()
	r.timeout = d
	p := r.p
	r.mu.Unlock()
	if p == nil {
		return nil
	}
	return p.SetReadTimeout(d)
}

func (r *reopeningPort) ResetInputBuffer() error {
	p, err := r.get()
	if err != nil {
		return err
	}
	err = p.ResetInputBuffer()
	r.drop(p, err)
	return err
}

func (r *reopeningPort) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.p == nil {
		return nil
	}
	err := r.p.Close()
	r.p = nil
	return err
}

// tcpRegisterPort is a network register's link, redialled after it drops.
type tcpRegisterPort struct {
	addr    string
	mu      sync.Mutex
	c       *shtrih.TCPPort
	timeout time.Duration
}

func (t *tcpRegisterPort) get() (*shtrih.TCPPort, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.c != nil {
		return t.c, nil
	}
	c, err := shtrih.DialTCP(t.addr, 5*time.Second)
	if err != nil {
		return nil, fmt.Errorf("register at %s: %w", t.addr, err)
	}
	if t.timeout > 0 {
		_ = c.SetReadTimeout(t.timeout)
	}
	t.c = c
	return c, nil
}

func (t *tcpRegisterPort) fail(c *shtrih.TCPPort, err error) {
	var ne net.Error
	if err == nil || (errors.As(err, &ne) && ne.Timeout()) {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.c == c {
		_ = t.c.Close()
		t.c = nil
	}
}

func (t *tcpRegisterPort) Read(b []byte) (int, error) {
	c, err := t.get()
	if err != nil {
		return 0, err
	}
	n, err := c.Read(b)
	t.fail(c, err)
	return n, err
}

func (t *tcpRegisterPort) Write(b []byte) (int, error) {
	c, err := t.get()
	if err != nil {
		return 0, err
	}
	n, err := c.Write(b)
	t.fail(c, err)
	return n, err
}

func (t *tcpRegisterPort) SetReadTimeout(d time.Duration) error {
	t.mu.Lock()
	t.timeout = d
	c := t.c
	t.mu.Unlock()
	if c == nil {
		return nil
	}
	return c.SetReadTimeout(d)
}

func (t *tcpRegisterPort) ResetInputBuffer() error {
	c, err := t.get()
	if err != nil {
		return err
	}
	return c.ResetInputBuffer()
}

func (t *tcpRegisterPort) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.c == nil {
		return nil
	}
	err := t.c.Close()
	t.c = nil
	return err
}
