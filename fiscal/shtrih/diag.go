package shtrih

import (
	"context"
	"fmt"
	"time"

	"kassa-agent/fiscal"
)

// Setting T17П71 (table 17, row 1, field 71) chooses how the register treats
// VAT rate 1 from 2026: 1 = it turns 20 % into 22 % itself, 2 = it uses the
// row the host sends (fr_drv_ng issue #328).
const (
	TableRegion    = 17
	FieldVAT22Mode = 71
)

// FNWarnings are the FN's warning flags (FF01h, byte 4).
type FNWarnings byte

// The FN's warning bits, as the FN exchange protocol names them.
const (
	FNWarnReplaceUrgent FNWarnings = 0x01 // the crypto module ends in 3 days: replace the FN now
	FNWarnReplaceSoon   FNWarnings = 0x02 // the crypto module ends in 30 days
	FNWarnMemoryFull    FNWarnings = 0x04 // the FN archive is 90 % full
	FNWarnOFDTimeout    FNWarnings = 0x08 // the OFD has not answered in time
	FNWarnCritical      FNWarnings = 0x80 // critical FN error
)

var fnWarningText = []struct {
	bit  FNWarnings
	text string
}{
	{FNWarnReplaceUrgent, "FN crypto module ends within 3 days"},
	{FNWarnReplaceSoon, "FN crypto module ends within 30 days"},
	{FNWarnMemoryFull, "FN archive 90 % full"},
	{FNWarnOFDTimeout, "the OFD has not answered in time"},
	{FNWarnCritical, "critical FN error"},
}

// Texts names each flag set; bits without a name are shown as hex.
func (w FNWarnings) Texts() []string {
	var out []string
	rest := w
	for _, n := range fnWarningText {
		if w&n.bit != 0 {
			out = append(out, n.text)
			rest &^= n.bit
		}
	}
	if rest != 0 {
		out = append(out, fmt.Sprintf("FN warning flags 0x%02X", byte(rest)))
	}
	return out
}

// Diag is what diagnostics read beyond Status: the register's clock, the FN's
// warnings, and how the register is set up for VAT.
type Diag struct {
	Clock      time.Time  // the register's clock, in Options.Location
	FNWarnings FNWarnings // FF01h
	// TaxRows are the rates (hundredths of a percent) table 6 holds in the
	// rows the driver sends for the rates no vendor document settles (5 %,
	// 7 %, 5/105, 7/107: DefaultVATRows or Options.VATRows).
	TaxRows map[fiscal.VATRate]TaxRow
	// VAT22Mode is T17П71 (1 or 2); 0 when the register did not answer it, and
	// VAT22ModeErr says why (not every firmware has the field).
	VAT22Mode    int
	VAT22ModeErr error
}

// TaxRow is one table-6 row and the rate it holds.
type TaxRow struct {
	Row  byte
	Rate int // hundredths of a percent
}

// Diagnose reads Diag. A failed read of T17П71 is kept in Diag, not returned:
// the driver sends rows 11 and 12 for 22 %, right in both modes.
func (d *Driver) Diagnose(ctx context.Context) (Diag, error) {
	var g Diag
	clock, err := query(ctx, d, CmdStatus, d.pw(), func(b []byte) (time.Time, error) { return DecodeDeviceClock(b, d.opt.Location) })
	if err != nil {
		return g, err
	}
	g.Clock = clock
	fs, err := d.fnStatus(ctx)
	if err != nil {
		return g, err
	}
	g.FNWarnings = FNWarnings(fs.Warnings)
	g.TaxRows = map[fiscal.VATRate]TaxRow{}
	for _, v := range []fiscal.VATRate{fiscal.VAT5, fiscal.VAT7, fiscal.VAT5105, fiscal.VAT7107} {
		row, err := d.row(v)
		if err != nil {
			return g, err
		}
		rate, err := query(ctx, d, CmdReadTable, EncodeReadTable(d.opt.Password, TableTaxes, uint16(row), FieldTaxRate), DecodeTaxRate)
		if err != nil {
			return g, err
		}
		g.TaxRows[v] = TaxRow{Row: row, Rate: rate}
	}
	g.VAT22Mode, g.VAT22ModeErr = d.vat22Mode(ctx)
	return g, nil
}

// DecodeDeviceClock reads the register's date (DD MM YY, bytes 23..25) and
// time (hh mm ss, bytes 26..28) from an 11h reply, as wall-clock time in loc.
func DecodeDeviceClock(b []byte, loc *time.Location) (time.Time, error) {
	if len(b) < 29 {
		return time.Time{}, short("full status clock", 29, len(b))
	}
	day, month, year, hour, minute, sec := int(b[23]), int(b[24]), int(b[25]), int(b[26]), int(b[27]), int(b[28])
	if month < 1 || month > 12 || day < 1 || day > 31 || year > 99 || hour > 23 || minute > 59 || sec > 59 {
		return time.Time{}, fmt.Errorf("full status: clock %02d.%02d.%02d %02d:%02d:%02d is not a date", day, month, year, hour, minute, sec)
	}
	if loc == nil {
		loc = time.Local
	}
	t := time.Date(2000+year, time.Month(month), day, hour, minute, sec, 0, loc)
	if t.Day() != day {
		return time.Time{}, fmt.Errorf("full status: clock %02d.%02d.%02d is not a date", day, month, year)
	}
	return t, nil
}

// DecodeTableByte reads a 1Fh reply holding a one-byte field.
func DecodeTableByte(d []byte) (int, error) {
	if len(d) < 1 {
		return 0, short("table field", 1, len(d))
	}
	return int(d[0]), nil
}

// vat22Mode reads T17П71 (1 or 2).
func (d *Driver) vat22Mode(ctx context.Context) (int, error) {
	return query(ctx, d, CmdReadTable, EncodeReadTable(d.opt.Password, TableRegion, 1, FieldVAT22Mode), DecodeTableByte)
}
