//go:build linux

package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
)

// install --dry-run shows the unit and the plan and changes nothing: not the
// data directory the config names, not the unit file.
func TestInstallDryRunChangesNothing(t *testing.T) {
	cfgPath, _ := writeConfig(t, "")
	dataDir := filepath.Join(filepath.Dir(cfgPath), "data")
	const unitPath = "/etc/systemd/system/kassa-agent.service"
	before, beforeErr := os.ReadFile(unitPath)

	out, errOut, code := runCmd("install", "--dry-run", "--config", cfgPath)

	// The config and data live under /tmp, which PrivateTmp hides from the
	// service: the plan must say so and refuse (exit 1), yet still show it all.
	assert.Equal(t, exitFail, code, "%s%s", out, errOut)
	assert.Contains(t, out, "would write "+unitPath)
	assert.Contains(t, out, "User=kassa-agent\n")
	assert.Contains(t, out, `"--config" "`+cfgPath+`"`)
	assert.Contains(t, out, "ReadWritePaths=\""+dataDir+"\"\n", "a store.dir outside StateDirectory must be writable")
	assert.Contains(t, errOut, dataDir+" is under /tmp")

	_, err := os.Stat(dataDir)
	assert.ErrorIs(t, err, os.ErrNotExist, "dry-run created the data directory")
	after, afterErr := os.ReadFile(unitPath)
	assert.Equal(t, before, after, "dry-run changed the unit file")
	assert.Equal(t, beforeErr == nil, afterErr == nil)
}
