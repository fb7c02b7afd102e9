package sale

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"

	"kassa-agent/queue"
)

// requestHash is what an Idempotency-Key is bound to: the request's meaning,
// the decoded request encoded again, so a retry that differs only in
// whitespace, key order, a trailing newline or an empty optional field written
// out is the same request and gets the same payment.
//
// Keys stored by versions before this one hold the hash of the raw body; while
// such a record lives (72 h), a retry that repeats those bytes still matches it.
func (e *Engine) requestHash(key string, body []byte, req CreateRequest) [sha256.Size]byte {
	canon, err := json.Marshal(req)
	if err != nil {
		// Plain strings and numbers always encode; keep the bytes if not.
		canon = body
	}
	raw := sha256.Sum256(body)
	legacy := false
	_ = e.store.View(func(r *queue.ReadTx) error {
		rec, err := r.GetIdempotency(key)
		legacy = err == nil && bytes.Equal(rec.RequestHash, raw[:])
		return nil
	})
	if legacy {
		return raw
	}
	// A prefix keeps the two kinds of hash apart.
	return sha256.Sum256(append([]byte("kassa-agent/create-request/v2\n"), canon...))
}
