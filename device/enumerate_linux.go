//go:build linux

package device

import (
	"bufio"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// On Linux the go.bug.st enumerator decides whether a ttyS port is real by
// opening it and setting 9600 baud - which, as root (TIOCEXCL does not stop
// root), reconfigures a port the fiscal register is using at that moment. The
// supervisor enumerates every few hundred milliseconds while a USB scanner is
// unplugged, so that is not acceptable here. The same facts come from sysfs
// without touching any device: /sys/class/tty/<name>/device exists for
// hardware ports, a ttyS placeholder has type 0, and the USB ids sit in the
// USB device directory above the interface.

var sysTTY = "/sys/class/tty"

var ttyNames = regexp.MustCompile(`^(ttyS|ttyHS|ttyUSB|ttyACM|ttyAMA|rfcomm|ttyO|ttymxc)[0-9]{1,3}$`)

func systemPorts() ([]PortInfo, error) {
	entries, err := os.ReadDir(sysTTY)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	var out []PortInfo
	for _, e := range entries {
		name := e.Name()
		if !ttyNames.MatchString(name) {
			continue
		}
		dir := filepath.Join(sysTTY, name)
		dev, err := filepath.EvalSymlinks(filepath.Join(dir, "device"))
		if err != nil {
			continue // virtual tty, no hardware behind it
		}
		if strings.HasPrefix(name, "ttyS") || strings.HasPrefix(name, "ttyHS") {
			if t := readSys(filepath.Join(dir, "type")); t == "" || t == "0" {
				continue // placeholder for a UART that is not there
			}
		}
		info := PortInfo{Name: "/dev/" + name}
		if usb := usbDeviceDir(dev); usb != "" {
			info.IsUSB = true
			info.VID = strings.ToUpper(readSys(filepath.Join(usb, "idVendor")))
			info.PID = strings.ToUpper(readSys(filepath.Join(usb, "idProduct")))
			info.SerialNumber = readSys(filepath.Join(usb, "serial"))
			info.Manufacturer = readSys(filepath.Join(usb, "manufacturer"))
			info.Product = readSys(filepath.Join(usb, "product"))
		}
		out = append(out, info)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// usbDeviceDir walks up from the tty's device (a USB interface, or a
// usb-serial port below one) to the USB device that has idVendor.
func usbDeviceDir(dev string) string {
	for d, i := dev, 0; i < 4 && d != "/" && d != "."; d, i = filepath.Dir(d), i+1 {
		if _, err := os.Stat(filepath.Join(d, "idVendor")); err == nil {
			return d
		}
	}
	return ""
}

func readSys(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	line, _, _ := bufio.NewReader(f).ReadLine()
	return strings.TrimSpace(string(line))
}
