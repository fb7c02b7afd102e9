package sale

import (
	"crypto/sha256"
	"encoding/json"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kassa-agent/queue"
)

// TestRequestHashAcrossTheUpgrade: a key stored by an older agent (hash of the
// raw body) still matches a retry with the same bytes; new keys are bound to
// the request's meaning.
func TestRequestHashAcrossTheUpgrade(t *testing.T) {
	st, err := queue.Open(filepath.Join(t.TempDir(), "store.db"), queue.Options{})
	require.NoError(t, err)
	defer st.Close()
	body := []byte(`{"provider":"smartpay","amount":100,"currency":"RUB"}`)
	var req CreateRequest
	require.NoError(t, json.Unmarshal(body, &req))
	raw := sha256.Sum256(body)
	require.NoError(t, st.Update(t.Context(), func(tx *queue.Tx) error {
		return tx.PutIdempotency("old", queue.IdempotencyRecord{RequestHash: raw[:], ResourceID: "pay_000000000001", Status: 201})
	}))
	e := &Engine{store: st}

	assert.Equal(t, raw, e.requestHash("old", body, req), "a byte-identical retry of a pre-upgrade request")
	reformatted := append(append([]byte(nil), body...), '\n')
	assert.NotEqual(t, raw, e.requestHash("old", reformatted, req), "pre-upgrade records only know the bytes")

	fresh := e.requestHash("new", body, req)
	assert.Equal(t, fresh, e.requestHash("new", reformatted, req))
	assert.NotEqual(t, raw, fresh)
	other := req
	other.Amount++
	assert.NotEqual(t, fresh, e.requestHash("new", body, other), "another amount is another request")
}
