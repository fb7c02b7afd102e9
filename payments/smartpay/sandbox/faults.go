package sandbox

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"kassa-agent/payments/smartpay"
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
	// ReplyLost applies the call, then closes the connection without
	// answering.
	ReplyLost Kind = "reply_lost"
	// Unauthorized answers 401 as if the session had lapsed.
	Unauthorized Kind = "unauthorized"
	// CodeExpired: on commit, the code has lapsed (422); on release, the
	// commit has lapsed (422, the purchase becomes expired).
	CodeExpired Kind = "code_expired"
	// Declined: the release is accepted, then the payment is declined with
	// Fault.Reason.
	Declined Kind = "declined"
	// Stuck: the release is accepted and the payment stays processing.
	Stuck Kind = "stuck"
	// StatusWord: status answers the word Fault.Word (say, one the client
	// does not know) instead of the real state.
	StatusWord Kind = "status_word"
	// RepeatConflict: a call that repeats one already applied (the same
	// commit again, a second confirm, the same fiscal data again) is answered
	// 409, as a service that refuses repeats would, instead of as the first.
	RepeatConflict Kind = "repeat_conflict"
)

var kinds = []Kind{Latency, ServerError, Reset, ReplyLost, Unauthorized, CodeExpired, Declined, Stuck, StatusWord, RepeatConflict}

// Fault is one injected misbehaviour.
type Fault struct {
	// Op is the call it hits. Empty: transport faults hit any call but auth;
	// Declined and Stuck hit release; CodeExpired hits commit or release;
	// StatusWord hits status.
	Op    smartpay.Op
	Kind  Kind
	Times int // calls it affects: 0 means 1, negative means until cleared

	Delay  time.Duration // Latency
	Status int           // ServerError: the 5xx to send (default 500)
	Reason string        // Declined: the reason text
	Word   string        // StatusWord: the word to send
}

func (f Fault) validate() error {
	known := false
	for _, k := range kinds {
		known = known || f.Kind == k
	}
	if !known {
		return fmt.Errorf("unknown fault kind %q", f.Kind)
	}
	if f.Op != "" {
		okOp := false
		for _, op := range smartpay.Ops() {
			okOp = okOp || f.Op == op
		}
		if !okOp {
			return fmt.Errorf("unknown op %q", f.Op)
		}
	}
	if f.Kind == Latency && f.Delay <= 0 {
		return fmt.Errorf("latency needs a positive delay")
	}
	if f.Kind == ServerError && f.Status != 0 && (f.Status < 500 || f.Status > 599) {
		return fmt.Errorf("server_error status must be 5xx")
	}
	if f.Kind == StatusWord && f.Word == "" {
		return fmt.Errorf("status_word needs a word")
	}
	return nil
}

// matches reports whether the fault applies to a call of op.
func (f Fault) matches(op smartpay.Op) bool {
	if f.Op != "" {
		return f.Op == op
	}
	switch f.Kind {
	case Declined, Stuck:
		return op == smartpay.OpRelease
	case CodeExpired:
		return op == smartpay.OpCommit || op == smartpay.OpRelease
	case StatusWord:
		return op == smartpay.OpStatus
	case RepeatConflict:
		return op == smartpay.OpCommit || op == smartpay.OpConfirm || op == smartpay.OpFiscal
	}
	return op != smartpay.OpAuth
}

// faultJSON is the admin endpoint's form: delay as a Go duration ("1.5s").
type faultJSON struct {
	Op     string `json:"op,omitempty"`
	Kind   string `json:"kind"`
	Times  int    `json:"times,omitempty"`
	Delay  string `json:"delay,omitempty"`
	Status int    `json:"status,omitempty"`
	Reason string `json:"reason,omitempty"`
	Word   string `json:"word,omitempty"`
}

// MarshalJSON writes the admin form.
func (f Fault) MarshalJSON() ([]byte, error) {
	j := faultJSON{Op: string(f.Op), Kind: string(f.Kind), Times: f.Times, Status: f.Status, Reason: f.Reason, Word: f.Word}
	if f.Delay != 0 {
		j.Delay = f.Delay.String()
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads the admin form.
func (f *Fault) UnmarshalJSON(b []byte) error {
	var j faultJSON
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields() // a typo in a demo curl must not pass silently
	if err := d.Decode(&j); err != nil {
		return err
	}
	*f = Fault{Op: smartpay.Op(j.Op), Kind: Kind(j.Kind), Times: j.Times, Status: j.Status, Reason: j.Reason, Word: j.Word}
	if j.Delay != "" {
		d, err := time.ParseDuration(j.Delay)
		if err != nil {
			return fmt.Errorf("delay: %w", err)
		}
		f.Delay = d
	}
	return nil
}

// Uses is the fault's remaining count, for the sandbox's fault list.
func (f *Fault) Uses() *int { return &f.Times }
