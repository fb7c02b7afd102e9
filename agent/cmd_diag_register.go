package main

import (
	"fmt"
	"strings"
	"time"

	"kassa-agent/fiscal"
	"kassa-agent/fiscal/shtrih"
)

// clockWarnAfter is how far the register's clock may be off this computer's:
// receipts carry the register's time, and the tax service compares it with
// the OFD's.
const clockWarnAfter = 5 * time.Minute

// registerDiag grades what only a direct read tells: the FN's warnings, the
// register's clock and its VAT setup. The agent does not read these while it
// runs, so diag shows them only when the service is stopped.
func (d *diagnosis) registerDiag(g shtrih.Diag) {
	switch w := g.FNWarnings; {
	case w == 0:
		d.ok("fn_warnings", "none")
	case w&(shtrih.FNWarnReplaceUrgent|shtrih.FNWarnCritical) != 0:
		d.fail("fn_warnings", strings.Join(w.Texts(), "; "),
			"replace the fiscal drive now and re-register the register with the tax service; see the register's manual for the FN error")
	case w&shtrih.FNWarnOFDTimeout != 0 && w&^shtrih.FNWarnOFDTimeout == 0:
		d.warn("fn_warnings", strings.Join(w.Texts(), "; "),
			"check the register's internet connection and OFD settings: the FN blocks after 30 days of unsent documents")
	default:
		d.warn("fn_warnings", strings.Join(w.Texts(), "; "),
			"order a new fiscal drive now: replacing it needs re-registration")
	}

	// The register counts whole seconds: a second either way is in step.
	drift := g.Clock.Sub(d.now()).Round(time.Second)
	detail := fmt.Sprintf("%s, in step with this computer's clock", g.Clock.Format("2006-01-02 15:04:05"))
	if drift.Abs() > 2*time.Second {
		shown := drift
		if shown.Abs() >= time.Minute {
			shown = drift.Round(time.Minute) // seconds of a read's own delay are noise
		}
		detail = fmt.Sprintf("%s, %s off this computer's clock", g.Clock.Format("2006-01-02 15:04:05"), signed(shown))
	}
	if drift.Abs() > clockWarnAfter {
		d.warn("register_clock", detail,
			"set the register's clock (its service mode or the vendor's utility) or this computer's, and check register.timezone: receipts carry the register's time")
	} else {
		d.ok("register_clock", detail)
	}

	var rows, wrong []string
	for _, v := range []fiscal.VATRate{fiscal.VAT5, fiscal.VAT7, fiscal.VAT5105, fiscal.VAT7107} {
		r, ok := g.TaxRows[v]
		if !ok {
			continue
		}
		key := vatRowKey(v)
		rows = append(rows, fmt.Sprintf("%s row %d", key, r.Row))
		if want := int(v.Percent()) * 100; r.Rate != want {
			wrong = append(wrong, fmt.Sprintf("table 6 row %d holds %d.%02d %%, not %d %% (register.vat_rows.%s)", r.Row, r.Rate/100, r.Rate%100, want/100, key))
		}
	}
	mode := "T17П71 not read"
	switch g.VAT22Mode {
	case 1:
		mode = "T17П71 = 1 (the register turns 20 % into 22 % itself)"
	case 2:
		mode = "T17П71 = 2 (the register prints the rate sent)"
	default:
		if g.VAT22ModeErr == nil {
			mode = fmt.Sprintf("T17П71 = %d", g.VAT22Mode)
		}
	}
	detail = "22 % rows 11 and 12, " + strings.Join(rows, ", ") + "; " + mode
	if len(wrong) > 0 {
		d.warn("vat", strings.Join(wrong, "; "),
			"receipts at these rates are refused before printing: set register.vat_rows to the rows of the register's table 6 that hold them")
		return
	}
	d.ok("vat", detail)
}

// vatRowKey is the register.vat_rows key of a rate.
func vatRowKey(v fiscal.VATRate) string {
	return map[fiscal.VATRate]string{fiscal.VAT5: "vat5", fiscal.VAT7: "vat7", fiscal.VAT5105: "vat5_105", fiscal.VAT7107: "vat7_107"}[v]
}

func signed(d time.Duration) string {
	if d < 0 {
		return "-" + (-d).String()
	}
	return "+" + d.String()
}
