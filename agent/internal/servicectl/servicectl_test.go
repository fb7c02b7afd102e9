package servicectl

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// render fills the unit template the way the service library does for the
// placeholders it uses: values, the cmd/cmdEscape filters and the argument range.
func render(t *testing.T, tmpl, path string, args []string) string {
	t.Helper()
	out := strings.ReplaceAll(tmpl, "{{Description}}", Config("").Description)
	out = strings.ReplaceAll(out, "{{Path | cmdEscape}}", strings.ReplaceAll(path, " ", `\x20`))
	var a strings.Builder
	for _, s := range args {
		a.WriteString(` "` + s + `"`)
	}
	out = strings.ReplaceAll(out, "{{range Arguments}} {{. | cmd}}{{end}}", a.String())
	require.NotContains(t, out, "{{", "template uses a placeholder this test does not render")
	return out
}

func unitValues(unit string) map[string][]string {
	m := map[string][]string{}
	section := ""
	for _, l := range strings.Split(unit, "\n") {
		l = strings.TrimSpace(l)
		if strings.HasPrefix(l, "[") {
			section = strings.Trim(l, "[]")
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
	unit := render(t, cfg.Option["SystemdScript"].(string), "/usr/local/bin/kassa-agent", cfg.Arguments)
	v := unitValues(unit)
	want := map[string]string{
		"Unit.After":                  "network-online.target",
		"Unit.Wants":                  "network-online.target",
		"Unit.StartLimitIntervalSec":  "0",
		"Service.Restart":             "always",
		"Service.SupplementaryGroups": "dialout",
		"Service.StateDirectory":      "kassa-agent",
		"Service.StateDirectoryMode":  "0700",
		"Install.WantedBy":            "multi-user.target",
		"Service.ExecStart":           `/usr/local/bin/kassa-agent "run" "--config" "/etc/kassa-agent/config.toml"`,
	}
	for k, w := range want {
		assert.Equal(t, []string{w}, v[k], k)
	}
	sec, err := time.ParseDuration(v["Service.RestartSec"][0] + "s")
	require.NoError(t, err)
	assert.LessOrEqual(t, sec, 5*time.Second, "restart within a few seconds")
	stop, err := time.ParseDuration(v["Service.TimeoutStopSec"][0] + "s")
	require.NoError(t, err)
	assert.Greater(t, stop, 10*time.Second, "graceful stop needs time for in-flight requests")
	// Every line is a section header, a comment, blank or key=value.
	line := regexp.MustCompile(`^(\[[A-Za-z]+\]|#.*|[A-Za-z]+=.+|)$`)
	for _, l := range strings.Split(unit, "\n") {
		assert.Regexp(t, line, l)
	}
}

func TestSystemdUnitEscapesPathWithSpaces(t *testing.T) {
	cfg := Config("/etc/kassa agent/config.toml")
	unit := render(t, cfg.Option["SystemdScript"].(string), "/opt/kassa agent/kassa-agent", cfg.Arguments)
	assert.Contains(t, unit, `ExecStart=/opt/kassa\x20agent/kassa-agent "run" "--config" "/etc/kassa agent/config.toml"`)
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
