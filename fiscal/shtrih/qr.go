package shtrih

import (
	"context"
	"encoding/binary"
	"fmt"

	"kassa-agent/fiscal"
)

// 2D barcodes, as the vendor's OPOS driver prints them (shtrih-m/opos,
// FiscalPrinterDevice.pas: LoadBarcodeData, LoadBarcode2D, PrintBarcode2D):
// the data with a NUL appended goes in 64-byte blocks by DDh
//
//	password(4) | block type(1, 0 = barcode data) | block number(1) | data(≤64)
//
// then DEh prints it
//
//	password(4) | barcode type(1: 0 PDF417, 1 DataMatrix, 2 Aztec, 3 QR) |
//	data length(2, NUL included) | first block(1) | parameters 1..5 (QR: version,
//	0 = auto; mask; dot size 3..8; unused; error correction 0..3 = L, M, Q, H) |
//	alignment(1: 0 left, 1 centre, 2 right)
const (
	BlockSize2D = 64
	Barcode2DQR = 3
	// MaxQRLen bounds the text of one QR code (bytes): 127 blocks are
	// addressable, and a longer code would not scan off a 57–80 mm tape anyway.
	MaxQRLen = 1024
)

// Print2D is the DEh request.
type Print2D struct {
	Type       byte
	Length     int // bytes of data, NUL included
	FirstBlock byte
	Params     [5]byte
	Align      byte
}

// EncodePrint2D builds the params of DEh.
func EncodePrint2D(pw uint32, p Print2D) []byte {
	b := append(password(pw), p.Type)
	b = binary.LittleEndian.AppendUint16(b, uint16(p.Length))
	b = append(b, p.FirstBlock)
	b = append(b, p.Params[:]...)
	return append(b, p.Align)
}

// DecodePrint2D parses DEh params (the simulator's side).
func DecodePrint2D(p []byte) (pw uint32, r Print2D, err error) {
	if len(p) != 14 {
		return 0, r, fmt.Errorf("shtrih: DE params are %d bytes, want 14", len(p))
	}
	pw = binary.LittleEndian.Uint32(p)
	r.Type, r.Length, r.FirstBlock = p[4], int(binary.LittleEndian.Uint16(p[5:7])), p[7]
	copy(r.Params[:], p[8:13])
	r.Align = p[13]
	return pw, r, nil
}

// EncodeLoadData builds the params of DDh for block n of data.
func EncodeLoadData(pw uint32, n byte, block []byte) []byte {
	return append(append(password(pw), 0, n), block...)
}

// DecodeLoadData parses DDh params (the simulator's side).
func DecodeLoadData(p []byte) (pw uint32, typ, n byte, block []byte, err error) {
	if len(p) < 6 || len(p) > 6+BlockSize2D {
		return 0, 0, 0, nil, fmt.Errorf("shtrih: DD params are %d bytes, want 6..%d", len(p), 6+BlockSize2D)
	}
	return binary.LittleEndian.Uint32(p), p[4], p[5], p[6:], nil
}

// PrintQR prints a QR code of text on the receipt tape, centred (non-fiscal:
// not journaled; a lost reply may at worst print it twice). text is sent as its
// UTF-8 bytes.
func (d *Driver) PrintQR(ctx context.Context, text string) error {
	if text == "" {
		return &fiscal.Error{Code: fiscal.CodeBadReceipt, Field: "qr", Text: "qr: empty text"}
	}
	if err := fiscal.CheckText("qr", text); err != nil {
		return err
	}
	if len(text) > MaxQRLen {
		return &fiscal.Error{Code: fiscal.CodeBadReceipt, Field: "qr", Text: fmt.Sprintf("qr: %d bytes, at most %d", len(text), MaxQRLen)}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, err := d.readyToPrint(ctx); err != nil {
		return err
	}
	data := append([]byte(text), 0)
	for n := 0; n*BlockSize2D < len(data); n++ {
		block := data[n*BlockSize2D : min(len(data), (n+1)*BlockSize2D)]
		if _, err := d.do(ctx, CmdLoadData, EncodeLoadData(d.opt.Password, byte(n), block), d.opt.Timeouts.Reply); err != nil {
			return err
		}
	}
	p := Print2D{Type: Barcode2DQR, Length: len(data), Params: [5]byte{0, 0, 4, 0, 1}, Align: 1}
	_, err := d.do(ctx, CmdPrint2D, EncodePrint2D(d.opt.Password, p), d.opt.Timeouts.Long)
	return err
}
