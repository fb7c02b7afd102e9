package shtrih

import (
	"context"
	"time"

	"kassa-agent/fiscal"
)

// FN warning bits of FF01h.
const (
	fnWarnReplaceUrgently = 1 << 0
	fnWarnReplaceSoon     = 1 << 1
	fnWarnMemoryFull      = 1 << 2
	fnWarnOFDTimeout      = 1 << 3
	fnWarnCritical        = 1 << 7
)

// DecodeFNWarnings reads FF01h's warning byte.
func DecodeFNWarnings(b byte) fiscal.FNWarnings {
	return fiscal.FNWarnings{ReplaceUrgently: b&fnWarnReplaceUrgently != 0, ReplaceSoon: b&fnWarnReplaceSoon != 0,
		MemoryFull: b&fnWarnMemoryFull != 0, OFDTimeout: b&fnWarnOFDTimeout != 0, Critical: b&fnWarnCritical != 0}
}

// shiftSearch bounds the documents searched back from the last FD for the
// shift-open report: the shift's receipts plus this many other documents.
const shiftSearch = 64

// Info reads the register: FCh, 11h (serial, firmware, clock), FF01h (FN
// number, phase, warnings, last FD), FF03h (expiry), FF09h (РН, INN, tax
// systems), 10h (mode, paper), FF40h (shift), FF0Ah (the shift-open report's
// time), FF39h (OFD backlog). Reads that fail on an unregistered FN (FF09h) are
// left blank; a link failure is an error.
func (d *Driver) Info(ctx context.Context) (fiscal.Info, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var in fiscal.Info
	in.FFD = d.opt.FFD
	if in.FFD == "" {
		in.FFD = "1.2"
	}
	data, err := d.do(ctx, CmdDeviceType, nil, d.opt.Timeouts.Reply)
	if err != nil {
		return in, err
	}
	if t, err := DecodeDeviceType(data); err == nil {
		in.Model = t.Name
	}
	fs, err := d.fullStatus(ctx)
	if err != nil {
		return in, err
	}
	host := d.now()
	in.Serial, in.Firmware, in.INN = fs.Serial, fs.Firmware, fs.INN
	if !fs.Clock.IsZero() {
		in.Clock = InZone(fs.Clock, d.opt.Location)
		in.ClockDrift = in.Clock.Sub(host.Truncate(time.Second))
	}
	fn, err := d.fnStatus(ctx)
	if err != nil {
		return in, err
	}
	in.FNNumber, in.FNPhase, in.LastFD, in.FNWarnings = fn.Number, int(fn.Phase), fn.LastFD, DecodeFNWarnings(fn.Warnings)
	if t, err := query(ctx, d, CmdFNExpiry, d.pw(), DecodeFNExpiry); err == nil && !t.IsZero() {
		in.FNExpiry = InZone(t, d.opt.Location)
		today := time.Date(host.Year(), host.Month(), host.Day(), 0, 0, 0, 0, in.FNExpiry.Location())
		in.FNDaysLeft = int(in.FNExpiry.Sub(today).Hours() / 24)
	} else if fiscal.CodeOf(err) == fiscal.CodeUnavailable {
		return in, err
	}
	if r, err := query(ctx, d, CmdFNFiscalResult, d.pw(), DecodeFiscalResult); err == nil {
		in.RegNumber, in.TaxSystems = r.RegNumber, fiscal.TaxSystem(r.TaxSystems)
		if r.INN != "" {
			in.INN = r.INN
		}
	} else if fiscal.CodeOf(err) == fiscal.CodeUnavailable {
		return in, err
	}
	ss, err := d.shortStatus(ctx)
	if err != nil {
		return in, err
	}
	in.Mode, in.Submode = ss.ModeNumber(), int(ss.Submode)
	in.PaperOut = ss.Submode == SubmodePassivePaperOut || ss.Submode == SubmodeActivePaperOut
	in.ShiftExpired = in.Mode == ModeShiftExpired
	sp, err := d.shiftParams(ctx)
	if err != nil {
		return in, err
	}
	in.ShiftOpen, in.ShiftNumber = sp.Open, sp.Number
	if sp.Open {
		for fd, n := fn.LastFD, 0; fd > 0 && n < sp.Receipt+shiftSearch; fd, n = fd-1, n+1 {
			f, err := d.findDocument(ctx, fd)
			if err != nil {
				break // an archive read failing leaves the open time unknown
			}
			if f.Type == DocShiftOpen {
				in.ShiftOpened = InZone(f.Time, d.opt.Location)
				// The FN's times are the register's clock: measure on it.
				now := host
				if !in.Clock.IsZero() {
					now = in.Clock
				}
				in.ShiftAge = now.Sub(in.ShiftOpened)
				break
			}
		}
	}
	if o, err := query(ctx, d, CmdFNOFDStatus, d.pw(), DecodeOFDStatus); err == nil {
		in.OFDBacklog = o.Waiting
		if o.Waiting > 0 {
			in.OFDOldestFD, in.OFDOldest = o.FirstFD, InZone(o.FirstTime, d.opt.Location)
		}
	} else if fiscal.CodeOf(err) == fiscal.CodeUnavailable {
		return in, err
	}
	return in, nil
}
