package queue

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// A clockDriverIn runs a test's time inside a synctest bubble: advance
// lets time pass (and waits for the bubble to settle), step steps the wall
// clock only, elapsed is the time that has passed.
type clockDriverIn struct {
	opts    Options
	advance func(time.Duration)
	step    func(time.Duration)
	elapsed func() time.Duration
}

// wallStepper is a wall clock over the bubble's time that can be stepped:
// the form older callers inject through Options.Now.
type wallStepper struct {
	mu  sync.Mutex
	off time.Duration
}

func (w *wallStepper) now() time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return time.Now().Add(w.off)
}

func (w *wallStepper) step(d time.Duration) {
	w.mu.Lock()
	w.off += d
	w.mu.Unlock()
}

var clockDrivers = []func() clockDriverIn{
	// Options.Now steps the wall clock; the bubble's clock is the monotonic one.
	func() clockDriverIn {
		w := &wallStepper{}
		start := time.Now()
		return clockDriverIn{
			opts:    Options{Now: w.now},
			advance: func(d time.Duration) { time.Sleep(d); synctest.Wait() },
			step:    w.step,
			elapsed: func() time.Duration { return time.Since(start) },
		}
	},
	// TESTCLOCK-BEGIN
	func() clockDriverIn {
		c := NewTestClock(time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC))
		return clockDriverIn{
			opts:    Options{Clock: c},
			advance: func(d time.Duration) { c.Advance(d); synctest.Wait() },
			step:    c.StepWall,
			elapsed: c.Mono,
		}
	},
	// TESTCLOCK-END
}

func driverName(i int) string { return []string{"Options.Now", "TestClock"}[i] }

// attemptLog records when (in elapsed time) each attempt came.
type attemptLog struct {
	mu sync.Mutex
	at []time.Duration
}

func (a *attemptLog) add(d time.Duration) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.at = append(a.at, d)
	return len(a.at)
}

func (a *attemptLog) list() []time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]time.Duration(nil), a.at...)
}

// failOnce is a handler that fails its first attempt and logs all.
func failOnce(log *attemptLog, elapsed func() time.Duration) Handler {
	return func(ctx context.Context, m Message) error {
		if log.add(elapsed()) == 1 {
			return errors.New("provider 503")
		}
		return nil
	}
}

// A wall clock step in the middle of a backoff neither fires the retry
// early nor holds it for hours: the retry comes after its backoff.
func TestWallStepDuringBackoff(t *testing.T) {
	for i, mk := range clockDrivers {
		for _, step := range []time.Duration{2 * time.Hour, -2 * time.Hour} {
			t.Run(fmt.Sprintf("%s/step %v", driverName(i), step), func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					c := mk()
					s, err := Open(filepath.Join(t.TempDir(), "kassa.db"), c.opts)
					if err != nil {
						t.Fatal(err)
					}
					defer s.Close()
					d := NewDispatcher(s, DispatcherOptions{BaseDelay: 10 * time.Second, MaxDelay: time.Minute, MaxAge: -1,
						Jitter: func(max time.Duration) time.Duration { return max }})
					log := &attemptLog{}
					d.Register("k", failOnce(log, c.elapsed))
					rec := &recorder{}
					d.Register("other", func(ctx context.Context, m Message) error { rec.add(m); return nil })
					a := enqueue(t, s, "k", "A", "")
					stop := runDispatcher(t, d)
					defer stop()
					synctest.Wait()
					if got := log.list(); len(got) != 1 {
						t.Fatalf("%d attempts at start", len(got))
					}
					m, _ := s.GetMessage(a)
					c.advance(time.Second)
					c.step(step)
					// Another sale's message wakes the dispatcher mid-backoff.
					enqueue(t, s, "other", "B", "")
					synctest.Wait()
					if len(rec.list()) != 1 {
						t.Fatalf("other key not delivered: %v", rec.list())
					}
					c.advance(8 * time.Second)
					if got := log.list(); len(got) != 1 {
						t.Fatalf("retried %v after the first attempt, before its 10s backoff", got[1]-got[0])
					}
					c.advance(time.Second)
					if got := log.list(); len(got) != 2 || got[1]-got[0] != 10*time.Second {
						t.Fatalf("attempts at %v; want a retry 10s (its backoff) after the first", got)
					}
					c.advance(3 * time.Hour)
					if got := log.list(); len(got) != 2 {
						t.Fatalf("attempts at %v after 3h", got)
					}
					// The record keeps wall time, for people: the failure's wall
					// time plus the backoff.
					if want := m.Created.Add(10 * time.Second); !m.NextAttempt.Equal(want) {
						t.Errorf("stored next attempt %v, want %v", m.NextAttempt, want)
					}
				})
			})
		}
	}
}

// A due time stored by an earlier run is kept to at most the message's own
// backoff when the wall clock went back during the restart, and fires at
// once when it went forward.
func TestWallStepAcrossRestart(t *testing.T) {
	for i, mk := range clockDrivers {
		for _, step := range []time.Duration{2 * time.Hour, -2 * time.Hour} {
			t.Run(fmt.Sprintf("%s/step %v", driverName(i), step), func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					c := mk()
					s, err := Open(filepath.Join(t.TempDir(), "kassa.db"), c.opts)
					if err != nil {
						t.Fatal(err)
					}
					defer s.Close()
					opts := DispatcherOptions{BaseDelay: 10 * time.Second, MaxDelay: time.Minute, MaxAge: -1,
						Jitter: func(max time.Duration) time.Duration { return max }}
					log := &attemptLog{}
					d := NewDispatcher(s, opts)
					d.Register("k", failOnce(log, c.elapsed))
					enqueue(t, s, "k", "A", "")
					stop := runDispatcher(t, d)
					synctest.Wait()
					c.advance(time.Second)
					stop()
					c.step(step)
					d = NewDispatcher(s, opts)
					d.Register("k", failOnce(log, c.elapsed))
					stop = runDispatcher(t, d)
					defer stop()
					synctest.Wait()
					if step < 0 {
						// Restarted 1s in: it waits its 10s backoff from then, at most.
						c.advance(9 * time.Second)
						if got := log.list(); len(got) != 1 {
							t.Fatalf("attempts at %v; want no retry before 11s", got)
						}
						c.advance(time.Second)
					}
					got := log.list()
					want := 11 * time.Second
					if step > 0 {
						want = time.Second // due at once after the restart
					}
					if len(got) != 2 || got[1]-got[0] != want {
						t.Fatalf("attempts at %v; want a retry %v after the first", got, want)
					}
				})
			})
		}
	}
}

// Idempotency keys are not pruned early when the wall clock steps
// forward (nor, trivially, back).
func TestIdempotencyPruneWallStep(t *testing.T) {
	for i, mk := range clockDrivers {
		t.Run(driverName(i)+"/forward", func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				c := mk()
				s := openTemp(t, c.opts)
				ctx := context.Background()
				putKey(t, s, "k1")
				c.advance(71 * time.Hour)
				c.step(2 * time.Hour) // wall age now 73h, real age 71h
				if n, err := s.PruneIdempotency(ctx, MinIdempotencyRetention); err != nil || n != 0 {
					t.Fatalf("pruned %d keys 71h after creation (wall clock stepped +2h), %v", n, err)
				}
				c.advance(time.Hour + time.Second)
				if n, err := s.PruneIdempotency(ctx, MinIdempotencyRetention); err != nil || n != 1 {
					t.Fatalf("pruned %d keys after 72h, %v", n, err)
				}
			})
		})
		t.Run(driverName(i)+"/back", func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				c := mk()
				s := openTemp(t, c.opts)
				ctx := context.Background()
				putKey(t, s, "k1")
				c.step(-2 * time.Hour)
				c.advance(73 * time.Hour) // wall age 71h
				if n, err := s.PruneIdempotency(ctx, MinIdempotencyRetention); err != nil || n != 0 {
					t.Fatalf("pruned %d keys, wall age 71h, %v", n, err)
				}
				c.advance(2 * time.Hour)
				if n, err := s.PruneIdempotency(ctx, MinIdempotencyRetention); err != nil || n != 1 {
					t.Fatalf("pruned %d keys, wall age 73h, %v", n, err)
				}
			})
		})
	}
}

func putKey(t *testing.T, s *Store, key string) {
	t.Helper()
	if err := s.Update(context.Background(), func(tx *Tx) error {
		return tx.PutIdempotency(key, IdempotencyRecord{RequestHash: []byte("h"), ResourceID: "pay-1", Status: 201})
	}); err != nil {
		t.Fatal(err)
	}
}
