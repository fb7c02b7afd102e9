package main

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"kassa-agent/device"
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
