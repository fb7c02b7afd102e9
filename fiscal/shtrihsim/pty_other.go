//go:build !linux

package shtrihsim

import (
	"context"
	"errors"
)

// ServePTY is only available on Linux; use ServeTCP elsewhere.
func (s *Sim) ServePTY(context.Context) (string, error) {
	return "", errors.New("shtrihsim: PTYs are supported on Linux only; use ServeTCP")
}
