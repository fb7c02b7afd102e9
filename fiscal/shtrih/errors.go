package shtrih

import (
	"fmt"

	"kassa-agent/fiscal"
)

// Raw device error codes the driver acts on.
const (
	ErrCodeBadParams     byte = 0x33
	ErrCodeNotSupported  byte = 0x37
	ErrCodeShiftNotOpen  byte = 0x3D
	ErrCodePaymentsLess  byte = 0x45
	ErrCodeNotEnoughCash byte = 0x46
	ErrCodeReceiptOpen   byte = 0x4A
	ErrCodeShiftOver24h  byte = 0x4E
	ErrCodeWrongPassword byte = 0x4F
	ErrCodeStillPrinting byte = 0x50
	ErrCodeWaitContinue  byte = 0x58
	ErrCodeNoPaper       byte = 0x6B
	ErrCodeWrongMode     byte = 0x73
	ErrCodeZeroTotal     byte = 0x8E
	FNErrUnknownCommand  byte = 0x01
	FNErrState           byte = 0x02
	FNErrFailure         byte = 0x03
	FNErrLifetime        byte = 0x05
	FNErrArchiveFull     byte = 0x06
	FNErrDateTime        byte = 0x07
	FNErrNoData          byte = 0x08
	FNErrBadParam        byte = 0x09
	FNErrNoTransport     byte = 0x11
	FNErrShiftOver24h    byte = 0x16
	FNErrNoAnswer        byte = 0x30
)

type errInfo struct {
	code string
	text string
}

// deviceErrors are the device's own codes (ordinary commands).
var deviceErrors = map[byte]errInfo{
	0x33:                 {fiscal.CodeRejected, "bad command parameters"},
	0x34:                 {fiscal.CodeRejected, "no data"},
	0x35:                 {fiscal.CodeRejected, "bad parameter for the current settings"},
	ErrCodeNotSupported:  {fiscal.CodeNotSupported, "command not supported by this model"},
	0x3C:                 {fiscal.CodeRejected, "registration number mismatch"},
	ErrCodeShiftNotOpen:  {fiscal.CodeShiftClosed, "shift is not open"},
	0x3E:                 {fiscal.CodeRejected, "department register overflow"},
	0x3F:                 {fiscal.CodeRejected, "discount register overflow"},
	0x40:                 {fiscal.CodeRejected, "discount range overflow"},
	0x42:                 {fiscal.CodeRejected, "payment sum overflow"},
	ErrCodePaymentsLess:  {fiscal.CodeRejected, "payments are less than the receipt total"},
	ErrCodeNotEnoughCash: {fiscal.CodeRejected, "not enough cash in the register"},
	ErrCodeReceiptOpen:   {fiscal.CodeReceiptOpen, "a receipt is open, the operation is not possible"},
	0x4B:                 {fiscal.CodeRejected, "receipt buffer overflow"},
	ErrCodeShiftOver24h:  {fiscal.CodeShiftExpired, "shift is over 24 hours"},
	ErrCodeWrongPassword: {fiscal.CodeRejected, "wrong password"},
	ErrCodeStillPrinting: {fiscal.CodeBusy, "still printing the previous command"},
	ErrCodeWaitContinue:  {fiscal.CodePaperOut, "waiting for the continue-printing command"},
	ErrCodeNoPaper:       {fiscal.CodePaperOut, "no receipt paper"},
	0x6C:                 {fiscal.CodePaperOut, "no journal paper"},
	ErrCodeWrongMode:     {fiscal.CodeRejected, "command not allowed in the current mode"},
	ErrCodeZeroTotal:     {fiscal.CodeRejected, "receipt total is zero"},
	ErrCodeBadOperation:  {fiscal.CodeRejected, "operation not allowed here (a marking step out of order, or the code not checked and accepted)"},
	ErrCodeMarkingFormat: {fiscal.CodeRejected, "the marking code cannot be decoded (GS1 format)"},
}

// fnErrors are the FN's codes, returned by FFxx commands.
var fnErrors = map[byte]errInfo{
	FNErrUnknownCommand: {fiscal.CodeNotSupported, "FN: unknown command or bad format"},
	FNErrState:          {fiscal.CodeFNError, "FN: command not allowed in the FN's state"},
	FNErrFailure:        {fiscal.CodeFNError, "FN: failure"},
	0x04:                {fiscal.CodeFNError, "FN: crypto coprocessor failure"},
	FNErrLifetime:       {fiscal.CodeFNExhausted, "FN: lifetime is over"},
	FNErrArchiveFull:    {fiscal.CodeFNExhausted, "FN: archive is full"},
	FNErrDateTime:       {fiscal.CodeRejected, "FN: bad date/time"},
	FNErrNoData:         {fiscal.CodeRejected, "FN: requested data not found"},
	FNErrBadParam:       {fiscal.CodeRejected, "FN: bad parameter value"},
	0x10:                {fiscal.CodeRejected, "FN: TLV data too large"},
	FNErrNoTransport:    {fiscal.CodeFNError, "FN: no transport connection"},
	0x12:                {fiscal.CodeFNExhausted, "FN: crypto coprocessor resource exhausted"},
	0x14:                {fiscal.CodeFNExhausted, "FN: OFD storage exhausted (too many unsent documents)"},
	FNErrShiftOver24h:   {fiscal.CodeShiftExpired, "FN: shift is over 24 hours"},
	0x17:                {fiscal.CodeRejected, "FN: bad time difference between operations"},
	FNErrNoAnswer:       {fiscal.CodeFNError, "FN: no answer from the FN"},
}

// DeviceError turns a non-zero reply code into a *fiscal.Error with a stable code.
// FFxx commands report FN codes below 0x31; the rest use the device table.
func DeviceError(cmd uint16, code byte) *fiscal.Error {
	var info errInfo
	var ok bool
	if cmd > 0xFF && code <= 0x30 {
		info, ok = fnErrors[code]
	}
	if !ok {
		info, ok = deviceErrors[code]
	}
	if !ok {
		kind := "device"
		c := fiscal.CodeRejected
		if cmd > 0xFF && code <= 0x30 {
			kind, c = "FN", fiscal.CodeFNError
		}
		info = errInfo{c, fmt.Sprintf("%s error 0x%02X", kind, code)}
	}
	return &fiscal.Error{Code: info.code, Device: code, Command: cmd, Text: info.text}
}
