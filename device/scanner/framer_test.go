package scanner

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 2, 10, 0, 0, 0, time.UTC)

type chunk struct {
	ms   int // arrival, milliseconds after t0
	data string
}

type want struct {
	text     string
	ms       int
	overlong int // >0: an Overlong frame of this length
}

// run feeds chunks the way the read loop does (expiring the idle gap between
// chunks and at the end) and returns every frame.
func run(cfg FramerConfig, chunks []chunk, endMs int) []Frame {
	f := NewFramer(cfg)
	var out []Frame
	for _, c := range chunks {
		at := t0.Add(time.Duration(c.ms) * time.Millisecond)
		if d, ok := f.Deadline(); ok && !d.After(at) {
			out = append(out, f.Expire(d)...)
		}
		out = append(out, f.Feed(at, []byte(c.data))...)
	}
	out = append(out, f.Expire(t0.Add(time.Duration(endMs)*time.Millisecond))...)
	return out
}

func TestFramer(t *testing.T) {
	const gs = "\x1d"
	mark := "0104650117240408215Qbag!" + gs + "93Zjqw" // a marking code with GS
	tests := []struct {
		name   string
		cfg    FramerConfig
		chunks []chunk
		end    int
		want   []want
	}{
		{"cr", FramerConfig{Suffix: SuffixCR}, []chunk{{0, "ABC\rDEF\r"}}, 0, []want{{"ABC", 0, 0}, {"DEF", 0, 0}}},
		{"lf", FramerConfig{Suffix: SuffixLF}, []chunk{{0, "ABC\nDE"}, {5, "F\n"}}, 5, []want{{"ABC", 0, 0}, {"DEF", 5, 0}}},
		{"crlf", FramerConfig{Suffix: SuffixCRLF}, []chunk{{0, "ABC\r"}, {3, "\nX\rY\r\n"}}, 3, []want{{"ABC", 3, 0}, {"X\rY", 3, 0}}},
		{"crlf split, lone LF kept inside", FramerConfig{Suffix: SuffixCRLF}, []chunk{{0, "A\nB\r"}, {1, "\n"}}, 1, []want{{"A\nB", 1, 0}}},
		{"cr config, crlf scanner", FramerConfig{Suffix: SuffixCR}, []chunk{{0, "ABC\r\n"}, {200, "DEF\r\n"}}, 400, []want{{"ABC", 0, 0}, {"DEF", 200, 0}}},
		{"lf config, crlf scanner", FramerConfig{Suffix: SuffixLF}, []chunk{{0, "ABC\r\nDEF\r\n"}}, 0, []want{{"ABC", 0, 0}, {"DEF", 0, 0}}},
		{"suffix byte completes at once, no wait for gap", FramerConfig{Suffix: SuffixCR, IdleGap: time.Hour}, []chunk{{7, "Q\r"}}, 7, []want{{"Q", 7, 0}}},
		{"idle gap ends code", FramerConfig{Suffix: SuffixNone}, []chunk{{0, "AB"}, {20, "C"}, {100, "DE"}}, 200, []want{{"ABC", 20, 0}, {"DE", 100, 0}}},
		{"idle gap in cr mode", FramerConfig{Suffix: SuffixCR}, []chunk{{0, "AB"}, {60, "CD\r"}}, 60, []want{{"AB", 0, 0}, {"CD", 60, 0}}},
		{"gap exactly 50ms ends", FramerConfig{Suffix: SuffixNone}, []chunk{{0, "A"}, {50, "B"}}, 100, []want{{"A", 0, 0}, {"B", 50, 0}}},
		{"gap 49ms continues", FramerConfig{Suffix: SuffixNone}, []chunk{{0, "A"}, {49, "B"}}, 99, []want{{"AB", 49, 0}}},
		{"custom gap", FramerConfig{Suffix: SuffixNone, IdleGap: 10 * time.Millisecond}, []chunk{{0, "A"}, {15, "B"}}, 30, []want{{"A", 0, 0}, {"B", 15, 0}}},
		{"gap off: only suffix", FramerConfig{Suffix: SuffixCR, IdleGap: -1}, []chunk{{0, "A"}, {5000, "B\r"}}, 9000, []want{{"AB", 5000, 0}}},
		{"gap off, no suffix: pending", FramerConfig{Suffix: SuffixCR, IdleGap: -1}, []chunk{{0, "A"}}, 9000, nil},
		{"prefix stripped", FramerConfig{Suffix: SuffixCR, Prefix: "]Q1"}, []chunk{{0, "]Q1https://x\r]d2" + mark + "\r"}}, 0, []want{{"https://x", 0, 0}, {"]d2" + mark, 0, 0}}},
		{"code without prefix kept whole", FramerConfig{Suffix: SuffixCR, Prefix: "@@"}, []chunk{{0, "ABC\r"}}, 0, []want{{"ABC", 0, 0}}},
		{"prefix only: empty, dropped", FramerConfig{Suffix: SuffixCR, Prefix: "@@"}, []chunk{{0, "@@\r"}}, 0, nil},
		{"GS kept", FramerConfig{Suffix: SuffixCR}, []chunk{{0, mark + "\r"}}, 0, []want{{mark, 0, 0}}},
		{"GS kept at end of idle-gap code", FramerConfig{Suffix: SuffixNone}, []chunk{{0, "01" + gs}}, 100, []want{{"01" + gs, 0, 0}}},
		{"NUL and garbage kept inside", FramerConfig{Suffix: SuffixCR}, []chunk{{0, "\x00A\xff\xfe\x00\x1bB\x00\r"}}, 0, []want{{"\x00A\xff\xfe\x00\x1bB\x00", 0, 0}}},
		{"empty codes dropped", FramerConfig{Suffix: SuffixCR}, []chunk{{0, "\r\r\r\n\rA\r"}}, 0, []want{{"A", 0, 0}}},
		{"overlong dropped up to suffix", FramerConfig{Suffix: SuffixCR, MaxLength: 8}, []chunk{{0, "123456789ABC"}, {1, "DEF\rOK\r"}}, 1, []want{{"", 1, 15}, {"OK", 1, 0}}},
		{"exactly max length kept", FramerConfig{Suffix: SuffixCR, MaxLength: 8}, []chunk{{0, "12345678\r"}}, 0, []want{{"12345678", 0, 0}}},
		{"overlong ended by idle gap", FramerConfig{Suffix: SuffixNone, MaxLength: 4}, []chunk{{0, "1234567"}, {100, "AB"}}, 200, []want{{"", 0, 7}, {"AB", 100, 0}}},
		{"overlong without prefix", FramerConfig{Suffix: SuffixCR, MaxLength: 4, Prefix: "P"}, []chunk{{0, "123456\r"}}, 0, []want{{"", 0, 6}}},
		{"max length counts after prefix", FramerConfig{Suffix: SuffixCR, MaxLength: 4, Prefix: "PP"}, []chunk{{0, "PP1234\r"}}, 0, []want{{"1234", 0, 0}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := run(tt.cfg, tt.chunks, tt.end)
			if len(got) != len(tt.want) {
				t.Fatalf("got %d frames %+v, want %d %+v", len(got), got, len(tt.want), tt.want)
			}
			for i, w := range tt.want {
				g := got[i]
				at := t0.Add(time.Duration(w.ms) * time.Millisecond)
				if g.Text != w.text || !g.At.Equal(at) || g.Overlong != (w.overlong > 0) || (w.overlong > 0 && g.Length != w.overlong) {
					t.Errorf("frame %d: got {%q at %v overlong=%v len=%d}, want {%q at +%dms overlong=%d}",
						i, g.Text, g.At.Sub(t0), g.Overlong, g.Length, w.text, w.ms, w.overlong)
				}
			}
		})
	}
}

func TestFramerFlush(t *testing.T) {
	f := NewFramer(FramerConfig{Suffix: SuffixCR})
	if got := f.Feed(t0, []byte("AB\rCD")); len(got) != 1 || got[0].Text != "AB" {
		t.Fatalf("feed: %+v", got)
	}
	if f.Pending() != 2 {
		t.Fatalf("pending %d", f.Pending())
	}
	got := f.Flush()
	if len(got) != 1 || got[0].Text != "CD" {
		t.Fatalf("flush: %+v", got)
	}
	if f.Flush() != nil || f.Pending() != 0 {
		t.Fatal("second flush returned something")
	}
	if _, ok := f.Deadline(); ok {
		t.Fatal("deadline with nothing pending")
	}
}

func TestParseSuffix(t *testing.T) {
	for in, want := range map[string]Suffix{"": SuffixCR, "CR": SuffixCR, "lf": SuffixLF, "crlf": SuffixCRLF, " none ": SuffixNone} {
		got, err := ParseSuffix(in)
		if err != nil || got != want {
			t.Errorf("%q: %v %v", in, got, err)
		}
	}
	if _, err := ParseSuffix("tab"); err == nil {
		t.Error("accepted tab")
	}
}

// FuzzFramer checks the framer's invariants on any input split any way:
// no panic; every code is non-empty, within MaxLength, free of the suffix,
// without CR/LF at its ends; and with no prefix, no overlong input and the
// idle gap off, the codes are exactly the input split at the suffix.
func FuzzFramer(f *testing.F) {
	f.Add([]byte("ABC\rDEF\r"), uint8(0), uint8(3), uint8(0))
	f.Add([]byte("0104650117240408215Qbag!\x1d93Zjqw\r\n"), uint8(2), uint8(5), uint8(1))
	f.Add([]byte("\x00\x00\r\n\r\n\xff"), uint8(1), uint8(1), uint8(0))
	f.Add([]byte("]Q1https://qr.nspk.ru/AS1000\r"), uint8(0), uint8(7), uint8(2))
	f.Add(bytes.Repeat([]byte("X"), 300), uint8(3), uint8(50), uint8(0))
	f.Add([]byte("\r\r\n\n\r"), uint8(2), uint8(1), uint8(0))
	f.Fuzz(func(t *testing.T, data []byte, suffix, split, prefixSel uint8) {
		sfx := Suffix(suffix % 4)
		prefix := []string{"", "]Q1", "\x1d"}[prefixSel%3]
		cfg := FramerConfig{Suffix: sfx, IdleGap: -1, Prefix: prefix, MaxLength: 64}
		fr := NewFramer(cfg)
		step := int(split%16) + 1
		var got []Frame
		for i := 0; i < len(data); i += step {
			got = append(got, fr.Feed(t0.Add(time.Duration(i)*time.Millisecond), data[i:min(i+step, len(data))])...)
		}
		got = append(got, fr.Flush()...)
		overlong := false
		var texts []string
		for _, g := range got {
			if g.Overlong {
				overlong = true
				if g.Length <= cfg.MaxLength || g.Text != "" {
					t.Fatalf("overlong frame %+v", g)
				}
				continue
			}
			if g.Text == "" || len(g.Text) > cfg.MaxLength {
				t.Fatalf("bad code %q", g.Text)
			}
			if strings.Trim(g.Text, "\r\n") != g.Text {
				t.Fatalf("code %q has CR/LF at an end", g.Text)
			}
			switch sfx {
			case SuffixCR:
				if strings.Contains(g.Text, "\r") {
					t.Fatalf("code %q contains the suffix", g.Text)
				}
			case SuffixLF:
				if strings.Contains(g.Text, "\n") {
					t.Fatalf("code %q contains the suffix", g.Text)
				}
			case SuffixCRLF:
				if strings.Contains(g.Text, "\r\n") {
					t.Fatalf("code %q contains the suffix", g.Text)
				}
			}
			texts = append(texts, g.Text)
		}
		if prefix != "" || overlong || sfx == SuffixNone {
			return
		}
		sep := map[Suffix]string{SuffixCR: "\r", SuffixLF: "\n", SuffixCRLF: "\r\n"}[sfx]
		var want []string
		for _, part := range strings.Split(string(data), sep) {
			if p := strings.Trim(part, "\r\n"); p != "" {
				want = append(want, p)
			}
		}
		if strings.Join(texts, "|") != strings.Join(want, "|") || len(texts) != len(want) {
			t.Fatalf("codes %q, want %q", texts, want)
		}
	})
}
