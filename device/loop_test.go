package device_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"kassa-agent/device"
	"kassa-agent/device/ptytest"
)

// logCount counts log records by message.
type logCount struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *logCount) Enabled(context.Context, slog.Level) bool { return true }
func (c *logCount) Handle(_ context.Context, r slog.Record) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n[r.Message]++
	return nil
}
func (c *logCount) WithAttrs([]slog.Attr) slog.Handler { return c }
func (c *logCount) WithGroup(string) slog.Handler      { return c }
func (c *logCount) get(msg string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[msg]
}

// TestLoopBusyThenFree: a port held by someone else is retried with backoff,
// the failure is logged once (not once per attempt), and the loop connects
// as soon as the port is free.
func TestLoopBusyThenFree(t *testing.T) {
	dev := ptytest.New(t)
	cfg := device.PortConfig{Name: dev.Path()}
	holder, err := device.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	logs := &logCount{n: map[string]int{}}
	var mu sync.Mutex
	var states []device.State
	got := make(chan string, 1)
	loop := device.NewLoop(cfg, func(ctx context.Context, p device.Port) error {
		buf := make([]byte, 16)
		p.SetReadTimeout(device.NoTimeout)
		n, err := p.Read(buf)
		if n > 0 {
			got <- string(buf[:n])
		}
		<-ctx.Done()
		return err
	}, device.LoopOptions{
		Name: "test", Logger: slog.New(logs),
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 80 * time.Millisecond,
		OnChange: func(s device.State) { mu.Lock(); states = append(states, s); mu.Unlock() },
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- loop.Run(ctx) }()

	time.Sleep(400 * time.Millisecond)
	s := loop.State()
	if s.Connected || !strings.Contains(s.LastError, device.ErrBusy.Error()) {
		t.Fatalf("while busy: %+v", s)
	}
	if n := logs.get("cannot open serial device"); n != 1 {
		t.Fatalf("busy logged %d times, want once", n)
	}
	holder.Close()
	deadline := time.Now().Add(time.Second)
	for !loop.State().Connected && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if s := loop.State(); !s.Connected || s.Port != dev.Path() || s.Connects != 1 {
		t.Fatalf("after release: %+v", s)
	}
	dev.Write([]byte("hello"))
	select {
	case g := <-got:
		if g != "hello" {
			t.Fatalf("session read %q", g)
		}
	case <-time.After(time.Second):
		t.Fatal("session got no data")
	}

	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("run returned %v", err)
		}
	case <-time.After(time.Second):
		t.Fatal("loop did not stop on cancel")
	}
	if el := time.Since(start); el > 500*time.Millisecond {
		t.Fatalf("stop took %v", el)
	}
	if logs.get("serial device connected") != 1 {
		t.Fatalf("connected logged %d times", logs.get("serial device connected"))
	}
	mu.Lock()
	defer mu.Unlock()
	if last := states[len(states)-1]; last.Connected {
		t.Fatalf("final state %+v", last)
	}
	// The port is free again after the loop stopped.
	p, err := device.Open(cfg)
	if err != nil {
		t.Fatalf("port still held after stop: %v", err)
	}
	p.Close()
}

// TestLoopSessionBlockedInReadStops: cancelling the loop closes the port,
// which ends a session blocked in a Read without timeout.
func TestLoopStopsBlockedSession(t *testing.T) {
	for _, drv := range drivers {
		t.Run(drv, func(t *testing.T) {
			dev := ptytest.New(t)
			entered := make(chan struct{})
			readErr := make(chan error, 1)
			loop := device.NewLoop(device.PortConfig{Driver: drv, Name: dev.Path()}, func(ctx context.Context, p device.Port) error {
				p.SetReadTimeout(device.NoTimeout)
				close(entered)
				_, err := p.Read(make([]byte, 1)) // ignores ctx on purpose
				readErr <- err
				return err
			}, device.LoopOptions{Logger: slog.New(&logCount{n: map[string]int{}})})
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- loop.Run(ctx) }()
			<-entered
			time.Sleep(20 * time.Millisecond)
			cancel()
			select {
			case <-done:
			case <-time.After(time.Second):
				t.Fatal("loop blocked behind a Read")
			}
			if err := <-readErr; !errors.Is(err, device.ErrClosed) {
				t.Fatalf("read ended with %v, want ErrClosed", err)
			}
		})
	}
}

func TestLoopRejectsBadConfig(t *testing.T) {
	loop := device.NewLoop(device.PortConfig{Driver: "x", Name: "/dev/x"}, nil, device.LoopOptions{})
	if err := loop.Run(context.Background()); err == nil {
		t.Fatal("bad config ran")
	}
}
