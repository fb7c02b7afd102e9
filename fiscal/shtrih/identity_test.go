package shtrih_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"kassa-agent/fiscal"
	"kassa-agent/fiscal/shtrih"
	"kassa-agent/fiscal/shtrihsim"
)

const simRN, simFN = "0000000001012345", "9999078902012345"

// printUntilDone retries as the agent does while the error is retryable.
func printUntilDone(t *testing.T, r *rig, id string, rc fiscal.Receipt) fiscal.Document {
	t.Helper()
	for range 5 {
		doc, err := r.drv.PrintReceipt(context.Background(), id, rc)
		if err == nil {
			return doc
		}
		var fe *fiscal.Error
		if !errorsAs(err, &fe) || !fe.Retryable() {
			t.Fatalf("print: %v", err)
		}
		if n := len(receipts(r.sim.Documents())); n != 0 {
			t.Fatalf("a retryable error after %d receipts were printed: %v", n, err)
		}
	}
	t.Fatal("never printed")
	return fiscal.Document{}
}

func checkIdentity(t *testing.T, doc fiscal.Document) {
	t.Helper()
	if doc.RegNumber != simRN || doc.FNNumber != simFN || doc.FP == 0 {
		t.Fatalf("document identity РН %q ФН %q ФП %d", doc.RegNumber, doc.FNNumber, doc.FP)
	}
}

// TestTransientFiscalResultErrorNotCached: one FN error answering FF09h must not
// blank the registration number for the driver's lifetime.
func TestTransientFiscalResultErrorNotCached(t *testing.T) {
	r := newTCPRig(t, shtrihsim.Options{}, shtrih.Options{AutoOpenShift: true})
	ctx := context.Background()
	r.sim.Inject(shtrihsim.Fault{Kind: shtrihsim.DeviceError, Command: shtrih.CmdFNFiscalResult, Code: shtrih.FNErrFailure})
	_, _ = r.drv.Status(ctx) // the first read meets the fault
	checkIdentity(t, printUntilDone(t, r, "after-status", oneLine(fiscal.VAT10, 1000)))
}

// TestTransientIdentityErrorBeforeFirstReceipt: the fault hits the read that the
// first receipt makes; nothing is printed without a complete identity.
func TestTransientIdentityErrorBeforeFirstReceipt(t *testing.T) {
	for _, cmd := range []uint16{shtrih.CmdFNFiscalResult, shtrih.CmdFNNumber} {
		r := newTCPRig(t, shtrihsim.Options{}, shtrih.Options{AutoOpenShift: true})
		r.sim.Inject(shtrihsim.Fault{Kind: shtrihsim.DeviceError, Command: cmd, Code: shtrih.FNErrFailure})
		checkIdentity(t, printUntilDone(t, r, "first", oneLine(fiscal.VAT10, 1000)))
		if n := len(receipts(r.sim.Documents())); n != 1 {
			t.Fatalf("command %X: %d receipts", cmd, n)
		}
	}
}

// TestRecoveredDocumentGetsIdentity: after a restart, a receipt whose reply was
// lost is found in the FN; FF09h failing once then must not give it an empty РН.
func TestRecoveredDocumentGetsIdentity(t *testing.T) {
	r := newTCPRig(t, shtrihsim.Options{}, shtrih.Options{AutoOpenShift: true})
	ctx := context.Background()
	r.sim.Inject(shtrihsim.Fault{Kind: shtrihsim.PowerCutAfterClose, Command: shtrih.CmdFNCloseReceipt, Delay: 2 * time.Second})
	rc := oneLine(fiscal.VAT10, 1000)
	if _, err := r.drv.PrintReceipt(ctx, "lost", rc); fiscal.CodeOf(err) != fiscal.CodeOutcomeUnknown {
		t.Fatalf("print with the power cut: %v", err)
	}
	_ = r.drv.Close()
	time.Sleep(2 * time.Second)
	port, err := shtrih.DialTCP(r.addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	drv := shtrih.New(port, shtrih.Options{Journal: r.j, Timeouts: testTimeouts, Now: r.clock.Now})
	defer drv.Close()
	r.sim.Inject(shtrihsim.Fault{Kind: shtrihsim.DeviceError, Command: shtrih.CmdFNFiscalResult, Code: shtrih.FNErrFailure})
	for range 3 {
		if _, err = drv.Recover(ctx); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	e, err := r.j.Get(ctx, "lost")
	if err != nil || !e.Done {
		t.Fatalf("journal %+v %v", e, err)
	}
	checkIdentity(t, e.Doc)
	if !e.Doc.Recovered {
		t.Fatalf("not recovered: %+v", e.Doc)
	}
}

func errorsAs(err error, fe **fiscal.Error) bool { return errors.As(err, fe) }

// TestUnregisteredRegisterRefusesReceipts: a register without a registration
// number has no business printing fiscal receipts; it says so, and is not ready.
func TestUnregisteredRegisterRefusesReceipts(t *testing.T) {
	r := newTCPRig(t, shtrihsim.Options{Unregistered: true}, shtrih.Options{AutoOpenShift: true})
	ctx := context.Background()
	st, err := r.drv.Status(ctx)
	if err != nil || !errors.Is(st.Ready, fiscal.ErrNotRegistered) || st.RegNumber != "" {
		t.Fatalf("status %+v %v", st, err)
	}
	if _, err := r.drv.PrintReceipt(ctx, "x", oneLine(fiscal.VAT10, 1000)); !errors.Is(err, fiscal.ErrNotRegistered) {
		t.Fatalf("print on an unregistered register: %v", err)
	}
	if _, err := r.drv.Identity(ctx); !errors.Is(err, fiscal.ErrNotRegistered) {
		t.Fatalf("identity: %v", err)
	}
	if n := len(receipts(r.sim.Documents())); n != 0 || r.sim.Snapshot().ReceiptOpen {
		t.Fatalf("%d receipts printed", n)
	}
}

// TestIdentityMethod: the agent can learn the identity for a stored document.
func TestIdentityMethod(t *testing.T) {
	r := newTCPRig(t, shtrihsim.Options{}, shtrih.Options{})
	r.sim.Inject(shtrihsim.Fault{Kind: shtrihsim.DeviceError, Command: shtrih.CmdFNFiscalResult, Code: shtrih.FNErrFailure})
	if _, err := r.drv.Identity(context.Background()); !errors.Is(err, fiscal.ErrIdentity) {
		t.Fatalf("identity with FF09h failing: %v", err)
	}
	id, err := r.drv.Identity(context.Background())
	if err != nil || id != (fiscal.Identity{RegNumber: simRN, FNNumber: simFN, INN: "7701234567"}) {
		t.Fatalf("identity %+v %v", id, err)
	}
}
