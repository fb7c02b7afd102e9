package shtrih_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"kassa-agent/fiscal"
	"kassa-agent/fiscal/shtrih"
	"kassa-agent/fiscal/shtrihsim"
)

// TestMarkingCheckLostReply: whatever happens to FF61h's reply, the check
// ends with exactly one code awaiting the decision and a verdict read from
// the register (never guessed); the accept then holds it once.
func TestMarkingCheckLostReply(t *testing.T) {
	r := newTCPRig(t, shtrihsim.Options{}, shtrih.Options{AutoOpenShift: true})
	ctx := context.Background()
	milk := markedReceipt().Items[1]
	for _, kind := range faultKinds {
		if kind == shtrihsim.PaperOut {
			continue // a check prints nothing
		}
		f := faultFor(kind, shtrih.CmdFNCheckMarking, 0)
		fired := len(r.sim.Fired())
		r.sim.Inject(f)
		res, err := r.drv.CheckMarking(ctx, fiscal.MarkingRequestFor(fiscal.Sale, milk))
		r.sim.ClearFaults()
		if err != nil || res.Verdict() != fiscal.Valid || res.Code != codeMilk {
			t.Fatalf("%s: %+v %v (fired %v)", kind, res, err, r.sim.Fired())
		}
		if len(r.sim.Fired()) == fired {
			t.Fatalf("%s: fault never fired", kind)
		}
		if st := markingStatus(t, r); !st.Awaiting() || st.Saved != 0 {
			t.Fatalf("%s: after the check %+v", kind, st)
		}
		if err := r.drv.AcceptMarking(ctx, res); err != nil {
			t.Fatalf("%s: accept: %v", kind, err)
		}
		if st := markingStatus(t, r); st.Awaiting() || st.Saved != 1 {
			t.Fatalf("%s: after the accept %+v", kind, st)
		}
		if err := r.drv.ClearMarking(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

// TestMarkingAcceptLostReply: a lost, damaged or late FF69h reply never
// leaves the code accepted twice nor unaccepted while the driver says
// accepted; the receipt then binds it once.
func TestMarkingAcceptLostReply(t *testing.T) {
	r := newTCPRig(t, shtrihsim.Options{}, shtrih.Options{AutoOpenShift: true})
	ctx := context.Background()
	for n, kind := range faultKinds {
		if kind == shtrihsim.PaperOut {
			continue
		}
		rc := markedReceipt()
		rc.Items = rc.Items[:2]
		rc.Payments = []fiscal.Payment{{Kind: fiscal.Cash, Amount: rc.Total()}}
		res, err := r.drv.CheckMarking(ctx, fiscal.MarkingRequestFor(rc.Type, rc.Items[1]))
		if err != nil {
			t.Fatal(err)
		}
		fired := len(r.sim.Fired())
		r.sim.Inject(faultFor(kind, shtrih.CmdFNAcceptMarking, 0))
		err = r.drv.AcceptMarking(ctx, res)
		r.sim.ClearFaults()
		if len(r.sim.Fired()) == fired {
			t.Fatalf("%s: fault never fired", kind)
		}
		st := markingStatus(t, r)
		if err != nil {
			// Allowed only as an honest unknown, and then nothing is accepted
			// in the driver's name: the code is checked again.
			var fe *fiscal.Error
			if !errors.As(err, &fe) || fe.Code != fiscal.CodeOutcomeUnknown {
				t.Fatalf("%s: accept: %v", kind, err)
			}
			if err := r.drv.ClearMarking(ctx); err != nil {
				t.Fatal(err)
			}
			rc.Items[1] = checked(t, r.drv, rc.Type, rc.Items[1])
		} else {
			if st.Awaiting() || st.Saved != 1 {
				t.Fatalf("%s: accepted, but the FN holds %+v", kind, st)
			}
			rc.Items[1].MarkingResult = &res
		}
		before := len(receipts(r.sim.Documents()))
		if _, err := r.drv.PrintReceipt(ctx, fmt.Sprintf("acc-%d", n), rc); err != nil {
			t.Fatalf("%s: receipt: %v", kind, err)
		}
		got := receipts(r.sim.Documents())
		if len(got) != before+1 || got[len(got)-1].Items[1].Marking != codeMilk {
			t.Fatalf("%s: receipts %d → %d", kind, before, len(got))
		}
		if st := markingStatus(t, r); st.Saved != 0 {
			t.Fatalf("%s: codes left after the receipt %+v", kind, st)
		}
	}
}

// TestMarkedReceiptFaults: every fault on every marking step of the receipt
// (the line tags, the bind, the line): the receipt ends in the FN once, or
// not at all with the register refusing the lines until they are checked
// again; a line is never sold without its accepted code.
func TestMarkedReceiptFaults(t *testing.T) {
	r := newTCPRig(t, shtrihsim.Options{}, shtrih.Options{AutoOpenShift: true})
	ctx := context.Background()
	n, rechecked := 0, 0
	for _, kind := range faultKinds {
		for _, cmd := range []uint16{shtrih.CmdFNOperationTLV, shtrih.CmdFNBindMarking, shtrih.CmdFNOperation} {
			n++
			id := fmt.Sprintf("mf-%d", n)
			rc := markedReceipt()
			for i := 1; i <= 2; i++ {
				rc.Items[i] = checked(t, r.drv, rc.Type, rc.Items[i])
			}
			before := len(receipts(r.sim.Documents()))
			fired := len(r.sim.Fired())
			r.sim.Inject(faultFor(kind, cmd, 1))
			var err error
			for attempt := 0; attempt < 10; attempt++ {
				if _, err = r.drv.PrintReceipt(ctx, id, rc); err == nil {
					break
				}
				var fe *fiscal.Error
				switch {
				case errors.As(err, &fe) && fe.Code == fiscal.CodePaperOut:
					r.sim.SetPaper(true)
				case errors.As(err, &fe) && fe.Code == fiscal.CodeBadReceipt:
					// The interrupted receipt was cancelled and its codes with
					// it: check them again, as the POS does.
					rechecked++
					if err := r.drv.ClearMarking(ctx); err != nil {
						t.Fatal(err)
					}
					for i := 1; i <= 2; i++ {
						rc.Items[i] = checked(t, r.drv, rc.Type, rc.Items[i])
					}
				case errors.As(err, &fe) && fe.Retryable():
				default:
					t.Fatalf("%s@%04X: %v", kind, cmd, err)
				}
			}
			r.sim.ClearFaults()
			r.sim.SetPaper(true)
			if err != nil {
				t.Fatalf("%s@%04X: %v", kind, cmd, err)
			}
			if len(r.sim.Fired()) == fired {
				t.Fatalf("%s@%04X: fault never fired", kind, cmd)
			}
			got := receipts(r.sim.Documents())
			if len(got) != before+1 {
				t.Fatalf("%s@%04X: %d new receipts", kind, cmd, len(got)-before)
			}
			it := got[len(got)-1].Items
			if it[1].Marking != codeMilk || it[2].Marking != codeCheese || it[1].MarkingCheck != 0x0F || it[2].MarkingCheck != 0x0F {
				t.Fatalf("%s@%04X: lines %+v", kind, cmd, it)
			}
			if st := markingStatus(t, r); st.Saved != 0 || st.Awaiting() {
				t.Fatalf("%s@%04X: left %+v", kind, cmd, st)
			}
		}
	}
	// A fault after a bind cancels the receipt and its bound codes: at least
	// one round must have gone through checking them again.
	if rechecked == 0 {
		t.Fatal("no fault made the register drop the codes of a cancelled receipt")
	}
	t.Logf("%d rounds checked the codes again", rechecked)
}
