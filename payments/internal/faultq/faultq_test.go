package faultq

import "testing"

type fault struct {
	Name  string
	Times int
}

func (f *fault) Uses() *int { return &f.Times }

func TestTakeCountsAndOrder(t *testing.T) {
	var l List[fault, *fault]
	l.Add(fault{Name: "a"})            // once
	l.Add(fault{Name: "b", Times: 2})  // twice
	l.Add(fault{Name: "c", Times: -1}) // until cleared
	is := func(want string) func(*fault) bool { return func(f *fault) bool { return f.Name == want } }
	any := func(*fault) bool { return true }
	for i, want := range []string{"a", "b", "b", "c", "c", "c"} {
		f, ok := l.Take(any)
		if !ok || f.Name != want {
			t.Fatalf("take %d: %+v %v, want %s", i, f, ok, want)
		}
	}
	if _, ok := l.Take(is("a")); ok {
		t.Fatal("a used-up fault acted again")
	}
	if got := l.All(); len(got) != 1 || got[0].Name != "c" || got[0].Times != -1 {
		t.Fatalf("left %+v", got)
	}
	l.Clear()
	if _, ok := l.Take(any); ok {
		t.Fatal("a cleared fault acted")
	}
}

func TestTakeSkipsWhatDoesNotMatch(t *testing.T) {
	var l List[fault, *fault]
	l.Add(fault{Name: "x"})
	l.Add(fault{Name: "y"})
	if f, ok := l.Take(func(f *fault) bool { return f.Name == "y" }); !ok || f.Name != "y" {
		t.Fatalf("%+v %v", f, ok)
	}
	if got := l.All(); len(got) != 1 || got[0].Name != "x" {
		t.Fatalf("left %+v", got)
	}
}
