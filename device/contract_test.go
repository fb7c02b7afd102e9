package device_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"kassa-agent/device"
	"kassa-agent/device/ptytest"
)

var drivers = []string{device.DriverBugst, device.DriverTarm}

// forEachDriver runs the same contract against every driver over a fresh PTY.
func forEachDriver(t *testing.T, f func(t *testing.T, dev *ptytest.Device, p device.Port, cfg device.PortConfig)) {
	for _, drv := range drivers {
		t.Run(drv, func(t *testing.T) {
			t.Parallel()
			dev := ptytest.New(t)
			cfg := device.PortConfig{Driver: drv, Name: dev.Path(), Baud: 115200}
			p, err := device.Open(cfg)
			if err != nil {
				t.Fatalf("open: %v", err)
			}
			t.Cleanup(func() { p.Close() })
			f(t, dev, p, cfg)
		})
	}
}

func allBytes(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i * 7) // every value 0..255, including NUL, XON/XOFF, CR, LF, ^C, DEL
	}
	return b
}

func readN(t *testing.T, p device.Port, n int, within time.Duration) []byte {
	t.Helper()
	if err := p.SetReadTimeout(50 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 0, n)
	buf := make([]byte, 4096)
	deadline := time.Now().Add(within)
	for len(got) < n && time.Now().Before(deadline) {
		k, err := p.Read(buf[:min(len(buf), n-len(got))])
		if err != nil {
			t.Fatalf("read after %d bytes: %v", len(got), err)
		}
		got = append(got, buf[:k]...)
	}
	return got
}

func TestContractDeviceToPortByteExact(t *testing.T) {
	forEachDriver(t, func(t *testing.T, dev *ptytest.Device, p device.Port, _ device.PortConfig) {
		want := allBytes(3000) // below the tty input buffer, no flow control to rely on
		if _, err := dev.Write(want); err != nil {
			t.Fatal(err)
		}
		got := readN(t, p, len(want), 3*time.Second)
		if !bytes.Equal(got, want) {
			t.Fatalf("got %d bytes, want %d; first difference at %d", len(got), len(want), firstDiff(got, want))
		}
	})
}

func TestContractPortToDeviceByteExact(t *testing.T) {
	forEachDriver(t, func(t *testing.T, dev *ptytest.Device, p device.Port, _ device.PortConfig) {
		want := allBytes(20000)
		errc := make(chan error, 1)
		go func() {
			_, err := p.Write(want)
			errc <- err
		}()
		got := make([]byte, len(want))
		if err := dev.ReadFull(got, 3*time.Second); err != nil {
			t.Fatal(err)
		}
		if err := <-errc; err != nil {
			t.Fatalf("write: %v", err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("first difference at %d", firstDiff(got, want))
		}
	})
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func TestContractTimeoutIsZeroNil(t *testing.T) {
	forEachDriver(t, func(t *testing.T, dev *ptytest.Device, p device.Port, _ device.PortConfig) {
		buf := make([]byte, 16)
		for _, d := range []time.Duration{30 * time.Millisecond, 250 * time.Millisecond} {
			if err := p.SetReadTimeout(d); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			n, err := p.Read(buf)
			el := time.Since(start)
			if n != 0 || err != nil {
				t.Fatalf("timeout %v: got (%d, %v), want (0, nil)", d, n, err)
			}
			// tarm alone would wait whole 100 ms steps; the wrapper keeps the caller's timeout.
			if el < d-5*time.Millisecond || el > d+60*time.Millisecond {
				t.Fatalf("timeout %v: read returned after %v", d, el)
			}
		}
		// Zero polls: returns at once.
		p.SetReadTimeout(0)
		start := time.Now()
		if n, err := p.Read(buf); n != 0 || err != nil || time.Since(start) > 20*time.Millisecond {
			t.Fatalf("poll: got (%d, %v) after %v", n, err, time.Since(start))
		}
		// Data arriving during a long timeout ends the wait at once.
		p.SetReadTimeout(5 * time.Second)
		go func() { time.Sleep(30 * time.Millisecond); dev.Write([]byte("x")) }()
		start = time.Now()
		n, err := p.Read(buf)
		if n != 1 || err != nil || buf[0] != 'x' {
			t.Fatalf("got (%d, %v)", n, err)
		}
		if el := time.Since(start); el > time.Second {
			t.Fatalf("data waited %v behind the timeout", el)
		}
	})
}

func TestContractCloseUnblocksRead(t *testing.T) {
	forEachDriver(t, func(t *testing.T, dev *ptytest.Device, p device.Port, _ device.PortConfig) {
		p.SetReadTimeout(device.NoTimeout)
		res := make(chan error, 1)
		go func() {
			_, err := p.Read(make([]byte, 8))
			res <- err
		}()
		time.Sleep(50 * time.Millisecond)
		start := time.Now()
		if err := p.Close(); err != nil {
			t.Fatalf("close: %v", err)
		}
		if el := time.Since(start); el > 500*time.Millisecond {
			t.Fatalf("close took %v", el)
		}
		select {
		case err := <-res:
			if !errors.Is(err, device.ErrClosed) || errors.Is(err, device.ErrUnplugged) {
				t.Fatalf("pending read: %v, want ErrClosed", err)
			}
		case <-time.After(time.Second):
			t.Fatal("read still blocked 1s after Close")
		}
		if _, err := p.Read(make([]byte, 1)); !errors.Is(err, device.ErrClosed) {
			t.Fatalf("read after close: %v", err)
		}
		if _, err := p.Write([]byte("x")); !errors.Is(err, device.ErrClosed) {
			t.Fatalf("write after close: %v", err)
		}
		if err := p.Close(); err != nil {
			t.Fatalf("second close: %v", err)
		}
	})
}

func TestContractUnplugIsDistinctError(t *testing.T) {
	forEachDriver(t, func(t *testing.T, dev *ptytest.Device, p device.Port, _ device.PortConfig) {
		p.SetReadTimeout(2 * time.Second)
		res := make(chan error, 1)
		go func() {
			var err error
			for err == nil { // (0, nil) here would be a timeout, not the answer we want
				_, err = p.Read(make([]byte, 8))
			}
			res <- err
		}()
		time.Sleep(50 * time.Millisecond)
		start := time.Now()
		dev.Unplug()
		select {
		case err := <-res:
			if !errors.Is(err, device.ErrUnplugged) || errors.Is(err, device.ErrClosed) {
				t.Fatalf("read after unplug: %v, want ErrUnplugged", err)
			}
			if el := time.Since(start); el > time.Second {
				t.Fatalf("unplug noticed after %v", el)
			}
		case <-time.After(3 * time.Second):
			t.Fatal("read did not report the unplug")
		}
		if _, err := p.Read(make([]byte, 8)); !errors.Is(err, device.ErrUnplugged) {
			t.Fatalf("second read after unplug: %v", err)
		}
		if _, err := p.Write([]byte("x")); !errors.Is(err, device.ErrUnplugged) {
			t.Fatalf("write after unplug: %v", err)
		}
		if err := p.Close(); err != nil {
			t.Fatalf("close after unplug: %v", err)
		}
	})
}

func TestContractResetInputBuffer(t *testing.T) {
	forEachDriver(t, func(t *testing.T, dev *ptytest.Device, p device.Port, _ device.PortConfig) {
		dev.Write([]byte("stale reply"))
		time.Sleep(200 * time.Millisecond) // let it reach the port (and tarm's reader goroutine)
		if err := p.ResetInputBuffer(); err != nil {
			t.Fatal(err)
		}
		dev.Write([]byte("fresh"))
		got := readN(t, p, 5, time.Second)
		if string(got) != "fresh" {
			t.Fatalf("after reset read %q, want %q", got, "fresh")
		}
	})
}

func TestContractExclusiveOpen(t *testing.T) {
	forEachDriver(t, func(t *testing.T, dev *ptytest.Device, p device.Port, cfg device.PortConfig) {
		for _, drv := range drivers {
			c := cfg
			c.Driver = drv
			if q, err := device.Open(c); !errors.Is(err, device.ErrBusy) {
				if q != nil {
					q.Close()
				}
				t.Fatalf("second open with %s: %v, want ErrBusy (uid %d)", drv, err, os.Getuid())
			}
		}
		p.Close()
		q, err := device.Open(cfg)
		if err != nil {
			t.Fatalf("open after close: %v", err)
		}
		q.Close()
	})
}

func TestContractOpenMissing(t *testing.T) {
	for _, drv := range drivers {
		_, err := device.Open(device.PortConfig{Driver: drv, Name: t.TempDir() + "/ttyNOPE"})
		if !errors.Is(err, device.ErrNotFound) {
			t.Errorf("%s: open missing port: %v, want ErrNotFound", drv, err)
		}
	}
	dev := ptytest.New(t)
	dev.Unplug()
	if _, err := device.Open(device.PortConfig{Name: dev.SlavePath()}); err == nil {
		t.Error("opened the slave of an unplugged pty")
	}
}

func TestOpenByUSBMatch(t *testing.T) {
	dev := ptytest.New(t)
	enum := device.EnumeratorFunc(func() ([]device.PortInfo, error) {
		return []device.PortInfo{
			{Name: "/dev/ttyS0"},
			{Name: dev.Path(), IsUSB: true, VID: "1EAB", PID: "0D10", SerialNumber: "S1"},
		}, nil
	})
	for _, drv := range drivers {
		p, err := device.Open(device.PortConfig{Driver: drv, VID: "1eab", PID: "0x0d10", Serial: "S1", Enumerator: enum})
		if err != nil {
			t.Fatalf("%s: %v", drv, err)
		}
		dev.Write([]byte("hi"))
		if got := readN(t, p, 2, time.Second); string(got) != "hi" {
			t.Fatalf("%s: read %q", drv, got)
		}
		p.Close()
	}
	_, err := device.Open(device.PortConfig{VID: "1EAB", PID: "0D10", Serial: "S2", Enumerator: enum})
	if !errors.Is(err, device.ErrNotFound) {
		t.Fatalf("wrong serial: %v, want ErrNotFound", err)
	}
}

func TestConfigValidate(t *testing.T) {
	bad := []device.PortConfig{
		{},
		{VID: "1EAB"},
		{Name: "/dev/x", Driver: "ftdi"},
		{VID: "1EAB0", PID: "0D10"},
		{VID: "XYZW", PID: "0D10"},
		{Name: "/dev/x", Parity: "mark"},
		{Name: "/dev/x", StopBits: 3},
		{Name: "/dev/x", DataBits: 9},
	}
	for _, c := range bad {
		if err := c.Validate(); err == nil {
			t.Errorf("%+v: accepted", c)
		}
		if _, err := device.Open(c); err == nil {
			t.Errorf("%+v: opened", c)
		}
	}
	good := []device.PortConfig{{Name: "COM3"}, {VID: "0x1eab", PID: "0d10", Driver: "tarm", Parity: "Even", StopBits: 2}}
	for _, c := range good {
		if err := c.Validate(); err != nil {
			t.Errorf("%+v: %v", c, err)
		}
	}
	_ = fmt.Sprint()
}

// TestContractCloseReleases: when Close returns - also a second, concurrent
// Close - the port can be opened again at once.
func TestContractCloseReleases(t *testing.T) {
	forEachDriver(t, func(t *testing.T, dev *ptytest.Device, p device.Port, cfg device.PortConfig) {
		p.SetReadTimeout(device.NoTimeout)
		go p.Read(make([]byte, 1))
		time.Sleep(10 * time.Millisecond)
		var wg [2]chan struct{}
		for i := range wg {
			wg[i] = make(chan struct{})
			go func() { p.Close(); close(wg[i]) }()
		}
		for i := range wg {
			<-wg[i]
			q, err := device.Open(cfg)
			if err != nil {
				t.Fatalf("open right after Close %d returned: %v", i, err)
			}
			q.Close()
		}
	})
}
