//go:build !windows

package servicectl

import "os"

const adminHint = "run it with sudo"

func isAdmin() bool { return os.Geteuid() == 0 }

// afterInstall has nothing to do on systemd: the unit carries every setting.
func afterInstall() error { return nil }
