package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kassa-agent/agent/internal/config"
	"kassa-agent/agent/internal/sale"
	"kassa-agent/agent/internal/simtill"
	"kassa-agent/fiscal/shtrihsim"
	"kassa-agent/payments/smartpay"
	"kassa-agent/payments/smartpay/sandbox"
)

// rig is a whole till for one test: the simulated devices and the Smart Pay
// sandbox in this process, and the agent (in this process or as a child).
type rig struct {
	t       testing.TB
	till    *simtill.Till
	cfgPath string
	cfg     config.Config
	port    int
	token   string
	logs    *syncBuffer
	app     *app // the agent running in this process, if any
}

type rigOptions struct {
	processing time.Duration    // sandbox release → success; 0 = immediate
	extra      string           // more config
	logLevel   string           // default debug: the secrets checks read debug lines
	tcpReg     bool             // the register is a network model
	baud       int              // >0: the register simulator emulates this line's wire time
	memReg     bool             // the register keeps its FN in memory (benchmarks: no state-file fsync)
	regNow     func() time.Time // the register's clock; nil = time.Now
	ffd        string           // the register's format (simulator and config); "" = 1.2
}

func newRig(t testing.TB, o rigOptions) *rig {
	t.Helper()
	if _, err := os.Stat("/dev/ptmx"); err != nil {
		t.Skip("end-to-end tests drive the serial devices over Linux pseudo-terminals")
	}
	dir := t.TempDir()
	delay := o.processing
	if delay == 0 {
		delay = sandbox.Immediate
	}
	till, err := simtill.Start(simtill.Options{Dir: filepath.Join(dir, "till"), ProcessingDelay: delay, RegisterOverTCP: o.tcpReg, RegisterBaud: o.baud, RegisterInMemory: o.memReg, RegisterNow: o.regNow, RegisterFFD: o.ffd})
	require.NoError(t, err)
	t.Cleanup(till.Close)
	port := freePort(t)
	cfgPath := filepath.Join(dir, "config.toml")
	level := o.logLevel
	if level == "" {
		level = "debug"
	}
	src := fmt.Sprintf("[api]\nlisten = \"127.0.0.1:%d\"\n[store]\ndir = %q\n[log]\nlevel = %q\n[outbox]\nbase_delay = \"50ms\"\nmax_delay = \"200ms\"\n%s\n%s",
		port, filepath.Join(dir, "data"), level, till.Config(), o.extra)
	require.NoError(t, os.WriteFile(cfgPath, []byte(src), 0o600))
	cfg, err := config.Load(cfgPath)
	require.NoError(t, err)
	if o.ffd != "" {
		cfg.Register.FFD = o.ffd
	}
	return &rig{t: t, till: till, cfgPath: cfgPath, cfg: cfg, port: port, logs: new(syncBuffer)}
}

// fastTimings keep fault tests short; production values are minutes.
func fastTimings(tu *tuning) {
	o := tu.Sale
	tu.Register.Timeouts.Long = 2 * time.Second
	tu.Register.Timeouts.Reply = time.Second
	o.PollMin = 20 * time.Millisecond
	o.PollMax = 100 * time.Millisecond
	o.SettleBeforeCancel = 300 * time.Millisecond
	o.FiscalRetryMin = 50 * time.Millisecond
	o.FiscalRetryMax = 200 * time.Millisecond
}

// startInProcess runs the agent in this process until the test ends.
func (r *rig) startInProcess(tune ...func(*sale.Options)) {
	stop := r.runInProcess(tune...)
	r.t.Cleanup(stop)
}

// runInProcess starts the agent in this process and returns the function that
// stops it (and fails the test if it stopped with an error). A test that
// restarts the agent calls it again on the same data directory.
func (r *rig) runInProcess(tune ...func(*sale.Options)) (stop func()) {
	all := []func(*tuning){fastTimings}
	for _, f := range tune {
		all = append(all, func(tu *tuning) { f(tu.Sale) })
	}
	return r.runTuned(all...)
}

// runTuned is runInProcess with full access to the agent's parts.
func (r *rig) runTuned(all ...func(*tuning)) (stop func()) {
	t := r.t
	log := newLogger(r.cfg.Log, true, r.logs)
	ctx, cancel := context.WithCancel(context.Background())
	a, err := openApp(ctx, r.cfg, log, all...)
	require.NoError(t, err)
	r.app = a
	done := make(chan error, 1)
	go func() { done <- a.run(ctx) }()
	r.readToken()
	var once sync.Once
	return func() {
		once.Do(func() {
			cancel()
			require.NoError(t, <-done)
			if t.Failed() {
				t.Logf("agent log:\n%s", r.logs.String())
			}
		})
	}
}

func (r *rig) readToken() {
	tok, err := os.ReadFile(r.cfg.API.TokenFile)
	require.NoError(r.t, err)
	r.token = strings.TrimSpace(string(tok))
}

// call sends a POS request and decodes the answer into v (if not nil).
func (r *rig) call(method, path, key, body string, v any) int {
	r.t.Helper()
	req, err := http.NewRequest(method, fmt.Sprintf("http://127.0.0.1:%d%s", r.port, path), strings.NewReader(body))
	require.NoError(r.t, err)
	req.Header.Set("Authorization", "Bearer "+r.token)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(r.t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(r.t, err)
	if v != nil {
		require.NoError(r.t, json.Unmarshal(raw, v), "%s", raw)
	}
	return resp.StatusCode
}

type apiPayment struct {
	ID                string `json:"id"`
	State             string `json:"state"`
	NextAction        string `json:"next_action"`
	Amount            int64  `json:"amount"`
	Version           uint64 `json:"version"`
	OrderID           string `json:"order_id"`
	CheckoutURL       string `json:"checkout_url"`
	QRText            string `json:"qr_text"`
	ProviderPaymentID string `json:"provider_payment_id"`
	SmartPay          *struct {
		KassaPurchaseID string `json:"kassa_purchase_id"`
		PurchaseID      string `json:"purchase_id"`
	} `json:"smartpay"`
	Fiscal struct {
		State    string `json:"state"`
		Document *struct {
			FD        uint32 `json:"fd"`
			FP        uint32 `json:"fp"`
			FNNumber  string `json:"fn_number"`
			RegNumber string `json:"reg_number"`
			Total     int64  `json:"total"`
		} `json:"document"`
		Error *struct{ Code, Message string } `json:"error"`
	} `json:"fiscal"`
	Error *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

type apiError struct {
	Error struct {
		Code      string `json:"code"`
		Message   string `json:"message"`
		Retryable bool   `json:"retryable"`
	} `json:"error"`
}

const milkReceipt = `{"items":[{"name":"Молоко 3,2%","quantity":2000,"price":7990,"vat":"vat10"},{"name":"Хлеб","quantity":1000,"price":4500,"vat":"vat22"}]}`

func saleBody(amount int64, receipt string) string {
	if receipt == "" {
		return fmt.Sprintf(`{"provider":"smartpay","amount":%d,"currency":"RUB"}`, amount)
	}
	return fmt.Sprintf(`{"provider":"smartpay","amount":%d,"currency":"RUB","receipt":%s}`, amount, receipt)
}

func (r *rig) create(key, body string) apiPayment {
	r.t.Helper()
	var p apiPayment
	code := r.call("POST", "/v1/payments", key, body, &p)
	require.Equal(r.t, 201, code, "create: %+v", p)
	return p
}

// waitState long-polls until the payment reaches state (or fails the test).
func (r *rig) waitState(id, state string, within time.Duration) apiPayment {
	r.t.Helper()
	end := time.Now().Add(within)
	var p apiPayment
	for time.Now().Before(end) {
		p = apiPayment{} // absent fields (an error that went away) must not linger
		require.Equal(r.t, 200, r.call("GET", "/v1/payments/"+id+"?wait=2s", "", "", &p))
		if p.State == state {
			return p
		}
	}
	r.t.Fatalf("payment %s is %s (error %+v), want %s; log:\n%s", id, p.State, p.Error, state, r.logs.String())
	return p
}

// waitOutboxEmpty waits until every confirmation and fiscal submission is delivered.
func (r *rig) waitOutboxEmpty(within time.Duration) {
	r.t.Helper()
	end := time.Now().Add(within)
	var ob struct {
		Pending int `json:"pending"`
		Parked  int `json:"parked"`
	}
	for time.Now().Before(end) {
		require.Equal(r.t, 200, r.call("GET", "/v1/outbox", "", "", &ob))
		if ob.Pending == 0 {
			require.Zero(r.t, ob.Parked, "messages were parked")
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	r.t.Fatalf("outbox still has %d pending", ob.Pending)
}

func (r *rig) showCode() string {
	r.t.Helper()
	code := r.till.Sandbox.NewCode()
	require.NoError(r.t, r.till.ShowCode(code))
	return code
}

// waitCommit waits until the sandbox has seen n commits.
func (r *rig) waitCommits(n int) {
	r.t.Helper()
	require.Eventually(r.t, func() bool { return r.till.Sandbox.Count(smartpay.OpCommit) >= n }, 5*time.Second, 5*time.Millisecond)
}

func receiptsOf(docs []shtrihsim.Document) []shtrihsim.Document {
	var out []shtrihsim.Document
	for _, d := range docs {
		if d.Type == shtrihsim.DocReceipt {
			out = append(out, d)
		}
	}
	return out
}

// checkSettled verifies the end of a paid sale across every party: one
// receipt in the FN with the payment's FD and FP, the release applied once,
// confirm and fiscal received with the same FP and registration number.
func (r *rig) checkSettled(p apiPayment) {
	t := r.t
	t.Helper()
	require.NotNil(t, p.Fiscal.Document, "no fiscal document")
	doc := p.Fiscal.Document
	var mine []shtrihsim.Document
	for _, d := range receiptsOf(r.till.Register.Documents()) {
		if d.FD == doc.FD {
			mine = append(mine, d)
		}
	}
	require.Len(t, mine, 1, "receipt FD %d in the FN", doc.FD)
	assert.Equal(t, doc.FP, mine[0].FP)
	assert.Equal(t, p.Amount, mine[0].Total)
	assert.Equal(t, p.Amount, mine[0].Payments[1], "paid electronically")

	r.waitOutboxEmpty(10 * time.Second)
	pur, ok := r.till.Sandbox.Purchase(p.SmartPay.PurchaseID)
	require.True(t, ok)
	assert.Equal(t, 1, pur.Releases, "release applied exactly once")
	assert.Equal(t, p.Amount, pur.Amount)
	assert.GreaterOrEqual(t, pur.Confirms, 1)
	require.NotEmpty(t, pur.Fiscals)
	f := pur.Fiscals[len(pur.Fiscals)-1]
	assert.Equal(t, fmt.Sprint(doc.FP), f.FiscalSign)
	assert.Equal(t, doc.RegNumber, f.KKTRegNumber)
	assert.Equal(t, doc.FNNumber, f.FNNumber)
	assert.Equal(t, doc.FD, f.FDNumber)
	assert.Equal(t, p.Amount, f.Amount)
}

func TestSmartPayHappyPath(t *testing.T) {
	r := newRig(t, rigOptions{processing: 50 * time.Millisecond})
	r.startInProcess()
	events := r.subscribe()
	p := r.create("k1", saleBody(20480, milkReceipt))
	assert.Equal(t, "committing", p.State)
	assert.Equal(t, "scan_code", p.NextAction)
	assert.Equal(t, "pending", p.Fiscal.State)

	r.showCode()
	p = r.waitState(p.ID, "completed", 10*time.Second)
	assert.Equal(t, "hand_over", p.NextAction)
	assert.Equal(t, "printed", p.Fiscal.State)
	r.checkSettled(p)
	assert.Equal(t, 1, r.till.Sandbox.Count(smartpay.OpRelease), "release sent exactly once")

	// The event stream showed the scan (without the code) and every state. It
	// is read on its own goroutine: let it catch up with the last change.
	require.Eventually(t, func() bool { return slices.Contains(events.statesOf(p.ID), "completed") }, 5*time.Second, 10*time.Millisecond)
	seen := events.statesOf(p.ID)
	for _, s := range []string{"committed", "releasing", "processing", "paid", "fiscalizing", "completed"} {
		assert.Contains(t, seen, s)
	}
	for _, raw := range events.raw() {
		assert.NotContains(t, raw, "qr.smartpay.example", "a Smart Pay code leaked into events")
	}
	// No secret in the log of a whole sale: not the buyer's code, not the API
	// token, not the client key.
	logs := r.logs.String()
	require.Contains(t, logs, "receipt printed", "the log was not captured")
	assert.NotContains(t, logs, "qr.smartpay.example/c/", "a Smart Pay code leaked into the log")
	assert.NotContains(t, logs, r.token, "the API token leaked into the log")
	key, err := os.ReadFile(r.cfg.SmartPay.KeyFile)
	require.NoError(t, err)
	for _, line := range strings.Split(string(key), "\n") {
		if len(line) > 20 && !strings.HasPrefix(line, "-----") {
			assert.NotContains(t, logs, line, "the client key leaked into the log")
		}
	}
}

// sse collects server-sent events for a test.
type sse struct {
	mu     sync.Mutex
	events []string
}

func (r *rig) subscribe() *sse {
	req, err := http.NewRequest("GET", fmt.Sprintf("http://127.0.0.1:%d/v1/events", r.port), nil)
	require.NoError(r.t, err)
	req.Header.Set("Authorization", "Bearer "+r.token)
	ctx, cancel := context.WithCancel(context.Background())
	r.t.Cleanup(cancel)
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	require.NoError(r.t, err)
	require.Equal(r.t, 200, resp.StatusCode)
	s := &sse{}
	go func() {
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		var cur bytes.Buffer
		for sc.Scan() {
			line := sc.Text()
			if line == "" {
				s.mu.Lock()
				s.events = append(s.events, cur.String())
				s.mu.Unlock()
				cur.Reset()
				continue
			}
			cur.WriteString(line + "\n")
		}
	}()
	return s
}

func (s *sse) raw() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.events...)
}

func (s *sse) statesOf(id string) []string {
	var out []string
	for _, e := range s.raw() {
		if !strings.Contains(e, "event: payment\n") {
			continue
		}
		data := e[strings.Index(e, "data: ")+6:]
		var p apiPayment
		if json.Unmarshal([]byte(strings.TrimSpace(data)), &p) == nil && p.ID == id {
			out = append(out, p.State)
		}
	}
	return out
}

func (s *sse) scans() []sale.ScanEvent {
	var out []sale.ScanEvent
	for _, e := range s.raw() {
		if !strings.Contains(e, "event: scan\n") {
			continue
		}
		data := e[strings.Index(e, "data: ")+6:]
		var ev sale.ScanEvent
		if json.Unmarshal([]byte(strings.TrimSpace(data)), &ev) == nil {
			out = append(out, ev)
		}
	}
	return out
}
