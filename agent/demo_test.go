package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestDemoScript runs what the README's quick start promises: the demo does a
// whole sale with each provider on the simulated till, prints the receipt (or
// the slip) and exits 0.
func TestDemoScript(t *testing.T) {
	if _, err := os.Stat("/dev/ptmx"); err != nil {
		t.Skip("the demo's devices are pseudo-terminals")
	}
	port := freePorts(t, 5) // the API, the demo's controls and the three sandboxes
	dir := filepath.Join(t.TempDir(), "demo")
	cmd := exec.Command(agentBin, "demo", "--script", "all", "--dir", dir, "--processing", "100ms",
		"--listen", fmt.Sprintf("127.0.0.1:%d", port))
	done := make(chan struct{})
	var out []byte
	var err error
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("demo --script did not finish:\n%s", out)
	}
	require.NoError(t, err, "%s", out)
	s := string(out)
	for _, want := range []string{"is completed", "receipt printed, FD", "every delivery to smartpay done", "КАССОВЫЙ ЧЕК", "Молоко 3,2%",
		"alif payment", "alikassa payment", "slip printed", "NOT A FISCAL RECEIPT"} {
		assert.Contains(t, s, want)
	}
	// The demo refuses to wipe a directory it did not make.
	other := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(other, "keep.txt"), []byte("x"), 0o600))
	out2, err := exec.Command(agentBin, "demo", "--script", "smartpay", "--dir", other).CombinedOutput()
	require.Error(t, err)
	assert.True(t, strings.Contains(string(out2), "was not made by the demo"), "%s", out2)
	_, err = os.Stat(filepath.Join(other, "keep.txt"))
	assert.NoError(t, err)
}
