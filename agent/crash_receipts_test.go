package main

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kassa-agent/fiscal/shtrih"
	"kassa-agent/fiscal/shtrihsim"
)

// TestCrashMidPOSReceipt kills the real agent while the register closes a
// receipt the POS asked for (the close is held by the simulator, which then
// completes it), restarts it, and retries the POS's request with the same key:
// exactly one receipt in the FN, and the retry answered with it.
func TestCrashMidPOSReceipt(t *testing.T) {
	for _, point := range []string{"close held", "power cut after close"} {
		t.Run(point, func(t *testing.T) {
			c := newCrashRig(t)
			c.start()
			if point == "close held" {
				c.till.Register.Inject(shtrihsim.Fault{Kind: shtrihsim.DelayReply, Command: shtrih.CmdFNCloseReceipt, Delay: 2 * time.Second})
			} else {
				c.till.Register.Inject(shtrihsim.Fault{Kind: shtrihsim.PowerCutAfterClose, Command: shtrih.CmdFNCloseReceipt, Delay: time.Second})
			}
			var op apiOp
			go func() { c.call("POST", "/v1/receipts?wait=0s", "crash-r-1", posReceipt("", `{"cash":30000}`), &op) }()
			want := fmt.Sprintf("delay_reply@%X", shtrih.CmdFNCloseReceipt)
			if point != "close held" {
				want = fmt.Sprintf("power_cut@%X", shtrih.CmdFNCloseReceipt)
			}
			c.waitFor("the close at the register", func() bool { return c.fired(want) })
			c.kill()
			time.Sleep(2500 * time.Millisecond) // the register finishes what it was doing
			c.start()
			var again apiOp
			require.Eventually(t, func() bool {
				again = apiOp{}
				code := c.call("POST", "/v1/receipts?wait=5s", "crash-r-1", posReceipt("", `{"cash":30000}`), &again)
				return code == 200 && again.State == "done"
			}, 30*time.Second, 100*time.Millisecond)
			docs := receiptsOf(c.till.Register.Documents())
			require.Len(t, docs, 1, "the receipt printed twice across the crash")
			assert.Equal(t, docs[0].FD, again.Receipt.Document.FD)
			assert.Equal(t, docs[0].FP, again.Receipt.Document.FP)
			c.stop()
		})
	}
}
