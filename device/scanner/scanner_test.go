package scanner_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"kassa-agent/device"
	"kassa-agent/device/ptytest"
	"kassa-agent/device/scanner"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// sink collects published codes.
type sink struct {
	mu    sync.Mutex
	codes []scanner.Code
	ch    chan scanner.Code
}

func newSink() *sink { return &sink{ch: make(chan scanner.Code, 1024)} }

func (s *sink) on(c scanner.Code) {
	s.mu.Lock()
	s.codes = append(s.codes, c)
	s.mu.Unlock()
	s.ch <- c
}

func (s *sink) next(t testing.TB, within time.Duration) scanner.Code {
	t.Helper()
	select {
	case c := <-s.ch:
		return c
	case <-time.After(within):
		t.Fatalf("no code within %v", within)
		return scanner.Code{}
	}
}

func (s *sink) tryNext(within time.Duration) (scanner.Code, bool) {
	select {
	case c := <-s.ch:
		return c, true
	case <-time.After(within):
		return scanner.Code{}, false
	}
}

func (s *sink) none(t testing.TB, within time.Duration) {
	t.Helper()
	select {
	case c := <-s.ch:
		t.Fatalf("unexpected code %+v", c)
	case <-time.After(within):
	}
}

func (s *sink) texts() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, c := range s.codes {
		out = append(out, c.Text)
	}
	return out
}

func runOnPort(t *testing.T, cfg scanner.Config, driver string) (*ptytest.Device, *sink) {
	t.Helper()
	dev := ptytest.New(t)
	out := newSink()
	sc, err := scanner.New(cfg, scanner.Options{OnCode: out.on, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	p, err := device.Open(device.PortConfig{Driver: driver, Name: dev.Path()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sc.Run(ctx, p) }()
	t.Cleanup(func() {
		cancel()
		p.Close()
		<-done
	})
	return dev, out
}

func TestScannerOverPTY(t *testing.T) {
	mark := "0104650117240408215Qbag!\x1d93Zjqw"
	for _, drv := range []string{device.DriverBugst, device.DriverTarm} {
		t.Run(drv, func(t *testing.T) {
			t.Parallel()
			dev, out := runOnPort(t, scanner.Config{Suffix: "crlf", Prefix: "]d2"}, drv)
			before := time.Now()
			dev.Write([]byte("]d2" + mark + "\r\n"))
			dev.Write([]byte("https://qr.nspk.ru/AS10003P3RH0LJ2A9ROO038L6NT5RU1M?type=01\r"))
			dev.Write([]byte("\n\x00NUL\x00\r\n"))
			for _, want := range []string{mark, "https://qr.nspk.ru/AS10003P3RH0LJ2A9ROO038L6NT5RU1M?type=01", "\x00NUL\x00"} {
				c := out.next(t, 2*time.Second)
				if c.Text != want || c.Source != scanner.SourceSerial {
					t.Fatalf("got %q from %s, want %q", c.Text, c.Source, want)
				}
				if c.At.Before(before) || time.Since(c.At) > 2*time.Second {
					t.Fatalf("code time %v outside the test", c.At)
				}
			}
		})
	}
}

func TestScannerIdleGapOverPTY(t *testing.T) {
	dev, out := runOnPort(t, scanner.Config{Suffix: "none", IdleGap: 30 * time.Millisecond}, device.DriverBugst)
	dev.Write([]byte("46"))
	time.Sleep(5 * time.Millisecond)
	dev.Write([]byte("01234\x1d"))
	start := time.Now()
	c := out.next(t, time.Second)
	if c.Text != "4601234\x1d" {
		t.Fatalf("got %q", c.Text)
	}
	if el := time.Since(start); el < 20*time.Millisecond {
		t.Fatalf("code ended after %v, before the idle gap", el)
	}
}

func TestScannerOverlongDropped(t *testing.T) {
	dev, out := runOnPort(t, scanner.Config{Suffix: "cr", MaxLength: 16}, device.DriverBugst)
	dev.Write([]byte(strings.Repeat("Z", 100) + "\rOK\r"))
	if c := out.next(t, time.Second); c.Text != "OK" {
		t.Fatalf("got %q, want the runaway dropped and OK kept", c.Text)
	}
}

func TestDoubleRead(t *testing.T) {
	dev, out := runOnPort(t, scanner.Config{Suffix: "cr", DoubleReadWindow: 300 * time.Millisecond}, device.DriverBugst)
	dev.Write([]byte("AAA\rAAA\r"))
	if c := out.next(t, time.Second); c.Text != "AAA" || c.Seq != 1 {
		t.Fatalf("got %+v", c)
	}
	out.none(t, 100*time.Millisecond) // the second AAA was a double read
	dev.Write([]byte("BBB\r"))
	if c := out.next(t, time.Second); c.Text != "BBB" || c.Seq != 2 {
		t.Fatalf("got %+v", c)
	}
	dev.Write([]byte("AAA\r")) // A B A: not a double read
	if c := out.next(t, time.Second); c.Text != "AAA" {
		t.Fatalf("got %+v", c)
	}
}

func TestInjectSharesDoubleReadFilter(t *testing.T) {
	out := newSink()
	sc, err := scanner.New(scanner.Config{DoubleReadWindow: 200 * time.Millisecond, MaxLength: 10}, scanner.Options{OnCode: out.on, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	c, ok := sc.Inject("QR1")
	if !ok || c.Source != scanner.SourceAPI || c.Seq != 1 {
		t.Fatalf("first inject: %+v %v", c, ok)
	}
	if _, ok := sc.Inject("QR1"); ok {
		t.Fatal("double read through the API published")
	}
	time.Sleep(120 * time.Millisecond)
	if _, ok := sc.Inject("QR1"); ok {
		t.Fatal("repeat within the sliding window published")
	}
	time.Sleep(250 * time.Millisecond)
	if c, ok := sc.Inject("QR1"); !ok || c.Seq != 2 {
		t.Fatalf("after the window: %+v %v", c, ok)
	}
	if _, ok := sc.Inject(""); ok {
		t.Fatal("empty code published")
	}
	if _, ok := sc.Inject("12345678901"); ok {
		t.Fatal("code over max_length published")
	}
	if got := out.texts(); strings.Join(got, ",") != "QR1,QR1" {
		t.Fatalf("published %q", got)
	}
}

func TestInjectAndSerialShareFilter(t *testing.T) {
	dev := ptytest.New(t)
	out := newSink()
	sc, err := scanner.New(scanner.Config{Port: dev.Path()}, scanner.Options{OnCode: out.on, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go sc.Supervise(ctx)
	dev.Write([]byte("SAME\r"))
	if c := out.next(t, 2*time.Second); c.Source != scanner.SourceSerial {
		t.Fatalf("got %+v", c)
	}
	if _, ok := sc.Inject("SAME"); ok {
		t.Fatal("the POS handing over the code the scanner just read was published twice")
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	on := func(scanner.Code) {}
	for _, cfg := range []scanner.Config{
		{Suffix: "tab"},
		{MaxLength: -1},
		{Port: "/dev/x", Driver: "nope"},
		{VID: "1EAB"},
	} {
		if _, err := scanner.New(cfg, scanner.Options{OnCode: on}); err == nil {
			t.Errorf("%+v accepted", cfg)
		}
	}
	if _, err := scanner.New(scanner.Config{}, scanner.Options{}); err == nil {
		t.Error("no OnCode accepted")
	}
}

// TestReplug unplugs the scanner mid-stream and plugs a new one in under the
// same name (by symlink) or the same USB ids (the port name changes). The
// loop must reconnect within 1 s of the new port appearing, and every code
// must arrive exactly once.
func TestReplug(t *testing.T) {
	for _, mode := range []string{"name", "usb", "usb-tarm", "idle-gap"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			dev := ptytest.New(t)
			cfg := scanner.Config{Port: dev.Path(), DoubleReadWindow: time.Second}
			var enum device.Enumerator
			var plugged sync.Mutex
			present := true
			switch mode {
			case "usb", "usb-tarm":
				cfg = scanner.Config{VID: "1EAB", PID: "0D10", DoubleReadWindow: time.Second}
				if mode == "usb-tarm" {
					cfg.Driver = device.DriverTarm
				}
				enum = device.EnumeratorFunc(func() ([]device.PortInfo, error) {
					plugged.Lock()
					defer plugged.Unlock()
					if !present {
						return []device.PortInfo{{Name: "/dev/ttyS0"}}, nil
					}
					// the slave path: a different /dev/pts/N after each re-plug
					return []device.PortInfo{{Name: "/dev/ttyS0"}, {Name: dev.SlavePath(), IsUSB: true, VID: "1EAB", PID: "0D10"}}, nil
				})
			case "idle-gap":
				cfg.Suffix = "none"
			}
			suffix := "\r"
			if cfg.Suffix == "none" {
				suffix = ""
			}
			out := newSink()
			states := make(chan device.State, 64)
			sc, err := scanner.New(cfg, scanner.Options{
				OnCode: out.on, Logger: quiet, Enumerator: enum,
				OnState: func(s device.State) { states <- s },
			})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- sc.Supervise(ctx) }()
			defer func() { cancel(); <-done }()

			waitConnected := func(within time.Duration) device.State {
				t.Helper()
				deadline := time.After(within)
				for {
					select {
					case s := <-states:
						if s.Connected {
							return s
						}
					case <-deadline:
						t.Fatalf("not connected within %v; state %+v", within, sc.State())
					}
				}
			}
			send := func(i int) {
				t.Helper()
				if _, err := dev.Write([]byte(fmt.Sprintf("CODE%03d%s", i, suffix))); err != nil {
					t.Fatal(err)
				}
				if suffix == "" {
					time.Sleep(80 * time.Millisecond) // the idle gap separates codes
				}
			}
			first := waitConnected(2 * time.Second)
			for i := 1; i <= 5; i++ {
				send(i)
			}
			for i := 1; i <= 5; i++ {
				out.next(t, 2*time.Second)
			}

			dev.Unplug()
			plugged.Lock()
			present = false
			plugged.Unlock()
			time.Sleep(300 * time.Millisecond) // the loop notices and starts looking
			if s := sc.State(); s.Connected || s.LastError == "" {
				t.Fatalf("after unplug: %+v", s)
			}

			dev.Replug()
			plugged.Lock()
			present = true
			plugged.Unlock()
			appeared := time.Now()
			if suffix != "" {
				// Sent before the agent has reopened: must not be lost. (Not
				// with idle-gap framing: bytes held until the open arrive
				// together with the next code and are framed as one.)
				send(6)
			}
			s := waitConnected(time.Second)
			if took := time.Since(appeared); took > time.Second {
				t.Fatalf("reconnected %v after the port appeared", took)
			} else {
				t.Logf("reconnected %v after the port appeared", took)
			}
			if s.Connects != first.Connects+1 {
				t.Fatalf("connects %d -> %d", first.Connects, s.Connects)
			}
			if mode != "name" && mode != "idle-gap" && (s.Port == first.Port || s.Port != dev.SlavePath()) {
				t.Fatalf("usb match opened %s; old port %s, new port %s", s.Port, first.Port, dev.SlavePath())
			}
			if suffix == "" {
				send(6)
			}
			for i := 7; i <= 10; i++ {
				send(i)
			}
			for i := 6; i <= 10; i++ {
				if _, ok := out.tryNext(2 * time.Second); !ok {
					t.Fatalf("code %d missing; got %q", i, out.texts())
				}
			}
			out.none(t, 150*time.Millisecond)
			var want []string
			for i := 1; i <= 10; i++ {
				want = append(want, fmt.Sprintf("CODE%03d", i))
			}
			if got := out.texts(); strings.Join(got, ",") != strings.Join(want, ",") {
				t.Fatalf("codes %q\nwant  %q", got, want)
			}
		})
	}
}
