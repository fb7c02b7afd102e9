package servicectl

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// unquoteWords reads back a line of words the way systemd reads ExecStart and
// ReadWritePaths: double-quoted, \\ and \" escaped, %% a literal %, and in a
// command line $$ a literal $. It accepts only what quote writes.
func unquoteWords(t *testing.T, line string, command bool) []string {
	t.Helper()
	var words []string
	for len(line) > 0 {
		if line[0] != '"' {
			t.Fatalf("word does not start with a quote: %q", line)
		}
		var w strings.Builder
		i := 1
		for ; i < len(line) && line[i] != '"'; i++ {
			switch c := line[i]; {
			case c == '\\' && i+1 < len(line):
				i++
				w.WriteByte(line[i])
			case c == '%' && i+1 < len(line) && line[i+1] == '%':
				i++
				w.WriteByte('%')
			case c == '$' && command && i+1 < len(line) && line[i+1] == '$':
				i++
				w.WriteByte('$')
			case c == '%' || c == '$' && command:
				t.Fatalf("unescaped %c in %q", c, line)
			default:
				w.WriteByte(c)
			}
		}
		if i == len(line) {
			t.Fatalf("unterminated word in %q", line)
		}
		words = append(words, w.String())
		line = strings.TrimPrefix(line[i+1:], " ")
	}
	return words
}

// Whatever the paths, the unit either is refused or keeps its lines and reads
// back to exactly the words given: a path cannot add a line or a word.
func FuzzUnitRender(f *testing.F) {
	f.Add("/usr/local/bin/kassa-agent", "/etc/kassa-agent/config.toml", "/srv/data")
	f.Add("/opt/kassa agent/ka", `/etc/a "b"\c.toml`, "/srv/100%")
	f.Add("/x", "$HOME/%h.toml", "/d\n[Service]\nUser=root")
	f.Fuzz(func(t *testing.T, exe, cfg, rw string) {
		base, err := Unit{Exe: "/x", Args: []string{"run"}, ReadWrite: []string{"/d"}}.Render()
		if err != nil {
			t.Fatal(err)
		}
		u := Unit{Exe: exe, Args: Config(cfg).Arguments, ReadWrite: []string{rw}}
		unit, err := u.Render()
		if err != nil {
			bad := func(s string) bool {
				return !utf8.ValidString(s) || strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f })
			}
			if !bad(exe) && !bad(cfg) && !bad(rw) {
				t.Fatalf("refused valid UTF-8 without a control character: %v", err)
			}
			return
		}
		if strings.Count(unit, "\n") != strings.Count(base, "\n") {
			t.Fatalf("the unit gained or lost lines:\n%s", unit)
		}
		for _, l := range strings.Split(unit, "\n") {
			if v, ok := strings.CutPrefix(l, "ExecStart="); ok {
				got := unquoteWords(t, v, true)
				want := append([]string{exe}, u.Args...)
				if strings.Join(got, "\x00") != strings.Join(want, "\x00") {
					t.Fatalf("ExecStart reads back as %q, want %q", got, want)
				}
			}
			if v, ok := strings.CutPrefix(l, "ReadWritePaths="); ok {
				if got := unquoteWords(t, v, false); len(got) != 1 || got[0] != rw {
					t.Fatalf("ReadWritePaths reads back as %q, want %q", got, rw)
				}
			}
		}
	})
}
