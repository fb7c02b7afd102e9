//go:build windows

package device

import (
	"errors"
	"io/fs"

	"golang.org/x/sys/windows"
)

// portLock is a no-op on Windows: the OS opens COM ports exclusively.
type portLock struct{}

func lockPort(string) (*portLock, error) { return &portLock{}, nil }

func (*portLock) release() {}

func classifyOSError(err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, windows.ERROR_FILE_NOT_FOUND), errors.Is(err, windows.ERROR_PATH_NOT_FOUND):
		return ErrNotFound
	case errors.Is(err, windows.ERROR_ACCESS_DENIED), errors.Is(err, windows.ERROR_SHARING_VIOLATION):
		// Windows answers "access denied" for a COM port another program has open.
		return ErrBusy
	}
	return nil
}
