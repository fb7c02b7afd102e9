package shtrihsim

import (
	"encoding/binary"
	"strings"

	"kassa-agent/fiscal/shtrih"
)

// MarkingVerdict is what the simulated FN and OISM (Честный ЗНАК) say of a
// code checked with FF61h.
type MarkingVerdict int

const (
	// MarkValid: the FN's crypto check and the OISM agree (2106 = 0x0F).
	MarkValid MarkingVerdict = iota
	// MarkInvalid: the FN's crypto check fails; the OISM says the status is
	// wrong (2004 = 1, 2106 = 0x05, 2109 = 2), as in the trace of fr_drv_ng #145.
	MarkInvalid
	// MarkUnknown: the FN's check passes, the OISM knows no such code (2106 =
	// 0x07, no 2109).
	MarkUnknown
	// MarkUnreachable: the OISM does not answer; the reply carries the FN's
	// check only (no online part) and 2106 is 0x03.
	MarkUnreachable
)

// SetMarkingVerdict sets what checks of code answer from now on (codes not
// set are MarkValid). The code is compared byte for byte, GS included.
func (s *Sim) SetMarkingVerdict(code string, v MarkingVerdict) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.verdicts == nil {
		s.verdicts = map[string]MarkingVerdict{}
	}
	s.verdicts[code] = v
}

// IndustryRequisite is tag 1260 as the FN recorded it.
type IndustryRequisite struct {
	FOIV   string `json:"foiv"`
	Date   string `json:"date"`
	Number string `json:"number"`
	Value  string `json:"value"`
}

// markCheck is a code checked by FF61h: awaiting FF69h, or accepted (saved)
// and possibly bound to a line of the open receipt.
type markCheck struct {
	Code     string `json:"code"`
	Status   int    `json:"status"` // 2003
	Result   int    `json:"result"` // 2106
	Online   bool   `json:"online"`
	Measure  int    `json:"measure,omitempty"`
	Quantity int64  `json:"quantity,omitempty"`
	FracNum  int64  `json:"frac_num,omitempty"`
	FracDen  int64  `json:"frac_den,omitempty"`
	Bound    bool   `json:"bound,omitempty"`
}

// lineTags is what FF4Dh and FF67h sent for the next FF46h (FFD 1.2).
type lineTags struct {
	Measure  int                 `json:"measure,omitempty"`
	FracNum  int64               `json:"frac_num,omitempty"`
	FracDen  int64               `json:"frac_den,omitempty"`
	Industry []IndustryRequisite `json:"industry,omitempty"`
	Code     *markCheck          `json:"code,omitempty"`
}

func (s *Sim) ffd12() bool {
	switch s.opt.FFD {
	case "1.0", "1.05", "1.1":
		return false
	}
	return true
}

func (s *Sim) marking(cmd uint16, p []byte) (byte, []byte) {
	if !s.ffd12() {
		return shtrih.ErrCodeNotSupported, nil
	}
	switch cmd {
	case shtrih.CmdFNCheckMarking:
		return s.checkMarking(p)
	case shtrih.CmdFNAcceptMarking:
		if len(p) != 1 {
			return shtrih.ErrCodeBadParams, nil
		}
		switch p[0] {
		case shtrih.MarkingDecline:
			s.st.MarkCheck = nil
		case shtrih.MarkingAccept:
			if s.st.MarkCheck == nil {
				return shtrih.FNErrState, nil
			}
			s.st.MarkSaved = append(s.st.MarkSaved, *s.st.MarkCheck)
			s.st.MarkCheck = nil
		case shtrih.MarkingClear:
			s.st.MarkCheck, s.st.MarkSaved = nil, nil
		default:
			return shtrih.ErrCodeBadParams, nil
		}
		return 0, nil
	case shtrih.CmdFNMarkingStatus:
		st := shtrih.MarkingStatus{CheckState: 1, Allowed: 0x01, Saved: byte(min(len(s.st.MarkSaved), 255))}
		if c := s.st.MarkCheck; c != nil {
			st.CheckState, st.Allowed = 2, 0x03
			if c.Online {
				st.CheckState = 4
			}
		}
		return 0, shtrih.EncodeMarkingStatus(st)
	case shtrih.CmdFNBindMarking:
		return s.bindMarking(p)
	}
	return shtrih.ErrCodeNotSupported, nil
}

func (s *Sim) checkMarking(p []byte) (byte, []byte) {
	if len(p) < 4 || p[0] < 1 || p[0] > 4 || p[1] != 0 || len(p) != 4+int(p[2])+int(p[3]) {
		return shtrih.ErrCodeBadParams, nil
	}
	if p[2] == 0 {
		return shtrih.ErrCodeMarkingFormat, nil
	}
	if s.st.MarkCheck != nil {
		return shtrih.FNErrState, nil // the previous check awaits FF69h
	}
	code := string(p[4 : 4+int(p[2])])
	c := markCheck{Code: code, Status: int(p[0])}
	if c.Status == 2 || c.Status == 4 {
		tags, ok := readTLVs(p[4+int(p[2]):])
		m, hasM := tags[shtrih.TagMeasure]
		q, hasQ := tags[shtrih.TagQuantity]
		f, hasF := tags[shtrih.TagFraction]
		if !ok || !hasM || len(m) != 1 || hasQ == hasF {
			return shtrih.ErrCodeMarkingFormat, nil
		}
		c.Measure = int(m[0])
		if hasQ {
			v, ok := fvln(q)
			if !ok {
				return shtrih.ErrCodeMarkingFormat, nil
			}
			c.Quantity = v
		} else {
			n, d, ok := fraction(f)
			if !ok {
				return shtrih.ErrCodeMarkingFormat, nil
			}
			c.FracNum, c.FracDen = n, d
		}
	} else if p[3] != 0 {
		return shtrih.ErrCodeMarkingFormat, nil
	}
	// 2004, reason, 2100 (the simulator always says GS1 Data Matrix), length.
	var reply []byte
	online := func(r2106 byte, tlv ...[]byte) {
		more := []byte{0, r2106}
		for _, t := range tlv {
			more = append(more, t...)
		}
		reply = append(reply, byte(len(more)))
		reply = append(reply, more...)
		c.Result, c.Online = int(r2106), true
	}
	switch s.verdicts[code] {
	case MarkValid:
		reply = []byte{0x03, 0, 2}
		online(0x0F, shtrih.TLV(shtrih.TagItemStatus, []byte{1}), shtrih.TLV(shtrih.TagProcessingCode, []byte{0}))
	case MarkInvalid:
		reply = []byte{0x01, 0, 2}
		online(0x05, shtrih.TLV(shtrih.TagItemStatus, []byte{2}), shtrih.TLV(shtrih.TagProcessingCode, []byte{0}))
	case MarkUnknown:
		reply = []byte{0x03, 0, 2}
		online(0x07)
	case MarkUnreachable:
		reply = []byte{0x03, 0, 2, 0}
		c.Result = 0x03
	}
	s.st.MarkCheck = &c
	return 0, reply
}

// bindMarking is FF67h: the code must be one accepted and not yet bound; it
// goes to the next FF46h.
func (s *Sim) bindMarking(p []byte) (byte, []byte) {
	r := s.st.Receipt
	if r == nil || (r.Type != 0 && r.Type != 2) {
		return shtrih.ErrCodeBadOperation, nil // marked goods: sale and sale return only
	}
	if len(p) < 1 || (len(p) != 1+int(p[0]) && !(len(p) == 2+int(p[0]) && p[len(p)-1] == 0xFF)) || p[0] == 0 {
		return shtrih.ErrCodeBadParams, nil
	}
	code := string(p[1 : 1+int(p[0])])
	lt := s.lineTags()
	if lt.Code != nil {
		return shtrih.ErrCodeBadOperation, nil // one code per line
	}
	for i := range s.st.MarkSaved {
		c := &s.st.MarkSaved[i]
		if c.Bound || c.Code != code {
			continue
		}
		returned := c.Status == 3 || c.Status == 4
		if returned != (r.Type == 2) {
			return shtrih.ErrCodeBadOperation, nil // checked for the other direction
		}
		c.Bound = true
		cp := *c
		lt.Code = &cp
		return 0, []byte{'D', 'M', 0}
	}
	// The vendor's register would check an unchecked code itself here; the
	// simulator refuses it, so a host that skips the check shows in tests.
	return shtrih.ErrCodeBadOperation, nil
}

func (s *Sim) lineTags() *lineTags {
	if s.st.Line == nil {
		s.st.Line = &lineTags{}
	}
	return s.st.Line
}

// lineTLV is FF4Dh under FFD 1.2: the tag goes to the next line.
func (s *Sim) lineTLV(tag int, v []byte) (byte, []byte) {
	lt := s.lineTags()
	switch tag {
	case shtrih.TagProductCode:
		return shtrih.FNErrBadParam, nil // FFD 1.2 has no host-built 1162
	case shtrih.TagMeasure:
		if len(v) != 1 {
			return shtrih.FNErrBadParam, nil
		}
		lt.Measure = int(v[0])
	case shtrih.TagFraction:
		n, d, ok := fraction(v)
		if !ok {
			return shtrih.FNErrBadParam, nil
		}
		lt.FracNum, lt.FracDen = n, d
	case shtrih.TagIndustry:
		tags, ok := readTLVs(v)
		if !ok || len(tags[shtrih.TagFOIV]) != 3 || len(tags[shtrih.TagDocDate]) != 10 || len(tags[shtrih.TagDocNumber]) == 0 || len(tags[shtrih.TagIndustryValue]) == 0 {
			return shtrih.FNErrBadParam, nil
		}
		lt.Industry = append(lt.Industry, IndustryRequisite{FOIV: shtrih.DecodeCP866(tags[shtrih.TagFOIV]), Date: string(tags[shtrih.TagDocDate]),
			Number: shtrih.DecodeCP866(tags[shtrih.TagDocNumber]), Value: shtrih.DecodeCP866(tags[shtrih.TagIndustryValue])})
	default:
		return shtrih.FNErrBadParam, nil
	}
	return 0, nil
}

// bindLine gives the line what FF4Dh and FF67h sent before it, checking it
// against the accepted check: the code's status, measure and fraction must be
// what the line sells.
func (s *Sim) bindLine(it *Item) byte {
	lt := s.st.Line
	if lt == nil || lt.Code == nil {
		if it.Object == 31 || it.Object == 33 {
			return shtrih.ErrCodeBadOperation // a marked object without its code (FF67h)
		}
	}
	if lt == nil {
		return 0
	}
	if lt.FracDen != 0 && lt.Code == nil {
		return shtrih.ErrCodeBadOperation // 1293/1294 without FF67h (fr_drv_ng #245)
	}
	if c := lt.Code; c != nil {
		measured := c.Status == 2 || c.Status == 4
		switch {
		case it.Object != 31 && it.Object != 33:
			return shtrih.ErrCodeBadParams
		case !measured && (lt.Measure != 0 || lt.FracDen != 0 || it.Quantity != 1_000_000):
			return shtrih.ErrCodeBadParams
		case measured && (lt.Measure != c.Measure || lt.FracNum != c.FracNum || lt.FracDen != c.FracDen ||
			(c.FracDen == 0 && it.Quantity != c.Quantity)):
			return shtrih.ErrCodeBadParams
		}
		it.Marking, it.MarkingCheck, it.PlannedStatus = c.Code, c.Result, c.Status
	}
	it.Measure, it.FractionNum, it.FractionDen, it.Industry = lt.Measure, lt.FracNum, lt.FracDen, lt.Industry
	s.st.Line = nil
	return 0
}

// markTag is what the tape shows for a marked line: [M+] confirmed, [M-]
// refused, [M] not checked online (as the vendor's registers print).
func markTag(r int) string {
	switch {
	case r&0x0C == 0x0C:
		return "[M+]"
	case r&0x04 != 0:
		return "[M-]"
	}
	return "[M]"
}

// receiptMarkingDone drops the codes bound to the receipt just closed or
// cancelled: a cancelled line's code must be checked again.
func (s *Sim) receiptMarkingDone() {
	s.st.Line = nil
	kept := s.st.MarkSaved[:0]
	for _, c := range s.st.MarkSaved {
		if !c.Bound {
			kept = append(kept, c)
		}
	}
	s.st.MarkSaved = kept
	if len(kept) == 0 {
		s.st.MarkSaved = nil
	}
}

func readTLVs(b []byte) (map[int][]byte, bool) {
	out := map[int][]byte{}
	for len(b) > 0 {
		if len(b) < 4 {
			return nil, false
		}
		tag, n := int(binary.LittleEndian.Uint16(b)), int(binary.LittleEndian.Uint16(b[2:]))
		if len(b) < 4+n || n == 0 {
			return nil, false
		}
		out[tag] = b[4 : 4+n]
		b = b[4+n:]
	}
	return out, true
}

func vln(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 7 {
		return 0, false
	}
	var v int64
	for i := len(b) - 1; i >= 0; i-- {
		v = v<<8 | int64(b[i])
	}
	return v, true
}

// fvln reads an FVLN quantity into millionths.
func fvln(b []byte) (int64, bool) {
	if len(b) < 2 || b[0] > 6 {
		return 0, false
	}
	v, ok := vln(b[1:])
	if !ok {
		return 0, false
	}
	for d := b[0]; d < 6; d++ {
		v *= 10
	}
	return v, true
}

func fraction(b []byte) (int64, int64, bool) {
	tags, ok := readTLVs(b)
	if !ok {
		return 0, 0, false
	}
	n, ok1 := vln(tags[shtrih.TagNumerator])
	d, ok2 := vln(tags[shtrih.TagDenominator])
	if !ok1 || !ok2 || n < 1 || d < 2 || n >= d {
		return 0, 0, false
	}
	return n, d, true
}

// markLine is the tape line under a marked item.
func markLine(it Item) string {
	if it.Marking == "" {
		return ""
	}
	return "   " + markTag(it.MarkingCheck) + " " + strings.ReplaceAll(it.Marking, "\x1d", "<GS>")
}
