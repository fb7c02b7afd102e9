//go:build !unix

package scanner_test

import (
	"testing"
	"time"
)

func idleCPUPercent(tb testing.TB, d time.Duration) float64 {
	tb.Skip("idle CPU is measured with getrusage, unix only")
	return 0
}
