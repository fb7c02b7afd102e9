package sandbox

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"kassa-agent/payments/alif"
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
	// HTTPStatus answers Fault.Status (3xx–5xx, e.g. 401, 408, 429)
	// without applying.
	HTTPStatus Kind = "http_status"
	// Reset drops the TCP connection (RST) without applying.
	Reset Kind = "reset"
	// ReplyLost applies the call, then closes the connection unanswered.
	ReplyLost Kind = "reply_lost"
	// Garbage applies the call, then answers 200 with a body that is not
	// JSON.
	Garbage Kind = "garbage"
	// Refusal answers HTTP 200 with {"error": {Code, Message, Field}}, as
	// Alif refuses, without applying.
	Refusal Kind = "refusal"
	// StatusWord: the status call answers payment.status = Fault.Word.
	StatusWord Kind = "status_word"
	// PaidAmount: the status call answers payment.amount = Fault.Amount
	// (a payment that took another sum than asked).
	PaidAmount Kind = "paid_amount"
)

var kinds = []Kind{Latency, ServerError, HTTPStatus, Reset, ReplyLost, Garbage, Refusal, StatusWord, PaidAmount}

// Fault is one injected misbehaviour.
type Fault struct {
	// Op is the call it hits; empty hits any call (StatusWord and
	// PaidAmount: status only).
	Op    alif.Op
	Kind  Kind
	Times int // calls it affects: 0 means 1, negative means until cleared

	Delay   time.Duration // Latency
	Status  int           // ServerError (5xx, default 500), HTTPStatus
	Code    string        // Refusal: the error code
	Message string        // Refusal: the message
	Field   string        // Refusal: the field named, if any
	Word    string        // StatusWord
	Amount  int64         // PaidAmount, tiyin
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
		for _, op := range alif.Ops() {
			okOp = okOp || f.Op == op
		}
		if !okOp {
			return fmt.Errorf("unknown op %q", f.Op)
		}
	}
	switch f.Kind {
	case Latency:
		if f.Delay <= 0 {
			return fmt.Errorf("latency needs a positive delay")
		}
	case ServerError:
		if f.Status != 0 && (f.Status < 500 || f.Status > 599) {
			return fmt.Errorf("server_error status must be 5xx")
		}
	case HTTPStatus:
		if f.Status < 300 || f.Status > 599 {
			return fmt.Errorf("http_status needs a status 300–599")
		}
	case Refusal:
		if f.Code == "" {
			return fmt.Errorf("refusal needs a code")
		}
	case PaidAmount:
		if f.Amount < 0 {
			return fmt.Errorf("paid_amount must not be negative")
		}
	}
	return nil
}

func (f Fault) matches(op alif.Op) bool {
	if f.Op != "" {
		return f.Op == op
	}
	if f.Kind == StatusWord || f.Kind == PaidAmount {
		return op == alif.OpStatus
	}
	return true
}

// faultJSON is the admin endpoint's form: delay as a Go duration ("1.5s").
type faultJSON struct {
	Op      string `json:"op,omitempty"`
	Kind    string `json:"kind"`
	Times   int    `json:"times,omitempty"`
	Delay   string `json:"delay,omitempty"`
	Status  int    `json:"status,omitempty"`
	Code    string `json:"code,omitempty"`
	Message string `json:"message,omitempty"`
	Field   string `json:"field,omitempty"`
	Word    string `json:"word,omitempty"`
	Amount  int64  `json:"amount,omitempty"`
}

// MarshalJSON writes the admin form.
func (f Fault) MarshalJSON() ([]byte, error) {
	j := faultJSON{Op: string(f.Op), Kind: string(f.Kind), Times: f.Times, Status: f.Status,
		Code: f.Code, Message: f.Message, Field: f.Field, Word: f.Word, Amount: f.Amount}
	if f.Delay != 0 {
		j.Delay = f.Delay.String()
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads the admin form, strictly.
func (f *Fault) UnmarshalJSON(b []byte) error {
	var j faultJSON
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields() // a typo in a demo curl must not pass silently
	if err := d.Decode(&j); err != nil {
		return err
	}
	*f = Fault{Op: alif.Op(j.Op), Kind: Kind(j.Kind), Times: j.Times, Status: j.Status,
		Code: j.Code, Message: j.Message, Field: j.Field, Word: j.Word, Amount: j.Amount}
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
