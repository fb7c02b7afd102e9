//go:build !linux

package ptytest

import (
	"errors"
	"os"
	"runtime"
	"testing"
	"time"
)

// Device is the device side of a simulated serial port (Linux only).
type Device struct{}

const reason = "ptytest: serial tests need Linux pseudo-terminals; this is " + runtime.GOOS

// Create fails: simulated serial devices need Linux pseudo-terminals.
func Create(link string) (*Device, error) { return nil, errors.New(reason) }

// New skips the test: pseudo-terminal serial tests run on Linux only.
func New(tb testing.TB) *Device { tb.Helper(); tb.Skip(reason); return nil }

// NewAt skips the test: pseudo-terminal serial tests run on Linux only.
func NewAt(tb testing.TB, link string) *Device { tb.Helper(); tb.Skip(reason); return nil }

// Path is unused off Linux.
func (d *Device) Path() string { return "" }

// SlavePath is unused off Linux.
func (d *Device) SlavePath() string { return "" }

// Master is unused off Linux.
func (d *Device) Master() *os.File { return nil }

// Write is unused off Linux.
func (d *Device) Write(p []byte) (int, error) { return 0, os.ErrInvalid }

// Read is unused off Linux.
func (d *Device) Read(p []byte) (int, error) { return 0, os.ErrInvalid }

// ReadFull is unused off Linux.
func (d *Device) ReadFull(p []byte, timeout time.Duration) error { return os.ErrInvalid }

// Unplug is unused off Linux.
func (d *Device) Unplug() {}

// Replug is unused off Linux.
func (d *Device) Replug() {}

// Close is unused off Linux.
func (d *Device) Close() {}
