package sandbox

import (
	"fmt"
	"slices"
	"time"

	"kassa-agent/payments/alikassa"
)

// Kind is a kind of injected fault.
type Kind string

// Fault kinds.
const (
	// Latency delays the answer by Fault.Delay; the call is then handled
	// normally (and applied even if the client gave up meanwhile).
	Latency Kind = "latency"
	// ServerError answers Fault.Status (default 500) without applying.
	ServerError Kind = "server_error"
	// Reset drops the TCP connection (RST) without applying.
	Reset Kind = "reset"
	// ReplyLost applies the call, then closes the connection unanswered.
	ReplyLost Kind = "reply_lost"
	// Invalid answers 400 {"message", "errors": {Fault.Field: [Fault.Message]}}
	// without applying, as the service's validation does.
	Invalid Kind = "invalid"
	// StatusWord: status answers Fault.Word instead of the real word.
	StatusWord Kind = "status_word"
)

var kinds = []Kind{Latency, ServerError, Reset, ReplyLost, Invalid, StatusWord}

// Fault is one injected misbehaviour.
type Fault struct {
	// Op is the call it hits; empty hits any call (StatusWord: status).
	Op    alikassa.Op
	Kind  Kind
	Times int // calls it affects: 0 means 1, negative until cleared

	Delay   time.Duration // Latency
	Status  int           // ServerError: the 5xx (default 500)
	Field   string        // Invalid: the refused provider field
	Message string        // Invalid: its message
	Word    string        // StatusWord
}

func (f Fault) validate() error {
	if !slices.Contains(kinds, f.Kind) {
		return fmt.Errorf("unknown fault kind %q", f.Kind)
	}
	if f.Op != "" && !slices.Contains(alikassa.Ops(), f.Op) {
		return fmt.Errorf("unknown op %q", f.Op)
	}
	switch {
	case f.Kind == Latency && f.Delay <= 0:
		return fmt.Errorf("latency needs a positive delay")
	case f.Kind == ServerError && f.Status != 0 && (f.Status < 500 || f.Status > 599):
		return fmt.Errorf("server_error status must be 5xx")
	case f.Kind == Invalid && f.Field == "":
		return fmt.Errorf("invalid needs a field")
	case f.Kind == StatusWord && f.Word == "":
		return fmt.Errorf("status_word needs a word")
	}
	return nil
}

func (f Fault) matches(op alikassa.Op) bool {
	if f.Op != "" {
		return f.Op == op
	}
	if f.Kind == StatusWord {
		return op == alikassa.OpStatus
	}
	return true
}

// Uses is the fault's remaining count, for the sandbox's fault list.
func (f *Fault) Uses() *int { return &f.Times }
