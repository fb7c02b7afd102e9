package main

// The crash matrix for the hosted-page providers (Alif, AliKassa): the real
// agent binary is killed with SIGKILL while the create of the payment page is
// on the wire (the sandbox applies it after the kill), while the buyer pays
// (a status question on the wire), while the slip prints, and at random
// moments; restarted, the agent must never create a second page for one
// payment, never print a slip twice, and leave every payment final.

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kassa-agent/fiscal/shtrih"
	"kassa-agent/fiscal/shtrihsim"
	"kassa-agent/payments"
	"kassa-agent/payments/alif"
	alifsandbox "kassa-agent/payments/alif/sandbox"
	"kassa-agent/payments/alikassa"
	alikassasandbox "kassa-agent/payments/alikassa/sandbox"
)

// hostedCrash is a hosted provider as the crash tests drive it.
type hostedCrash struct {
	hosted
	delay func(r *rig, op string, d time.Duration) // hold the provider's next "create" or "status"
	// finds: after a create whose answer was lost, the payment is found by
	// our order id and goes on; without it, it ends create_unanswered.
	finds bool
	// pages is how many payment pages the provider holds for our order id.
	pages func(r *rig, orderID string) int
}

var hostedCrashes = []hostedCrash{
	{
		hosted: hostedProviders[0],
		delay: func(r *rig, op string, d time.Duration) {
			require.NoError(r.t, r.till.Alif.Inject(alifsandbox.Fault{Op: alif.Op(op), Kind: alifsandbox.Latency, Delay: d}))
		},
		pages: func(r *rig, orderID string) int {
			n := 0
			for _, s := range r.till.Alif.Sessions() {
				if strings.Contains(string(s.Meta), orderID) {
					n++
				}
			}
			return n
		},
	},
	{
		hosted: hostedProviders[1],
		delay: func(r *rig, op string, d time.Duration) {
			require.NoError(r.t, r.till.AliKassa.Inject(alikassasandbox.Fault{Op: alikassa.Op(op), Kind: alikassasandbox.Latency, Delay: d}))
		},
		finds: true,
		pages: func(r *rig, orderID string) int {
			if _, ok := r.till.AliKassa.Payment(orderID); ok {
				return 1
			}
			return 0
		},
	},
}

// hostedSale starts a payment with provider h.
func (c *crashRig) hostedSale(h hostedCrash) apiPayment {
	c.t.Helper()
	c.seq++
	return c.create(fmt.Sprintf("crash-%s-%d", h.name, c.seq), h.body)
}

// finishHosted brings a payment to its end as the buyer would: it pays once
// its page is shown.
func (c *crashRig) finishHosted(h hostedCrash, id string) apiPayment {
	c.t.Helper()
	deadline := time.Now().Add(45 * time.Second)
	paid := false
	var p apiPayment
	for time.Now().Before(deadline) {
		p = apiPayment{}
		require.Equal(c.t, 200, c.call("GET", "/v1/payments/"+id+"?wait=1s", "", "", &p))
		if payments.State(p.State).Final() {
			return p
		}
		if p.State == "processing" && p.ProviderPaymentID != "" && !paid {
			if err := h.pay(c.rig, p); err == nil {
				paid = true
			}
		}
	}
	c.t.Fatalf("payment %s is still %s (error %+v) after 45 s", id, p.State, p.Error)
	return p
}

// checkHosted: one page per order at most, one slip per completed payment at
// most, none for a payment that did not complete.
func (c *crashRig) checkHosted(h hostedCrash, ps []apiPayment) {
	c.t.Helper()
	tape, err := os.ReadFile(c.till.TapePath())
	if err != nil && !os.IsNotExist(err) {
		require.NoError(c.t, err)
	}
	slips := strings.Count(string(tape), "NOT A FISCAL RECEIPT")
	completed := 0
	for _, p := range ps {
		assert.LessOrEqual(c.t, h.pages(c.rig, p.OrderID), 1, "%s: a second payment page for order %s", h.name, p.OrderID)
		if p.State == "completed" {
			completed++
		}
	}
	assert.LessOrEqual(c.t, slips, completed, "a slip printed twice, or for a payment that did not complete")
	assert.Empty(c.t, receiptsOf(c.till.Register.Documents()), "a fiscal receipt for a payment not in rubles")
}

func TestCrashHostedPage(t *testing.T) {
	const hold = 2 * time.Second
	for _, h := range hostedCrashes {
		t.Run(h.name+"/create in flight", func(t *testing.T) {
			c := newCrashRig(t)
			c.start()
			h.delay(c.rig, "create", hold)
			p := c.hostedSale(h)
			c.waitFor("the create at the provider", func() bool { return h.creates(c.rig) == 1 })
			c.kill()
			time.Sleep(hold + 300*time.Millisecond) // the provider applies the held create
			c.start()
			p = c.finishHosted(h, p.ID)
			if h.finds {
				assert.Equal(t, "completed", p.State, "the page created before the kill is found by our order id and paid")
			} else {
				assert.Equal(t, "failed", p.State)
				require.NotNil(t, p.Error)
				assert.Equal(t, "create_unanswered", p.Error.Code)
			}
			assert.Equal(t, 1, h.creates(c.rig), "created twice")
			c.checkHosted(h, []apiPayment{p})
			c.stop()
		})
		t.Run(h.name+"/buyer paying", func(t *testing.T) {
			c := newCrashRig(t)
			c.start()
			p := c.hostedSale(h)
			p = c.waitState(p.ID, "processing", 10*time.Second)
			h.delay(c.rig, "status", hold)
			time.Sleep(time.Second) // a status question is on the wire
			c.kill()
			require.NoError(t, h.pay(c.rig, p))
			c.start()
			p = c.finishHosted(h, p.ID)
			assert.Equal(t, "completed", p.State)
			assert.Equal(t, 1, h.creates(c.rig), "created twice")
			c.checkHosted(h, []apiPayment{p})
			c.stop()
		})
		t.Run(h.name+"/slip printing", func(t *testing.T) {
			c := newCrashRig(t)
			c.start()
			p := c.hostedSale(h)
			p = c.waitState(p.ID, "processing", 10*time.Second)
			c.till.Register.Inject(shtrihsim.Fault{Kind: shtrihsim.DelayReply, Command: shtrih.CmdPrintLine, Delay: hold})
			require.NoError(t, h.pay(c.rig, p))
			c.waitFor("the slip at the register", func() bool { return c.fired(fmt.Sprintf("delay_reply@%X", shtrih.CmdPrintLine)) })
			c.kill()
			c.start()
			p = c.finishHosted(h, p.ID)
			assert.Equal(t, "completed", p.State)
			c.checkHosted(h, []apiPayment{p})
			c.stop()
		})
	}
}

func TestCrashHostedPageAtRandomMoments(t *testing.T) {
	// A quarter of the Smart Pay matrix's rounds per provider (at least 3):
	// a hosted page has fewer recovery points.
	n, seed := max(crashIterations(t, 12)/4, 3), crashSeed(t)
	t.Logf("%d rounds per provider, KASSA_CRASH_SEED=%d", n, seed)
	rnd := rand.New(rand.NewPCG(seed, 0x686f7374))
	for _, h := range hostedCrashes {
		t.Run(h.name, func(t *testing.T) {
			c := newCrashRig(t)
			c.start()
			var ps []apiPayment
			for range n {
				p := c.hostedSale(h)
				if rnd.IntN(2) == 0 {
					h.delay(c.rig, []string{"create", "status"}[rnd.IntN(2)], time.Duration(rnd.IntN(800))*time.Millisecond)
				}
				time.Sleep(time.Duration(rnd.IntN(600)) * time.Millisecond)
				if cur := c.get(p.ID); cur.State == "processing" && rnd.IntN(2) == 0 {
					_ = h.pay(c.rig, cur)
				}
				time.Sleep(time.Duration(rnd.IntN(300)) * time.Millisecond)
				c.kill()
				c.start()
				ps = append(ps, c.finishHosted(h, p.ID))
			}
			c.checkHosted(h, ps)
			c.stop()
		})
	}
}
