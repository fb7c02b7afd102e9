package servicectl

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

// maxExposure is the goal of issue #13: "systemd-analyze security" rates the
// unit at most this (0 is locked down, 10 is fully exposed).
const maxExposure = 2.5

var exposureLine = regexp.MustCompile(`Overall exposure level for kassa-agent\.service: ([0-9.]+)`)

// TestSystemdAnalyze checks the unit install writes with systemd's own tools:
// verify (syntax, the executable, the quoting of a path with a space) and the
// offline security score.
func TestSystemdAnalyze(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed (apt-get install systemd): the unit's verify and security score are not checked")
	}
	// A real executable under a path with a space, so verify proves the quoting.
	self, err := os.Executable()
	require.NoError(t, err)
	binDir := filepath.Join(t.TempDir(), "kassa agent")
	require.NoError(t, os.Mkdir(binDir, 0o755))
	exe := filepath.Join(binDir, "kassa-agent")
	require.NoError(t, os.Symlink(self, exe))

	unit := testUnit(t, exe, "/etc/kassa-agent/config.toml")
	dir := t.TempDir()
	path := filepath.Join(dir, Name+".service")
	require.NoError(t, os.WriteFile(path, []byte(unit), 0o644))

	out, err := exec.Command(sa, "verify", path).CombinedOutput()
	require.NoError(t, err, "systemd-analyze verify:\n%s", out)
	require.Empty(t, string(out), "systemd-analyze verify warns")

	out, err = exec.Command(sa, "security", "--offline=yes", path).CombinedOutput()
	require.NoError(t, err, "systemd-analyze security:\n%s", out)
	m := exposureLine.FindSubmatch(out)
	require.NotNil(t, m, "no overall exposure line in:\n%s", out)
	score, err := strconv.ParseFloat(string(m[1]), 64)
	require.NoError(t, err)
	t.Logf("systemd-analyze security --offline=yes: %.1f", score)
	require.LessOrEqual(t, score, maxExposure, "exposure too high:\n%s", out)
}

func testUnit(t *testing.T, exe, configPath string) string {
	t.Helper()
	unit, err := Unit{Exe: exe, Args: Config(configPath).Arguments, ReadWrite: []string{"/srv/kassa data"}}.Render()
	require.NoError(t, err)
	return unit
}

func TestServiceNeverRunsAsRoot(t *testing.T) {
	cfg := Config("/etc/kassa-agent/config.toml")
	require.NotEmpty(t, cfg.UserName, "no UserName: the service runs as root (systemd) or LocalSystem (Windows)")
	require.Equal(t, serviceAccount, cfg.UserName)
	require.NotEqual(t, "root", cfg.UserName)
}
