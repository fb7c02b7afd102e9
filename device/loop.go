package device

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"
)

// State is a snapshot of a supervised device for /v1/status and diagnostics.
type State struct {
	Device      string    `json:"device"`         // role, e.g. "scanner"
	Want        string    `json:"want"`           // configured name or USB match
	Connected   bool      `json:"connected"`      //
	Port        string    `json:"port,omitempty"` // port name in use (last used while disconnected)
	Since       time.Time `json:"since"`          // connected since / disconnected since
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	Connects    int       `json:"connects"` // successful opens so far
}

// Session uses an open port until it fails. It should return the error that
// ended it (ErrUnplugged after an unplug). It must return when ctx is done;
// the loop also closes the port then, which unblocks a pending Read.
type Session func(ctx context.Context, p Port) error

// LoopOptions tune a Loop; zero values take the defaults.
type LoopOptions struct {
	Name     string       // role for logs and State.Device
	Logger   *slog.Logger // default slog.Default()
	OnChange func(State)  // called after each state change, on the loop goroutine; keep it short

	// PollInterval is how often an absent device is looked for (default 250 ms).
	PollInterval time.Duration
	// MinBackoff and MaxBackoff bound the wait after a failed open or a
	// short-lived session (defaults 100 ms and 5 s); the wait doubles per
	// failure and is jittered to between half and all of it.
	MinBackoff, MaxBackoff time.Duration
	// StableAfter: a session that lasted this long resets the backoff (default 10 s).
	StableAfter time.Duration
}

func (o LoopOptions) withDefaults() LoopOptions {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.PollInterval <= 0 {
		o.PollInterval = 250 * time.Millisecond
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = 100 * time.Millisecond
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = max(5*time.Second, o.MinBackoff)
	}
	if o.StableAfter <= 0 {
		o.StableAfter = 10 * time.Second
	}
	return o
}

// Loop keeps one configured device open: open, run the session, and on any
// failure close, find the device again (it may come back under another name
// when matched by USB ids) and reopen with backoff.
type Loop struct {
	cfg     PortConfig
	session Session
	opts    LoopOptions
	log     *slog.Logger

	mu    sync.Mutex
	state State

	lastLogged string // last failure message logged, to log each once
	waiting    bool   // "waiting for device" already logged
}

// NewLoop prepares a loop; Run starts it.
func NewLoop(cfg PortConfig, session Session, opts LoopOptions) *Loop {
	opts = opts.withDefaults()
	cfg = cfg.withDefaults()
	return &Loop{
		cfg: cfg, session: session, opts: opts,
		log:   opts.Logger.With("device", opts.Name, "want", cfg.Label()),
		state: State{Device: opts.Name, Want: cfg.Label(), Since: time.Now()},
	}
}

// State returns the current snapshot.
func (l *Loop) State() State {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.state
}

// Run supervises the device until ctx is done, then closes it and returns
// ctx's error. A config that can never open is returned at once.
func (l *Loop) Run(ctx context.Context) error {
	if err := l.cfg.Validate(); err != nil {
		return err
	}
	failures := 0
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		name, err := Resolve(l.cfg)
		var p Port
		if err == nil {
			p, err = openName(name, l.cfg)
		}
		if err != nil {
			if errors.Is(err, ErrNotFound) {
				// Absent: look again soon, without growing the wait, so a
				// re-plugged device is back within one poll interval.
				l.absent(err)
				if !sleep(ctx, l.opts.PollInterval) {
					return ctx.Err()
				}
				continue
			}
			l.openFailed(err)
			if !sleep(ctx, l.backoff(failures)) {
				return ctx.Err()
			}
			failures++
			continue
		}

		l.connected(name)
		start := time.Now()
		err = l.runSession(ctx, p)
		p.Close()
		if ctx.Err() != nil {
			l.disconnected(nil)
			return ctx.Err()
		}
		if err == nil {
			err = errors.New("session ended")
		}
		l.disconnected(err)
		if time.Since(start) >= l.opts.StableAfter {
			failures = 0
			continue
		}
		if !sleep(ctx, l.backoff(failures)) {
			return ctx.Err()
		}
		failures++
	}
}

func (l *Loop) runSession(ctx context.Context, p Port) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(sctx, func() { p.Close() })
	defer stop()
	return l.session(sctx, p)
}

func (l *Loop) backoff(failures int) time.Duration {
	d := l.opts.MinBackoff
	for i := 0; i < failures && d < l.opts.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, l.opts.MaxBackoff)
	return d/2 + rand.N(d/2+1)
}

func (l *Loop) update(f func(*State)) {
	l.mu.Lock()
	f(&l.state)
	s := l.state
	l.mu.Unlock()
	if l.opts.OnChange != nil {
		l.opts.OnChange(s)
	}
}

func (l *Loop) connected(name string) {
	l.lastLogged, l.waiting = "", false
	l.log.Info("serial device connected", "port", name)
	l.update(func(s *State) {
		s.Connected, s.Port, s.Since = true, name, time.Now()
		s.Connects++
	})
}

func (l *Loop) disconnected(err error) {
	now := time.Now()
	if err != nil {
		l.log.Warn("serial device disconnected", "port", l.State().Port, "err", err)
	} else {
		l.log.Info("serial device closed", "port", l.State().Port)
	}
	l.update(func(s *State) {
		s.Connected, s.Since = false, now
		if err != nil {
			s.LastError, s.LastErrorAt = err.Error(), now
		}
	})
}

func (l *Loop) absent(err error) {
	if !l.waiting {
		l.waiting = true
		l.log.Info("waiting for serial device", "reason", err)
		l.setError(err)
	}
}

func (l *Loop) openFailed(err error) {
	l.waiting = false
	if msg := err.Error(); msg != l.lastLogged {
		l.lastLogged = msg
		l.log.Warn("cannot open serial device", "err", err)
		l.setError(err)
	}
}

func (l *Loop) setError(err error) {
	now := time.Now()
	l.update(func(s *State) { s.LastError, s.LastErrorAt = err.Error(), now })
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
