package sale

import (
	"go/format"
	"go/parser"
	"go/token"
	"strconv"
	"strings"
	"testing"
)

// TestSagaNamesNoProvider keeps the saga provider-neutral: saga.go drives
// providers through the contract in package payments and imports no
// provider package, and no provider's name appears in its code.
func TestSagaNamesNoProvider(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "saga.go", nil, parser.ImportsOnly)
	if err != nil {
		t.Fatal(err)
	}
	for _, im := range f.Imports {
		path, _ := strconv.Unquote(im.Path.Value)
		if strings.HasPrefix(path, "kassa-agent/payments/") {
			t.Errorf("saga.go imports the provider package %s", path)
		}
	}
	code := readCode(t, "saga.go")
	for _, name := range []string{"smartpay", "Smart Pay", "SmartPay", "alif", "Alif", "alikassa", "AliKassa"} {
		if strings.Contains(code, name) {
			t.Errorf("saga.go names the provider %q", name)
		}
	}
}

// readCode is a Go file with its comments removed.
func readCode(t *testing.T, name string) string {
	t.Helper()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, name, nil, parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	f.Comments = nil
	var b strings.Builder
	if err := format.Node(&b, fset, f); err != nil {
		t.Fatal(err)
	}
	return b.String()
}
