package sale

import (
	"sync"
	"time"
)

// Clock is where the engine reads time. Records and people get the wall clock;
// every wait and every age within a run is measured on the monotonic clock, so
// that a step of the wall clock (NTP at boot, a technician fixing the date)
// neither cancels a code early nor keeps a payment alive past its time.
type Clock interface {
	Now() time.Time         // wall time, for records
	Elapsed() time.Duration // monotonic time since an arbitrary start, for waits
}

type systemClock struct{ start time.Time }

// SystemClock is the host's clock.
func SystemClock() Clock { return systemClock{start: time.Now()} }

func (c systemClock) Now() time.Time         { return time.Now() }
func (c systemClock) Elapsed() time.Duration { return time.Since(c.start) }

// TestClock flows with real time (so the engine's sleeps and a test's waits
// agree) but lets a test step the wall clock, as NTP or a technician would,
// or make time pass faster on both clocks.
type TestClock struct {
	mu      sync.Mutex
	start   time.Time
	wallOff time.Duration
	ahead   time.Duration
}

// NewTestClock starts a test clock at the host's time.
func NewTestClock() *TestClock { return &TestClock{start: time.Now()} }

// Now is the wall time, with every step applied.
func (c *TestClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	// Round(0) strips the monotonic reading: a stepped wall time must not be
	// compared on the monotonic clock behind the engine's back.
	return time.Now().Add(c.wallOff + c.ahead).Round(0)
}

// Elapsed is the monotonic time since the clock was made, plus Advance.
func (c *TestClock) Elapsed() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Since(c.start) + c.ahead
}

// StepWall moves the wall clock by d (either way); the monotonic clock is not touched.
func (c *TestClock) StepWall(d time.Duration) {
	c.mu.Lock()
	c.wallOff += d
	c.mu.Unlock()
}

// Advance lets d pass at once on both clocks.
func (c *TestClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.ahead += d
	c.mu.Unlock()
}

// ages measures how long things have existed in monotonic time. Something
// first seen in this run (created here) starts at zero. Something from an
// earlier run gets its age from the wall clock once, when first seen; a
// record that claims to come from the future (the clock was stepped back)
// counts as older than any limit: an age that cannot be known is never taken
// as young enough to move money.
type ages struct {
	mu    sync.Mutex
	clock Clock
	seen  map[string]ageMark
}

type ageMark struct {
	at  time.Duration // Elapsed when first seen
	age time.Duration // age then
}

// unknownAge is the age of a record whose wall time lies in the future.
const unknownAge = time.Duration(1<<63 - 1)

func newAges(c Clock) *ages { return &ages{clock: c, seen: map[string]ageMark{}} }

// born marks key as new now.
func (a *ages) born(key string) {
	a.mu.Lock()
	a.seen[key] = ageMark{at: a.clock.Elapsed()}
	a.mu.Unlock()
}

// of is key's age; since is its wall-clock start as recorded.
func (a *ages) of(key string, since time.Time) time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.clock.Elapsed()
	m, ok := a.seen[key]
	if !ok {
		m = ageMark{at: now, age: a.clock.Now().Sub(since)}
		if m.age < 0 {
			m.age = unknownAge
		}
		a.seen[key] = m
	}
	if m.age == unknownAge {
		return unknownAge
	}
	return m.age + (now - m.at)
}

// forget drops key (it reached a final state).
func (a *ages) forget(key string) {
	a.mu.Lock()
	delete(a.seen, key)
	a.mu.Unlock()
}
