// Package scanner turns the byte stream of a serial QR/barcode scanner into
// codes: framing by suffix or idle gap, prefix stripping, a length limit,
// and a double-read filter. Codes handed over by the POS through the local
// API enter through Inject and pass the same filter.
package scanner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"kassa-agent/device"
)

// Code sources.
const (
	SourceSerial = "serial"
	SourceAPI    = "api"
)

// Code is one scanned code.
type Code struct {
	Text   string    // raw bytes of the code (not necessarily UTF-8; GS 0x1D kept)
	Source string    // SourceSerial or SourceAPI
	At     time.Time // arrival of its last byte (for the API: when it was injected)
	Seq    uint64    // 1, 2, ... in publication order, per Scanner
}

// DefaultDoubleReadWindow is used when Config.DoubleReadWindow is 0.
const DefaultDoubleReadWindow = 500 * time.Millisecond

// Config is the agent's [scanner] section.
type Config struct {
	Driver string // "bugst" (default) or "tarm"
	Port   string // port name; empty: match by VID/PID/Serial
	VID    string
	PID    string
	Serial string
	Baud   int // default 9600

	Suffix    string        // "cr" (default), "lf", "crlf", "none"
	IdleGap   time.Duration // default 50 ms; negative: off (suffix only)
	Prefix    string
	MaxLength int // default 4096
	// DoubleReadWindow: the same code again within this time of its previous
	// reading is dropped (default 500 ms; negative: off). The window slides:
	// a scanner held over a code in continuous mode yields it once.
	DoubleReadWindow time.Duration
}

// PortConfig is the serial part of c.
func (c Config) PortConfig() device.PortConfig {
	return device.PortConfig{Driver: c.Driver, Name: c.Port, VID: c.VID, PID: c.PID, Serial: c.Serial, Baud: c.Baud}
}

// Options are the program's hooks.
type Options struct {
	// OnCode receives every published code, in order, on the scanner's
	// goroutine (or the caller's, for Inject). It must not block for long and
	// must not call Inject.
	OnCode func(Code)
	// OnState receives the device state on every change (see device.Loop).
	OnState func(device.State)
	Logger  *slog.Logger
	// Loop tunes reconnection; Name, Logger and OnChange are filled in.
	Loop device.LoopOptions
	// Enumerator overrides USB discovery (tests).
	Enumerator device.Enumerator
}

// Scanner reads codes from a serial scanner and from Inject.
type Scanner struct {
	cfg    Config
	fcfg   FramerConfig
	window time.Duration
	opts   Options
	log    *slog.Logger
	loop   *device.Loop

	mu       sync.Mutex // orders publication
	seq      uint64
	lastText string
	lastAt   time.Time
}

// New checks cfg and prepares a Scanner.
func New(cfg Config, opts Options) (*Scanner, error) {
	suffix, err := ParseSuffix(cfg.Suffix)
	if err != nil {
		return nil, err
	}
	if cfg.MaxLength < 0 {
		return nil, fmt.Errorf("scanner max_length %d: must not be negative", cfg.MaxLength)
	}
	if opts.OnCode == nil {
		return nil, errors.New("scanner: OnCode is required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &Scanner{
		cfg:    cfg,
		fcfg:   FramerConfig{Suffix: suffix, IdleGap: cfg.IdleGap, Prefix: cfg.Prefix, MaxLength: cfg.MaxLength},
		window: cfg.DoubleReadWindow,
		opts:   opts,
		log:    opts.Logger.With("device", "scanner"),
	}
	if s.window == 0 {
		s.window = DefaultDoubleReadWindow
	}
	if s.fcfg.MaxLength == 0 {
		s.fcfg.MaxLength = DefaultMaxLength
	}
	pc := cfg.PortConfig()
	pc.Enumerator = opts.Enumerator
	lo := opts.Loop
	lo.Name, lo.Logger, lo.OnChange = "scanner", opts.Logger, opts.OnState
	s.loop = device.NewLoop(pc, s.Run, lo)
	if cfg.Port != "" || cfg.VID != "" || cfg.PID != "" {
		if err := pc.Validate(); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Supervise opens the configured port and reads codes until ctx is done,
// reopening the device whenever it goes away. It returns ctx's error.
func (s *Scanner) Supervise(ctx context.Context) error { return s.loop.Run(ctx) }

// State is the device state (connected, since, last error).
func (s *Scanner) State() device.State { return s.loop.State() }

// idleRead bounds a read while no code is pending, so a Run without a
// supervisor still notices ctx; it costs one wake-up per second.
const idleRead = time.Second

// Run reads codes from an open port until the port fails or ctx is done; it
// returns the port's error (ErrUnplugged, ErrClosed) or ctx's. It is the
// device.Session that Supervise runs; call it directly to read a port you
// opened yourself.
func (s *Scanner) Run(ctx context.Context, p device.Port) error {
	f := NewFramer(s.fcfg)
	buf := make([]byte, 4096)
	for {
		if err := ctx.Err(); err != nil {
			s.frames(f.Flush())
			return err
		}
		wait := idleRead
		if d, ok := f.Deadline(); ok {
			wait = time.Until(d)
			if wait <= 0 {
				s.frames(f.Expire(time.Now()))
				continue
			}
		}
		if err := p.SetReadTimeout(wait); err != nil {
			return err
		}
		n, err := p.Read(buf)
		now := time.Now()
		if n > 0 {
			s.frames(f.Feed(now, buf[:n]))
		} else if err == nil {
			s.frames(f.Expire(now))
		}
		if err != nil {
			s.frames(f.Flush())
			return err
		}
	}
}

func (s *Scanner) frames(fs []Frame) {
	for _, fr := range fs {
		if fr.Overlong {
			s.log.Warn("scanner input longer than max_length dropped", "bytes", fr.Length, "max_length", s.fcfg.MaxLength)
			continue
		}
		s.publish(Code{Text: fr.Text, Source: SourceSerial, At: fr.At})
	}
}

// Inject publishes a code handed over by the POS, through the same
// double-read filter. It returns the code and whether it was published
// (false: empty, longer than max_length, or a double read).
func (s *Scanner) Inject(text string) (Code, bool) {
	c := Code{Text: text, Source: SourceAPI, At: time.Now()}
	if text == "" || len(text) > s.fcfg.MaxLength {
		return c, false
	}
	return s.publish(c)
}

func (s *Scanner) publish(c Code) (Code, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.window > 0 && c.Text == s.lastText {
		gap := c.At.Sub(s.lastAt)
		if gap < s.window && gap > -s.window {
			s.lastAt = c.At
			s.log.Debug("double read dropped", "source", c.Source, "after", gap)
			return c, false
		}
	}
	s.lastText, s.lastAt = c.Text, c.At
	s.seq++
	c.Seq = s.seq
	s.opts.OnCode(c)
	return c, true
}
