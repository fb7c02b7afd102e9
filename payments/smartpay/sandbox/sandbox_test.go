package sandbox

import (
	"testing"

	"kassa-agent/payments/smartpay"
)

func TestFaultMatching(t *testing.T) {
	cases := []struct {
		f    Fault
		op   smartpay.Op
		want bool
	}{
		{Fault{Kind: Reset}, smartpay.OpRelease, true},
		{Fault{Kind: Reset}, smartpay.OpAuth, false},
		{Fault{Kind: Reset, Op: smartpay.OpAuth}, smartpay.OpAuth, true},
		{Fault{Kind: Reset, Op: smartpay.OpStatus}, smartpay.OpRelease, false},
		{Fault{Kind: Declined}, smartpay.OpRelease, true},
		{Fault{Kind: Declined}, smartpay.OpStatus, false},
		{Fault{Kind: Stuck}, smartpay.OpCommit, false},
		{Fault{Kind: CodeExpired}, smartpay.OpCommit, true},
		{Fault{Kind: CodeExpired}, smartpay.OpRelease, true},
		{Fault{Kind: CodeExpired}, smartpay.OpStatus, false},
		{Fault{Kind: StatusWord, Word: "x"}, smartpay.OpStatus, true},
		{Fault{Kind: StatusWord, Word: "x"}, smartpay.OpRelease, false},
	}
	for _, c := range cases {
		if got := c.f.matches(c.op); got != c.want {
			t.Errorf("%+v on %s: %v", c.f, c.op, got)
		}
	}
}

func TestFaultTimes(t *testing.T) {
	s := &Server{}
	for _, f := range []Fault{{Kind: Reset, Times: 2}, {Kind: ServerError, Times: -1}} {
		if err := s.Inject(f); err != nil {
			t.Fatal(err)
		}
	}
	all := func(Fault) bool { return true }
	var got []Kind
	for range 5 {
		got = append(got, s.takeFault(smartpay.OpStatus, all).Kind)
	}
	want := []Kind{Reset, Reset, ServerError, ServerError, ServerError}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("taken %v, want %v", got, want)
		}
	}
	if f := s.Faults(); len(f) != 1 || f[0].Kind != ServerError {
		t.Fatalf("left %+v", f)
	}
	s.ClearFaults()
	if s.takeFault(smartpay.OpStatus, all) != nil {
		t.Fatal("fault after clear")
	}
	if err := s.Inject(Fault{Kind: Reset}); err != nil || s.Faults()[0].Times != 1 {
		t.Fatal("zero Times should mean once")
	}
	for _, bad := range []Fault{{Kind: "x"}, {Kind: Reset, Op: "refund"}, {Kind: Latency}, {Kind: ServerError, Status: 200}, {Kind: StatusWord}} {
		if s.Inject(bad) == nil {
			t.Errorf("accepted %+v", bad)
		}
	}
}
