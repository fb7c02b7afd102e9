package main

// The crash matrix (issue 6): the real agent binary runs as a child against
// the simulated till, is killed with SIGKILL at every recovery point of a
// Smart Pay sale and at random moments, restarted, and left to finish. After
// each restart the invariants are checked across every party: the sandbox
// applied no release twice and got no second release request, the FN holds
// exactly one receipt per completed payment and no other, confirm and fiscal
// data each reached Smart Pay (repeats only across a crash), and the store
// passes its consistency check after every kill and after the final stop.
//
// The agent is held at a recovery point without test hooks: an injected fault
// delays the call that follows the point (a sandbox Latency, a register
// DelayReply or power cut), the test waits until that call has reached the
// device or the service, and kills. The store is then opened by the test to
// read which recovery point the payment actually reached, so every kill is
// labelled by fact rather than by hope.
//
// KASSA_CRASH_ITERATIONS sets how many random kills TestCrashAtRandomMoments
// makes (default 5); KASSA_CRASH_SEED replays a run.

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kassa-agent/fiscal/shtrih"
	"kassa-agent/fiscal/shtrihsim"
	"kassa-agent/payments"
	"kassa-agent/payments/smartpay"
	"kassa-agent/payments/smartpay/sandbox"
	"kassa-agent/queue"
)

// crashRig is a simulated till with the real agent binary as a child process
// that the test kills and restarts.
type crashRig struct {
	*rig
	tt     *testing.T
	agent  *child
	kills  []time.Time
	starts int
	seq    int
	// finals caches payments already final (they never change again), so
	// checking every payment after every round stays cheap in long runs.
	finals map[string]finalPayment
}

type finalPayment struct {
	apiPayment
	recovered bool // the receipt was learned from the FN after a crash
}

func newCrashRig(t *testing.T) *crashRig {
	t.Helper()
	c := &crashRig{rig: newRig(t, rigOptions{}), tt: t, finals: map[string]finalPayment{}}
	// Registered after the till's own cleanup, so it runs first: the agent
	// dies before its devices go away.
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("agent output since start %d (tail):\n%s", c.starts, tail(c.logs.String(), 40000))
		}
		if c.agent != nil {
			c.kill()
		}
	})
	return c
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// start runs the agent binary and waits until its API, token and scanner are up.
func (c *crashRig) start() {
	t := c.tt
	t.Helper()
	require.Nil(t, c.agent, "agent already running")
	c.starts++
	c.logs = new(syncBuffer)
	ch := &child{cmd: exec.Command(agentBin, "run", "--config", c.cfgPath), stderr: c.logs, done: make(chan error, 1)}
	ch.cmd.Stdout, ch.cmd.Stderr = c.logs, c.logs
	require.NoError(t, ch.cmd.Start())
	go func() { ch.done <- ch.cmd.Wait() }()
	c.agent = ch
	waitHealthy(t, c.port, ch)
	c.readToken()
	c.waitScanner()
}

// waitScanner waits until the agent has the scanner's port open, so a code
// typed now is read by this process.
func (c *crashRig) waitScanner() {
	t := c.t
	t.Helper()
	var st struct {
		Devices struct {
			Scanner struct {
				Connected bool `json:"connected"`
			} `json:"scanner"`
		} `json:"devices"`
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		require.Equal(t, 200, c.call("GET", "/v1/status", "", "", &st))
		if st.Devices.Scanner.Connected {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("the agent never opened the scanner port")
}

// kill is kill -9: no deferred function, no store close, no goodbye.
func (c *crashRig) kill() {
	c.t.Helper()
	_ = c.agent.cmd.Process.Kill()
	<-c.agent.done
	c.kills = append(c.kills, time.Now())
	c.noRace()
	c.agent = nil
}

// stop ends the agent the polite way and checks the store it leaves.
func (c *crashRig) stop() {
	t := c.t
	t.Helper()
	require.NoError(t, c.agent.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-c.agent.done:
		c.agent = nil
		c.noRace()
		require.NoError(t, err, "agent must exit 0 on SIGTERM")
	case <-time.After(30 * time.Second):
		t.Fatal("agent did not stop on SIGTERM")
	}
	c.inspect()
}

// noRace fails the test if the agent (built with -race) reported a data race
// in the life that just ended; a killed child's exit code cannot say so.
func (c *crashRig) noRace() {
	c.t.Helper()
	if out := c.logs.String(); strings.Contains(out, "WARNING: DATA RACE") {
		c.t.Errorf("the agent reported a data race:\n%s", tail(out[strings.Index(out, "WARNING: DATA RACE"):], 20000))
	}
}

// storeView is what the store holds while the agent is down.
type storeView struct {
	payments      map[string]string // payment id → state
	codes         map[string]string // kassa_purchase_id → code state
	journalOpen   int               // register journal entries not finished
	outboxPending int
}

// inspect opens the dead agent's store, checks it and reads the recovery
// points it holds. The collection names are the sale package's own; a rename
// there fails this loudly rather than silently reading nothing.
func (c *crashRig) inspect() storeView {
	t := c.t
	t.Helper()
	require.Nil(t, c.agent, "inspect needs the agent down")
	s, err := queue.Open(c.cfg.StorePath(), queue.Options{OpenTimeout: 5 * time.Second})
	require.NoError(t, err, "store does not open after the agent died")
	defer func() { require.NoError(t, s.Close()) }()
	require.NoError(t, s.Check(), "store damaged")
	v := storeView{payments: map[string]string{}, codes: map[string]string{}}
	require.NoError(t, s.View(func(r *queue.ReadTx) error {
		var rec struct {
			State string `json:"state"`
			Done  bool   `json:"done"`
		}
		if err := r.ForEach("payments", func(id string, b []byte) error {
			rec.State = ""
			if err := json.Unmarshal(b, &rec); err != nil {
				return err
			}
			v.payments[id] = rec.State
			return nil
		}); err != nil {
			return err
		}
		if err := r.ForEach("smartpay_codes", func(id string, b []byte) error {
			rec.State = ""
			if err := json.Unmarshal(b, &rec); err != nil {
				return err
			}
			v.codes[id] = rec.State
			return nil
		}); err != nil {
			return err
		}
		return r.ForEach("fiscal_ops", func(id string, b []byte) error {
			rec.Done = false
			if err := json.Unmarshal(b, &rec); err != nil {
				return err
			}
			if !rec.Done {
				v.journalOpen++
			}
			return nil
		})
	}))
	st, err := s.OutboxStats()
	require.NoError(t, err)
	v.outboxPending = st.Pending
	return v
}

// newSale asks for a payment with a one-line receipt; every sale has its own
// amount so no two receipts in the FN look alike.
func (c *crashRig) newSale() apiPayment {
	c.t.Helper()
	c.seq++
	amount := int64(10000 + c.seq*137)
	receipt := fmt.Sprintf(`{"items":[{"name":"Товар %d","quantity":1000,"price":%d,"vat":"vat22"}]}`, c.seq, amount)
	return c.create(fmt.Sprintf("crash-sale-%d", c.seq), saleBody(amount, receipt))
}

func (c *crashRig) get(id string) apiPayment {
	c.t.Helper()
	var p apiPayment
	require.Equal(c.t, 200, c.call("GET", "/v1/payments/"+id, "", "", &p))
	return p
}

// final returns a payment that must be final.
func (c *crashRig) final(id string) finalPayment {
	t := c.t
	t.Helper()
	if p, ok := c.finals[id]; ok {
		return p
	}
	var raw json.RawMessage
	require.Equal(t, 200, c.call("GET", "/v1/payments/"+id, "", "", &raw))
	var p finalPayment
	require.NoError(t, json.Unmarshal(raw, &p.apiPayment))
	var doc struct {
		Fiscal struct {
			Document *struct {
				Recovered bool `json:"recovered"`
			} `json:"document"`
		} `json:"fiscal"`
	}
	require.NoError(t, json.Unmarshal(raw, &doc))
	p.recovered = doc.Fiscal.Document != nil && doc.Fiscal.Document.Recovered
	require.True(t, payments.State(p.State).Final(), "payment %s is %s", id, p.State)
	c.finals[id] = p
	return p
}

// settle waits until the payment is final. A payment still waiting for a code
// two seconds after the restart (or after the last scan) gets a fresh code, as
// a cashier would ask the buyer for one; how many were needed is returned.
func (c *crashRig) settle(id string) (apiPayment, int) {
	t := c.t
	t.Helper()
	deadline := time.Now().Add(45 * time.Second)
	lastScan, rescans := time.Now(), 0
	var p apiPayment
	for time.Now().Before(deadline) {
		require.Equal(t, 200, c.call("GET", "/v1/payments/"+id+"?wait=1s", "", "", &p))
		if payments.State(p.State).Final() {
			return p, rescans
		}
		if p.State == string(payments.Committing) && time.Since(lastScan) > 2*time.Second {
			c.showCode()
			rescans++
			lastScan = time.Now()
		}
	}
	t.Fatalf("payment %s is still %s (error %+v) after 45 s", id, p.State, p.Error)
	return p, rescans
}

func (c *crashRig) waitFor(what string, cond func() bool) {
	c.t.Helper()
	require.Eventually(c.t, cond, 15*time.Second, 2*time.Millisecond, "waiting for %s", what)
}

func (c *crashRig) fired(f string) bool { return slices.Contains(c.till.Register.Fired(), f) }

// waitHeldRequests waits until every request the sandbox held (Latency) has
// been applied and answered, whether or not its sender is still alive.
func (c *crashRig) waitHeldRequests() {
	c.waitFor("held requests to finish", func() bool {
		for _, rq := range c.till.Sandbox.Requests() {
			if rq.Fault == sandbox.Latency && rq.Status == 0 {
				return false
			}
		}
		return true
	})
}

// killedBetween reports whether a kill fell between from and to.
func (c *crashRig) killedBetween(from, to time.Time) bool {
	for _, k := range c.kills {
		if !k.Before(from) && !k.After(to) {
			return true
		}
	}
	return false
}

// crashCounts are what the invariant check counted.
type crashCounts struct {
	completed, ended     int // completed; other final states
	releaseNoAnswer      int // release requests whose answer the agent never got: lost, or applied after a kill
	confirms, fiscals    int // deliveries the sandbox applied, duplicates included
	confirmDup, fiscDup  int // applied more than once
	orphanCommits        int // purchases no payment owns (commits lost or replaced)
	receipts, recovered  int // receipts in the FN; documents learned from the FN after a crash
	releaseRequestsTotal int
}

func (k crashCounts) String() string {
	return fmt.Sprintf("completed=%d other-final=%d receipts=%d (recovered from the FN %d) release-requests=%d (answer never received %d) confirms=%d (dup %d) fiscals=%d (dup %d) orphan-commits=%d",
		k.completed, k.ended, k.receipts, k.recovered, k.releaseRequestsTotal, k.releaseNoAnswer, k.confirms, k.confirmDup, k.fiscals, k.fiscDup, k.orphanCommits)
}

// checkInvariants checks every payment in ids (all final) against the
// sandbox and the FN, after the outbox has drained.
func (c *crashRig) checkInvariants(ids []string) crashCounts {
	t := c.t
	t.Helper()
	c.waitOutboxEmpty(30 * time.Second)
	c.waitHeldRequests()
	var k crashCounts

	purchases := map[string]sandbox.Purchase{}
	for _, p := range c.till.Sandbox.Purchases() {
		purchases[p.ID] = p
		assert.LessOrEqual(t, p.Releases, 1, "purchase %s: release applied %d times", p.ID, p.Releases)
	}
	// No release is ever sent twice for one purchase: the recovery point
	// "releasing" is durable before the request, and after it only the
	// status is asked. (The client's own resend of a release that certainly
	// never arrived would show here too; no fault in these tests causes one.)
	releaseRequests := map[string]int{}
	for _, rq := range c.till.Sandbox.Requests() {
		if rq.Op != smartpay.OpRelease {
			continue
		}
		var b struct {
			PurchaseID string `json:"purchase_id"`
		}
		require.NoError(t, json.Unmarshal([]byte(rq.Body), &b))
		releaseRequests[b.PurchaseID]++
		k.releaseRequestsTotal++
		if rq.Status == 0 || c.killedBetween(rq.Time, purchases[b.PurchaseID].ReleasedAt) {
			k.releaseNoAnswer++
		}
	}
	for pid, n := range releaseRequests {
		assert.LessOrEqual(t, n, 1, "purchase %s: %d release requests; a second one is a double charge waiting to happen", pid, n)
	}

	receipts := receiptsOf(c.till.Register.Documents())
	k.receipts = len(receipts)
	byFD := map[uint32][]shtrihsim.Document{}
	for _, d := range receipts {
		byFD[d.FD] = append(byFD[d.FD], d)
	}
	owned := map[string]bool{}
	for _, id := range ids {
		fp := c.final(id)
		p := fp.apiPayment
		if fp.recovered {
			k.recovered++
		}
		var pur sandbox.Purchase
		if p.SmartPay != nil && p.SmartPay.PurchaseID != "" {
			owned[p.SmartPay.PurchaseID] = true
			var ok bool
			pur, ok = purchases[p.SmartPay.PurchaseID]
			require.True(t, ok, "payment %s names purchase %s the sandbox never made", id, p.SmartPay.PurchaseID)
		}
		if p.State != string(payments.Completed) {
			// A clear final state without the money: nothing released, no receipt.
			k.ended++
			t.Logf("payment %s ended %s: %+v", id, p.State, p.Error)
			assert.Nil(t, p.Fiscal.Document, "payment %s is %s but has a receipt", id, p.State)
			assert.Zero(t, pur.Releases, "payment %s is %s but Smart Pay took the money", id, p.State)
			if p.Error != nil && p.Error.Code == "release_not_delivered" {
				assert.Equal(t, "canceled", pur.State, "payment %s: a purchase given up on must be cancelled, or a late release could still charge", id)
			}
			continue
		}
		k.completed++
		require.NotNil(t, p.Fiscal.Document, "completed payment %s has no receipt", id)
		doc := p.Fiscal.Document
		if mine := byFD[doc.FD]; assert.Len(t, mine, 1, "payment %s: receipts with FD %d in the FN", id, doc.FD) {
			assert.Equal(t, doc.FP, mine[0].FP, "payment %s: FP", id)
			assert.Equal(t, p.Amount, mine[0].Total, "payment %s: receipt total", id)
			assert.Equal(t, p.Amount, mine[0].Payments[1], "payment %s: paid electronically", id)
		}
		require.NotNil(t, p.SmartPay, "payment %s", id)
		assert.Equal(t, 1, pur.Releases, "payment %s: release applied once", id)
		assert.Equal(t, 1, releaseRequests[pur.ID], "payment %s: one release request", id)
		assert.Equal(t, p.Amount, pur.Amount, "payment %s: amount released", id)
		assert.GreaterOrEqual(t, pur.Confirms, 1, "payment %s: confirm lost", id)
		assert.NotEmpty(t, pur.Fiscals, "payment %s: fiscal submission lost", id)
		for _, f := range pur.Fiscals {
			assert.Equal(t, strconv.FormatUint(uint64(doc.FP), 10), f.FiscalSign, "payment %s: fiscal sign sent", id)
			assert.Equal(t, doc.FD, f.FDNumber, "payment %s: FD sent", id)
			assert.Equal(t, doc.RegNumber, f.KKTRegNumber, "payment %s", id)
			assert.Equal(t, p.Amount, f.Amount, "payment %s", id)
		}
		k.confirms += pur.Confirms
		k.fiscals += len(pur.Fiscals)
		k.confirmDup += max(0, pur.Confirms-1)
		k.fiscDup += max(0, len(pur.Fiscals)-1)
	}
	assert.Equal(t, k.completed, len(receipts), "receipts in the FN vs completed payments: a receipt was printed twice or for nothing")
	for _, pur := range purchases {
		if !owned[pur.ID] {
			// A commit whose answer a crash lost, or a code replaced by a newer scan.
			k.orphanCommits++
			assert.Zero(t, pur.Releases, "purchase %s belongs to no payment but was released", pur.ID)
		}
	}
	return k
}

// requireOutcome checks how a payment killed at state ended. Killed at
// "releasing" before any release reached Smart Pay (the recovery point is
// written before the request leaves), the restarted agent cannot know the
// release never left: it asks the status, sees the purchase still committed
// for SettleBeforeCancel (10 s) and cancels it — failed, nothing charged, the
// right answer. Unless the request was already in the dead agent's socket, in
// which case the sandbox applies it and the sale completes. Every other kill
// ends completed.
func (c *crashRig) requireOutcome(p apiPayment, at string, atKill []sandbox.Request) {
	t := c.t
	t.Helper()
	sent := 0
	for _, rq := range atKill {
		if rq.Op == smartpay.OpRelease && p.SmartPay != nil && strings.Contains(rq.Body, `"`+p.SmartPay.PurchaseID+`"`) {
			sent++
		}
	}
	if at == string(payments.Releasing) && sent == 0 && p.State == string(payments.Failed) {
		require.NotNil(t, p.Error)
		require.Equal(t, "release_not_delivered", p.Error.Code, p.Error.Message)
		t.Logf("killed after the release recovery point but before the release left: the purchase was cancelled, payment failed (%s)", p.Error.Message)
		return
	}
	require.Equal(t, string(payments.Completed), p.State, "killed at %s; error %+v", at, p.Error)
}

// crashPoint is one row of the matrix: arm faults, start the sale, wait until
// the agent sits at the point, and say which stored states count as "there".
type crashPoint struct {
	name string
	// run drives the sale up to the kill and returns the payment id; the
	// agent is running when it is called and must be running when it returns.
	run  func(c *crashRig) string
	want []string // states the payment may hold at the kill
	// after runs with the agent down, after the store was inspected (clear
	// faults, load paper).
	after func(c *crashRig, v storeView)
	// check runs after the invariants with the payment's final view.
	check func(c *crashRig, p apiPayment, k crashCounts)
}

func TestCrashAtRecoveryPoints(t *testing.T) {
	hold := 2 * time.Second // long enough to kill in, short enough for the suite
	points := []crashPoint{
		{
			// The commit is on the wire (held by the sandbox), its record
			// "committing" is durable; the answer never reaches the store.
			name: "committing",
			run: func(c *crashRig) string {
				p := c.newSale()
				require.NoError(c.t, c.till.Sandbox.Inject(sandbox.Fault{Op: smartpay.OpCommit, Kind: sandbox.Latency, Delay: hold}))
				c.showCode()
				c.waitFor("commit at the sandbox", func() bool { return c.till.Sandbox.Count(smartpay.OpCommit) == 1 })
				// The record is written beside the commit, not before it; give it its fsync.
				time.Sleep(200 * time.Millisecond)
				return p.ID
			},
			want: []string{"committing"},
			after: func(c *crashRig, v storeView) {
				assert.Equal(c.t, []string{"committing"}, codeStates(v), "the commit's recovery point")
			},
			check: func(c *crashRig, p apiPayment, k crashCounts) {
				// The sandbox applied the held commit after the kill; the
				// restarted agent asks again with the same kassa_purchase_id,
				// learns the purchase and pays with it: no fresh scan, no
				// purchase left committed to nobody.
				v := c.inspect()
				assert.Equal(c.t, []string{"used"}, codeStates(v), "the interrupted commit is recovered and used")
				assert.Zero(c.t, k.orphanCommits)
				assert.Equal(c.t, 2, c.till.Sandbox.Count(smartpay.OpCommit), "the commit was asked again once")
			},
		},
		{
			// The code is committed and attached, the payment is "committed";
			// release has no foreign call before it, so the window is the
			// worker's next fsync. The kill lands at once on the create's
			// answer; which point it hit is read from the store.
			name: "committed",
			run: func(c *crashRig) string {
				c.showCode()
				c.waitFor("code held", func() bool { return len(c.till.Sandbox.Purchases()) == c.seq+1 })
				time.Sleep(200 * time.Millisecond) // the held record's fsync
				require.NoError(c.t, c.till.Sandbox.Inject(sandbox.Fault{Op: smartpay.OpRelease, Kind: sandbox.Latency, Delay: hold}))
				p := c.newSale()
				require.Equal(c.t, "committed", p.State, "a held code is attached at create")
				return p.ID
			},
			want: []string{"committed", "releasing"},
			after: func(c *crashRig, v storeView) {
				c.till.Sandbox.ClearFaults()
			},
		},
		{
			// "releasing" is durable and the release is held by the sandbox,
			// which applies it after the kill: the restarted agent must only
			// ask the status.
			name: "releasing/in-flight",
			run: func(c *crashRig) string {
				require.NoError(c.t, c.till.Sandbox.Inject(sandbox.Fault{Op: smartpay.OpRelease, Kind: sandbox.Latency, Delay: hold}))
				p := c.newSale()
				c.showCode()
				c.waitFor("release at the sandbox", func() bool { return c.till.Sandbox.Count(smartpay.OpRelease) == 1 })
				return p.ID
			},
			want: []string{"releasing"},
			check: func(c *crashRig, p apiPayment, k crashCounts) {
				assert.Equal(c.t, 1, k.releaseNoAnswer, "the held release was applied after the kill")
			},
		},
		{
			// The release was applied and its answer lost; the status poll that
			// would learn the outcome is held, so the store still says releasing.
			name: "releasing/reply-lost",
			run: func(c *crashRig) string {
				require.NoError(c.t, c.till.Sandbox.Inject(sandbox.Fault{Op: smartpay.OpRelease, Kind: sandbox.ReplyLost}))
				require.NoError(c.t, c.till.Sandbox.Inject(sandbox.Fault{Op: smartpay.OpStatus, Kind: sandbox.Latency, Delay: hold}))
				p := c.newSale()
				c.showCode()
				c.waitFor("status poll after the lost reply", func() bool { return c.till.Sandbox.Count(smartpay.OpStatus) >= 1 })
				return p.ID
			},
			want: []string{"releasing"},
		},
		{
			name: "processing",
			run: func(c *crashRig) string {
				require.NoError(c.t, c.till.Sandbox.Inject(sandbox.Fault{Op: smartpay.OpStatus, Kind: sandbox.Latency, Delay: hold}))
				p := c.newSale()
				c.showCode()
				c.waitFor("status poll", func() bool { return c.till.Sandbox.Count(smartpay.OpStatus) >= 1 })
				return p.ID
			},
			want: []string{"processing"},
		},
		{
			// Paid, the receipt owed (paper out) and the confirm held by the
			// sandbox, which applies it after the kill. The outbox never saw
			// a success answer, so it sends the confirm again.
			name: "paid/confirm-in-flight",
			run: func(c *crashRig) string {
				p := c.newSale()
				// Paper runs out at the receipt, after the money is taken (the
				// register is checked before release).
				c.till.Register.Inject(shtrihsim.Fault{Kind: shtrihsim.PaperOut, Command: 0x8D})
				require.NoError(c.t, c.till.Sandbox.Inject(sandbox.Fault{Op: smartpay.OpConfirm, Kind: sandbox.Latency, Delay: hold}))
				c.showCode()
				c.waitFor("paid, receipt owed, confirm at the sandbox", func() bool {
					q := c.get(p.ID)
					return q.State == "paid" && q.Fiscal.Error != nil && c.till.Sandbox.Count(smartpay.OpConfirm) == 1
				})
				return p.ID
			},
			want: []string{"paid", "fiscalizing"},
			after: func(c *crashRig, v storeView) {
				assert.GreaterOrEqual(c.t, v.outboxPending, 1, "the confirm is still owed")
				c.till.Register.SetPaper(true)
			},
			check: func(c *crashRig, p apiPayment, k crashCounts) {
				assert.Equal(c.t, 2, c.till.Sandbox.Count(smartpay.OpConfirm), "the unanswered confirm is sent again")
				assert.Equal(c.t, 1, k.confirmDup, "the held confirm and its resend were both applied")
			},
		},
		{
			name: "paid/confirm-5xx",
			run: func(c *crashRig) string {
				p := c.newSale()
				// Paper runs out at the receipt, after the money is taken (the
				// register is checked before release).
				c.till.Register.Inject(shtrihsim.Fault{Kind: shtrihsim.PaperOut, Command: 0x8D})
				require.NoError(c.t, c.till.Sandbox.Inject(sandbox.Fault{Op: smartpay.OpConfirm, Kind: sandbox.ServerError, Times: -1}))
				c.showCode()
				c.waitFor("paid, confirm refused twice", func() bool {
					return c.get(p.ID).State == "paid" && c.till.Sandbox.Count(smartpay.OpConfirm) >= 2
				})
				return p.ID
			},
			want: []string{"paid", "fiscalizing"},
			after: func(c *crashRig, v storeView) {
				c.till.Sandbox.ClearFaults()
				c.till.Register.SetPaper(true)
			},
			check: func(c *crashRig, p apiPayment, k crashCounts) {
				assert.Zero(c.t, k.confirmDup, "a refused confirm is not applied")
			},
		},
		{
			// FF45h has run: the FN closed the receipt, the reply is late and
			// reaches a dead agent. The journal entry is open; the restarted
			// agent learns the document from the FN instead of printing again.
			name: "fiscalizing/close-reply-delayed",
			run: func(c *crashRig) string {
				c.till.Register.Inject(shtrihsim.Fault{Kind: shtrihsim.DelayReply, Command: shtrih.CmdFNCloseReceipt, Delay: hold})
				p := c.newSale()
				c.showCode()
				c.waitFor("close receipt executed", func() bool { return c.fired("delay_reply@FF45") })
				return p.ID
			},
			want: []string{"fiscalizing"},
			after: func(c *crashRig, v storeView) {
				assert.Equal(c.t, 1, v.journalOpen, "the receipt's journal entry is open")
			},
			check: func(c *crashRig, p apiPayment, k crashCounts) {
				assert.Equal(c.t, 1, k.recovered, "the document came from the FN")
			},
		},
		{
			name: "fiscalizing/power-cut-after-close",
			run: func(c *crashRig) string {
				c.till.Register.Inject(shtrihsim.Fault{Kind: shtrihsim.PowerCutAfterClose, Command: shtrih.CmdFNCloseReceipt, Delay: hold})
				p := c.newSale()
				c.showCode()
				c.waitFor("power cut after close", func() bool { return c.fired("power_cut@FF45") })
				return p.ID
			},
			want: []string{"fiscalizing"},
			after: func(c *crashRig, v storeView) {
				assert.Equal(c.t, 1, v.journalOpen, "the receipt's journal entry is open")
			},
			check: func(c *crashRig, p apiPayment, k crashCounts) {
				assert.Equal(c.t, 1, k.recovered, "the document came from the FN")
			},
		},
		{
			// The receipt is open on the register (an item sent, not closed):
			// the restart cancels it and prints the receipt once.
			name: "fiscalizing/receipt-open",
			run: func(c *crashRig) string {
				c.till.Register.Inject(shtrihsim.Fault{Kind: shtrihsim.DelayReply, Command: shtrih.CmdFNOperation, Delay: hold})
				p := c.newSale()
				c.showCode()
				c.waitFor("item registered", func() bool { return c.fired("delay_reply@FF46") })
				return p.ID
			},
			want: []string{"fiscalizing"},
			after: func(c *crashRig, v storeView) {
				assert.Equal(c.t, 1, v.journalOpen, "the receipt's journal entry is open")
			},
			check: func(c *crashRig, p apiPayment, k crashCounts) {
				assert.Zero(c.t, k.recovered, "nothing to recover: the receipt never closed")
			},
		},
		{
			// Completed; the fiscal submission keeps failing (5xx) and is
			// still in the outbox at the kill.
			name: "completed/fiscal-5xx",
			run: func(c *crashRig) string {
				require.NoError(c.t, c.till.Sandbox.Inject(sandbox.Fault{Op: smartpay.OpFiscal, Kind: sandbox.ServerError, Times: -1}))
				p := c.newSale()
				c.showCode()
				c.waitFor("completed, fiscal refused twice", func() bool {
					return c.get(p.ID).State == "completed" && c.till.Sandbox.Count(smartpay.OpFiscal) >= 2
				})
				return p.ID
			},
			want: []string{"completed"},
			after: func(c *crashRig, v storeView) {
				assert.Equal(c.t, 1, v.outboxPending, "the fiscal submission is still owed")
				c.till.Sandbox.ClearFaults()
			},
			check: func(c *crashRig, p apiPayment, k crashCounts) {
				assert.Zero(c.t, k.fiscDup)
			},
		},
		{
			// Completed; the fiscal submission is held by the sandbox, applied
			// after the kill, and sent again by the restarted outbox.
			name: "completed/fiscal-in-flight",
			run: func(c *crashRig) string {
				require.NoError(c.t, c.till.Sandbox.Inject(sandbox.Fault{Op: smartpay.OpFiscal, Kind: sandbox.Latency, Delay: hold}))
				p := c.newSale()
				c.showCode()
				c.waitFor("fiscal at the sandbox", func() bool { return c.till.Sandbox.Count(smartpay.OpFiscal) == 1 })
				return p.ID
			},
			want: []string{"completed"},
			check: func(c *crashRig, p apiPayment, k crashCounts) {
				assert.Equal(c.t, 1, k.fiscDup, "the held submission and its resend were both applied")
			},
		},
	}
	for _, cp := range points {
		t.Run(cp.name, func(t *testing.T) {
			t.Parallel()
			began := time.Now()
			c := newCrashRig(t)
			c.start()
			id := cp.run(c)
			c.kill()
			atKill := c.till.Sandbox.Requests()
			v := c.inspect()
			at := v.payments[id]
			t.Logf("killed at %q (codes %v, journal open %d, outbox pending %d)", at, codeStates(v), v.journalOpen, v.outboxPending)
			require.Contains(t, cp.want, at, "the kill did not land at the recovery point")
			if cp.after != nil {
				cp.after(c, v)
			}
			c.start()
			p, rescans := c.settle(id)
			c.requireOutcome(p, at, atKill)
			k := c.checkInvariants([]string{id})
			t.Logf("after the restart: %s; fresh codes asked for: %d; %.1fs", k, rescans, time.Since(began).Seconds())
			c.stop()
			if cp.check != nil {
				cp.check(c, p, k)
			}
		})
	}
}

// crashIterations is KASSA_CRASH_ITERATIONS, or def.
func crashIterations(t *testing.T, def int) int {
	v := os.Getenv("KASSA_CRASH_ITERATIONS")
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	require.NoError(t, err, "KASSA_CRASH_ITERATIONS")
	return n
}

// crashSeed is KASSA_CRASH_SEED (to replay a run), or a fresh one.
func crashSeed(t *testing.T) uint64 {
	v := os.Getenv("KASSA_CRASH_SEED")
	if v == "" {
		return uint64(time.Now().UnixNano())
	}
	seed, err := strconv.ParseUint(v, 10, 64)
	require.NoError(t, err, "KASSA_CRASH_SEED")
	return seed
}

func codeStates(v storeView) []string {
	var out []string
	for _, s := range v.codes {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// TestCrashCommittedWindow first kills the agent with a code held (committed
// at Smart Pay, no payment yet), then kills it on the create's answer with a
// held code, up to a few times, to land in "committed" itself: that point has
// no foreign call after it, so no fault can hold the agent there, and which
// point each kill hit is read from the store. Whatever it hit, the invariants
// must hold.
func TestCrashCommittedWindow(t *testing.T) {
	t.Parallel()
	c := newCrashRig(t)
	c.start()
	var ids []string
	hits := map[string]int{}
	for attempt := 0; attempt < 4 && hits["committed"] == 0; attempt++ {
		c.showCode()
		c.waitFor("code committed", func() bool { return len(c.till.Sandbox.Purchases()) == attempt+1 })
		time.Sleep(200 * time.Millisecond) // the held record's fsync
		if attempt == 0 {
			c.kill()
			v := c.inspect()
			require.Empty(t, v.payments)
			require.Equal(t, []string{"held"}, codeStates(v))
			c.start()
		}
		p := c.newSale()
		require.Equal(t, "committed", p.State, "the held code is attached at create (after a restart too)")
		c.kill()
		atKill := c.till.Sandbox.Requests()
		v := c.inspect()
		hits[v.payments[p.ID]]++
		c.start()
		q, rescans := c.settle(p.ID)
		c.requireOutcome(q, v.payments[p.ID], atKill)
		require.Zero(t, rescans)
		ids = append(ids, p.ID)
	}
	k := c.checkInvariants(ids)
	t.Logf("kills on the create's answer landed at %v; %s", hits, k)
	c.stop()
}

// TestCrashAtRandomMoments kills the agent at a random moment of a sale,
// sometimes with a fault widening one step, restarts it and lets it finish;
// the invariants are checked after every round over every sale so far.
func TestCrashAtRandomMoments(t *testing.T) {
	t.Parallel()
	n, seed := crashIterations(t, 5), crashSeed(t)
	t.Logf("%d rounds, KASSA_CRASH_SEED=%d", n, seed)
	rnd := rand.New(rand.NewPCG(seed, 0x6b617373))
	began := time.Now()

	c := newCrashRig(t)
	c.start()
	var ids []string
	at := map[string]int{}
	again := map[string]int{} // second kills, during recovery
	faults := map[string]int{}
	rescansTotal := 0
	ops := []smartpay.Op{smartpay.OpCommit, smartpay.OpRelease, smartpay.OpStatus, smartpay.OpConfirm, smartpay.OpFiscal}
	for i := 0; i < n; i++ {
		c.till.Sandbox.ClearFaults()
		c.till.Register.ClearFaults()
		fault := "none"
		switch r := rnd.IntN(8); {
		case r < 3:
			op := ops[rnd.IntN(len(ops))]
			d := time.Duration(100+rnd.IntN(600)) * time.Millisecond
			require.NoError(t, c.till.Sandbox.Inject(sandbox.Fault{Op: op, Kind: sandbox.Latency, Delay: d}))
			fault = "latency:" + string(op)
		case r == 3:
			c.till.Register.Inject(shtrihsim.Fault{Kind: shtrihsim.DelayReply, Command: shtrih.CmdFNCloseReceipt,
				Delay: time.Duration(200+rnd.IntN(600)) * time.Millisecond})
			fault = "register:delay-close"
		case r == 4:
			c.till.Register.Inject(shtrihsim.Fault{Kind: shtrihsim.DelayReply, Command: shtrih.CmdFNOperation,
				Delay: time.Duration(200+rnd.IntN(600)) * time.Millisecond})
			fault = "register:delay-item"
		}
		faults[fault]++
		// The buyer shows the code before the POS asks, or after.
		var p apiPayment
		if rnd.IntN(3) == 0 {
			c.showCode()
			time.Sleep(time.Duration(rnd.IntN(300)) * time.Millisecond)
			p = c.newSale()
		} else {
			p = c.newSale()
			c.showCode()
		}
		// A fault-free sale takes a few hundred milliseconds here; most kills
		// land inside one, some after it (outbox, idle).
		window := 500
		if rnd.IntN(4) == 0 {
			window = 1500
		}
		time.Sleep(time.Duration(rnd.IntN(window)) * time.Millisecond)
		c.kill()
		v := c.inspect()
		state := v.payments[p.ID]
		if state == string(payments.Completed) && v.outboxPending > 0 {
			state += "+outbox"
		}
		at[state]++
		c.start()
		if rnd.IntN(4) == 0 {
			// A second crash while the first one is being recovered from.
			time.Sleep(time.Duration(rnd.IntN(400)) * time.Millisecond)
			c.kill()
			again[c.inspect().payments[p.ID]]++
			c.start()
		}
		q, rescans := c.settle(p.ID)
		rescansTotal += rescans
		ids = append(ids, p.ID)
		k := c.checkInvariants(ids)
		if t.Failed() {
			t.Fatalf("round %d (fault %s, killed at %q, ended %s) broke an invariant; replay with KASSA_CRASH_SEED=%d", i, fault, state, q.State, seed)
		}
		if (i+1)%25 == 0 || i == n-1 {
			t.Logf("round %d: %s", i+1, k)
		}
	}
	c.stop()
	t.Logf("kills landed at %v; second kills during recovery at %v", at, again)
	t.Logf("faults armed %v; fresh codes asked for %d; %d rounds in %.1fs", faults, rescansTotal, n, time.Since(began).Seconds())
}
