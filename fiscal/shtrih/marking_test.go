package shtrih_test

import (
	"context"
	"testing"

	"kassa-agent/fiscal"
	"kassa-agent/fiscal/shtrih"
)

// checked checks and accepts it's code as a line of a receipt of type typ and
// returns the line with its accepted check.
func checked(t testing.TB, d *shtrih.Driver, typ fiscal.ReceiptType, it fiscal.Item) fiscal.Item {
	t.Helper()
	ctx := context.Background()
	res, err := d.CheckMarking(ctx, fiscal.MarkingRequestFor(typ, it))
	if err != nil {
		t.Fatalf("check %q: %v", it.MarkingCode, err)
	}
	if err := d.AcceptMarking(ctx, res); err != nil {
		t.Fatalf("accept %q (%s): %v", it.MarkingCode, res.Verdict(), err)
	}
	it.MarkingResult = &res
	return it
}
