//go:build !windows

package main

import (
	"fmt"
	"os"
)

// restrictDataDir keeps the store and the API token to the service's own user:
// whoever reads the token can take payments at this till.
func restrictDataDir(dir string) error {
	st, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if st.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("make it owner-only (chmod 700): %w", err)
		}
	}
	return nil
}
