package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"kassa-agent/agent/internal/config"
	"kassa-agent/agent/internal/simtill"
)

// demoMarker marks a directory the demo made, so starting afresh never deletes
// anything else.
const demoMarker = ".kassa-agent-demo"

func cmdDemo(args []string, out, errOut io.Writer) int {
	fs := flags("demo", errOut)
	dir := fs.String("dir", "demo-data", "directory for the demo's store, token, devices and config (wiped at start)")
	listen := fs.String("listen", "127.0.0.1:8717", "address of the local API; the demo's own controls use the next port")
	script := fs.String("script", "", "run scripted sales and exit 0 only when every one completed: smartpay, alif, alikassa or all")
	delay := fs.Duration("processing", 3*time.Second, "how long the sandbox buyer takes to confirm a payment")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	if !noArgs(fs, errOut) {
		return exitUsage
	}
	sales, err := demoSales(*script)
	if err != nil {
		return fail(errOut, err)
	}
	abs, err := filepath.Abs(*dir)
	if err != nil {
		return fail(errOut, err)
	}
	if err := freshDemoDir(abs); err != nil {
		return fail(errOut, err)
	}
	host, portStr, err := net.SplitHostPort(*listen)
	if err != nil {
		return fail(errOut, fmt.Errorf("--listen: %w", err))
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return fail(errOut, fmt.Errorf("--listen: %w", err))
	}
	ctlAddr := net.JoinHostPort(host, strconv.Itoa(port+1))
	till, err := simtill.Start(simtill.Options{Dir: abs, SandboxAddr: net.JoinHostPort(host, strconv.Itoa(port+2)),
		AlifAddr: net.JoinHostPort(host, strconv.Itoa(port+3)), AliKassaAddr: net.JoinHostPort(host, strconv.Itoa(port+4)),
		ProcessingDelay: *delay})
	if err != nil {
		return fail(errOut, err)
	}
	defer till.Close()

	cfgPath := filepath.Join(abs, "config.toml")
	src := fmt.Sprintf("# Written by `kassa-agent demo`: simulated devices and sandbox providers.\n[api]\nlisten = %q\n[store]\ndir = %q\n[log]\nformat = \"text\"\n\n%s",
		*listen, abs, till.Config())
	if err := os.WriteFile(cfgPath, []byte(src), 0o600); err != nil {
		return fail(errOut, err)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return fail(errOut, err)
	}

	stopTape := printTape(out, till)
	defer stopTape()
	p := &program{cfg: cfg, errOut: errOut}
	ctl := &http.Server{Handler: demoControls(till), ReadHeaderTimeout: 5 * time.Second}
	p.prepare = func(ctx context.Context, log *slog.Logger) (func(), error) {
		ln, err := net.Listen("tcp", ctlAddr)
		if err != nil {
			return nil, fmt.Errorf("demo controls on %s: %w", ctlAddr, err)
		}
		go func() { _ = ctl.Serve(ln) }()
		if len(sales) == 0 {
			fmt.Fprint(out, demoHelp(cfg, ctlAddr, till))
		}
		return func() { _ = ctl.Close() }, nil
	}
	if len(sales) == 0 {
		return runService(p, cfgPath, errOut)
	}
	if err := p.Start(nil); err != nil {
		return fail(errOut, err)
	}
	var serr error
	for i, sale := range sales {
		if serr = scriptedSale(out, cfg, till, sale, i+1); serr != nil {
			break
		}
	}
	if err := p.Stop(nil); err != nil && serr == nil {
		serr = err
	}
	if serr != nil {
		return fail(errOut, serr)
	}
	return exitOK
}

func freshDemoDir(dir string) error {
	if _, err := os.Stat(dir); err == nil {
		if _, err := os.Stat(filepath.Join(dir, demoMarker)); err != nil {
			return fmt.Errorf("%s exists and was not made by the demo; choose another --dir", dir)
		}
		if err := os.RemoveAll(dir); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, demoMarker), []byte("made by kassa-agent demo; wiped at each demo start\n"), 0o600)
}

// demoControls lets a person act as the buyer: show a fresh Smart Pay code to
// the simulated scanner, pay an Alif session or an AliKassa payment, read the
// paper tape.
func demoControls(till *simtill.Till) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /demo/alif/pay", func(w http.ResponseWriter, r *http.Request) {
		id := r.URL.Query().Get("session")
		if err := till.Alif.Pay(id); err != nil {
			http.Error(w, err.Error(), http.StatusConflict)
			return
		}
		fmt.Fprintf(w, "the buyer paid Alif session %s\n", id)
	})
	mux.HandleFunc("POST /demo/alikassa/pay", func(w http.ResponseWriter, r *http.Request) {
		id := r.URL.Query().Get("order_id")
		if err := till.AliKassa.Pay(id); err != nil {
			http.Error(w, err.Error(), http.StatusConflict)
			return
		}
		fmt.Fprintf(w, "the buyer paid AliKassa order %s\n", id)
	})
	mux.HandleFunc("POST /demo/show-code", func(w http.ResponseWriter, r *http.Request) {
		code := till.Sandbox.NewCode()
		if err := till.ShowCode(code); err != nil {
			http.Error(w, err.Error(), http.StatusConflict)
			return
		}
		fmt.Fprintf(w, "the buyer showed %s to the scanner\n", code)
	})
	mux.HandleFunc("GET /demo/tape", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, till.Register.Tape())
	})
	return mux
}

// printTape echoes the register's paper tape to the terminal as it prints.
func printTape(out io.Writer, till *simtill.Till) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		shown := len(till.Register.Tape())
		flush := func() {
			tape := till.Register.Tape()
			if len(tape) > shown {
				fmt.Fprintf(out, "\n----- register paper tape -----\n%s-------------------------------\n", tape[shown:])
				shown = len(tape)
			}
		}
		for {
			select {
			case <-done:
				flush()
				return
			case <-time.After(300 * time.Millisecond):
				flush()
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

func demoHelp(cfg config.Config, ctl string, till *simtill.Till) string {
	api := "http://" + cfg.API.Listen
	auth := fmt.Sprintf(`-H "Authorization: Bearer $(cat %s)"`, cfg.API.TokenFile)
	return fmt.Sprintf(`
kassa-agent demo — a whole till on this machine:
  scanner   simulated, on %[5]s
  register  Shtrih-M simulator (serial over a pseudo-terminal); paper tape: %[6]s
  smartpay  sandbox at %[7]s
  alif      sandbox at %[8]s (its payment pages too)
  alikassa  sandbox at %[9]s (its payment pages too)

A Smart Pay sale by hand (in another terminal):

 1. The cashier rings up goods; the POS asks for payment (Idempotency-Key: any fresh value):

    curl -s %[2]s -H "Idempotency-Key: sale-1" -H "Content-Type: application/json" \
      -d '{"provider":"smartpay","amount":15980,"currency":"RUB","receipt":{"items":[
           {"name":"Молоко 3,2%%","quantity":2000,"price":7990,"vat":"vat10"}]}}' \
      %[1]s/v1/payments

    → state "committing", next_action "scan_code"

 2. The buyer shows the Smart Pay QR code to the scanner (the code is committed at once):

    curl -s -X POST http://%[3]s/demo/show-code

 3. Watch the payment: committed → releasing → processing → paid → completed

    curl -s %[2]s "%[1]s/v1/payments/<id>?wait=30s"
    curl -sN %[2]s %[1]s/v1/events          (a stream of scans and state changes)

 4. The receipt prints below (and into %[6]s); the confirmation and the fiscal data
    go to Smart Pay through the outbox:

    curl -s %[2]s %[1]s/v1/outbox
    curl -s %[2]s %[1]s/v1/status

The scan may also come first (step 2 before step 1).

Alif (UZS) and AliKassa (BDT) pay on a hosted page; the register prints a slip:

    curl -s %[2]s -H "Idempotency-Key: sale-2" -H "Content-Type: application/json" \
      -d '{"provider":"alif","amount":1500000,"currency":"UZS","slip":true,"receipt":{"items":[
           {"name":"Non","quantity":3000,"price":500000,"vat":"none"}]}}' %[1]s/v1/payments

    → next_action "show_url": open checkout_url in a browser and pay there, or
    curl -s -X POST "http://%[3]s/demo/alif/pay?session=<provider_payment_id>"
    curl -s -X POST "http://%[3]s/demo/alikassa/pay?order_id=<order_id>"

Stop with Ctrl+C.
`, api, auth, ctl, cfg.API.TokenFile, till.ScannerPath(), till.TapePath(), till.Sandbox.URL(), till.Alif.URL(), till.AliKassa.URL())
}

// demoSale is one scripted sale: what the POS sends and how the buyer pays.
type demoSale struct {
	provider string
	body     string
	// pay is the buyer's part, once the POS has the payment (Smart Pay: the
	// code shown to the scanner; a hosted page: paid once it is shown).
	pay func(till *simtill.Till, p demoPayment) (done bool, err error)
	// receipt: a fiscal receipt prints (rubles); otherwise a slip.
	receipt bool
}

type demoPayment struct {
	ID                string `json:"id"`
	State             string `json:"state"`
	NextAction        string `json:"next_action"`
	OrderID           string `json:"order_id"`
	ProviderPaymentID string `json:"provider_payment_id"`
	CheckoutURL       string `json:"checkout_url"`
	Fiscal            struct {
		State    string
		Document *struct {
			FD uint32 `json:"fd"`
			FP uint32 `json:"fp"`
		}
	}
	Error *struct{ Code, Message string }
}

var demoScripts = map[string]demoSale{
	"smartpay": {provider: "smartpay", receipt: true,
		body: `{"provider":"smartpay","amount":15980,"currency":"RUB","order_ref":"demo-1","receipt":{"items":[{"name":"Молоко 3,2%","quantity":2000,"price":7990,"vat":"vat10"}]}}`,
		pay: func(till *simtill.Till, p demoPayment) (bool, error) {
			return true, till.ShowCode(till.Sandbox.NewCode())
		}},
	"alif": {provider: "alif",
		body: `{"provider":"alif","amount":1500000,"currency":"UZS","slip":true,"order_ref":"demo-2","receipt":{"items":[{"name":"Non","quantity":3000,"price":500000,"vat":"none"}]}}`,
		pay: func(till *simtill.Till, p demoPayment) (bool, error) {
			if p.State != "processing" || p.ProviderPaymentID == "" {
				return false, nil
			}
			return true, till.Alif.Pay(p.ProviderPaymentID)
		}},
	"alikassa": {provider: "alikassa",
		body: `{"provider":"alikassa","amount":50000,"currency":"BDT","slip":true,"order_ref":"demo-3"}`,
		pay: func(till *simtill.Till, p demoPayment) (bool, error) {
			if p.State != "processing" || p.ProviderPaymentID == "" {
				return false, nil
			}
			return true, till.AliKassa.Pay(p.OrderID)
		}},
}

// demoSales turns --script into the sales to run ("" none: by hand).
func demoSales(script string) ([]demoSale, error) {
	switch script {
	case "":
		return nil, nil
	case "all":
		return []demoSale{demoScripts["smartpay"], demoScripts["alif"], demoScripts["alikassa"]}, nil
	}
	s, ok := demoScripts[script]
	if !ok {
		return nil, fmt.Errorf("--script %q: use smartpay, alif, alikassa or all", script)
	}
	return []demoSale{s}, nil
}

// scriptedSale drives one sale through the local API, as a POS would, and
// returns nil only when it completed and every delivery to the provider went.
func scriptedSale(out io.Writer, cfg config.Config, till *simtill.Till, sale demoSale, n int) error {
	tok, err := os.ReadFile(cfg.API.TokenFile)
	if err != nil {
		return err
	}
	c := &posClient{base: "http://" + cfg.API.Listen, token: strings.TrimSpace(string(tok))}
	if err := c.waitHealthy(10 * time.Second); err != nil {
		return err
	}
	var p demoPayment
	if err := c.do("POST", "/v1/payments", sale.body, fmt.Sprintf("demo-sale-%d", n), &p); err != nil {
		return err
	}
	fmt.Fprintf(out, "POS: %s payment %s created: %s, next action %s\n", sale.provider, p.ID, p.State, p.NextAction)
	deadline := time.Now().Add(time.Minute)
	last, paid := p.State, false
	for p.State != "completed" {
		if time.Now().After(deadline) {
			return fmt.Errorf("payment %s stuck in %s", p.ID, p.State)
		}
		if !paid {
			done, err := sale.pay(till, p)
			if err != nil {
				return err
			}
			if paid = done; paid {
				if p.CheckoutURL != "" {
					fmt.Fprintf(out, "buyer: paid on %s\n", p.CheckoutURL)
				} else {
					fmt.Fprintln(out, "buyer: showed the Smart Pay code to the scanner")
				}
			}
		}
		if p.Error != nil && p.State != "processing" && p.State != "committing" {
			return fmt.Errorf("payment %s ended %s: %s", p.ID, p.State, p.Error.Message)
		}
		if err := c.do("GET", "/v1/payments/"+p.ID+"?wait=10s", "", "", &p); err != nil {
			return err
		}
		if p.State != last {
			fmt.Fprintf(out, "POS: payment %s is %s\n", p.ID, p.State)
			last = p.State
		}
	}
	switch {
	case sale.receipt && p.Fiscal.Document == nil:
		return errors.New("completed without a fiscal document")
	case sale.receipt:
		fmt.Fprintf(out, "POS: receipt printed, FD %d, FP %d\n", p.Fiscal.Document.FD, p.Fiscal.Document.FP)
	case p.Fiscal.State != "slip_printed":
		return fmt.Errorf("completed with fiscal state %s, want slip_printed", p.Fiscal.State)
	default:
		fmt.Fprintln(out, "POS: slip printed (payments not in rubles get no fiscal receipt)")
	}
	for time.Now().Before(deadline) {
		var ob struct{ Pending, Parked int }
		if err := c.do("GET", "/v1/outbox", "", "", &ob); err != nil {
			return err
		}
		if ob.Pending == 0 && ob.Parked == 0 {
			fmt.Fprintf(out, "agent: every delivery to %s done\n", sale.provider)
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return errors.New("outbox not drained in time")
}

type posClient struct{ base, token string }

func (c *posClient) waitHealthy(d time.Duration) error {
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		resp, err := http.Get(c.base + "/v1/health")
		if err == nil {
			resp.Body.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return errors.New("agent did not come up")
}

func (c *posClient) do(method, path, body, key string, v any) error {
	req, err := http.NewRequest(method, c.base+path, bytes.NewBufferString(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, raw)
	}
	return json.Unmarshal(raw, v)
}
