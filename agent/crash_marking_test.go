package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kassa-agent/fiscal/shtrih"
	"kassa-agent/fiscal/shtrihsim"
)

// TestCrashMidPOSMarkedReceipt kills the real agent in a marked sale and
// retries the POS's request with the same key after the restart: exactly one
// receipt, both lines bound to their codes.
//
// "after the checks": the codes were checked and accepted in the FN, then the
// agent died; the restarted one does not know what the FN holds, clears it
// and checks again. "close held": the agent dies while the register closes
// the receipt; the restarted one must learn the receipt from the register
// before checking anything (a sold code checked again would be refused).
func TestCrashMidPOSMarkedReceipt(t *testing.T) {
	for _, point := range []string{"after the checks", "close held"} {
		t.Run(point, func(t *testing.T) {
			c := newCrashRig(t)
			c.start()
			body := markedPOSReceipt(t, "", milkLine(codeMilk), cheeseLine(codeCheese))
			if point == "after the checks" {
				for _, q := range []map[string]any{{"code": codeMilk}, {"code": codeCheese, "quantity": 512, "measure": "kg"}} {
					require.True(t, c.checkCode(t, q).Accepted)
				}
			} else {
				c.till.Register.Inject(shtrihsim.Fault{Kind: shtrihsim.DelayReply, Command: shtrih.CmdFNCloseReceipt, Delay: 2 * time.Second})
				go func() { c.call("POST", "/v1/receipts?wait=0s", "crash-m-1", body, nil) }()
				c.waitFor("the close at the register", func() bool { return c.fired(fmt.Sprintf("delay_reply@%X", shtrih.CmdFNCloseReceipt)) })
			}
			c.kill()
			time.Sleep(2500 * time.Millisecond) // the register finishes what it was doing
			c.start()
			var op apiOp
			require.Eventually(t, func() bool {
				op = apiOp{}
				code := c.call("POST", "/v1/receipts?wait=5s", "crash-m-1", body, &op)
				return (code == 200 || code == 201) && op.State == "done"
			}, 30*time.Second, 100*time.Millisecond)
			docs := receiptsOf(c.till.Register.Documents())
			require.Len(t, docs, 1, "the receipt printed twice across the crash")
			assert.Equal(t, docs[0].FD, op.Receipt.Document.FD)
			require.Len(t, docs[0].Items, 2)
			assert.Equal(t, codeMilk, docs[0].Items[0].Marking)
			assert.Equal(t, codeCheese, docs[0].Items[1].Marking)
			assert.Equal(t, 0x0F, docs[0].Items[0].MarkingCheck)
			assert.Equal(t, 0x0F, docs[0].Items[1].MarkingCheck)
			checks := strings.Count(c.logs.String(), "marking code checked")
			if point == "close held" {
				assert.Zero(t, checks, "the restarted agent checked the codes of a receipt the register had printed")
			} else {
				assert.Equal(t, 2, checks, "the restarted agent did not check the codes again")
			}
			c.stop()
		})
	}
}
