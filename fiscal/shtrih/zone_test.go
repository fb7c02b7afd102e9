package shtrih_test

import (
	"context"
	"testing"
	"time"

	"kassa-agent/fiscal"
	"kassa-agent/fiscal/shtrih"
	"kassa-agent/fiscal/shtrihsim"
)

// farZone is a zone whose offset differs from the host's by hours.
func farZone(t *testing.T) *time.Location {
	for _, name := range []string{"Asia/Vladivostok", "America/Los_Angeles"} {
		loc, err := time.LoadLocation(name)
		if err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		_, a := now.In(loc).Zone()
		_, b := now.Zone()
		if d := a - b; d >= 3*3600 || d <= -3*3600 {
			return loc
		}
	}
	t.Fatal("no far zone")
	return nil
}

func near(a, b time.Time, d time.Duration) bool { return a.Sub(b) < d && b.Sub(a) < d }

// TestFNTimesInRegisterZone: the FN's zone-less times are the till's wall clock;
// read in the host's zone instead, every document time is hours off.
func TestFNTimesInRegisterZone(t *testing.T) {
	loc := farZone(t)
	r := newTCPRig(t, shtrihsim.Options{Location: loc}, shtrih.Options{AutoOpenShift: true, Location: loc})
	ctx := context.Background()
	doc, err := r.drv.PrintReceipt(ctx, "tz", oneLine(fiscal.VAT10, 1000))
	if err != nil {
		t.Fatal(err)
	}
	now := r.clock.Now()
	if !near(doc.Time, now, 2*time.Minute) {
		t.Fatalf("receipt time %s, the instant is %s", doc.Time, now)
	}
	if doc.Time.Location() != loc {
		t.Fatalf("receipt time zone %s, want %s", doc.Time.Location(), loc)
	}
	f, err := r.drv.FindDocument(ctx, doc.FD)
	if err != nil || !f.Time.Equal(doc.Time) {
		t.Fatalf("found document time %s (%v), printed %s", f.Time, err, doc.Time)
	}
	st, err := r.drv.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.OFDBacklog == 0 || !near(st.OFDOldest, now, 2*time.Minute) {
		t.Fatalf("OFD oldest %s (backlog %d), the instant is about %s", st.OFDOldest, st.OFDBacklog, now)
	}
	reg := r.sim.Documents()[0].Time.In(loc)
	want := time.Date(reg.Year(), reg.Month()+1, reg.Day(), 0, 0, 0, 0, loc).AddDate(1, 0, 0)
	if !st.FNExpiry.Equal(want) {
		t.Fatalf("FN expiry %s, want %s", st.FNExpiry, want)
	}
}

// TestShiftRenewedHook: the automatic Z report and new shift are reported.
func TestShiftRenewedHook(t *testing.T) {
	type renewal struct{ closed, opened int }
	var got []renewal
	r := newTCPRig(t, shtrihsim.Options{}, shtrih.Options{AutoOpenShift: true, AutoCloseExpiredShift: true,
		OnShiftRenewed: func(c, o int) { got = append(got, renewal{c, o}) }})
	ctx := context.Background()
	if _, err := r.drv.PrintReceipt(ctx, "a", oneLine(fiscal.VAT10, 1000)); err != nil {
		t.Fatal(err)
	}
	r.clock.Advance(25 * time.Hour)
	if _, err := r.drv.PrintReceipt(ctx, "b", oneLine(fiscal.VAT10, 1000)); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != (renewal{1, 2}) {
		t.Fatalf("renewals %+v", got)
	}
}
