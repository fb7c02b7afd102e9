//go:build !windows

package localapi

import (
	"fmt"
	"os"
)

// checkPrivate refuses a token file others can read: anyone who can read it can
// take payments at this till.
func checkPrivate(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("API token file: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("API token file %s has mode %o; others can read it: run chmod 600 %s", path, st.Mode().Perm(), path)
	}
	return nil
}
