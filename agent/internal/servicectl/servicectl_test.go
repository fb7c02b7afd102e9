package servicectl

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func unitValues(unit string) map[string][]string {
	m := map[string][]string{}
	section := ""
	for _, l := range strings.Split(unit, "\n") {
		l = strings.TrimSpace(l)
		if strings.HasPrefix(l, "[") {
			section = strings.Trim(l, "[]")
			continue
		}
		if strings.HasPrefix(l, "#") {
			continue
		}
		if k, v, ok := strings.Cut(l, "="); ok {
			m[section+"."+k] = append(m[section+"."+k], v)
		}
	}
	return m
}

func TestSystemdUnit(t *testing.T) {
	cfg := Config("/etc/kassa-agent/config.toml")
	unit, err := Unit{Exe: "/usr/local/bin/kassa-agent", Args: cfg.Arguments}.Render()
	require.NoError(t, err)
	v := unitValues(unit)
	want := map[string]string{
		"Unit.Wants":                    "network-online.target",
		"Unit.StartLimitIntervalSec":    "0",
		"Service.Restart":               "always",
		"Service.User":                  User,
		"Service.Group":                 User,
		"Service.SupplementaryGroups":   SerialGroup,
		"Service.StateDirectory":        "kassa-agent",
		"Service.StateDirectoryMode":    "0700",
		"Service.CapabilityBoundingSet": "",
		"Service.DevicePolicy":          "closed",
		"Service.ProtectSystem":         "strict",
		"Install.WantedBy":              "multi-user.target",
		"Service.ExecStart":             `"/usr/local/bin/kassa-agent" "run" "--config" "/etc/kassa-agent/config.toml"`,
	}
	for k, w := range want {
		assert.Equal(t, []string{w}, v[k], k)
	}
	assert.Contains(t, v["Unit.After"][0], "network-online.target")
	assert.Contains(t, v["Unit.After"][0], "systemd-modules-load.service", "DeviceAllow classes need the serial drivers loaded")
	// By class, so a re-plugged device under another name is still allowed.
	assert.ElementsMatch(t, []string{"char-ttyS rw", "char-ttyUSB rw", "char-ttyACM rw"}, v["Service.DeviceAllow"])
	assert.Nil(t, v["Service.ReadWritePaths"], "the default store.dir is the StateDirectory")
	sec, err := time.ParseDuration(v["Service.RestartSec"][0] + "s")
	require.NoError(t, err)
	assert.LessOrEqual(t, sec, 5*time.Second, "restart within a few seconds")
	stop, err := time.ParseDuration(v["Service.TimeoutStopSec"][0] + "s")
	require.NoError(t, err)
	assert.Greater(t, stop, 10*time.Second, "graceful stop needs time for in-flight requests")
	// Every line is a section header, a comment, blank or key=value.
	line := regexp.MustCompile(`^(\[[A-Za-z]+\]|#.*|[A-Za-z]+=.*|)$`)
	for _, l := range strings.Split(unit, "\n") {
		assert.Regexp(t, line, l)
	}
}

func TestSystemdUnitQuoting(t *testing.T) {
	unit, err := Unit{
		Exe:       "/opt/kassa agent/kassa-agent",
		Args:      Config(`/etc/kassa "a"/100%$HOME\x.toml`).Arguments,
		ReadWrite: []string{"/srv/kassa 100%$"},
	}.Render()
	require.NoError(t, err)
	assert.Contains(t, unit, "\nExecStart=\"/opt/kassa agent/kassa-agent\" \"run\" \"--config\" \"/etc/kassa \\\"a\\\"/100%%$$HOME\\\\x.toml\"\n")
	assert.Contains(t, unit, "\nReadWritePaths=\"/srv/kassa 100%%$\"\n", "$ is literal outside command lines")

	_, err = Unit{Exe: "/usr/bin/kassa-agent", Args: Config("/etc/x\n[Service]\nUser=root").Arguments}.Render()
	assert.ErrorContains(t, err, "control character", "a newline would inject unit lines")
}

func TestWindowsRecovery(t *testing.T) {
	require.GreaterOrEqual(t, len(RecoveryActions), 3, "the last action repeats, so the first failures deserve their own")
	prev := time.Duration(0)
	for i, a := range RecoveryActions {
		assert.True(t, a.Restart, "action %d must restart", i)
		assert.GreaterOrEqual(t, a.Delay, prev, "delays never shrink")
		assert.LessOrEqual(t, a.Delay, time.Minute, "back within a minute")
		prev = a.Delay
	}
	assert.Equal(t, 24*time.Hour, RecoveryResetPeriod)
	cfg := Config(`C:\ProgramData\kassa-agent\config.toml`)
	assert.Equal(t, []string{"run", "--config", `C:\ProgramData\kassa-agent\config.toml`}, cfg.Arguments)
	assert.Equal(t, "automatic", cfg.Option["StartType"])
}
