package localapi

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// tokenBytes is the token's entropy: the agent makes 32 random bytes.
const tokenBytes = 32

// checkTokenFormat refuses a token the agent did not make: one a person typed
// ("x", "1234") can be guessed, and then anyone on the till can take payments.
func checkTokenFormat(tok string) error {
	raw, err := base64.RawURLEncoding.Strict().DecodeString(tok)
	if err != nil {
		return errors.New("does not hold a token this agent made (base64url, no padding)")
	}
	if len(raw) < tokenBytes {
		return fmt.Errorf("holds a token of %d bytes; the agent's tokens have %d random bytes", len(raw), tokenBytes)
	}
	return nil
}

// LoadOrCreateToken returns the install's bearer token, creating it on first start:
// 32 random bytes, base64url, in a file only the service's user can read.
func LoadOrCreateToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		tok := strings.TrimSpace(string(b))
		if tok == "" {
			return "", fmt.Errorf("API token file %s is empty: delete it and restart the agent to make a new one (then give the new token to the POS)", path)
		}
		if err := checkTokenFormat(tok); err != nil {
			return "", fmt.Errorf("API token file %s %w: delete it and restart the agent to make a new one (then give the new token to the POS)", path, err)
		}
		if err := checkPrivate(path); err != nil {
			return "", err
		}
		return tok, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("read API token: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", fmt.Errorf("create data directory for the API token: %w", err)
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", fmt.Errorf("make API token: %w", err)
	}
	tok := base64.RawURLEncoding.EncodeToString(raw)
	// O_EXCL: if two starts race, one loses and rereads rather than overwriting a
	// token the POS may already hold.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return LoadOrCreateToken(path)
	}
	if err != nil {
		return "", fmt.Errorf("create API token file: %w", err)
	}
	if _, err := f.WriteString(tok + "\n"); err != nil {
		f.Close()
		return "", fmt.Errorf("write API token file: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return "", fmt.Errorf("write API token file: %w", err)
	}
	return tok, f.Close()
}
