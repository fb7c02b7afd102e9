package shtrih_test

import (
	"bytes"
	"testing"
	"time"

	"kassa-agent/fiscal"
	"kassa-agent/fiscal/shtrih"
	"kassa-agent/fiscal/shtrihsim"
)

// Diagnose reads the register's own clock (not the host's), the FN's
// warnings and what table 6 holds in the rows sent for 5 % and 7 %.
func TestDiagnoseReadsClockAndTaxRows(t *testing.T) {
	skew := 2 * time.Hour
	r := newPTYRig(t, shtrihsim.Options{Now: func() time.Time { return time.Now().Add(skew) }, TaxRows: map[int]int{7: 10}},
		shtrih.Options{Location: time.UTC})
	g, err := r.drv.Diagnose(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if drift := time.Until(g.Clock); drift < skew-5*time.Second || drift > skew+5*time.Second {
		t.Errorf("register clock %s is %s off the host, want about %s", g.Clock, drift, skew)
	}
	if g.FNWarnings != 0 {
		t.Errorf("FN warnings %v on a fresh FN", g.FNWarnings.Texts())
	}
	want := map[fiscal.VATRate]shtrih.TaxRow{fiscal.VAT5: {Row: 7, Rate: 1000}, fiscal.VAT7: {Row: 8, Rate: 700},
		fiscal.VAT5105: {Row: 9, Rate: 500}, fiscal.VAT7107: {Row: 10, Rate: 700}}
	for v, w := range want {
		if g.TaxRows[v] != w {
			t.Errorf("rate %v: got %+v, want %+v", v, g.TaxRows[v], w)
		}
	}
	if g.VAT22Mode != 1 || g.VAT22ModeErr != nil {
		t.Errorf("T17П71 = %d, err %v; want the factory 1", g.VAT22Mode, g.VAT22ModeErr)
	}
	r2 := newTCPRig(t, shtrihsim.Options{VATMode: 2}, shtrih.Options{})
	if g, err := r2.drv.Diagnose(t.Context()); err != nil || g.VAT22Mode != 2 {
		t.Errorf("T17П71 = %d, %v; want 2", g.VAT22Mode, err)
	}
}

func TestFNWarningTexts(t *testing.T) {
	got := (shtrih.FNWarnReplaceSoon | shtrih.FNWarnOFDTimeout | 0x20).Texts()
	want := []string{"FN crypto module ends within 30 days", "the OFD has not answered in time", "FN warning flags 0x20"}
	if len(got) != len(want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("got %q, want %q", got, want)
		}
	}
	if shtrih.FNWarnings(0).Texts() != nil {
		t.Error("no flags must give no texts")
	}
}

// fullStatusWithClock is an 11h reply's data with the clock at its offsets.
func fullStatusWithClock(day, month, year, hour, minute, sec byte) []byte {
	b := make([]byte, 48)
	copy(b[23:], []byte{day, month, year, hour, minute, sec})
	return b
}

func FuzzDecodeDeviceClock(f *testing.F) {
	f.Add(fullStatusWithClock(1, 12, 26, 23, 59, 59))
	f.Add(fullStatusWithClock(29, 2, 28, 0, 0, 0))
	f.Add(fullStatusWithClock(30, 2, 26, 12, 0, 0)) // no such day
	f.Add(fullStatusWithClock(0, 0, 0, 0, 0, 0))
	f.Add(fullStatusWithClock(31, 12, 99, 24, 60, 60))
	f.Add([]byte{0x1E, 'A', '4'})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := shtrih.DecodeDeviceClock(b, time.UTC)
		if err != nil {
			return
		}
		back := []byte{byte(c.Day()), byte(c.Month()), byte(c.Year() - 2000), byte(c.Hour()), byte(c.Minute()), byte(c.Second())}
		if !bytes.Equal(back, b[23:29]) {
			t.Fatalf("decoded %s from % x", c, b[23:29])
		}
	})
}

func TestDecodeDeviceClock(t *testing.T) {
	c, err := shtrih.DecodeDeviceClock(fullStatusWithClock(1, 12, 26, 23, 4, 5), time.UTC)
	if err != nil || !c.Equal(time.Date(2026, 12, 1, 23, 4, 5, 0, time.UTC)) {
		t.Errorf("got %s, %v", c, err)
	}
	for _, b := range [][]byte{fullStatusWithClock(30, 2, 26, 0, 0, 0), fullStatusWithClock(1, 13, 26, 0, 0, 0), fullStatusWithClock(1, 1, 26, 24, 0, 0), make([]byte, 28)} {
		if _, err := shtrih.DecodeDeviceClock(b, time.UTC); err == nil {
			t.Errorf("% x decoded", b)
		}
	}
}
