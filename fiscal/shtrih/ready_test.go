package shtrih_test

import (
	"context"
	"errors"
	"testing"

	"kassa-agent/fiscal"
	"kassa-agent/fiscal/shtrih"
	"kassa-agent/fiscal/shtrihsim"
)

// TestReadyReadsOnlyTheShortStatus: Ready agrees with Status's Ready but,
// once the device and its identity are known, costs one command, since it is
// asked before every document.
func TestReadyReadsOnlyTheShortStatus(t *testing.T) {
	ctx := context.Background()
	r := newTCPRig(t, shtrihsim.Options{}, shtrih.Options{AutoOpenShift: true})
	if err := r.drv.Ready(ctx); err != nil {
		t.Fatalf("ready: %v", err)
	}
	n := r.sim.Commands()
	if err := r.drv.Ready(ctx); err != nil {
		t.Fatalf("ready: %v", err)
	}
	if got := r.sim.Commands() - n; got != 1 {
		t.Fatalf("Ready sent %d commands, want 1 (the short status)", got)
	}
	r.sim.SetPaper(false)
	err := r.drv.Ready(ctx)
	if !errors.Is(err, fiscal.ErrPaperOut) {
		t.Fatalf("no paper: %v", err)
	}
	if st, _ := r.drv.Status(ctx); !errors.Is(st.Ready, fiscal.ErrPaperOut) {
		t.Fatalf("Status disagrees: %+v", st)
	}
	r.sim.SetPaper(true)

	// Without the auto option a closed shift is not ready.
	r2 := newTCPRig(t, shtrihsim.Options{}, shtrih.Options{})
	if err := r2.drv.Ready(ctx); fiscal.CodeOf(err) != fiscal.CodeShiftClosed {
		t.Fatalf("closed shift: %v", err)
	}
	// An unregistered FN cannot print a fiscal receipt.
	r3 := newTCPRig(t, shtrihsim.Options{Unregistered: true}, shtrih.Options{AutoOpenShift: true})
	if err := r3.drv.Ready(ctx); err == nil {
		t.Fatal("an unregistered register is ready")
	}
}
