package shtrihsim

import (
	"encoding/binary"
	"errors"
	"strings"

	"kassa-agent/fiscal/shtrih"
)

// The legacy receipt commands (pre-FN protocol, still accepted by FN firmware and
// still sent by POS vendors' drivers). Layouts after the 4-byte password, checked
// against the vendor's Java driver (shtrih-m/javapos_shtrih: PrintSale,
// EndFiscalReceipt, VoidFiscalReceipt) and pyshtrih (commands.py sale, return_sale,
// close_check, cancel_check; handlers/commands.py replies):
//
//	80h sale, 82h return sale: quantity(5, thousandths) price(5) department(1)
//	    tax1..tax4(1 each: a table-6 row, 0 = none) text(40, WIN1251)
//	    → operator(1)
//	85h close receipt: cash(5) sum2(5) sum3(5) sum4(5) discount(2, signed, % × 100)
//	    tax1..tax4(1 each) text(40) → operator(1) change(5)
//	88h cancel receipt: nothing → operator(1)
//
// Both drivers read only the operator and the change from the 85h reply; the FD
// number and fiscal sign are read from the FN afterwards (FF01h, FF0Ah).

const legacyText = 40

// legacyItem is the 80h/82h request.
type legacyItem struct {
	Quantity   int64 // thousandths
	Price      int64 // kopecks
	Department byte
	Taxes      [4]byte
	Text       string
}

// legacyClose is the 85h request.
type legacyClose struct {
	Payments [4]int64 // cash, then payment types 2..4
	Discount int16    // percent × 100; negative = surcharge
	Taxes    [4]byte
	Text     string
}

var errLegacyLayout = errors.New("shtrihsim: legacy command layout")

func legacyString(b []byte) (string, error) {
	if len(b) > legacyText {
		return "", errLegacyLayout
	}
	return strings.TrimRight(shtrih.DecodeWin1251(b), " \x00"), nil
}

// decodeLegacyItem parses 80h/82h params after the password. The text may be
// shorter than 40 bytes (hosts that do not pad it).
func decodeLegacyItem(p []byte) (legacyItem, error) {
	const fixed = 5 + 5 + 1 + 4
	if len(p) < fixed {
		return legacyItem{}, errLegacyLayout
	}
	it := legacyItem{Quantity: int64(shtrih.GetUint(p[0:5])), Price: int64(shtrih.GetUint(p[5:10])), Department: p[10]}
	copy(it.Taxes[:], p[11:15])
	var err error
	it.Text, err = legacyString(p[fixed:])
	return it, err
}

// decodeLegacyClose parses 85h params after the password.
func decodeLegacyClose(p []byte) (legacyClose, error) {
	const fixed = 4*5 + 2 + 4
	if len(p) < fixed {
		return legacyClose{}, errLegacyLayout
	}
	var c legacyClose
	for i := range c.Payments {
		c.Payments[i] = int64(shtrih.GetUint(p[i*5 : i*5+5]))
	}
	c.Discount = int16(binary.LittleEndian.Uint16(p[20:22]))
	copy(c.Taxes[:], p[22:26])
	var err error
	c.Text, err = legacyString(p[fixed:])
	return c, err
}

// taxRow is the one table-6 row a legacy line names: FFD allows one VAT rate per
// line, so two non-zero tax bytes are refused; none means "no VAT" (row 4).
func (it legacyItem) taxRow() (int, bool) {
	row := 0
	for _, t := range it.Taxes {
		if t == 0 {
			continue
		}
		if row != 0 {
			return 0, false
		}
		row = int(t)
	}
	if row == 0 {
		row = 4
	}
	return row, true
}

// legacySale runs 80h (sale) and 82h (return sale). The first line opens the
// receipt (type 0 sale, 2 sale return), as on the device.
func (s *Sim) legacySale(op byte, cmd uint16, p []byte) (byte, []byte) {
	if c := s.printable(); c != 0 {
		return c, nil
	}
	want := 0
	if cmd == shtrih.CmdReturnSale {
		want = 2
	}
	if s.st.Receipt == nil {
		if c := s.shiftReady(); c != 0 {
			return c, nil
		}
	} else if s.st.Receipt.Type != want {
		return shtrih.ErrCodeWrongMode, nil
	}
	li, err := decodeLegacyItem(p)
	if err != nil {
		return shtrih.ErrCodeBadParams, nil
	}
	row, ok := li.taxRow()
	if !ok {
		return shtrih.ErrCodeBadParams, nil
	}
	rate, ok := s.rate(row)
	if !ok || li.Quantity <= 0 || li.Department > 16 || li.Text == "" {
		return shtrih.ErrCodeBadParams, nil
	}
	sum := (li.Price*li.Quantity + 500) / 1000
	it := Item{Name: li.Text, Quantity: li.Quantity * 1000, Price: li.Price, Sum: sum, Tax: rate.tax(sum), TaxRate: row,
		Method: 4, Object: 1, Department: int(li.Department), RateName: rate.name} // full payment, goods: the device's defaults
	s.ensureReceipt(want)
	s.addItem(it, rate)
	return 0, []byte{op}
}

// legacyCloseReceipt runs 85h.
func (s *Sim) legacyCloseReceipt(op byte, p []byte) (byte, []byte) {
	if c := s.printable(); c != 0 {
		return c, nil
	}
	if s.st.Receipt == nil {
		return shtrih.ErrCodeWrongMode, nil
	}
	lc, err := decodeLegacyClose(p)
	if err != nil {
		return shtrih.ErrCodeBadParams, nil
	}
	if lc.Discount != 0 {
		// Receipt-wide percent discounts are not simulated: refused rather than
		// ignored, so a host relying on one sees it at once.
		return shtrih.ErrCodeBadParams, nil
	}
	var c shtrih.Close
	copy(c.Payments[:], lc.Payments[:])
	c.Text = lc.Text
	code, doc := s.finishReceipt(c)
	if code != 0 {
		return code, nil
	}
	return 0, append([]byte{op}, shtrih.Money5(doc.Change)...)
}
