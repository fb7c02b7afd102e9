package sale

import (
	"sync"
	"time"
)

// Event is one thing the POS may want to react to at once: a scan, a payment's
// change, a device going away or coming back.
type Event struct {
	ID   uint64    `json:"id"`
	Type string    `json:"type"` // scan, payment, device
	At   time.Time `json:"at"`
	Data any       `json:"data"`
}

// Hub fans events out to subscribers (SSE clients, long-polls). A slow
// subscriber loses events rather than slowing the till: events are hints, the
// resources are the truth.
type Hub struct {
	mu     sync.Mutex
	next   uint64
	subs   map[chan Event]struct{}
	change chan struct{} // closed and replaced on every publish
}

// NewHub returns an empty hub.
func NewHub() *Hub {
	return &Hub{subs: map[chan Event]struct{}{}, change: make(chan struct{})}
}

// Publish sends an event to every subscriber.
func (h *Hub) Publish(typ string, data any) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.next++
	ev := Event{ID: h.next, Type: typ, At: time.Now().UTC(), Data: data}
	for c := range h.subs {
		select {
		case c <- ev:
		default:
		}
	}
	close(h.change)
	h.change = make(chan struct{})
}

// Changed returns a channel closed at the next publish.
func (h *Hub) Changed() <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.change
}

// Subscribe returns a channel of events and a function to stop.
func (h *Hub) Subscribe() (<-chan Event, func()) {
	c := make(chan Event, 64)
	h.mu.Lock()
	h.subs[c] = struct{}{}
	h.mu.Unlock()
	return c, func() {
		h.mu.Lock()
		delete(h.subs, c)
		h.mu.Unlock()
	}
}
