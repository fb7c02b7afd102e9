// Package shtrih is the Shtrih-M fiscal register driver: protocol v1 framing and
// handshake, the command codec, and Driver, a fiscal.Register over a serial port or
// TCP (network models).
package shtrih

import (
	"errors"
	"fmt"
)

// Control bytes of the v1 link.
const (
	STX = 0x02
	ENQ = 0x05
	ACK = 0x06
	NAK = 0x15
)

// LRC is the XOR of LEN and the body bytes.
func LRC(body []byte) byte {
	x := byte(len(body))
	for _, b := range body {
		x ^= b
	}
	return x
}

// Frame wraps a body (CMD + params, or CMD + ERR + data) as STX LEN body LRC.
func Frame(body []byte) []byte {
	f := make([]byte, 0, len(body)+3)
	f = append(f, STX, byte(len(body)))
	f = append(f, body...)
	return append(f, LRC(body))
}

// CommandBody is the body of a command frame: the code (one byte, or FF + one byte)
// followed by params.
func CommandBody(cmd uint16, params []byte) []byte {
	b := make([]byte, 0, 2+len(params))
	if cmd > 0xFF {
		b = append(b, byte(cmd>>8), byte(cmd))
	} else {
		b = append(b, byte(cmd))
	}
	return append(b, params...)
}

// Errors of frame parsing.
var (
	ErrShortFrame = errors.New("shtrih: short frame")
	ErrBadLRC     = errors.New("shtrih: bad LRC")
	ErrNoSTX      = errors.New("shtrih: frame does not start with STX")
)

// ParseFrame parses one frame at the start of b and returns its body and the
// number of bytes used.
func ParseFrame(b []byte) (body []byte, n int, err error) {
	if len(b) == 0 {
		return nil, 0, ErrShortFrame
	}
	if b[0] != STX {
		return nil, 0, ErrNoSTX
	}
	if len(b) < 2 {
		return nil, 0, ErrShortFrame
	}
	l := int(b[1])
	if len(b) < l+3 {
		return nil, 0, ErrShortFrame
	}
	body = b[2 : 2+l]
	if LRC(body) != b[2+l] {
		return nil, l + 3, ErrBadLRC
	}
	return body, l + 3, nil
}

// SplitCommand splits a command body into its code and params.
func SplitCommand(body []byte) (cmd uint16, params []byte, err error) {
	if len(body) == 0 {
		return 0, nil, ErrShortFrame
	}
	if body[0] == 0xFF {
		if len(body) < 2 {
			return 0, nil, ErrShortFrame
		}
		return 0xFF00 | uint16(body[1]), body[2:], nil
	}
	return uint16(body[0]), body[1:], nil
}

// ReplyBody builds a reply body: CMD ERR data. With err ≠ 0 the data is dropped,
// as the device does.
func ReplyBody(cmd uint16, code byte, data []byte) []byte {
	b := CommandBody(cmd, nil)
	b = append(b, code)
	if code == 0 {
		b = append(b, data...)
	}
	return b
}

// SplitReply splits a reply body into command, error code and data.
func SplitReply(body []byte) (cmd uint16, code byte, data []byte, err error) {
	cmd, rest, err := SplitCommand(body)
	if err != nil {
		return 0, 0, nil, err
	}
	if len(rest) == 0 {
		return cmd, 0, nil, fmt.Errorf("%w: reply without error byte", ErrShortFrame)
	}
	return cmd, rest[0], rest[1:], nil
}
