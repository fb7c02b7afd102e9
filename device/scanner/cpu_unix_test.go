//go:build unix

package scanner_test

import (
	"syscall"
	"testing"
	"time"
)

// idleCPUPercent sleeps for d and returns the process's user+system CPU time
// over that span as a percentage of one core.
func idleCPUPercent(tb testing.TB, d time.Duration) float64 {
	tb.Helper()
	cpu := func() time.Duration {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			tb.Fatal(err)
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	c0, t0 := cpu(), time.Now()
	time.Sleep(d)
	return float64(cpu()-c0) / float64(time.Since(t0)) * 100
}
