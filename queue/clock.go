package queue

import (
	"sync"
	"time"
)

// Clock is where the queue (and whoever shares it, e.g. the sale engine)
// reads time. It keeps apart the two clocks a till has:
//
//   - Now is the wall clock: what goes into records and what people read.
//     It can be stepped at any moment (NTP after boot, a technician fixing
//     the date), forward or back.
//   - Mono and After run on the monotonic clock, which is never stepped:
//     every wait and every "how long ago" within one run is measured on it,
//     so a wall step neither shortens nor stretches it.
//
// A duration that has to survive a restart can only be kept as wall time;
// code converts it to a monotonic deadline once, when it first sees it.
type Clock interface {
	// Now returns the wall time.
	Now() time.Time
	// Mono returns the monotonic clock's reading: the time since some
	// fixed point in this process. Only differences mean anything.
	Mono() time.Duration
	// After returns a channel that receives once d of monotonic time has
	// passed (at once for d <= 0).
	After(d time.Duration) <-chan time.Time
}

// SystemClock is the real clock: time.Now for wall time, the runtime's
// monotonic clock for Mono and After.
var SystemClock Clock = systemClock{}

// monoBase is the fixed point of systemClock.Mono. time.Since on a reading
// taken with time.Now uses the monotonic clock.
var monoBase = time.Now()

type systemClock struct{}

func (systemClock) Now() time.Time                         { return time.Now() }
func (systemClock) Mono() time.Duration                    { return time.Since(monoBase) }
func (systemClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// funcClock takes its wall time from the Options.Now function of older
// callers and everything monotonic from the system.
type funcClock struct{ now func() time.Time }

func (c funcClock) Now() time.Time                       { return c.now() }
func (funcClock) Mono() time.Duration                    { return time.Since(monoBase) }
func (funcClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// pickClock resolves the clock options: c if set, else now as the wall
// clock, else fallback.
func pickClock(c Clock, now func() time.Time, fallback Clock) Clock {
	switch {
	case c != nil:
		return c
	case now != nil:
		return funcClock{now: now}
	}
	return fallback
}

// fired is a channel that is always ready: a wait of zero.
var fired = func() chan time.Time {
	c := make(chan time.Time)
	close(c)
	return c
}()

// TestClock is a Clock for tests in which time moves only when the test
// says so. Its wall time and its monotonic time move separately: StepWall
// steps the wall clock the way NTP or a technician does, and no time
// passes; Advance lets time pass, moving both and waking the After
// channels that come due. It is safe for concurrent use.
type TestClock struct {
	mu      sync.Mutex
	wall    time.Time
	mono    time.Duration
	waiters []testWaiter
}

type testWaiter struct {
	at time.Duration // monotonic deadline
	c  chan time.Time
}

// NewTestClock returns a clock whose wall time is wall and whose monotonic
// reading is zero.
func NewTestClock(wall time.Time) *TestClock {
	return &TestClock{wall: wall.Round(0)}
}

// Now returns the wall time (it has no monotonic reading: use Mono).
func (c *TestClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.wall
}

// Mono returns the time Advance has let pass.
func (c *TestClock) Mono() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mono
}

// After returns a channel that receives the wall time once Advance has
// let d pass.
func (c *TestClock) After(d time.Duration) <-chan time.Time {
	if d <= 0 {
		return fired
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	w := testWaiter{at: c.mono + d, c: make(chan time.Time, 1)}
	c.waiters = append(c.waiters, w)
	return w.c
}

// StepWall moves the wall clock by d (back when d < 0). No time passes:
// Mono is unchanged and no After channel fires.
func (c *TestClock) StepWall(d time.Duration) {
	c.mu.Lock()
	c.wall = c.wall.Add(d)
	c.mu.Unlock()
}

// Advance lets d pass: the wall and monotonic clocks both move by d, and
// every After channel whose time has come receives.
func (c *TestClock) Advance(d time.Duration) {
	if d < 0 {
		panic("queue: TestClock.Advance with a negative duration: time does not pass backward (use StepWall)")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.mono += d
	c.wall = c.wall.Add(d)
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		if w.at <= c.mono {
			w.c <- c.wall // buffered, sent once: never blocks
			continue
		}
		kept = append(kept, w)
	}
	clear(c.waiters[len(kept):])
	c.waiters = kept
}
