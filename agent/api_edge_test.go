package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestAPIIdempotentRetryWithReformattedBody: a POS that retries with the same
// key and the same request, serialised differently (another JSON library,
// pretty-printed, keys in another order, a trailing newline, an empty optional
// field written out), gets the payment it already made, not 422 and a hint to
// use a new key (which would pay twice).
func TestAPIIdempotentRetryWithReformattedBody(t *testing.T) {
	r := newRig(t, rigOptions{})
	r.startInProcess()
	body := saleBody(20480, milkReceipt)
	p1 := r.create("same", body)
	var indented bytes.Buffer
	require.NoError(t, json.Indent(&indented, []byte(body), "", "    "))
	reordered := `{"receipt":` + milkReceipt + `,"currency":"RUB","amount":20480,"provider":"smartpay"}`
	for name, retry := range map[string]string{
		"trailing newline":   body + "\n",
		"indented":           indented.String(),
		"keys reordered":     reordered,
		"empty optional set": strings.Replace(body, `"currency":"RUB"`, `"currency":"RUB","order_ref":""`, 1),
	} {
		var p2 apiPayment
		status := r.call("POST", "/v1/payments", "same", retry, &p2)
		assert.Equal(t, 200, status, "%s: a retry of the same request was refused", name)
		assert.Equal(t, p1.ID, p2.ID, name)
	}
	var e apiError
	assert.Equal(t, 422, r.call("POST", "/v1/payments", "same", saleBody(20480, ""), &e), "another request under the same key")
	assert.Equal(t, "idempotency_key_reused", e.Error.Code)
}

// TestAPIIdempotencyKeyHeader: an Idempotency-Key header that is present but
// empty is invalid (not missing), and the length limit is counted as said.
func TestAPIIdempotencyKeyHeader(t *testing.T) {
	r := newRig(t, rigOptions{})
	r.startInProcess()
	send := func(key []string) apiError {
		req, err := http.NewRequest("POST", fmt.Sprintf("http://127.0.0.1:%d/v1/payments", r.port), strings.NewReader(saleBody(100, "")))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+r.token)
		req.Header.Set("Content-Type", "application/json")
		if key != nil {
			req.Header["Idempotency-Key"] = key
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		var e apiError
		require.NoError(t, json.Unmarshal(raw, &e), "%s", raw)
		assert.Equal(t, 400, resp.StatusCode, "%s", raw)
		return e
	}
	assert.Equal(t, "idempotency_key_missing", send(nil).Error.Code)
	assert.Equal(t, "idempotency_key_invalid", send([]string{""}).Error.Code, "an empty key")
	long := send([]string{strings.Repeat("я", 128)}) // 128 characters, 256 bytes
	assert.Equal(t, "idempotency_key_invalid", long.Error.Code)
	assert.Contains(t, long.Error.Message, "255 bytes")
	assert.NotContains(t, long.Error.Message, "characters")
}

// TestDiagTokenGoneWhileTheAgentRuns: the token file deleted or replaced under
// a running agent is what diag reports, not an agent that "may be stuck".
func TestDiagTokenGoneWhileTheAgentRuns(t *testing.T) {
	r := newRig(t, rigOptions{})
	r.startInProcess()
	require.Equal(t, 200, r.call("GET", "/v1/status", "", "", nil))

	require.NoError(t, os.Remove(r.cfg.API.TokenFile))
	out, errOut, code := runCmd("diag", "--json", "--config", r.cfgPath)
	require.Equal(t, exitDiagFail, code, "%s%s", out, errOut)
	agent := diagByCheck(t, out)["agent"]
	assert.Equal(t, levelFail, agent.Level)
	assert.Contains(t, agent.Detail, "missing")
	assert.Contains(t, agent.Hint, "restart the agent")
	assert.NotContains(t, agent.Detail+agent.Hint, "stuck")
	assert.NotContains(t, agent.Hint, "as root", "the file is gone, not unreadable")

	other := strings.Repeat("B", 43) + "\n"
	require.NoError(t, os.WriteFile(r.cfg.API.TokenFile, []byte(other), 0o600))
	out, errOut, code = runCmd("diag", "--json", "--config", r.cfgPath)
	require.Equal(t, exitDiagFail, code, "%s%s", out, errOut)
	agent = diagByCheck(t, out)["agent"]
	assert.Equal(t, levelFail, agent.Level)
	assert.Contains(t, agent.Detail, "does not match")
	assert.Contains(t, agent.Hint, "restart the agent")
	assert.NotContains(t, agent.Detail+agent.Hint, "stuck")
}
