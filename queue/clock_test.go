package queue

import (
	"testing"
	"time"
)

func TestTestClock(t *testing.T) {
	t0 := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	c := NewTestClock(t0)
	ready := func(ch <-chan time.Time) bool {
		select {
		case <-ch:
			return true
		default:
			return false
		}
	}
	if !ready(c.After(0)) || !ready(c.After(-time.Second)) {
		t.Fatal("a wait of zero does not fire at once")
	}
	a := c.After(10 * time.Second)
	b := c.After(20 * time.Second)
	c.StepWall(time.Hour)
	c.StepWall(-3 * time.Hour)
	if ready(a) || ready(b) || c.Mono() != 0 || !c.Now().Equal(t0.Add(-2*time.Hour)) {
		t.Fatalf("StepWall let time pass: mono %v, wall %v", c.Mono(), c.Now())
	}
	c.Advance(9 * time.Second)
	if ready(a) {
		t.Fatal("After(10s) fired after 9s")
	}
	c.Advance(time.Second)
	if !ready(a) || ready(b) {
		t.Fatal("After(10s) not fired after 10s, or After(20s) fired")
	}
	if c.Mono() != 10*time.Second || !c.Now().Equal(t0.Add(-2*time.Hour+10*time.Second)) {
		t.Fatalf("after 10s: mono %v, wall %v", c.Mono(), c.Now())
	}
	c.Advance(time.Hour)
	if !ready(b) {
		t.Fatal("After(20s) not fired after 1h")
	}
	// Its wall time has no monotonic reading, so Sub and Since on it
	// follow the wall clock, as code must not rely on.
	if c.Now() != c.Now().Round(0) {
		t.Fatal("TestClock.Now carries a monotonic reading")
	}
}

func TestSystemClockMono(t *testing.T) {
	m0 := SystemClock.Mono()
	<-SystemClock.After(time.Millisecond)
	if d := SystemClock.Mono() - m0; d < time.Millisecond {
		t.Fatalf("Mono moved %v across a 1ms wait", d)
	}
}
