package device

import (
	"testing"
	"time"
)

func TestBackoffDoublesJittersAndCaps(t *testing.T) {
	l := NewLoop(PortConfig{Name: "/dev/null"}, nil, LoopOptions{MinBackoff: 100 * time.Millisecond, MaxBackoff: time.Second})
	for failures, full := range []time.Duration{100, 200, 400, 800, 1000, 1000, 1000} {
		full *= time.Millisecond
		seen := map[time.Duration]bool{}
		for range 200 {
			d := l.backoff(failures)
			if d < full/2 || d > full {
				t.Fatalf("failures %d: wait %v outside [%v, %v]", failures, d, full/2, full)
			}
			seen[d] = true
		}
		if len(seen) < 50 {
			t.Fatalf("failures %d: only %d distinct waits, not jittered", failures, len(seen))
		}
	}
	if d := l.backoff(1000); d > time.Second {
		t.Fatalf("no cap after many failures: %v", d)
	}
}
