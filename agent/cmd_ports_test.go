package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kassa-agent/agent/internal/config"
	"kassa-agent/device"
)

// runCmd runs a command in this process as main would.
func runCmd(args ...string) (stdout, stderr string, code int) {
	var out, errOut bytes.Buffer
	code = runCLI(args, &out, &errOut)
	return out.String(), errOut.String(), code
}

// The device package golden-tests the rendering; this checks the command
// feeds it the configured devices: the scanner, and the register only when
// it is on a serial line.
func TestPortsShowsConfiguredDevices(t *testing.T) {
	cfgPath, _ := writeConfig(t, `
[scanner]
enabled = true
port = "/dev/kassa-test-no-such-scanner"
[register]
enabled = true
transport = "serial"
port = ""
vid = "FFFE"
pid = "0001"
`)
	// Through the real binary: the command table reaches cmdPorts.
	raw, err := exec.Command(agentBin, "ports", "--json", "--config", cfgPath).Output()
	require.NoError(t, err)
	var l device.PortListing
	require.NoError(t, json.Unmarshal(raw, &l), "%s", raw)
	require.Len(t, l.Devices, 2)
	assert.Equal(t, device.DeviceStatus{Role: "scanner", Want: "/dev/kassa-test-no-such-scanner", Problem: "not present"}, l.Devices[0])
	assert.Equal(t, "register", l.Devices[1].Role)
	assert.Equal(t, "no USB device matches", l.Devices[1].Problem)
	assert.Contains(t, l.Devices[1].Want, "FFFE")

	out, errOut, code := runCmd("ports", "--config", cfgPath)
	require.Equal(t, exitOK, code, errOut)
	assert.Contains(t, out, "CONFIGURED")
	assert.Contains(t, out, "✗ not present")

	// A network register has no serial port to list.
	tcpCfg, _ := writeConfig(t, "[register]\nenabled = true\ntransport = \"tcp\"\naddress = \"127.0.0.1:7778\"\n")
	out, errOut, code = runCmd("ports", "--json", "--config", tcpCfg)
	require.Equal(t, exitOK, code, errOut)
	require.NoError(t, json.Unmarshal([]byte(out), &l))
	assert.Empty(t, l.Devices)
}

func TestPortsConfigProblems(t *testing.T) {
	// Named with --config: it must load.
	_, errOut, code := runCmd("ports", "--config", filepath.Join(t.TempDir(), "missing.toml"))
	assert.Equal(t, exitFail, code)
	assert.Contains(t, errOut, "does not exist")

	bad := filepath.Join(t.TempDir(), "config.toml")
	require.NoError(t, os.WriteFile(bad, []byte("[scanner]\nbaud = \"fast\"\n"), 0o600))
	_, errOut, code = runCmd("ports", "--config", bad)
	assert.Equal(t, exitFail, code)
	assert.Contains(t, errOut, "scanner.baud")

	_, errOut, code = runCmd("ports", "extra")
	assert.Equal(t, exitUsage, code)
	assert.Contains(t, errOut, "unexpected argument")

	// No config at the default place: the ports alone.
	if _, err := os.Stat(config.DefaultPath()); err == nil {
		t.Skipf("%s exists on this machine", config.DefaultPath())
	}
	out, errOut, code := runCmd("ports", "--json")
	require.Equal(t, exitOK, code, errOut)
	assert.Contains(t, errOut, "listing the ports only")
	var l device.PortListing
	require.NoError(t, json.Unmarshal([]byte(out), &l))
	assert.Empty(t, l.Devices)
}
