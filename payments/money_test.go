package payments

import (
	"errors"
	"math"
	"strconv"
	"testing"
)

func TestFormatDecimal(t *testing.T) {
	cases := []struct {
		minor int64
		exp   int
		want  string
	}{
		{0, 2, "0.00"},
		{5, 2, "0.05"},
		{50, 2, "0.50"},
		{100, 2, "1.00"},
		{12345, 2, "123.45"},
		{-5, 2, "-0.05"},
		{-12345, 2, "-123.45"},
		{7, 0, "7"},
		{7, 3, "0.007"},
		{math.MaxInt64, 2, "92233720368547758.07"},
		{math.MinInt64, 2, "-92233720368547758.08"},
	}
	for _, c := range cases {
		if got := FormatDecimal(c.minor, c.exp); got != c.want {
			t.Errorf("FormatDecimal(%d, %d) = %q, want %q", c.minor, c.exp, got, c.want)
		}
	}
}

func TestParseDecimal(t *testing.T) {
	ok := []struct {
		in   string
		want int64
	}{
		{"0", 0}, {"0.00", 0}, {"0.05", 5}, {"0.5", 50}, {"1", 100},
		{"123.45", 12345}, {"123.4", 12340}, {"500.00", 50000}, {"007.10", 710},
		{"92233720368547758.07", math.MaxInt64},
	}
	for _, c := range ok {
		a, err := ParseDecimal(c.in, RUB)
		if err != nil || a.Minor != c.want || a.Currency != RUB {
			t.Errorf("ParseDecimal(%q) = %v, %v; want %d RUB", c.in, a, err, c.want)
		}
	}
	bad := []struct {
		in   string
		want error
	}{
		{"", ErrBadAmount}, {".", ErrBadAmount}, {".5", ErrBadAmount}, {"5.", ErrBadAmount},
		{"+5", ErrBadAmount}, {" 5", ErrBadAmount}, {"5 ", ErrBadAmount}, {"1,50", ErrBadAmount},
		{"1e3", ErrBadAmount}, {"1.2.3", ErrBadAmount}, {"NaN", ErrBadAmount}, {"0x10", ErrBadAmount},
		{"١٢", ErrBadAmount}, {"1_000", ErrBadAmount},
		{"-1.00", ErrNegativeAmount}, {"-0", ErrNegativeAmount},
		{"1.234", ErrTooManyDecimals}, {"0.001", ErrTooManyDecimals},
		{"92233720368547758.08", ErrAmountOverflow}, {"92233720368547759", ErrAmountOverflow},
		{"99999999999999999999999999", ErrAmountOverflow},
	}
	for _, c := range bad {
		a, err := ParseDecimal(c.in, RUB)
		if !errors.Is(err, c.want) {
			t.Errorf("ParseDecimal(%q) = %v, %v; want %v", c.in, a, err, c.want)
		}
	}
	if _, err := ParseDecimal("1.00", "XXX"); !errors.Is(err, ErrCurrency) {
		t.Errorf("unknown currency: %v", err)
	}
}

func TestAmountConversions(t *testing.T) {
	if n, err := Kopecks(12345).KopecksValue(); err != nil || n != 12345 {
		t.Fatalf("kopecks: %d %v", n, err)
	}
	if _, err := Tiyin(100).KopecksValue(); !errors.Is(err, ErrCurrency) {
		t.Fatalf("tiyin as kopecks: %v", err)
	}
	if _, err := Kopecks(100).TiyinValue(); !errors.Is(err, ErrCurrency) {
		t.Fatalf("kopecks as tiyin: %v", err)
	}
	if n, err := Tiyin(990000).TiyinValue(); err != nil || n != 990000 {
		t.Fatalf("tiyin: %d %v", n, err)
	}
	if s, err := Tiyin(990005).Decimal(); err != nil || s != "9900.05" {
		t.Fatalf("decimal: %q %v", s, err)
	}
	if _, err := (Amount{Minor: 1, Currency: "XXX"}).Decimal(); !errors.Is(err, ErrCurrency) {
		t.Fatalf("decimal of unknown currency: %v", err)
	}
	if got := Kopecks(12345).String(); got != "123.45 RUB" {
		t.Fatalf("String = %q", got)
	}
	if got := (Amount{Minor: 7, Currency: "XXX"}).String(); got != "7 minor XXX" {
		t.Fatalf("String = %q", got)
	}
	if !(Amount{}).IsZero() || Kopecks(1).IsZero() {
		t.Fatal("IsZero")
	}
}

func TestAmountArithmetic(t *testing.T) {
	if s, err := Kopecks(150).Add(Kopecks(250)); err != nil || s != Kopecks(400) {
		t.Fatalf("add: %v %v", s, err)
	}
	if _, err := Kopecks(1).Add(Tiyin(1)); !errors.Is(err, ErrCurrency) {
		t.Fatalf("add mixed: %v", err)
	}
	overAdd := [][2]int64{{math.MaxInt64, 1}, {math.MinInt64, -1}, {math.MaxInt64 / 2, math.MaxInt64/2 + 2}}
	for _, p := range overAdd {
		if _, err := Kopecks(p[0]).Add(Kopecks(p[1])); !errors.Is(err, ErrAmountOverflow) {
			t.Errorf("add %d+%d: %v", p[0], p[1], err)
		}
	}
	if s, err := Kopecks(math.MaxInt64).Add(Kopecks(math.MinInt64)); err != nil || s.Minor != -1 {
		t.Errorf("add max+min: %v %v", s, err)
	}
	if p, err := Kopecks(1999).Mul(3); err != nil || p != Kopecks(5997) {
		t.Fatalf("mul: %v %v", p, err)
	}
	if p, err := Kopecks(0).Mul(math.MaxInt64); err != nil || p.Minor != 0 || p.Currency != RUB {
		t.Fatalf("mul zero: %v %v", p, err)
	}
	overMul := [][2]int64{{math.MaxInt64, 2}, {math.MinInt64, -1}, {-1, math.MinInt64}, {1 << 32, 1 << 31}, {3037000500, 3037000500}}
	for _, p := range overMul {
		if _, err := Kopecks(p[0]).Mul(p[1]); !errors.Is(err, ErrAmountOverflow) {
			t.Errorf("mul %d*%d: %v", p[0], p[1], err)
		}
	}
	if p, err := Kopecks(math.MinInt64).Mul(1); err != nil || p.Minor != math.MinInt64 {
		t.Errorf("mul min*1: %v %v", p, err)
	}
}

func TestStates(t *testing.T) {
	final := map[State]bool{Completed: true, CodeExpired: true, Declined: true, Expired: true, Canceled: true, Failed: true}
	taken := map[State]bool{Paid: true, Fiscalizing: true, Completed: true}
	if len(States()) != 12 {
		t.Fatalf("%d states", len(States()))
	}
	for _, s := range States() {
		if !s.Valid() {
			t.Errorf("%s not valid", s)
		}
		if s.Final() != final[s] {
			t.Errorf("%s.Final() = %v", s, s.Final())
		}
		if s.MoneyTaken() != taken[s] {
			t.Errorf("%s.MoneyTaken() = %v", s, s.MoneyTaken())
		}
	}
	for _, s := range []State{"", "success", "PAID", "unknown"} {
		if s.Valid() || s.Final() || s.MoneyTaken() {
			t.Errorf("%q treated as a known state", s)
		}
	}
}

// FuzzParseDecimal: never panics; whatever parses formats back to an
// equivalent string and agrees with strconv on the integer value.
func FuzzParseDecimal(f *testing.F) {
	for _, s := range []string{"0", "0.05", "123.45", "1.2", "92233720368547758.07",
		"92233720368547758.08", "-1", "1e3", ".5", "5.", "", "1.234", "00000000000000000000001.00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := ParseDecimal(s, RUB)
		if err != nil {
			if a != (Amount{}) {
				t.Fatalf("error with a value: %v", a)
			}
			return
		}
		if a.Minor < 0 {
			t.Fatalf("negative from %q", s)
		}
		back, _ := a.Decimal()
		b, err := ParseDecimal(back, RUB)
		if err != nil || b != a {
			t.Fatalf("%q → %v → %q → %v, %v", s, a, back, b, err)
		}
		// Cross-check against strconv on the digits with the dot removed.
		whole, frac := back[:len(back)-3], back[len(back)-2:]
		n, err := strconv.ParseInt(whole+frac, 10, 64)
		if err != nil || n != a.Minor {
			t.Fatalf("strconv disagrees on %q: %d %v", back, n, err)
		}
	})
}
