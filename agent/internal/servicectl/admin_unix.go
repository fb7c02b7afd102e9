//go:build !windows

package servicectl

import "os"

const adminHint = "run it with sudo"

const serviceAccount = User

func isAdmin() bool { return os.Geteuid() == 0 }

// afterInstall has nothing to do: Linux installs with a Plan, not through Control.
func afterInstall() error { return nil }
