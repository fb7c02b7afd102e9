package smartpay

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"slices"
	"strconv"
	"strings"

	"kassa-agent/payments/smartpay/internal/wire"
)

// redactBody turns a request or response body into log text with every
// secret field replaced by a short fingerprint (so scans can still be
// correlated), and returns the secret values found so they can be scrubbed
// from any text the service echoes back. Bodies that are not a JSON object
// are never logged, only their size: an unexpected auth answer could be a
// bare token.
func redactBody(body []byte) (logText string, secrets []string) {
	if len(body) == 0 {
		return "", nil
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(body, &m) != nil {
		return "[" + strconv.Itoa(len(body)) + " bytes, not a JSON object]", nil
	}
	for k, v := range m {
		if !slices.Contains(wire.SecretFields, strings.ToLower(k)) {
			continue
		}
		var s string
		if json.Unmarshal(v, &s) == nil && s != "" {
			secrets = append(secrets, s)
		}
		red, _ := json.Marshal(fingerprint(v))
		m[k] = red
	}
	out, _ := json.Marshal(m) // map keys come out sorted: stable logs
	const maxLog = 2048
	if len(out) > maxLog {
		return string(out[:maxLog]) + "…", secrets
	}
	return string(out), secrets
}

func fingerprint(v []byte) string {
	sum := sha256.Sum256(v)
	return "redacted:" + hex.EncodeToString(sum[:4])
}

// scrub removes secret values from text the service sent back (an error
// message that quotes the code, say).
func scrub(text string, secrets []string) string {
	for _, s := range secrets {
		if len(s) >= 4 {
			text = strings.ReplaceAll(text, s, "[redacted]")
		}
	}
	return text
}
