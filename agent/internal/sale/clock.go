package sale

// Time in the engine: records and people get the wall clock (Clock.Now);
// every wait and every age within a run is measured on the monotonic clock
// (Clock.Mono), so that a step of the wall clock (NTP at boot, a technician
// fixing the date) neither cancels a code early nor keeps a payment alive
// past its time.

import (
	"sync"
	"time"

	"kassa-agent/queue"
)

// ages measures how long things have existed in monotonic time. Something
// first seen in this run (created here) starts at zero. Something from an
// earlier run gets its age from the wall clock once, when first seen; a
// record that claims to come from the future (the clock was stepped back)
// counts as older than any limit: an age that cannot be known is never taken
// as young enough to move money.
type ages struct {
	mu    sync.Mutex
	clock queue.Clock
	seen  map[string]ageMark
}

type ageMark struct {
	at  time.Duration // Mono when first seen
	age time.Duration // age then
}

// unknownAge is the age of a record whose wall time lies in the future.
const unknownAge = time.Duration(1<<63 - 1)

func newAges(c queue.Clock) *ages { return &ages{clock: c, seen: map[string]ageMark{}} }

// born marks key as new now.
func (a *ages) born(key string) {
	a.mu.Lock()
	a.seen[key] = ageMark{at: a.clock.Mono()}
	a.mu.Unlock()
}

// of is key's age; since is its wall-clock start as recorded.
func (a *ages) of(key string, since time.Time) time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.clock.Mono()
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
