package localapi

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// rawConn is one keep-alive connection driven by hand, as a hostile local
// program would.
type rawConn struct {
	net.Conn
	r *bufio.Reader
}

func dialRaw(t *testing.T, base string) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return &rawConn{Conn: c, r: bufio.NewReader(c)}
}

// roundTrip sends one request on the connection and reads the answer.
func (c *rawConn) roundTrip(req string) (*http.Response, error) {
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		return nil, err
	}
	resp, err := http.ReadResponse(c.r, nil)
	if err != nil {
		return nil, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp, err
}

// closedByServer reports whether the server has hung up on c (EOF or reset),
// waiting up to wait for it.
func (c *rawConn) closedByServer(wait time.Duration) bool {
	_ = c.SetReadDeadline(time.Now().Add(wait))
	_, err := c.r.ReadByte()
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return false
	}
	return err != nil
}

func healthReq(base string) string {
	return "GET /v1/health HTTP/1.1\r\nHost: " + strings.TrimPrefix(base, "http://") + "\r\n\r\n"
}

func statusReq(base, token string) string {
	return "GET /v1/status HTTP/1.1\r\nHost: " + strings.TrimPrefix(base, "http://") + "\r\nAuthorization: Bearer " + token + "\r\n\r\n"
}

// TestConnectionFloodDoesNotStarveThePOS: a local program without the token
// opens more connections than the limit and leaves them idle (kept alive after
// a health check, or never sending a byte). The agent holds no more than its
// limit open, and the POS, with the token, still gets its answer at once, on a
// connection it already had and on a new one.
func TestConnectionFloodDoesNotStarveThePOS(t *testing.T) {
	const limit = 16
	// Idle timeouts far longer than the test: only the limit can make room.
	_, base := start(t, Options{MaxConns: limit, IdleTimeout: time.Minute, AnonIdleTimeout: time.Minute})

	pos := dialRaw(t, base)
	resp, err := pos.roundTrip(statusReq(base, testToken))
	require.NoError(t, err)
	require.Equal(t, 200, resp.StatusCode)

	var flood []*rawConn
	for i := range 3 * limit {
		c := dialRaw(t, base)
		if i%2 == 0 {
			// An idle keep-alive connection after one unauthenticated request;
			// the server may already have closed it to make room.
			if resp, err := c.roundTrip(healthReq(base)); err == nil {
				assert.Equal(t, 200, resp.StatusCode)
			}
		}
		flood = append(flood, c)
	}
	closed := 0
	for _, c := range flood {
		if c.closedByServer(50 * time.Millisecond) {
			closed++
		}
	}
	assert.GreaterOrEqual(t, closed, 2*limit, "the agent kept %d of %d unauthenticated connections open (limit %d)", len(flood)-closed, len(flood), limit)

	startAt := time.Now()
	resp, err = pos.roundTrip(statusReq(base, testToken))
	require.NoError(t, err, "the POS's own keep-alive connection was closed by the flood")
	assert.Equal(t, 200, resp.StatusCode)
	fresh := dialRaw(t, base)
	resp, err = fresh.roundTrip(statusReq(base, testToken))
	require.NoError(t, err, "a new POS connection was refused")
	assert.Equal(t, 200, resp.StatusCode)
	assert.Less(t, time.Since(startAt), time.Second)
}

// TestAuthenticatedConnectionsHaveAReservedShare: when every slot is held by
// connections that showed the token, a new one is refused with the JSON busy
// answer instead of being held open.
func TestAuthenticatedConnectionsHaveAReservedShare(t *testing.T) {
	const limit = 8
	_, base := start(t, Options{MaxConns: limit, IdleTimeout: time.Minute, AnonIdleTimeout: time.Minute})
	for range limit {
		c := dialRaw(t, base)
		resp, err := c.roundTrip(statusReq(base, testToken))
		require.NoError(t, err)
		require.Equal(t, 200, resp.StatusCode)
	}
	c := dialRaw(t, base)
	resp, err := c.roundTrip(statusReq(base, testToken))
	require.NoError(t, err)
	assert.Equal(t, 503, resp.StatusCode)
}

func TestIdleConnectionsAreClosed(t *testing.T) {
	_, base := start(t, Options{IdleTimeout: 300 * time.Millisecond, AnonIdleTimeout: 100 * time.Millisecond})

	pos := dialRaw(t, base)
	resp, err := pos.roundTrip(statusReq(base, testToken))
	require.NoError(t, err)
	require.Equal(t, 200, resp.StatusCode)
	anon := dialRaw(t, base)
	resp, err = anon.roundTrip(healthReq(base))
	require.NoError(t, err)
	require.Equal(t, 200, resp.StatusCode)
	silent := dialRaw(t, base)

	assert.True(t, anon.closedByServer(time.Second), "an idle connection without the token stayed open")
	assert.True(t, silent.closedByServer(time.Second), "a connection that never sent a request stayed open")
	assert.False(t, pos.closedByServer(100*time.Millisecond), "the POS's connection was closed before its idle timeout")
	assert.True(t, pos.closedByServer(2*time.Second), "an idle keep-alive connection stayed open past IdleTimeout")
}

// TestEventStreamsAreLimited: streams hold a connection and a subscriber each;
// beyond the limit the answer is 503 busy, and a closed stream frees its slot.
func TestEventStreamsAreLimited(t *testing.T) {
	const limit = 3
	s, base := start(t, Options{MaxStreams: limit})
	s.Handle("GET /v1/stream", s.Stream(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	req := "GET /v1/stream HTTP/1.1\r\nHost: " + strings.TrimPrefix(base, "http://") + "\r\nAuthorization: Bearer " + testToken + "\r\n\r\n"
	var open []*rawConn
	for range limit {
		c := dialRaw(t, base)
		_, err := io.WriteString(c, req)
		require.NoError(t, err)
		resp, err := http.ReadResponse(c.r, nil)
		require.NoError(t, err)
		require.Equal(t, 200, resp.StatusCode)
		open = append(open, c)
	}
	over := dialRaw(t, base)
	_, err := io.WriteString(over, req)
	require.NoError(t, err)
	_ = over.SetReadDeadline(time.Now().Add(2 * time.Second))
	resp, err := http.ReadResponse(over.r, nil)
	require.NoError(t, err)
	assert.Equal(t, 503, resp.StatusCode)
	var e struct{ Error Error }
	if resp.StatusCode == 503 {
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&e))
	}
	assert.Equal(t, "busy", e.Error.Code)
	assert.True(t, e.Error.Retryable)

	open[0].Close()
	require.Eventually(t, func() bool {
		c := dialRaw(t, base)
		_, _ = io.WriteString(c, req)
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		resp, err := http.ReadResponse(c.r, nil)
		return err == nil && resp.StatusCode == 200
	}, 5*time.Second, 20*time.Millisecond, "a closed stream did not free its slot")
}

type strictInner struct {
	Code string `json:"code"`
	Qty  int64  `json:"qty"`
}

type strictBody struct {
	Name   string         `json:"name"`
	Amount int64          `json:"amount"`
	Count  uint8          `json:"count,omitempty"`
	Ratio  float64        `json:"ratio,omitempty"`
	On     bool           `json:"on,omitempty"`
	Inner  *strictInner   `json:"inner,omitempty"`
	Items  []strictInner  `json:"items,omitempty"`
	Tags   map[string]int `json:"tags,omitempty"`
	Any    any            `json:"any,omitempty"`
	Skip   string         `json:"-"`
}

func TestStrictJSON(t *testing.T) {
	s, base := start(t, Options{})
	s.Handle("POST /v1/strict", func(w http.ResponseWriter, r *http.Request) {
		var b strictBody
		if err := DecodeJSON(r, &b); err != nil {
			WriteError(w, err)
			return
		}
		WriteJSON(w, http.StatusOK, b)
	})
	cases := []struct {
		name, body string
		status     int
		code       string
		msg        string // the message must contain this
		notMsg     string // nor this
	}{
		{"exact names", `{"name":"a","amount":1,"inner":{"code":"c","qty":2},"items":[{"code":"d"}],"tags":{"A":1,"a":2},"any":{"X":[1]}}`, 200, "", "", ""},
		{"upper case name", `{"AMOUNT":0}`, 400, "unknown_field", `"AMOUNT"`, ""},
		{"title case name", `{"Name":"a"}`, 400, "unknown_field", `did you mean "name"`, ""},
		{"nested case variant", `{"inner":{"CODE":"x"}}`, 400, "unknown_field", `"inner.CODE"`, ""},
		{"case variant in array", `{"items":[{"code":"a"},{"Qty":1}]}`, 400, "unknown_field", `"items[1].Qty"`, ""},
		{"tag dash is not a name", `{"Skip":"x"}`, 400, "unknown_field", "", ""},
		{"duplicate key", `{"name":"a","name":"b"}`, 400, "bad_request", `"name" appears twice`, ""},
		{"duplicate by case", `{"name":"a","NAME":"b"}`, 400, "unknown_field", "", ""},
		{"nested duplicate", `{"inner":{"qty":1,"qty":2}}`, 400, "bad_request", `"inner.qty" appears twice`, ""},
		{"duplicate in map", `{"tags":{"a":1,"a":2}}`, 400, "bad_request", "appears twice", ""},
		{"duplicate inside any", `{"any":{"x":{"y":1,"y":2}}}`, 400, "bad_request", "appears twice", ""},
		{"string for int", `{"amount":"5"}`, 400, "bad_request", `"amount" must be a whole number`, "int64"},
		{"fraction for int", `{"amount":1.5}`, 400, "bad_request", `"amount" must be a whole number`, "int64"},
		{"int out of range", `{"count":300}`, 400, "bad_request", `"count" must be a whole number from 0 to 255`, "uint8"},
		{"number for string", `{"name":5}`, 400, "bad_request", `"name" must be a string`, ""},
		{"string for bool", `{"on":"yes"}`, 400, "bad_request", `"on" must be true or false`, ""},
		{"array for object", `{"inner":[]}`, 400, "bad_request", `"inner" must be an object`, "strictInner"},
		{"object for array", `{"items":{}}`, 400, "bad_request", `"items" must be an array`, ""},
		{"nested type path", `{"items":[{},{"qty":"x"}]}`, 400, "bad_request", `"items[1].qty" must be a whole number`, ""},
		{"array body", `[]`, 400, "bad_request", "the body must be an object", "localapi"},
		{"null fields are left alone", `{"name":null,"inner":null}`, 200, "", "", ""},
		{"too deep", `{"any":` + strings.Repeat("[", 200) + strings.Repeat("]", 200) + `}`, 400, "bad_request", "nested", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := do(t, "POST", base+"/v1/strict", nil, tc.body)
			assert.Equal(t, tc.status, a.status, "%v", a.body)
			assert.Equal(t, tc.code, a.code, "%v", a.body)
			if a.code != "" {
				msg := a.body["error"].(map[string]any)["message"].(string)
				assert.Contains(t, msg, tc.msg)
				if tc.notMsg != "" {
					assert.NotContains(t, msg, tc.notMsg)
				}
			}
		})
	}
}

func TestHostileRequestEdges(t *testing.T) {
	_, base := start(t, Options{})
	port := strings.TrimPrefix(base, "http://127.0.0.1:")
	cases := []struct {
		name         string
		method, path string
		hdr          map[string]string
		body         string
		status       int
		code         string
	}{
		{"bearer in lower case", "GET", "/v1/status", map[string]string{"Authorization": "bearer " + testToken}, "", 200, ""},
		{"BEARER in upper case", "GET", "/v1/status", map[string]string{"Authorization": "BEARER " + testToken}, "", 200, ""},
		{"bearer without token", "GET", "/v1/status", map[string]string{"Authorization": "Bearer"}, "", 401, "unauthorized"},
		{"token glued to scheme", "GET", "/v1/status", map[string]string{"Authorization": "Bearer" + testToken}, "", 401, "unauthorized"},
		{"host in upper case", "GET", "/v1/status", map[string]string{"Host": "LOCALHOST:" + port}, "", 200, ""},
		{"host in mixed case", "GET", "/v1/status", map[string]string{"Host": "LocalHost:" + port}, "", 200, ""},
		{"no content type", "POST", "/v1/echo", map[string]string{"Content-Type": ""}, `{"name":"a"}`, 415, "unsupported_media_type"},
		{"json with charset", "POST", "/v1/echo", map[string]string{"Content-Type": "application/json; charset=utf-8"}, `{"name":"a"}`, 200, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := do(t, tc.method, base+tc.path, tc.hdr, tc.body)
			assert.Equal(t, tc.status, a.status, "%v", a.body)
			assert.Equal(t, tc.code, a.code)
		})
	}
}

// TestConnectAnswersInTheErrorShape: CONNECT is not routed like other methods
// by net/http; the answer must still be the JSON error.
func TestConnectAnswersInTheErrorShape(t *testing.T) {
	_, base := start(t, Options{})
	host := strings.TrimPrefix(base, "http://")
	for _, target := range []string{host, "/v1/status"} {
		c := dialRaw(t, base)
		resp, err := c.roundTrip("CONNECT " + target + " HTTP/1.1\r\nHost: " + host + "\r\nAuthorization: Bearer " + testToken + "\r\n\r\n")
		require.NoError(t, err)
		assert.Contains(t, []int{404, 405}, resp.StatusCode, target)
		assert.Equal(t, "application/json; charset=utf-8", resp.Header.Get("Content-Type"), "CONNECT %s", target)
	}
}

// TestDeclaredOversizedBodyIsRefusedBeforeContinue: a client that asks
// "Expect: 100-continue" for a body over the limit gets 413, not an invitation
// to send 2 MiB.
func TestDeclaredOversizedBodyIsRefusedBeforeContinue(t *testing.T) {
	_, base := start(t, Options{})
	host := strings.TrimPrefix(base, "http://")
	c := dialRaw(t, base)
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	_, err := fmt.Fprintf(c, "POST /v1/echo HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n", host, testToken, 2<<20)
	require.NoError(t, err)
	resp, err := http.ReadResponse(c.r, nil)
	require.NoError(t, err)
	assert.Equal(t, 413, resp.StatusCode)
	raw, _ := io.ReadAll(resp.Body)
	assert.Contains(t, string(raw), "body_too_large")
}

func TestTokenFileMustBeTheAgentsOwn(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{
		"one character":     "x\n",
		"short":             "c2hvcnQtdG9rZW4\n",
		"not base64url":     strings.Repeat("!", 43) + "\n",
		"31 bytes":          strings.Repeat("A", 42) + "\n",
		"two tokens":        strings.Repeat("A", 43) + " " + strings.Repeat("B", 43) + "\n",
		"std base64 padded": strings.Repeat("A", 42) + "=\n",
	} {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(name, " ", "-"))
			require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
			tok, err := LoadOrCreateToken(p)
			require.Error(t, err, "accepted token %q", tok)
			assert.ErrorContains(t, err, p)
			assert.ErrorContains(t, err, "delete it and restart the agent")
		})
	}
	// The agent's own format, with or without the final newline, is accepted.
	good := strings.Repeat("A", 42) + "w"
	p := filepath.Join(dir, "good")
	require.NoError(t, os.WriteFile(p, []byte(good), 0o600))
	tok, err := LoadOrCreateToken(p)
	require.NoError(t, err)
	assert.Equal(t, good, tok)
}
