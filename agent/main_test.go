package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kassa-agent/agent/internal/config"
	"kassa-agent/queue"
)

// agentBin is the real binary, built once for the tests that run it as a child.
var agentBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "kassa-agent-bin")
	if err != nil {
		panic(err)
	}
	agentBin = filepath.Join(dir, "kassa-agent")
	build := exec.Command("go", "build", "-race", "-o", agentBin, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building the agent for tests failed:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// freePorts finds n consecutive free loopback ports (the demo takes the
// API's port and the next ones) and returns the first.
func freePorts(t testing.TB, n int) int {
	t.Helper()
	for range 50 {
		first := freePort(t)
		var held []net.Listener
		ok := true
		for i := range n {
			ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", first+i))
			if err != nil {
				ok = false
				break
			}
			held = append(held, ln)
		}
		for _, ln := range held {
			ln.Close()
		}
		if ok {
			return first
		}
	}
	t.Fatalf("no %d consecutive free ports", n)
	return 0
}

// writeConfig makes a config with no devices in a fresh directory.
func writeConfig(t *testing.T, extra string) (path string, port int) {
	t.Helper()
	dir := t.TempDir()
	port = freePort(t)
	path = filepath.Join(dir, "config.toml")
	src := fmt.Sprintf("[api]\nlisten = \"127.0.0.1:%d\"\n[store]\ndir = %q\n[log]\nlevel = \"debug\"\n%s", port, filepath.Join(dir, "data"), extra)
	require.NoError(t, os.WriteFile(path, []byte(src), 0o600))
	return path, port
}

type child struct {
	cmd    *exec.Cmd
	stderr *syncBuffer
	done   chan error
}

// syncBuffer collects a child's output while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func startAgent(t *testing.T, args ...string) *child {
	t.Helper()
	c := &child{cmd: exec.Command(agentBin, args...), stderr: new(syncBuffer), done: make(chan error, 1)}
	c.cmd.Stderr = c.stderr
	c.cmd.Stdout = c.stderr
	require.NoError(t, c.cmd.Start())
	go func() { c.done <- c.cmd.Wait() }()
	t.Cleanup(func() {
		_ = c.cmd.Process.Kill()
		<-c.done
	})
	return c
}

func waitHealthy(t *testing.T, port int, c *child) {
	t.Helper()
	url := fmt.Sprintf("http://127.0.0.1:%d/v1/health", port)
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-c.done:
			c.done <- err
			t.Fatalf("agent exited (%v) before it became healthy; its output:\n%s", err, c.stderr)
		default:
		}
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("agent never became healthy; its output:\n%s", c.stderr)
}

func TestRunServesSecondInstanceFailsSIGTERMStops(t *testing.T) {
	cfgPath, port := writeConfig(t, "")
	first := startAgent(t, "run", "--config", cfgPath)
	waitHealthy(t, port, first)

	// The token was created owner-only and the status endpoint needs it.
	cfg, err := config.Load(cfgPath)
	require.NoError(t, err)
	tok, err := os.ReadFile(cfg.API.TokenFile)
	require.NoError(t, err)
	st, err := os.Stat(cfg.API.TokenFile)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), st.Mode().Perm())
	req, _ := http.NewRequest("GET", fmt.Sprintf("http://127.0.0.1:%d/v1/status", port), nil)
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 200, resp.StatusCode)

	// A second instance on the same store exits 1 with the clear message.
	out, err := exec.Command(agentBin, "run", "--config", cfgPath).CombinedOutput()
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee, "second instance must fail; output: %s", out)
	assert.Equal(t, 1, ee.ExitCode())
	assert.Contains(t, string(out), "another kassa-agent is already running (store "+cfg.StorePath()+" is locked)")

	// SIGTERM: exit 0, store closed (its lock is free again).
	require.NoError(t, first.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-first.done:
		first.done <- err // for Cleanup
		require.NoError(t, err, "agent must exit 0 on SIGTERM; output:\n%s", first.stderr)
	case <-time.After(20 * time.Second):
		t.Fatal("agent did not stop on SIGTERM")
	}
	assert.Contains(t, first.stderr.String(), "store closed")
	s, err := queue.Open(cfg.StorePath(), queue.Options{OpenTimeout: 100 * time.Millisecond})
	require.NoError(t, err, "store still locked after exit")
	require.NoError(t, s.Check())
	require.NoError(t, s.Close())

	// The token is reused on the next start.
	second := startAgent(t, "run", "--config", cfgPath)
	waitHealthy(t, port, second)
	tok2, err := os.ReadFile(cfg.API.TokenFile)
	require.NoError(t, err)
	assert.Equal(t, tok, tok2)
}

func TestCLIUsage(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cases := []struct {
		args []string
		code int
		out  string
	}{
		{[]string{}, 2, "usage: kassa-agent"},
		{[]string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{[]string{"run", "--bogus"}, 2, "flag provided but not defined"},
		{[]string{"version", "extra"}, 2, "unexpected argument"},
		{[]string{"config"}, 2, "check|example"},
		{[]string{"config", "lint"}, 2, "unknown subcommand"},
		{[]string{"help"}, 0, "config"},
		{[]string{"version"}, 0, "kassa-agent dev (commit unknown, go1."},
		{[]string{"run", "--config", "/nonexistent/config.toml"}, 1, "config example"},
	}
	for _, tc := range cases {
		out, err := exec.CommandContext(ctx, agentBin, tc.args...).CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else {
			require.NoError(t, err)
		}
		assert.Equal(t, tc.code, code, "%v: %s", tc.args, out)
		assert.Contains(t, string(out), tc.out, "%v", tc.args)
	}
}

func TestConfigExampleChecks(t *testing.T) {
	example, err := exec.Command(agentBin, "config", "example").Output()
	require.NoError(t, err)
	p := filepath.Join(t.TempDir(), "config.toml")
	require.NoError(t, os.WriteFile(p, example, 0o600))
	out, err := exec.Command(agentBin, "config", "check", "--config", p).CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Contains(t, string(out), "OK")

	require.NoError(t, os.WriteFile(p, []byte("[api]\nlisten = \"127.0.0.1:8717\"\nlisen = 1\n"), 0o600))
	out, err = exec.Command(agentBin, "config", "check", "--config", p).CombinedOutput()
	require.Error(t, err)
	assert.Contains(t, string(out), "line 3: api.lisen: unknown key")
}
