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
	script := fs.Bool("script", false, "run one scripted Smart Pay sale, print the receipt and exit")
	delay := fs.Duration("processing", 3*time.Second, "how long the sandbox buyer takes to confirm a payment")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	if !noArgs(fs, errOut) {
		return exitUsage
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
		if !*script {
			fmt.Fprint(out, demoHelp(cfg, ctlAddr, till))
		}
		return func() { _ = ctl.Close() }, nil
	}
	if !*script {
		return runService(p, cfgPath, errOut)
	}
	if err := p.Start(nil); err != nil {
		return fail(errOut, err)
	}
	serr := scriptedSale(out, cfg, till)
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
// the simulated scanner, read the paper tape.
func demoControls(till *simtill.Till) http.Handler {
	mux := http.NewServeMux()
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

The scan may also come first (step 2 before step 1). Stop with Ctrl+C.
`, api, auth, ctl, cfg.API.TokenFile, till.ScannerPath(), till.TapePath(), till.Sandbox.URL())
}

// scriptedSale drives one Smart Pay sale through the local API, as a POS would.
func scriptedSale(out io.Writer, cfg config.Config, till *simtill.Till) error {
	tok, err := os.ReadFile(cfg.API.TokenFile)
	if err != nil {
		return err
	}
	c := &posClient{base: "http://" + cfg.API.Listen, token: strings.TrimSpace(string(tok))}
	if err := c.waitHealthy(10 * time.Second); err != nil {
		return err
	}
	body := `{"provider":"smartpay","amount":15980,"currency":"RUB","order_ref":"demo-1","receipt":{"items":[{"name":"Молоко 3,2%","quantity":2000,"price":7990,"vat":"vat10"}]}}`
	var p struct {
		ID         string `json:"id"`
		State      string `json:"state"`
		NextAction string `json:"next_action"`
		Fiscal     struct {
			State    string
			Document *struct {
				FD uint32 `json:"fd"`
				FP uint32 `json:"fp"`
			}
		}
		Error *struct{ Code, Message string }
	}
	if err := c.do("POST", "/v1/payments", body, "demo-sale-1", &p); err != nil {
		return err
	}
	fmt.Fprintf(out, "POS: payment %s created: %s, next action %s\n", p.ID, p.State, p.NextAction)
	code := till.Sandbox.NewCode()
	if err := till.ShowCode(code); err != nil {
		return err
	}
	fmt.Fprintln(out, "buyer: showed the Smart Pay code to the scanner")
	deadline := time.Now().Add(time.Minute)
	last := p.State
	for p.State != "completed" {
		if time.Now().After(deadline) {
			return fmt.Errorf("payment %s stuck in %s", p.ID, p.State)
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
	if p.Fiscal.Document == nil {
		return errors.New("completed without a fiscal document")
	}
	fmt.Fprintf(out, "POS: receipt printed, FD %d, FP %d\n", p.Fiscal.Document.FD, p.Fiscal.Document.FP)
	for time.Now().Before(deadline) {
		var ob struct{ Pending, Parked int }
		if err := c.do("GET", "/v1/outbox", "", "", &ob); err != nil {
			return err
		}
		if ob.Pending == 0 && ob.Parked == 0 {
			fmt.Fprintln(out, "agent: confirmation and fiscal data delivered to Smart Pay")
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
