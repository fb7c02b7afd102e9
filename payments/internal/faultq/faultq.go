// Package faultq is the provider sandboxes' list of injected faults: each
// fault acts on the calls it matches, a given number of times (negative:
// until cleared), in the order injected. The list takes no lock of its own:
// a sandbox keeps it beside the state its faults act on, under its lock.
package faultq

import "slices"

// Counted is a sandbox's fault, seen through its count of remaining uses.
type Counted[F any] interface {
	*F
	Uses() *int
}

// List is the faults not yet used up.
type List[F any, P Counted[F]] struct {
	items []P
}

// Add appends f; a count of 0 means once.
func (l *List[F, P]) Add(f F) {
	p := P(&f)
	if *p.Uses() == 0 {
		*p.Uses() = 1
	}
	l.items = append(l.items, p)
}

// Clear drops every fault.
func (l *List[F, P]) Clear() { l.items = nil }

// All lists the faults as they stand (their counts are what remains).
func (l *List[F, P]) All() []F {
	out := make([]F, 0, len(l.items))
	for _, p := range l.items {
		out = append(out, *p)
	}
	return out
}

// Take uses the first fault that match accepts once and returns it as it
// was; ok is false when none matches.
func (l *List[F, P]) Take(match func(f *F) bool) (f F, ok bool) {
	for i, p := range l.items {
		if !match(p) {
			continue
		}
		taken := *p
		if n := p.Uses(); *n > 0 {
			if *n--; *n == 0 {
				l.items = slices.Delete(l.items, i, i+1)
			}
		}
		return taken, true
	}
	return f, false
}
