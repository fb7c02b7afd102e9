//go:build !linux

package device

import (
	"strings"

	"go.bug.st/serial/enumerator"
)

func systemPorts() ([]PortInfo, error) {
	list, err := enumerator.GetDetailedPortsList()
	if err != nil {
		return nil, err
	}
	out := make([]PortInfo, 0, len(list))
	for _, d := range list {
		if d == nil || d.Name == "" {
			continue
		}
		out = append(out, PortInfo{
			Name:         d.Name,
			IsUSB:        d.IsUSB,
			VID:          strings.ToUpper(d.VID),
			PID:          strings.ToUpper(d.PID),
			SerialNumber: d.SerialNumber,
			Manufacturer: d.Manufacturer,
			Product:      d.Product,
		})
	}
	return out, nil
}
