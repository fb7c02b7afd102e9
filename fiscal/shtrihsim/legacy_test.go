package shtrihsim

import (
	"testing"

	"kassa-agent/fiscal/shtrih"
)

// FuzzLegacyDecoders: the 80h/82h and 85h parsers never panic, refuse texts over
// 40 bytes, and give back the fixed fields they were given.
func FuzzLegacyDecoders(f *testing.F) {
	item := append(append(shtrih.Money5(2500), shtrih.Money5(10000)...), 1, 2, 0, 0, 0)
	f.Add(append(item, make([]byte, 40)...))
	f.Add(append(item, shtrih.Win1251("Яблоки")...))
	f.Add(item[:14])
	cl := append(append(shtrih.Money5(30000), make([]byte, 15)...), 0xF4, 0x01, 0, 0, 0, 0)
	f.Add(append(cl, make([]byte, 40)...))
	f.Add(append(cl, make([]byte, 41)...))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, p []byte) {
		if it, err := decodeLegacyItem(p); err == nil {
			if len(p) < 15 || len(p) > 15+legacyText {
				t.Fatalf("accepted %d bytes as an 80h item", len(p))
			}
			if it.Quantity != int64(shtrih.GetUint(p[:5])) || it.Price != int64(shtrih.GetUint(p[5:10])) || it.Taxes[3] != p[14] {
				t.Fatalf("item %+v from % X", it, p)
			}
			if row, ok := it.taxRow(); ok && (row < 1 || row > 255) {
				t.Fatalf("row %d", row)
			}
		} else if len(p) >= 15 && len(p) <= 15+legacyText {
			t.Fatalf("refused a well-sized item: %v", err)
		}
		if c, err := decodeLegacyClose(p); err == nil {
			if len(p) < 26 || len(p) > 26+legacyText {
				t.Fatalf("accepted %d bytes as an 85h close", len(p))
			}
			if c.Payments[3] != int64(shtrih.GetUint(p[15:20])) || c.Taxes[0] != p[22] {
				t.Fatalf("close %+v from % X", c, p)
			}
		} else if len(p) >= 26 && len(p) <= 26+legacyText {
			t.Fatalf("refused a well-sized close: %v", err)
		}
	})
}

// TestLegacyTaxRow: one tax byte names the line's row; none is "no VAT"; two are
// refused (FFD has one rate per line).
func TestLegacyTaxRow(t *testing.T) {
	for _, tc := range []struct {
		taxes [4]byte
		row   int
		ok    bool
	}{{[4]byte{}, 4, true}, {[4]byte{2}, 2, true}, {[4]byte{0, 0, 0, 1}, 1, true}, {[4]byte{1, 2}, 0, false}} {
		row, ok := legacyItem{Taxes: tc.taxes}.taxRow()
		if row != tc.row || ok != tc.ok {
			t.Errorf("%v: row %d %v, want %d %v", tc.taxes, row, ok, tc.row, tc.ok)
		}
	}
}
