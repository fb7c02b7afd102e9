package shtrihsim

import (
	"encoding/binary"
	"strconv"

	"time"

	"kassa-agent/fiscal/shtrih"
)

// FF3Ah/FF3Bh: a document read back from the FN archive as TLVs (layout in
// shtrih/archive.go). The read is device RAM, as on the device: FF3Ah begins
// it, each FF3Bh gives the next TLV, 08h when none is left.

// vat1199 is tag 1199's code for the rate a line was printed at.
var vat1199 = map[string]byte{"НДС 20%": 1, "НДС 10%": 2, "НДС 20/120": 3, "НДС 10/110": 4, "НДС 0%": 5, "БЕЗ НДС": 6,
	"НДС 5%": 7, "НДС 7%": 8, "НДС 5/105": 9, "НДС 7/107": 10, "НДС 22%": 11, "НДС 22/122": 12}

// documentTLVs is doc as the FN keeps it: its inner TLVs, in print order.
func (s *Sim) documentTLVs(doc Document) [][]byte {
	u32 := func(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }
	vln := func(v int64) []byte { return shtrih.PutVLN(uint64(v)) }
	str := func(v string) []byte { return shtrih.CP866(v) }
	var out [][]byte
	add := func(tag uint16, v []byte) { out = append(out, shtrih.TLV(tag, v)) }
	if doc.Operation != 0 {
		add(shtrih.TagOperation, []byte{byte(doc.Operation)})
	}
	if v, ok := doc.Tags[shtrih.TagCorrectionType]; ok {
		n, _ := strconv.Atoi(v)
		add(shtrih.TagCorrectionType, []byte{byte(n)})
	}
	if v := doc.Tags[shtrih.TagCorrectionDate]; v != "" {
		if day, err := time.Parse(time.DateOnly, v); err == nil {
			add(shtrih.TagCorrectionBase, shtrih.CorrectionBase(day, doc.Tags[shtrih.TagCorrectionOrder]))
		}
	}
	for _, it := range doc.Items {
		line := shtrih.TLV(shtrih.TagItemName, str(it.Name))
		line = append(line, shtrih.TLV(shtrih.TagItemPrice, vln(it.Price))...)
		line = append(line, shtrih.TLV(shtrih.TagItemQuantity, shtrih.PutFVLN(it.Quantity))...)
		line = append(line, shtrih.TLV(shtrih.TagItemSum, vln(it.Sum))...)
		if c, ok := vat1199[it.RateName]; ok {
			line = append(line, shtrih.TLV(shtrih.TagItemVAT, []byte{c})...)
		}
		add(shtrih.TagItem, line)
	}
	if doc.Type == DocReceipt || doc.Type == DocCorrection {
		add(shtrih.TagTotal, vln(doc.Total))
		var electronic int64
		for _, x := range doc.Payments[1:13] {
			electronic += x
		}
		for _, p := range []struct {
			tag uint16
			v   int64
		}{{shtrih.TagCash, doc.Payments[0]}, {shtrih.TagElectronic, electronic}, {shtrih.TagPrepayment, doc.Payments[13]},
			{shtrih.TagCredit, doc.Payments[14]}, {shtrih.TagConsider, doc.Payments[15]}} {
			if p.v != 0 {
				add(p.tag, vln(p.v))
			}
		}
		if doc.TaxSystem != 0 {
			add(shtrih.TagTaxSystem, []byte{byte(doc.TaxSystem)})
		}
	}
	for _, tag := range []int{shtrih.TagCashier, shtrih.TagCashierINN} {
		if v := doc.Tags[tag]; v != "" {
			add(uint16(tag), str(v))
		}
	}
	if doc.Shift != 0 {
		add(shtrih.TagShiftNumber, u32(uint32(doc.Shift)))
	}
	if doc.Number != 0 {
		add(shtrih.TagNumInShift, u32(uint32(doc.Number)))
	}
	// The FN keeps zone-less wall-clock time: the local time written as if UTC.
	l := s.local(doc.Time)
	wall := time.Date(l.Year(), l.Month(), l.Day(), l.Hour(), l.Minute(), 0, 0, time.UTC)
	add(shtrih.TagDateTime, u32(uint32(wall.Unix())))
	add(shtrih.TagUserINN, str(s.opt.INN))
	add(shtrih.TagRegNumber, str(s.opt.RegNumber))
	add(shtrih.TagFNNumber, str(s.opt.FNNumber))
	add(shtrih.TagFD, u32(doc.FD))
	add(shtrih.TagFPD, binary.BigEndian.AppendUint32([]byte{0, 0}, doc.FP))
	return out
}

// readDocument is FF3Ah: it begins reading document fd back.
func (s *Sim) readDocument(p []byte) (byte, []byte) {
	if len(p) < 4 {
		return shtrih.FNErrBadParam, nil
	}
	if doc, ok := s.document(binary.LittleEndian.Uint32(p)); ok {
		s.archive = s.documentTLVs(doc)
		n := 0
		for _, t := range s.archive {
			n += len(t)
		}
		d := binary.LittleEndian.AppendUint16(nil, uint16(doc.Type))
		return 0, binary.LittleEndian.AppendUint16(d, uint16(n))
	}
	return shtrih.FNErrNoData, nil
}

// readDocumentTLV is FF3Bh: the next TLV of the document being read.
func (s *Sim) readDocumentTLV() (byte, []byte) {
	if len(s.archive) == 0 {
		return shtrih.FNErrNoData, nil
	}
	t := s.archive[0]
	s.archive = s.archive[1:]
	return 0, t
}
