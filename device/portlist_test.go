package device_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"kassa-agent/device"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

func fakePorts() []device.PortInfo {
	return []device.PortInfo{
		{Name: "/dev/ttyACM0", IsUSB: true, VID: "1EAB", PID: "0D10", SerialNumber: "NLS-7731", Manufacturer: "Newland", Product: "Auto-ID Scanner"},
		{Name: "/dev/ttyACM1", IsUSB: true, VID: "1EAB", PID: "0D10", SerialNumber: "NLS-9900", Manufacturer: "Newland", Product: "Auto-ID Scanner"},
		{Name: "/dev/ttyS0"},
		{Name: "/dev/ttyUSB0", IsUSB: true, VID: "0403", PID: "6001", SerialNumber: "A10KZ3", Manufacturer: "FTDI", Product: "FT232R USB UART"},
	}
}

var fakeLinks = map[string]string{"/dev/serial/by-id/usb-FTDI_FT232R_USB_UART_A10KZ3-if00-port0": "/dev/ttyUSB0"}

func fakeResolve(name string) (string, error) {
	if r, ok := fakeLinks[name]; ok {
		return r, nil
	}
	return "", os.ErrNotExist
}

func configured() []device.ConfiguredDevice {
	return []device.ConfiguredDevice{
		{Role: "scanner", Config: device.PortConfig{VID: "1eab", PID: "0d10", Serial: "NLS-7731"}},
		{Role: "fiscal", Config: device.PortConfig{Name: "/dev/serial/by-id/usb-FTDI_FT232R_USB_UART_A10KZ3-if00-port0", Baud: 115200}},
		{Role: "scanner2", Config: device.PortConfig{VID: "1EAB", PID: "0D10"}},
		{Role: "display", Config: device.PortConfig{Name: "/dev/ttyACM7"}},
		{Role: "printer", Config: device.PortConfig{Name: "/dev/ttyS0", Driver: "serialx"}},
	}
}

func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs:\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

func TestPortsGolden(t *testing.T) {
	l := device.BuildPortListing(fakePorts(), configured(), fakeResolve)
	var text, js bytes.Buffer
	if err := l.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	if err := l.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	checkGolden(t, "ports.txt.golden", text.Bytes())
	checkGolden(t, "ports.json.golden", js.Bytes())

	var back device.PortListing
	if err := json.Unmarshal(js.Bytes(), &back); err != nil {
		t.Fatalf("JSON does not parse back: %v", err)
	}
}

func TestPortsGoldenEmpty(t *testing.T) {
	var text, js bytes.Buffer
	enum := device.EnumeratorFunc(func() ([]device.PortInfo, error) { return nil, nil })
	l, err := device.ListPorts(enum, nil)
	if err != nil {
		t.Fatal(err)
	}
	l.WriteText(&text)
	l.WriteJSON(&js)
	checkGolden(t, "ports_empty.txt.golden", text.Bytes())
	checkGolden(t, "ports_empty.json.golden", js.Bytes())
}

func TestListPortsUsesEnumerator(t *testing.T) {
	calls := 0
	enum := device.EnumeratorFunc(func() ([]device.PortInfo, error) { calls++; return fakePorts(), nil })
	l, err := device.ListPorts(enum, configured()[:1])
	if err != nil || calls != 1 {
		t.Fatalf("err %v, calls %d", err, calls)
	}
	if len(l.Ports) != 4 || len(l.Devices) != 1 || len(l.Devices[0].Ports) != 1 || l.Devices[0].Ports[0] != "/dev/ttyACM0" {
		t.Fatalf("listing %+v", l)
	}
	boom := errors.New("setupapi failed")
	if _, err := device.ListPorts(device.EnumeratorFunc(func() ([]device.PortInfo, error) { return nil, boom }), nil); !errors.Is(err, boom) {
		t.Fatalf("enumerator error lost: %v", err)
	}
}

func TestResolveAmbiguousUSB(t *testing.T) {
	enum := device.EnumeratorFunc(func() ([]device.PortInfo, error) { return fakePorts(), nil })
	_, err := device.Resolve(device.PortConfig{VID: "1EAB", PID: "0D10", Enumerator: enum})
	if err == nil || errors.Is(err, device.ErrNotFound) {
		t.Fatalf("two matching scanners: %v, want an ambiguity error", err)
	}
	name, err := device.Resolve(device.PortConfig{VID: "1EAB", PID: "0D10", Serial: "NLS-9900", Enumerator: enum})
	if err != nil || name != "/dev/ttyACM1" {
		t.Fatalf("by serial: %q %v", name, err)
	}
}

// TestSystemEnumerator runs the real enumerator: it must not fail on this
// machine, and every port it lists must have a name.
func TestSystemEnumerator(t *testing.T) {
	ports, err := device.SystemEnumerator{}.Ports()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ports {
		if p.Name == "" || (p.IsUSB && (p.VID == "" || p.PID == "")) {
			t.Errorf("bad port %+v", p)
		}
	}
	t.Logf("%d ports", len(ports))
}
