package localapi

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const testToken = "s3cret-token"

type echoBody struct {
	Name   string `json:"name"`
	Amount int64  `json:"amount"`
}

// start serves a Server on a loopback port and returns its base URL.
func start(t *testing.T, opts Options) (*Server, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	opts.Port = ln.Addr().(*net.TCPAddr).Port
	if opts.Token == "" {
		opts.Token = testToken
	}
	s := New(opts)
	s.Handle("POST /v1/echo", func(w http.ResponseWriter, r *http.Request) {
		var b echoBody
		if err := DecodeJSON(r, &b); err != nil {
			WriteError(w, err)
			return
		}
		WriteJSON(w, http.StatusOK, b)
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln, time.Second) }()
	t.Cleanup(func() { cancel(); require.NoError(t, <-done) })
	return s, fmt.Sprintf("http://127.0.0.1:%d", opts.Port)
}

type answer struct {
	status int
	code   string
	body   map[string]any
}

func do(t *testing.T, method, url string, hdr map[string]string, body string) answer {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+testToken)
	req.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		if k == "Host" {
			req.Host = v
			continue
		}
		if v == "" {
			req.Header.Del(k)
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var m map[string]any
	raw, _ := io.ReadAll(resp.Body)
	require.NoError(t, json.Unmarshal(raw, &m), "body %q", raw)
	a := answer{status: resp.StatusCode, body: m}
	if e, ok := m["error"].(map[string]any); ok {
		a.code, _ = e["code"].(string)
		assert.IsType(t, "", e["message"])
		assert.IsType(t, false, e["retryable"])
	}
	return a
}

func TestSecurityRules(t *testing.T) {
	_, base := start(t, Options{})
	port := strings.TrimPrefix(base, "http://127.0.0.1:")
	big := `{"name":"` + strings.Repeat("x", MaxBody) + `"}`
	cases := []struct {
		name         string
		method, path string
		hdr          map[string]string
		body         string
		status       int
		code         string
	}{
		{"health without token", "GET", "/v1/health", map[string]string{"Authorization": ""}, "", 200, ""},
		{"status with token", "GET", "/v1/status", nil, "", 200, ""},
		{"localhost host", "GET", "/v1/status", map[string]string{"Host": "localhost:" + port}, "", 200, ""},
		{"ipv6 loopback host", "GET", "/v1/status", map[string]string{"Host": "[::1]:" + port}, "", 200, ""},
		{"rebinding host", "GET", "/v1/status", map[string]string{"Host": "evil.example:" + port}, "", 403, "forbidden_host"},
		{"host on wrong port", "GET", "/v1/status", map[string]string{"Host": "127.0.0.1:80"}, "", 403, "forbidden_host"},
		{"host without port", "GET", "/v1/health", map[string]string{"Host": "localhost"}, "", 403, "forbidden_host"},
		{"origin refused", "GET", "/v1/status", map[string]string{"Origin": "http://127.0.0.1:" + port}, "", 403, "forbidden_origin"},
		{"origin refused on health", "GET", "/v1/health", map[string]string{"Origin": "null"}, "", 403, "forbidden_origin"},
		{"no token", "GET", "/v1/status", map[string]string{"Authorization": ""}, "", 401, "unauthorized"},
		{"wrong token", "GET", "/v1/status", map[string]string{"Authorization": "Bearer nope"}, "", 401, "unauthorized"},
		{"basic auth", "GET", "/v1/status", map[string]string{"Authorization": "Basic " + testToken}, "", 401, "unauthorized"},
		{"strict json ok", "POST", "/v1/echo", nil, `{"name":"a","amount":5}`, 200, ""},
		{"unknown field", "POST", "/v1/echo", nil, `{"name":"a","amout":5}`, 400, "unknown_field"},
		{"trailing data", "POST", "/v1/echo", nil, `{"name":"a"}{"name":"b"}`, 400, "bad_request"},
		{"wrong type", "POST", "/v1/echo", nil, `{"amount":"5"}`, 400, "bad_request"},
		{"empty body", "POST", "/v1/echo", nil, ``, 400, "bad_request"},
		{"not json", "POST", "/v1/echo", map[string]string{"Content-Type": "text/plain"}, `{}`, 415, "unsupported_media_type"},
		{"oversized body", "POST", "/v1/echo", nil, big, 413, "body_too_large"},
		{"unknown path", "GET", "/v1/nope", nil, "", 404, "not_found"},
		{"wrong method", "DELETE", "/v1/status", nil, "", 405, "method_not_allowed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := do(t, tc.method, base+tc.path, tc.hdr, tc.body)
			assert.Equal(t, tc.status, a.status, "%v", a.body)
			assert.Equal(t, tc.code, a.code)
		})
	}
}

func TestSlowHeaderSenderIsCutOff(t *testing.T) {
	_, base := start(t, Options{ReadHeaderTimeout: 200 * time.Millisecond})
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	require.NoError(t, err)
	defer conn.Close()
	_, err = io.WriteString(conn, "GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
	require.NoError(t, err)
	// Never finish the headers: the server must hang up on us by itself.
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(5*time.Second)))
	startAt := time.Now()
	_, err = bufio.NewReader(conn).ReadString('\n')
	require.Error(t, err, "server answered a request whose headers never ended")
	// Our own 5 s deadline would be a timeout; the server closing first is EOF.
	var ne net.Error
	assert.False(t, errors.As(err, &ne) && ne.Timeout(), "server did not cut the slow client off: %v", err)
	assert.Less(t, time.Since(startAt), 3*time.Second)
}

func TestErrorCodesAreUniqueAndDocumented(t *testing.T) {
	seen := map[string]bool{}
	for _, c := range Codes {
		assert.False(t, seen[c.Code], "duplicate code %s", c.Code)
		seen[c.Code] = true
		assert.NotEmpty(t, c.Meaning)
		assert.GreaterOrEqual(t, c.Status, 400)
	}
	assert.Equal(t, "internal", Errorf("no_such_code", "x").Code)
}

type devErr struct{}

func (devErr) Error() string      { return "paper out" }
func (devErr) ErrorCode() string  { return "register_paper_out" }
func (devErr) DeviceCode() string { return "0x6B" }

func TestDomainErrorsKeepTheirCode(t *testing.T) {
	e := AsError(fmt.Errorf("print: %w", devErr{}))
	assert.Equal(t, "register_paper_out", e.Code)
	assert.Equal(t, 409, e.Status)
	assert.Equal(t, "0x6B", e.DeviceCode)
	assert.Equal(t, "internal", AsError(io.ErrUnexpectedEOF).Code)
}

func TestTokenCreatedPrivateAndReused(t *testing.T) {
	p := filepath.Join(t.TempDir(), "data", "api-token")
	tok, err := LoadOrCreateToken(p)
	require.NoError(t, err)
	assert.Len(t, tok, 43, "32 bytes in base64url without padding")
	if runtime.GOOS != "windows" {
		st, err := os.Stat(p)
		require.NoError(t, err)
		assert.Equal(t, os.FileMode(0o600), st.Mode().Perm())
	}
	again, err := LoadOrCreateToken(p)
	require.NoError(t, err)
	assert.Equal(t, tok, again)

	if runtime.GOOS != "windows" {
		require.NoError(t, os.Chmod(p, 0o644))
		_, err = LoadOrCreateToken(p)
		assert.ErrorContains(t, err, "chmod 600")
	}
}

func TestInFlightRequestFinishesOnStop(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := ln.Addr().(*net.TCPAddr).Port
	s := New(Options{Token: testToken, Port: port})
	entered := make(chan struct{})
	s.Handle("GET /v1/slow", func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		time.Sleep(300 * time.Millisecond)
		WriteJSON(w, 200, map[string]string{"done": "yes"})
	})
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx, ln, 5*time.Second) }()
	got := make(chan answer, 1)
	go func() { got <- do(t, "GET", fmt.Sprintf("http://127.0.0.1:%d/v1/slow", port), nil, "") }()
	<-entered
	cancel() // stop while the request is in flight
	a := <-got
	assert.Equal(t, 200, a.status)
	assert.Equal(t, "yes", a.body["done"])
	require.NoError(t, <-served)
}
