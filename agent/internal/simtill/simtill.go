// Package simtill assembles a whole simulated till on one machine: a Shtrih-M
// register simulator and a scanner behind pseudo-terminals (so the agent's real
// serial code runs), and the Smart Pay, Alif and AliKassa sandboxes on
// loopback. The demo runs on it, and so do the agent's end-to-end tests.
package simtill

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"kassa-agent/device/ptytest"
	"kassa-agent/fiscal/shtrihsim"
	alifsandbox "kassa-agent/payments/alif/sandbox"
	alikassasandbox "kassa-agent/payments/alikassa/sandbox"
	"kassa-agent/payments/smartpay/sandbox"
)

// Options configure a simulated till.
type Options struct {
	Dir             string        // where the devices' links, state and certificates go
	SandboxAddr     string        // "" = a free loopback port
	ProcessingDelay time.Duration // Smart Pay release → success (sandbox semantics)
	RegisterBaud    int           // >0: the register simulator emulates wire time
	// RegisterOverTCP serves the register on loopback TCP instead of a PTY
	// (network models; and the only way where PTYs do not exist).
	RegisterOverTCP bool
	// RegisterInMemory keeps the register's FN state in memory only, for
	// benchmarks: the state file is rewritten with fsync on every command that
	// changes it (~1.5 ms each here), time a real register spends in its own FN,
	// which would otherwise be counted as the agent's.
	RegisterInMemory bool
	// RegisterNow is the register's clock (nil = time.Now): tests age a
	// shift past 24 h or the FN past its expiry without waiting.
	RegisterNow func() time.Time
	// RegisterFFD is the format the register is registered for ("" = 1.2).
	RegisterFFD string
	// AlifAddr and AliKassaAddr fix the hosted-page sandboxes' addresses
	// ("" = a free loopback port).
	AlifAddr, AliKassaAddr string
}

// Till is a running simulated till.
type Till struct {
	Sandbox  *sandbox.Server
	Alif     *alifsandbox.Server
	AliKassa *alikassasandbox.Server
	Register *shtrihsim.Sim
	scanner  *ptytest.Device
	regPTY   *ptytest.Device
	regLn    net.Listener
	hold     []*os.File
	dir      string

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Start brings the simulated devices up.
func Start(opts Options) (_ *Till, err error) {
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	t := &Till{dir: opts.Dir, cancel: cancel}
	defer func() {
		if err != nil {
			t.Close()
		}
	}()
	t.Sandbox, err = sandbox.Start(sandbox.Options{Addr: opts.SandboxAddr, Dir: filepath.Join(opts.Dir, "smartpay"),
		ProcessingDelay: opts.ProcessingDelay})
	if err != nil {
		return nil, fmt.Errorf("smart pay sandbox: %w", err)
	}
	if t.Alif, err = alifsandbox.Start(alifsandbox.Options{Addr: opts.AlifAddr, Dir: filepath.Join(opts.Dir, "alif")}); err != nil {
		return nil, fmt.Errorf("alif sandbox: %w", err)
	}
	if t.AliKassa, err = alikassasandbox.Start(alikassasandbox.Options{Addr: opts.AliKassaAddr, Dir: filepath.Join(opts.Dir, "alikassa")}); err != nil {
		return nil, fmt.Errorf("alikassa sandbox: %w", err)
	}
	statePath := filepath.Join(opts.Dir, "register-fn.json")
	if opts.RegisterInMemory {
		statePath = ""
	}
	t.Register, err = shtrihsim.New(shtrihsim.Options{
		StatePath: statePath,
		TapePath:  filepath.Join(opts.Dir, "tape.txt"),
		Baud:      opts.RegisterBaud,
		OFDOnline: true,
		Now:       opts.RegisterNow,
		FFD:       opts.RegisterFFD,
	})
	if err != nil {
		return nil, fmt.Errorf("register simulator: %w", err)
	}
	if !opts.RegisterOverTCP {
		if _, err := os.Stat("/dev/ptmx"); err != nil {
			opts.RegisterOverTCP = true // no pseudo-terminals here (Windows): a network register
		}
	}
	if opts.RegisterOverTCP {
		if t.regLn, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			return nil, err
		}
		t.wg.Add(1)
		go func() { defer t.wg.Done(); _ = t.Register.ServeTCP(ctx, t.regLn) }()
	} else {
		if t.regPTY, err = ptytest.Create(filepath.Join(opts.Dir, "register.tty")); err != nil {
			return nil, fmt.Errorf("register port: %w", err)
		}
		// Reading a PTY master while no one has the line open fails (EIO);
		// holding the line open makes the simulator wait for the agent the
		// way a powered-on register waits for its host.
		f, err := os.OpenFile(t.regPTY.SlavePath(), os.O_RDWR, 0)
		if err != nil {
			return nil, fmt.Errorf("register port: %w", err)
		}
		t.hold = append(t.hold, f)
		t.wg.Add(1)
		go func() { defer t.wg.Done(); t.serveRegister(ctx) }()
	}
	if sc, serr := ptytest.Create(filepath.Join(opts.Dir, "scanner.tty")); serr == nil {
		t.scanner = sc
	} // else: without PTYs the scanner is reached only through the local API.
	return t, nil
}

// serveRegister answers on the register's line until ctx ends.
func (t *Till) serveRegister(ctx context.Context) {
	// The PTY's owner closes the master; hide Close from Serve.
	_ = t.Register.Serve(ctx, struct{ io.ReadWriter }{t.regPTY.Master()})
}

// Close stops the devices.
func (t *Till) Close() {
	t.cancel()
	if t.regLn != nil {
		_ = t.regLn.Close()
	}
	if t.regPTY != nil {
		t.regPTY.Close()
	}
	for _, f := range t.hold {
		_ = f.Close()
	}
	if t.scanner != nil {
		t.scanner.Close()
	}
	t.wg.Wait()
	if t.Sandbox != nil {
		_ = t.Sandbox.Close()
	}
	if t.Alif != nil {
		_ = t.Alif.Close()
	}
	if t.AliKassa != nil {
		_ = t.AliKassa.Close()
	}
}

// HasSerialScanner reports whether codes can be "shown" to a serial scanner.
func (t *Till) HasSerialScanner() bool { return t.scanner != nil }

// ScannerPath is the serial port the agent's scanner opens.
func (t *Till) ScannerPath() string { return filepath.Join(t.dir, "scanner.tty") }

// ShowCode types text into the simulated scanner, as a scanner sends a code it
// read: the bytes, then CR.
func (t *Till) ShowCode(text string) error {
	if t.scanner == nil {
		return errors.New("no serial scanner here; POST the code to /v1/scanner/codes instead")
	}
	_, err := t.scanner.Write([]byte(text + "\r"))
	return err
}

// ScannerWrite writes raw bytes to the scanner line (tests: split codes, garbage).
func (t *Till) ScannerWrite(b []byte) error {
	if t.scanner == nil {
		return errors.New("no serial scanner here")
	}
	_, err := t.scanner.Write(b)
	return err
}

// UnplugScanner pulls the scanner's cable: its line goes away.
func (t *Till) UnplugScanner() {
	if t.scanner != nil {
		t.scanner.Unplug()
	}
}

// ReplugScanner plugs it back in, as a new device behind the same name.
func (t *Till) ReplugScanner() {
	if t.scanner != nil {
		t.scanner.Replug()
	}
}

// TapePath is where the register's paper tape is written as it prints.
func (t *Till) TapePath() string { return filepath.Join(t.dir, "tape.txt") }

// Config is the [scanner], [register], [smartpay], [alif] and [alikassa]
// part of an agent config for this till.
func (t *Till) Config() string {
	f := t.Sandbox.Files()
	var b strings.Builder
	if t.scanner != nil {
		fmt.Fprintf(&b, "[scanner]\nenabled = true\nport = %q\nbaud = 9600\nsuffix = \"cr\"\n\n", t.ScannerPath())
	}
	if t.regLn != nil {
		fmt.Fprintf(&b, "[register]\nenabled = true\ntransport = \"tcp\"\naddress = %q\nbyte_timeout = \"200ms\"\n\n", t.regLn.Addr().String())
	} else {
		fmt.Fprintf(&b, "[register]\nenabled = true\ntransport = \"serial\"\nport = %q\nbaud = 115200\nbyte_timeout = \"200ms\"\n\n", filepath.Join(t.dir, "register.tty"))
	}
	fmt.Fprintf(&b, "[smartpay]\nenabled = true\nbase_url = %q\ncert_file = %q\nkey_file = %q\nca_file = %q\n\n",
		t.Sandbox.URL(), f.CertFile, f.KeyFile, f.CAFile)
	a := t.Alif.ClientConfig()
	fmt.Fprintf(&b, "[alif]\nenabled = true\napi_url = %q\ncheckout_url = %q\ntoken_file = %q\nwebhook_secret_file = %q\nepos = %q\nredirect_url = %q\ncancel_url = %q\n\n",
		a.APIURL, a.CheckoutURL, a.TokenFile, a.WebhookSecretFile, a.EPOS, a.RedirectURL, a.CancelURL)
	k := t.AliKassa.ClientConfig()
	fmt.Fprintf(&b, "[alikassa]\nenabled = true\napi_url = %q\naccount = %q\nprivate_key_file = %q\npassword_file = %q\nnotify_public_key_file = %q\nservice = \"payment_card_bdt_hpp\"\ncustomer_code = \"bkash\"\ncustomer_ip = \"203.0.113.7\"\n",
		k.BaseURL, k.Account, k.PrivateKeyFile, k.PasswordFile, k.NotifyPublicKeyFile)
	return b.String()
}
