//go:build !windows

package servicectl

import "os"

const adminHint = "run it with sudo"

const serviceAccount = User

// libraryInstalls is false: Linux installs with a Plan, never the service library's unit.
const libraryInstalls = false

func isAdmin() bool { return os.Geteuid() == 0 }

// afterInstall is never reached here (libraryInstalls is false).
func afterInstall() error { return nil }
