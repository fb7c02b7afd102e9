package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"kassa-agent/agent/internal/config"
	"kassa-agent/device"
)

func cmdPorts(args []string, out, errOut io.Writer) int {
	fs := flags("ports", errOut)
	path := configFlag(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	if !noArgs(fs, errOut) {
		return exitUsage
	}
	devices, err := portsConfig(*path, flagSet(fs, "config"))
	if err != nil {
		return fail(errOut, err)
	}
	if devices == nil {
		fmt.Fprintf(errOut, "no configuration at %s: listing the ports only\n", *path)
	}
	l, err := device.ListPorts(device.SystemEnumerator{}, devices)
	if err != nil {
		return fail(errOut, err)
	}
	if *asJSON {
		err = l.WriteJSON(out)
	} else {
		err = l.WriteText(out)
	}
	if err != nil {
		return fail(errOut, err)
	}
	return exitOK
}

// portsConfig returns the configured serial devices. A technician often lists
// ports before writing any config, so a missing default file is no error (nil
// devices); a file named with --config must load.
func portsConfig(path string, explicit bool) ([]device.ConfiguredDevice, error) {
	cfg, err := config.Load(path)
	if err != nil {
		if !explicit && errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	return configuredDevices(cfg), nil
}

// configuredDevices are the serial devices of cfg, by role. A register on TCP
// has no serial port and is left out.
func configuredDevices(cfg config.Config) []device.ConfiguredDevice {
	devs := []device.ConfiguredDevice{}
	if cfg.Scanner.Enabled {
		devs = append(devs, device.ConfiguredDevice{Role: "scanner", Config: portConfig(cfg.Scanner.Port)})
	}
	if cfg.Register.Enabled && cfg.Register.Transport != "tcp" {
		devs = append(devs, device.ConfiguredDevice{Role: "register", Config: portConfig(cfg.Register.Port)})
	}
	return devs
}

func portConfig(p config.Port) device.PortConfig {
	return device.PortConfig{Driver: p.Driver, Name: p.Port, VID: p.VID, PID: p.PID, Serial: p.Serial, Baud: p.Baud}
}

// flagSet reports whether the flag was given on the command line.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == name {
			set = true
		}
	})
	return set
}
