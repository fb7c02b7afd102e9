package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// diag scanner --watch over the simulated till's PTY scanner: each scan as
// text with GS shown and as hex, repeats included, until the watch is
// stopped.
func TestDiagScannerWatch(t *testing.T) {
	r := newRig(t, rigOptions{})
	out := new(syncBuffer)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- watchScanner(ctx, r.cfg, out) }()
	require.Eventually(t, func() bool { return strings.Contains(out.String(), "watching the scanner at "+r.till.ScannerPath()) },
		5*time.Second, 10*time.Millisecond)

	code := "0104601234567890215abc\x1d91EE07\x1d92xyz"
	require.NoError(t, r.till.ScannerWrite([]byte(code+"\r")))
	require.NoError(t, r.till.ScannerWrite([]byte(code+"\r")))
	require.NoError(t, r.till.ScannerWrite([]byte("\xffя\r")))
	require.Eventually(t, func() bool { return strings.Count(out.String(), " hex ") == 3 }, 5*time.Second, 10*time.Millisecond, "%s", out)
	cancel()
	require.NoError(t, <-done)

	text := out.String()
	assert.Equal(t, 2, strings.Count(text, "  35 bytes  0104601234567890215abc<GS>91EE07<GS>92xyz\n"), "%s", text)
	assert.Contains(t, text, "hex  30 31 30 34 36 30 31 32 33 34 35 36 37 38 39 30 32 31 35 61 62 63 1d 39 31 45 45 30 37 1d 39 32 78 79 7a\n")
	assert.Contains(t, text, "  3 bytes  <xFF>я\n", "bytes that are not UTF-8 are shown as hex, the rest as text")
	assert.NotContains(t, text, "\x1d", "GS is shown by name, never raw")
}

func TestDiagScannerWatchWhileTheAgentRuns(t *testing.T) {
	r := newRig(t, rigOptions{})
	r.startInProcess()
	out, errOut, code := runCmd("diag", "scanner", "--watch", "--config", r.cfgPath)
	assert.Equal(t, exitFail, code, out)
	assert.Contains(t, errOut, "the agent is running and holds the scanner: stop the service first")

	_, errOut, code = runCmd("diag", "scanner", "--config", r.cfgPath)
	assert.Equal(t, exitUsage, code)
	assert.Contains(t, errOut, "--watch")
}

// A check that takes over a second says so on stderr, so a DNS timeout is not
// taken for a hang; a quick one says nothing.
func TestDiagSlowCheckShowsProgress(t *testing.T) {
	var progress bytes.Buffer
	d := &diagnosis{now: time.Now, progress: &progress}
	d.slow("quick", func() {})
	assert.Empty(t, progress.String())
	d.slow("alif: DNS, TCP, TLS to https://api.example", func() { time.Sleep(diagSlowAfter + 200*time.Millisecond) })
	assert.Regexp(t, `^… alif: DNS, TCP, TLS to https://api.example: still checking\n… alif: DNS, TCP, TLS to https://api.example: done in 1\.\ds\n$`, progress.String())
}
