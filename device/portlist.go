package device

import (
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"text/tabwriter"
)

// ConfiguredDevice is a device from the agent's config, by role.
type ConfiguredDevice struct {
	Role   string // "scanner", "fiscal", ...
	Config PortConfig
}

// PortListing is what `kassa-agent ports` shows: the ports present and, for
// each configured device, which port it would open.
type PortListing struct {
	Ports   []ListedPort   `json:"ports"`
	Devices []DeviceStatus `json:"devices"`
}

// ListedPort is one present port and the configured devices that match it.
type ListedPort struct {
	Name         string   `json:"name"`
	USB          bool     `json:"usb"`
	VID          string   `json:"vid,omitempty"`
	PID          string   `json:"pid,omitempty"`
	SerialNumber string   `json:"serial_number,omitempty"`
	Manufacturer string   `json:"manufacturer,omitempty"`
	Product      string   `json:"product,omitempty"`
	Devices      []string `json:"devices,omitempty"`
}

// DeviceStatus says where a configured device was found.
type DeviceStatus struct {
	Role    string   `json:"role"`
	Want    string   `json:"want"`            // the configured name or USB match
	Ports   []string `json:"ports,omitempty"` // present ports that match
	Problem string   `json:"problem,omitempty"`
}

// ListPorts enumerates the ports (nil enum: the system's) and matches the
// configured devices against them.
func ListPorts(enum Enumerator, devices []ConfiguredDevice) (PortListing, error) {
	if enum == nil {
		enum = SystemEnumerator{}
	}
	ports, err := enum.Ports()
	if err != nil {
		return PortListing{}, fmt.Errorf("list serial ports: %w", err)
	}
	return BuildPortListing(ports, devices, filepath.EvalSymlinks), nil
}

// BuildPortListing matches devices against ports. resolve turns a configured
// name such as /dev/serial/by-id/... into the port it points to (nil: names
// are compared as given).
func BuildPortListing(ports []PortInfo, devices []ConfiguredDevice, resolve func(string) (string, error)) PortListing {
	l := PortListing{Ports: make([]ListedPort, 0, len(ports)), Devices: make([]DeviceStatus, 0, len(devices))}
	for _, p := range ports {
		l.Ports = append(l.Ports, ListedPort{
			Name: p.Name, USB: p.IsUSB, VID: p.VID, PID: p.PID,
			SerialNumber: p.SerialNumber, Manufacturer: p.Manufacturer, Product: p.Product,
		})
	}
	for _, d := range devices {
		st := DeviceStatus{Role: d.Role, Want: d.Config.Label()}
		if err := d.Config.Validate(); err != nil {
			st.Problem = "bad config: " + err.Error()
			l.Devices = append(l.Devices, st)
			continue
		}
		for i, p := range ports {
			if deviceMatches(d.Config, p, resolve) {
				st.Ports = append(st.Ports, p.Name)
				l.Ports[i].Devices = append(l.Ports[i].Devices, d.Role)
			}
		}
		switch {
		case len(st.Ports) == 0 && d.Config.Name != "":
			st.Problem = "not present"
		case len(st.Ports) == 0:
			st.Problem = "no USB device matches"
		case len(st.Ports) > 1:
			st.Problem = "matches more than one port; set serial or port"
		}
		l.Devices = append(l.Devices, st)
	}
	return l
}

func deviceMatches(c PortConfig, p PortInfo, resolve func(string) (string, error)) bool {
	if c.Name == "" {
		return matchUSB(c, p)
	}
	if sameName(c.Name, p.Name) {
		return true
	}
	if resolve != nil {
		if r, err := resolve(c.Name); err == nil && sameName(r, p.Name) {
			return true
		}
	}
	return false
}

// sameName compares port names; COM names are case-insensitive.
func sameName(a, b string) bool {
	if a == b {
		return true
	}
	return !strings.ContainsAny(a, `/\`) && strings.EqualFold(a, b)
}

// WriteText renders the listing for a terminal.
func (l PortListing) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if len(l.Ports) == 0 {
		fmt.Fprintln(tw, "no serial ports found")
	} else {
		fmt.Fprintln(tw, "PORT\tUSB ID\tSERIAL\tPRODUCT\tDEVICE")
		for _, p := range l.Ports {
			id := "-"
			if p.USB {
				id = p.VID + ":" + p.PID
			}
			product := strings.TrimSpace(p.Manufacturer + " " + p.Product)
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", p.Name, id, dash(p.SerialNumber), dash(product), dash(strings.Join(p.Devices, ",")))
		}
	}
	if len(l.Devices) > 0 {
		fmt.Fprintln(tw)
		fmt.Fprintln(tw, "CONFIGURED\tWANTS\tFOUND")
		for _, d := range l.Devices {
			found := strings.Join(d.Ports, ", ")
			switch {
			case d.Problem != "" && found != "":
				found += " (" + d.Problem + ")"
			case d.Problem != "":
				found = "✗ " + d.Problem
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\n", d.Role, d.Want, found)
		}
	}
	return tw.Flush()
}

// WriteJSON renders the listing as indented JSON.
func (l PortListing) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(l)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
