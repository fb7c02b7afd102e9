package payments

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Currency is an ISO 4217 alphabetic currency code.
type Currency string

// Currencies the agent handles. All of them have two minor digits
// (kopecks, tiyin, cents, poisha).
const (
	RUB Currency = "RUB"
	UZS Currency = "UZS"
	USD Currency = "USD"
	BDT Currency = "BDT" // Bangladeshi taka (AliKassa's BDT services); 1 taka = 100 poisha
)

// Exponent is the number of minor digits of the currency, or -1 for a
// currency the agent does not know.
func (c Currency) Exponent() int {
	switch c {
	case RUB, UZS, USD, BDT:
		return 2
	}
	return -1
}

// Valid reports whether the agent knows the currency.
func (c Currency) Valid() bool { return c.Exponent() >= 0 }

// Errors returned by the money functions; check with errors.Is.
var (
	ErrBadAmount       = errors.New("payments: malformed amount")
	ErrAmountOverflow  = errors.New("payments: amount out of range")
	ErrCurrency        = errors.New("payments: unknown or mismatched currency")
	ErrNegativeAmount  = errors.New("payments: negative amount")
	ErrTooManyDecimals = errors.New("payments: more fraction digits than the currency has")
)

// Amount is money: an integer count of the currency's minor units
// (kopecks for RUB, tiyin for UZS). Never a float.
type Amount struct {
	Minor    int64
	Currency Currency
}

// Kopecks is an amount in Russian kopecks.
func Kopecks(n int64) Amount { return Amount{Minor: n, Currency: RUB} }

// Tiyin is an amount in Uzbek tiyin (1 sum = 100 tiyin).
func Tiyin(n int64) Amount { return Amount{Minor: n, Currency: UZS} }

// IsZero reports whether the amount is zero.
func (a Amount) IsZero() bool { return a.Minor == 0 }

// String formats the amount for logs and people: "123.45 RUB".
func (a Amount) String() string {
	if !a.Currency.Valid() {
		return strconv.FormatInt(a.Minor, 10) + " minor " + string(a.Currency)
	}
	return FormatDecimal(a.Minor, a.Currency.Exponent()) + " " + string(a.Currency)
}

// Decimal formats the amount the way providers that take decimal strings
// want it: "123.45", "0.05", "-1.00". Always exactly the currency's digits.
func (a Amount) Decimal() (string, error) {
	if !a.Currency.Valid() {
		return "", fmt.Errorf("%w: %q", ErrCurrency, a.Currency)
	}
	return FormatDecimal(a.Minor, a.Currency.Exponent()), nil
}

// KopecksValue returns the integer kopecks of a RUB amount; any other
// currency is an error so that a sum cannot silently be sent as roubles.
func (a Amount) KopecksValue() (int64, error) { return a.minorIn(RUB) }

// TiyinValue returns the integer tiyin of a UZS amount.
func (a Amount) TiyinValue() (int64, error) { return a.minorIn(UZS) }

func (a Amount) minorIn(c Currency) (int64, error) {
	if a.Currency != c {
		return 0, fmt.Errorf("%w: have %q, want %q", ErrCurrency, a.Currency, c)
	}
	return a.Minor, nil
}

// Add returns a+b; the currencies must match and the sum must fit in int64.
func (a Amount) Add(b Amount) (Amount, error) {
	if a.Currency != b.Currency {
		return Amount{}, fmt.Errorf("%w: %q + %q", ErrCurrency, a.Currency, b.Currency)
	}
	s := a.Minor + b.Minor
	// Overflow iff both operands have the same sign and the sum's sign differs.
	if (a.Minor >= 0) == (b.Minor >= 0) && (s >= 0) != (a.Minor >= 0) {
		return Amount{}, ErrAmountOverflow
	}
	return Amount{Minor: s, Currency: a.Currency}, nil
}

// Mul returns a×n (a price times a quantity); the product must fit in int64.
func (a Amount) Mul(n int64) (Amount, error) {
	if a.Minor == 0 || n == 0 {
		return Amount{Currency: a.Currency}, nil
	}
	p := a.Minor * n
	if p/n != a.Minor || (a.Minor == -1 && n == math.MinInt64) || (n == -1 && a.Minor == math.MinInt64) {
		return Amount{}, ErrAmountOverflow
	}
	return Amount{Minor: p, Currency: a.Currency}, nil
}

// FormatDecimal writes minor units as a decimal string with exactly exp
// fraction digits (exp 2: 12345 → "123.45", 5 → "0.05", -5 → "-0.05").
func FormatDecimal(minor int64, exp int) string {
	neg := minor < 0
	// Work on the unsigned magnitude so math.MinInt64 formats correctly.
	u := uint64(minor)
	if neg {
		u = -u
	}
	digits := strconv.FormatUint(u, 10)
	if exp > 0 {
		if len(digits) <= exp {
			digits = strings.Repeat("0", exp-len(digits)+1) + digits
		}
		digits = digits[:len(digits)-exp] + "." + digits[len(digits)-exp:]
	}
	if neg {
		return "-" + digits
	}
	return digits
}

// ParseDecimal reads a provider's decimal money string into an Amount of
// the given currency: "123.45", "123.4", "123", "0.05". It refuses signs,
// spaces, exponents, commas, a bare ".", more fraction digits than the
// currency has (rather than rounding money) and values beyond int64.
// Negative money never arrives from a provider in a field we read, so a
// minus sign is ErrNegativeAmount.
func ParseDecimal(s string, c Currency) (Amount, error) {
	exp := c.Exponent()
	if exp < 0 {
		return Amount{}, fmt.Errorf("%w: %q", ErrCurrency, c)
	}
	n, err := parseDecimal(s, exp)
	if err != nil {
		return Amount{}, err
	}
	return Amount{Minor: n, Currency: c}, nil
}

func parseDecimal(s string, exp int) (int64, error) {
	if s == "" {
		return 0, fmt.Errorf("%w: empty", ErrBadAmount)
	}
	if s[0] == '-' {
		return 0, fmt.Errorf("%w: %q", ErrNegativeAmount, clip(s))
	}
	intPart, frac, hasDot := strings.Cut(s, ".")
	if intPart == "" || (hasDot && frac == "") {
		return 0, fmt.Errorf("%w: %q", ErrBadAmount, clip(s))
	}
	if !allDigits(intPart) || !allDigits(frac) {
		return 0, fmt.Errorf("%w: %q", ErrBadAmount, clip(s))
	}
	if len(frac) > exp {
		return 0, fmt.Errorf("%w: %q", ErrTooManyDecimals, clip(s))
	}
	var n uint64
	const limit = uint64(math.MaxInt64)
	for _, r := range intPart + frac + strings.Repeat("0", exp-len(frac)) {
		d := uint64(r - '0')
		if n > (limit-d)/10 {
			return 0, fmt.Errorf("%w: %q", ErrAmountOverflow, clip(s))
		}
		n = n*10 + d
	}
	return int64(n), nil
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// clip keeps error messages short when a provider sends garbage.
func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}
