package scanner

import (
	"bytes"
	"fmt"
	"strings"
	"time"
)

// Suffix is the byte sequence a scanner sends after each code.
type Suffix int

const (
	SuffixCR   Suffix = iota // "\r" (most scanners' default)
	SuffixLF                 // "\n"
	SuffixCRLF               // "\r\n"
	SuffixNone               // nothing: codes end by the idle gap alone
)

// ParseSuffix reads the config value: "cr", "lf", "crlf" or "none" ("" is "cr").
func ParseSuffix(s string) (Suffix, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "cr":
		return SuffixCR, nil
	case "lf":
		return SuffixLF, nil
	case "crlf":
		return SuffixCRLF, nil
	case "none":
		return SuffixNone, nil
	}
	return 0, fmt.Errorf("scanner suffix %q: want cr, lf, crlf or none", s)
}

func (s Suffix) String() string {
	return [...]string{"cr", "lf", "crlf", "none"}[s]
}

// Defaults for FramerConfig zero values.
const (
	DefaultIdleGap   = 50 * time.Millisecond
	DefaultMaxLength = 4096
)

// FramerConfig says how codes are delimited.
type FramerConfig struct {
	Suffix Suffix
	// IdleGap ends a code when no byte arrives for this long (0: 50 ms;
	// negative: never, the suffix alone ends codes).
	IdleGap time.Duration
	// Prefix is stripped from the start of a code when present.
	Prefix string
	// MaxLength bounds a code (0: 4096). Longer input is dropped up to the
	// next end of code and reported as one Overlong frame.
	MaxLength int
}

// Frame is one framed code, or one dropped runaway input.
type Frame struct {
	Text     string    // code bytes, prefix and suffix removed, every other byte kept
	At       time.Time // time the last byte arrived
	Overlong bool      // input longer than MaxLength was dropped; Text is empty
	Length   int       // for Overlong: how many bytes were dropped
}

// Framer turns a timestamped byte stream into codes. It is pure: no I/O, no
// clock of its own. Feed completes a code the moment its suffix arrives;
// the caller asks Deadline when an unfinished code would end by the idle gap
// and calls Expire then.
//
// CR and LF bytes at either end of a code are trimmed (they can only be parts
// of a suffix, e.g. the LF of a CRLF scanner configured as "cr"); all bytes
// between are kept, GS (0x1D) and NUL included. Empty codes are dropped.
type Framer struct {
	suffix  Suffix
	gap     time.Duration
	prefix  []byte
	maxLen  int
	buf     []byte
	last    time.Time // arrival of the newest byte of the unfinished code
	prev    byte      // the byte before, for CRLF
	running bool      // dropping an overlong code
	dropped int
}

// NewFramer returns a Framer with cfg's zero values set to the defaults.
func NewFramer(cfg FramerConfig) *Framer {
	f := &Framer{suffix: cfg.Suffix, gap: cfg.IdleGap, prefix: []byte(cfg.Prefix), maxLen: cfg.MaxLength}
	if f.gap == 0 {
		f.gap = DefaultIdleGap
	}
	if f.maxLen <= 0 {
		f.maxLen = DefaultMaxLength
	}
	return f
}

// Feed adds bytes that arrived at time at and returns the codes they
// complete (an unfinished code older than the idle gap is completed first).
func (f *Framer) Feed(at time.Time, p []byte) []Frame {
	out := f.Expire(at)
	for _, c := range p {
		end := false
		switch f.suffix {
		case SuffixCR:
			end = c == '\r'
		case SuffixLF:
			end = c == '\n'
		case SuffixCRLF:
			end = c == '\n' && f.prev == '\r'
		}
		f.prev = c
		if end {
			out = f.finish(out, at)
			continue
		}
		f.last = at
		if f.running {
			f.dropped++
			continue
		}
		f.buf = append(f.buf, c)
		if len(f.buf) > f.maxLen+len(f.prefix)+2 { // +2: room for a stray CR/LF that gets trimmed
			f.running, f.dropped = true, len(f.buf)
			f.buf = f.buf[:0]
		}
	}
	return out
}

// Deadline is when the unfinished code ends by the idle gap; ok is false when
// nothing is pending or the idle gap is off.
func (f *Framer) Deadline() (deadline time.Time, ok bool) {
	if f.gap < 0 || !f.pending() {
		return time.Time{}, false
	}
	return f.last.Add(f.gap), true
}

// Expire completes the unfinished code if the idle gap has passed by now.
func (f *Framer) Expire(now time.Time) []Frame {
	if d, ok := f.Deadline(); ok && !now.Before(d) {
		return f.finish(nil, f.last)
	}
	return nil
}

// Flush completes whatever is pending: the stream has ended (the port closed
// or the device went away), which is an idle gap that never ends.
func (f *Framer) Flush() []Frame {
	if !f.pending() {
		return nil
	}
	return f.finish(nil, f.last)
}

// Pending is the number of bytes of the unfinished code.
func (f *Framer) Pending() int { return len(f.buf) + f.dropped }

func (f *Framer) pending() bool { return len(f.buf) > 0 || f.running }

func (f *Framer) finish(out []Frame, at time.Time) []Frame {
	if f.running {
		out = append(out, Frame{Overlong: true, Length: f.dropped, At: at})
		f.running, f.dropped = false, 0
		f.buf = f.buf[:0]
		return out
	}
	b := bytes.Trim(f.buf, "\r\n")
	if len(f.prefix) > 0 {
		b = bytes.Trim(bytes.TrimPrefix(b, f.prefix), "\r\n")
	}
	switch {
	case len(b) > f.maxLen:
		out = append(out, Frame{Overlong: true, Length: len(b), At: at})
	case len(b) > 0:
		out = append(out, Frame{Text: string(b), At: at})
	}
	f.buf = f.buf[:0]
	return out
}
