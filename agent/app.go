package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"regexp"
	"runtime"
	"sync"
	"time"

	"kassa-agent/agent/internal/config"
	"kassa-agent/agent/internal/localapi"
	"kassa-agent/agent/internal/sale"
	"kassa-agent/device"
	"kassa-agent/device/scanner"
	"kassa-agent/fiscal"
	"kassa-agent/fiscal/shtrih"
	"kassa-agent/payments"
	"kassa-agent/payments/alif"
	"kassa-agent/payments/alikassa"
	"kassa-agent/payments/smartpay"
	"kassa-agent/queue"
)

// app is one running agent: its store, its devices, its providers, its API and
// the workers between them.
type app struct {
	cfg     config.Config
	log     *slog.Logger
	store   *queue.Store
	api     *localapi.Server
	ln      net.Listener
	started time.Time

	hub      *sale.Hub
	engine   *sale.Engine
	disp     *queue.Dispatcher
	scanner  *scanner.Scanner
	scans    chan scanner.Code
	register *shtrih.Driver
	regState registerState
	sp       *smartpay.Client
	// providers are the enabled hosted-page providers.
	providers []hostedProvider
	// metrics is /metrics; metricsSrv its own address (metrics.listen), or nil.
	metrics    *metrics
	metricsSrv *metricsServer
}

// registerState is the last thing the agent learned about the register; the
// status endpoint shows it without sending the device a command.
type registerState struct {
	mu        sync.Mutex
	checked   time.Time
	status    *fiscal.Status
	lastError string
}

// openApp acquires everything the agent needs, in an order that fails fast and
// releases what it took when a later step fails.
// tuning is what tests may adjust before the agent's parts are built.
type tuning struct {
	Sale     *sale.Options
	Register *shtrih.Options
	// WrapRegister, when set, wraps the register the engine uses (fault tests).
	WrapRegister func(sale.Register) sale.Register
}

// tune, when given, adjusts timings (tests).
func openApp(ctx context.Context, cfg config.Config, log *slog.Logger, tune ...func(*tuning)) (_ *app, err error) {
	a := &app{cfg: cfg, log: log, started: time.Now(), hub: sale.NewHub(), scans: make(chan scanner.Code, 256),
		metrics: newMetrics()}
	if err := os.MkdirAll(cfg.Store.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("create data directory %s: %w", cfg.Store.Dir, err)
	}
	if err := restrictDataDir(cfg.Store.Dir); err != nil {
		return nil, fmt.Errorf("data directory %s: %w", cfg.Store.Dir, err)
	}
	st, err := queue.Open(cfg.StorePath(), queue.Options{
		OpenTimeout: cfg.Store.OpenTimeout.D(),
		OnCorrupt:   cfg.Store.OnCorrupt,
		Logger:      log,
	})
	if err != nil {
		return nil, err
	}
	a.store = st
	defer func() {
		if err != nil {
			a.close()
		}
	}()
	if r := st.Recovered(); r != nil {
		log.Error("STORE WAS DAMAGED: the damaged file was moved aside and the agent started on an empty store; payments recorded only there need a technician",
			"path", r.Path, "moved_to", r.MovedTo, "reason", r.Reason)
	}

	opts := sale.Options{Store: st, Hub: a.hub, Logger: log, Cashier: cfg.Register.Cashier,
		TaxSystem:    sale.TaxSystems[cfg.Register.TaxSystem],
		PollDeadline: cfg.SmartPay.PollDeadline.D(), AbandonAfter: cfg.SmartPay.AbandonAfter.D(),
		Marking: markingPolicy(cfg.Marking, cfg.Register.FFD)}
	if cfg.SmartPay.Enabled {
		if a.sp, err = newSmartPay(cfg.SmartPay, log); err != nil {
			return nil, err
		}
		opts.SmartPay = meteredSmartPay{a.sp, a.metrics}
		pattern := cfg.SmartPay.CodePattern
		if pattern == "" {
			pattern = smartpay.DefaultCodePattern
		}
		opts.CodePattern = regexp.MustCompile(pattern) // checked by config
	}
	providers, err := newProviders(cfg, log)
	if err != nil {
		return nil, err
	}
	a.providers = providers
	for _, p := range providers {
		opts.Providers = append(opts.Providers, a.metrics.wrapProvider(p))
	}
	// Known even when switched off: their payments stay visible as
	// provider_disabled until they are switched on again.
	opts.Known = []string{alif.Name, "alikassa"}
	opts.PollEvery = map[string]time.Duration{alif.Name: cfg.Alif.PollEvery.D(), "alikassa": cfg.AliKassa.PollEvery.D()}
	regOpts := registerOptions(cfg.Register, sale.NewJournal(st), log)
	logRenewal := regOpts.OnShiftRenewed
	regOpts.OnShiftRenewed = func(closed, opened int) {
		logRenewal(closed, opened)
		a.hub.Publish("register", shiftRenewed{Event: "shift_renewed", ClosedShift: closed, OpenedShift: opened})
	}
	tu := &tuning{Sale: &opts, Register: &regOpts}
	for _, f := range tune {
		f(tu)
	}
	if cfg.Register.Enabled {
		a.register = shtrih.New(registerPort(cfg.Register), regOpts)
		opts.Register = a.register
		if tu.WrapRegister != nil {
			opts.Register = tu.WrapRegister(opts.Register)
		}
		opts.Register = meteredRegister{opts.Register, a.metrics}
	}
	if a.engine, err = sale.New(opts); err != nil {
		return nil, err
	}
	a.disp = queue.NewDispatcher(st, queue.DispatcherOptions{
		BaseDelay: cfg.Outbox.BaseDelay.D(), MaxDelay: cfg.Outbox.MaxDelay.D(),
		MaxAttempts: cfg.Outbox.MaxAttempts, MaxAge: maxAge(cfg.Outbox.MaxAge.D()), Logger: log,
	})
	a.engine.RegisterHandlers(a.disp)

	if cfg.Scanner.Enabled {
		a.scanner, err = scanner.New(scannerConfig(cfg.Scanner), scanner.Options{
			Logger: log,
			OnCode: func(c scanner.Code) {
				select {
				case a.scans <- c:
				default:
					log.Error("scan dropped: the agent is not keeping up with the scanner")
				}
			},
			OnState: func(s device.State) { a.hub.Publish("device", s) },
		})
		if err != nil {
			return nil, fmt.Errorf("scanner: %w", err)
		}
		a.engine.SetScanSink(func(code string) bool {
			_, ok := a.scanner.Inject(code)
			return ok
		})
	}

	token, err := localapi.LoadOrCreateToken(cfg.API.TokenFile)
	if err != nil {
		return nil, err
	}
	port, err := listenPort(cfg.API.Listen)
	if err != nil {
		return nil, fmt.Errorf("api.listen: %w", err)
	}
	ln, err := net.Listen("tcp", cfg.API.Listen)
	if err != nil {
		return nil, fmt.Errorf("local API cannot listen on %s (is another program using the port?): %w", cfg.API.Listen, err)
	}
	a.ln = ln
	if cfg.API.AllowRemote {
		log.Warn("local API is bound to a non-loopback address as configured (api.allow_remote = true); anyone on the network who has the token can take payments", "listen", cfg.API.Listen)
	}
	a.api = localapi.New(localapi.Options{Token: token, Port: port, Logger: log, Status: a.status,
		MaxConns: cfg.API.MaxConnections})
	a.engine.Routes(a.api)
	a.outboxRoutes(a.api)
	a.api.Handle("GET /v1/openapi.json", serveOpenAPI)
	if err := a.openMetrics(); err != nil {
		return nil, err
	}
	return a, nil
}

// maxAge maps the config's "0 = no limit" to the dispatcher's "<0 = no limit".
func maxAge(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

func scannerConfig(c config.Scanner) scanner.Config {
	return scanner.Config{Driver: c.Driver, Port: c.Port.Port, VID: c.VID, PID: c.PID, Serial: c.Serial, Baud: c.Baud,
		Suffix: c.Suffix, IdleGap: c.IdleGap.D(), Prefix: c.Prefix, MaxLength: c.MaxLength,
		DoubleReadWindow: offIfZero(c.DoubleReadWindow.D())}
}

func offIfZero(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

// hostedProvider is a provider whose buyer pays on its page (Alif,
// AliKassa): the contract, a harmless call for diag, and its connections.
type hostedProvider interface {
	payments.Provider
	payments.Prober
	Close()
}

// newProviders makes the enabled hosted-page providers, in a fixed order.
func newProviders(cfg config.Config, log *slog.Logger) ([]hostedProvider, error) {
	var out []hostedProvider
	if c := cfg.Alif; c.Enabled {
		cl, err := alif.New(alif.Config{APIURL: c.APIURL, CheckoutURL: c.CheckoutURL, TokenFile: c.TokenFile,
			WebhookSecretFile: c.WebhookKey, EPOS: c.EPOS, RedirectURL: c.RedirectURL, CancelURL: c.CancelURL,
			Logger: log.With("provider", alif.Name)})
		if err != nil {
			return nil, fmt.Errorf("alif: %w", err)
		}
		out = append(out, cl)
	}
	if c := cfg.AliKassa; c.Enabled {
		cl, err := alikassa.New(alikassa.Config{BaseURL: c.APIURL, Account: c.Account, PrivateKeyFile: c.PrivateKeyFile,
			PasswordFile: c.PasswordFile, NotifyPublicKeyFile: c.NotifyPublicKey, SignatureHash: c.SignatureHash,
			Service: c.Service, CustomerCode: c.CustomerCode, CustomerIP: c.CustomerIPForPOS, Lifetime: c.PaymentLifetime.D(),
			SuccessRedirectURL: c.SuccessRedirect, FailRedirectURL: c.FailRedirect, NotificationURL: c.NotificationURL,
			Logger: log.With("provider", "alikassa")})
		if err != nil {
			for _, p := range out {
				p.Close()
			}
			return nil, fmt.Errorf("alikassa: %w", err)
		}
		out = append(out, cl)
	}
	return out, nil
}

func newSmartPay(c config.SmartPay, log *slog.Logger) (*smartpay.Client, error) {
	t := c.RequestTimeout.D()
	cl, err := smartpay.New(smartpay.Config{
		BaseURL: c.BaseURL, CertFile: c.CertFile, KeyFile: c.KeyFile, CAFile: c.CAFile, Logger: log,
		Timeouts: smartpay.Timeouts{Auth: t, Release: t, Confirm: t, Fiscal: t, Cancel: t,
			Commit: min(t, 5*time.Second), Status: min(t, 5*time.Second)},
	})
	if err != nil {
		return nil, fmt.Errorf("smartpay: %w", err)
	}
	info := cl.Certificate()
	switch lvl := info.Expiry(time.Now()); lvl {
	case smartpay.ExpiryOK:
		log.Info("Smart Pay client certificate", "subject", info.Subject, "not_after", info.NotAfter)
	case smartpay.ExpiryWarn:
		log.Warn("Smart Pay client certificate expires within 30 days; ask Smart Pay for a new one", "not_after", info.NotAfter)
	default:
		log.Error("Smart Pay client certificate is expired, about to expire or not yet valid; payments will fail without a new one (or check the clock)",
			"not_after", info.NotAfter, "not_before", info.NotBefore)
	}
	return cl, nil
}

func registerPort(c config.Register) shtrih.Port {
	if c.Transport == "tcp" {
		return shtrih.NewTCPPort(c.Address, 5*time.Second)
	}
	return newReopeningPort(device.PortConfig{Driver: c.Driver, Name: c.Port.Port, VID: c.VID, PID: c.PID, Serial: c.Serial, Baud: c.Baud})
}

// shiftRenewed is the event of an automatic Z report: the shift was over 24
// hours, so the register closed it and opened a new one before a receipt.
type shiftRenewed struct {
	Event       string `json:"event"` // shift_renewed
	ClosedShift int    `json:"closed_shift"`
	OpenedShift int    `json:"opened_shift"`
}

// markingPolicy is the engine's marked-goods policy from the config (checked
// at load). The driver keeps its permissive default: the engine decides per
// group before anything is accepted.
func markingPolicy(c config.Marking, ffd string) sale.MarkingPolicy {
	word := func(v string) fiscal.OfflinePolicy {
		if v == "refuse" {
			return fiscal.RefuseUnchecked
		}
		return fiscal.SellUnchecked
	}
	p := sale.MarkingPolicy{Unchecked: word(c.Unchecked), Groups: map[string]fiscal.OfflinePolicy{}, NoChecks: ffd != "1.2"}
	for name, g := range c.Groups {
		p.Groups[name] = word(g.Unchecked)
	}
	for _, q := range c.Industry {
		d, _ := time.Parse(time.DateOnly, q.Date)
		p.Industry = append(p.Industry, fiscal.IndustryRequisite{FOIV: q.FOIV, Date: d, Number: q.Number, Value: q.Value})
	}
	return p
}

func registerOptions(c config.Register, j fiscal.Journal, log *slog.Logger) shtrih.Options {
	t := shtrih.DefaultTimeouts
	t.Byte = c.ByteTimeout.D()
	loc, err := c.Location()
	if err != nil { // checked at config load
		loc = time.Local
	}
	rows := map[fiscal.VATRate]byte{}
	for name, rate := range map[string]fiscal.VATRate{"vat5": fiscal.VAT5, "vat7": fiscal.VAT7, "vat5_105": fiscal.VAT5105, "vat7_107": fiscal.VAT7107} {
		if v, ok := c.VATRows[name]; ok {
			rows[rate] = byte(v)
		}
	}
	rlog := log.With("device", "register")
	return shtrih.Options{
		Password: uint32(c.Password), Journal: j, Timeouts: t,
		AutoOpenShift: c.AutoOpenShift, AutoCloseExpiredShift: c.AutoCloseExpiredShift,
		Logger: rlog, Location: loc, VATRows: rows, FFD: c.FFD,
		OnShiftRenewed: func(closed, opened int) {
			rlog.Warn("the shift was over 24 hours: Z report printed and a new shift opened before the receipt",
				"closed_shift", closed, "opened_shift", opened)
		},
	}
}

// run serves until ctx ends, then stops the API (in-flight requests get a grace
// period), the workers, and closes the store last, so nothing writes to a
// closed store.
func (a *app) run(ctx context.Context) error {
	a.log.Info("kassa-agent started", "version", version, "api", a.ln.Addr().String(), "store", a.store.Path(),
		"token_file", a.cfg.API.TokenFile, "scanner", a.cfg.Scanner.Enabled, "register", a.cfg.Register.Enabled,
		"smartpay", a.cfg.SmartPay.Enabled)
	workers, stop := context.WithCancel(context.Background())
	// serving ends with ctx, or earlier when a worker the agent cannot do
	// without fails: then the agent stops with an error and the service
	// manager starts it again, rather than taking payments it cannot finish.
	serving, failed := context.WithCancelCause(ctx)
	var wg sync.WaitGroup
	goRun := func(name string, critical bool, f func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := f(workers)
			if err == nil || workers.Err() != nil {
				return
			}
			a.log.Error("worker stopped", "worker", name, "err", err)
			if critical {
				failed(fmt.Errorf("%s: %w", name, err))
			}
		}()
	}
	goRun("outbox", true, a.disp.Run)
	goRun("payments", true, a.engine.Run)
	if a.register != nil {
		// A receipt a crash left open on the device is resolved here; a
		// payment's own receipt settles its journal entry itself first.
		goRun("register-check", false, func(ctx context.Context) error {
			a.recoverRegister(ctx)
			return a.watchRegister(ctx)
		})
	}
	goRun("idempotency-sweeper", false, func(ctx context.Context) error {
		return a.store.RunIdempotencySweeper(ctx, time.Hour, 72*time.Hour)
	})
	if a.sp != nil {
		goRun("smartpay-auth", false, a.smartpayAuth)
	}
	if a.metricsSrv != nil {
		goRun("metrics", false, a.metricsSrv.serve)
	}
	if a.scanner != nil {
		goRun("scanner", false, a.scanner.Supervise)
		goRun("scans", false, a.handleScans)
	}

	err := a.api.Serve(serving, a.ln, stopGrace)
	stop()
	wg.Wait()
	a.close()
	a.log.Info("store closed", "path", a.store.Path())
	if cause := context.Cause(serving); err == nil && ctx.Err() == nil && cause != nil {
		err = cause
	}
	return err
}

// handleScans commits Smart Pay codes one at a time, in scan order.
func (a *app) handleScans(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case c := <-a.scans:
			a.engine.Scan(ctx, c.Text, c.Source, c.At)
		}
	}
}

// smartpayAuth authenticates at start so the first commit does not pay for it.
func (a *app) smartpayAuth(ctx context.Context) error {
	for attempt := 0; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, 15*time.Second)
		err := a.sp.Authenticate(actx)
		cancel()
		if err == nil {
			a.log.Info("Smart Pay session established")
			return nil
		}
		a.log.Warn("Smart Pay authentication failed; will retry", "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(min(time.Duration(attempt+1)*5*time.Second, time.Minute)):
		}
	}
}

func (a *app) recoverRegister(ctx context.Context) {
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	rep, err := a.register.Recover(rctx)
	if err != nil {
		a.log.Error("register recovery at start failed; receipts are retried when it answers", "err", err)
		return
	}
	if len(rep.Completed)+len(rep.NotPrinted) > 0 || rep.CancelledOpen || rep.ContinuedPrint {
		a.log.Warn("register recovery", "completed", rep.Completed, "not_printed", rep.NotPrinted,
			"cancelled_open_receipt", rep.CancelledOpen, "continued_printing", rep.ContinuedPrint)
	}
}

// watchRegister refreshes the register state shown in status and diagnostics.
func (a *app) watchRegister(ctx context.Context) error {
	for {
		sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		st, err := meteredRegister{a.register, a.metrics}.Status(sctx)
		cancel()
		a.regState.mu.Lock()
		a.regState.checked = time.Now().UTC()
		if err != nil {
			a.regState.lastError = err.Error()
		} else {
			a.regState.status, a.regState.lastError = &st, ""
		}
		a.regState.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Minute):
		}
	}
}

// registerReport is the register's state for people: what fiscal.Status holds,
// with the readiness verdict as words.
type registerReport struct {
	Model        string    `json:"model"`
	Serial       string    `json:"serial"`
	FNNumber     string    `json:"fn_number"`
	FNExpiry     time.Time `json:"fn_expiry,omitzero"`
	RegNumber    string    `json:"reg_number"`
	ShiftOpen    bool      `json:"shift_open"`
	ShiftNumber  int       `json:"shift_number"`
	ShiftExpired bool      `json:"shift_over_24h"`
	PaperOut     bool      `json:"paper_out"`
	LastFD       uint32    `json:"last_fd"`
	OFDBacklog   int       `json:"ofd_backlog"`
	OFDOldest    time.Time `json:"ofd_oldest_unsent,omitzero"`
	Ready        bool      `json:"ready"`
	NotReady     string    `json:"not_ready,omitempty"`
}

func reportOf(s *fiscal.Status) *registerReport {
	if s == nil {
		return nil
	}
	r := &registerReport{Model: s.Model, Serial: s.Serial, FNNumber: s.FNNumber, FNExpiry: s.FNExpiry,
		RegNumber: s.RegNumber, ShiftOpen: s.ShiftOpen, ShiftNumber: s.ShiftNumber, ShiftExpired: s.ShiftExpired,
		PaperOut: s.PaperOut, LastFD: s.LastFD, OFDBacklog: s.OFDBacklog, OFDOldest: s.OFDOldest, Ready: s.Ready == nil}
	if s.Ready != nil {
		r.NotReady = s.Ready.Error()
	}
	return r
}

func (a *app) close() {
	if a.register != nil {
		_ = a.register.Close()
	}
	for _, p := range a.providers {
		p.Close()
	}
	if a.sp != nil {
		a.sp.Close()
	}
	if a.ln != nil {
		_ = a.ln.Close()
	}
	if a.metricsSrv != nil {
		_ = a.metricsSrv.ln.Close()
	}
	if err := a.store.Close(); err != nil {
		a.log.Error("closing the store failed", "err", err)
	}
}

type statusBody struct {
	Version   string         `json:"version"`
	Commit    string         `json:"commit"`
	GoVersion string         `json:"go_version"`
	Platform  string         `json:"platform"`
	StartedAt time.Time      `json:"started_at"`
	UptimeSec int64          `json:"uptime_seconds"`
	Store     storeStatus    `json:"store"`
	Outbox    *outboxStatus  `json:"outbox,omitempty"`
	Devices   map[string]any `json:"devices"`
	Providers map[string]any `json:"providers"`
	// Attention lists payments a person should look at: money taken but the
	// receipt not printed, or a payment the provider has not confirmed in time.
	Attention []*sale.Payment `json:"attention,omitempty"`
}

type storeStatus struct {
	Path      string `json:"path"`
	SizeBytes int64  `json:"size_bytes"`
	// Damaged is set when the store was found damaged at start and moved aside.
	Damaged *damaged `json:"damaged,omitempty"`
}

type damaged struct {
	MovedTo string    `json:"moved_to"`
	Reason  string    `json:"reason"`
	Found   time.Time `json:"found"`
}

type part struct {
	Configured bool `json:"configured"`
}

func (a *app) status(ctx context.Context) any {
	size, _ := a.store.Size()
	b := statusBody{
		Version: version, Commit: commit, GoVersion: runtime.Version(),
		Platform:  runtime.GOOS + "/" + runtime.GOARCH,
		StartedAt: a.started.UTC(), UptimeSec: int64(time.Since(a.started).Seconds()),
		Store:   storeStatus{Path: a.store.Path(), SizeBytes: size},
		Devices: map[string]any{"scanner": part{Configured: false}, "register": part{Configured: false}},
		Providers: map[string]any{
			"smartpay": part{Configured: a.cfg.SmartPay.Enabled},
			"alif":     part{Configured: a.cfg.Alif.Enabled},
			"alikassa": part{Configured: a.cfg.AliKassa.Enabled},
		},
	}
	if r := a.store.Recovered(); r != nil {
		b.Store.Damaged = &damaged{MovedTo: r.MovedTo, Reason: r.Reason, Found: r.Found}
	}
	if os, err := a.outboxStatus(); err == nil {
		b.Outbox = os
	}
	if a.scanner != nil {
		b.Devices["scanner"] = struct {
			Configured bool `json:"configured"`
			device.State
		}{true, a.scanner.State()}
	}
	if a.register != nil {
		a.regState.mu.Lock()
		b.Devices["register"] = struct {
			Configured bool            `json:"configured"`
			CheckedAt  time.Time       `json:"checked_at,omitzero"`
			Status     *registerReport `json:"status,omitempty"`
			LastError  string          `json:"last_error,omitempty"`
		}{true, a.regState.checked, reportOf(a.regState.status), a.regState.lastError}
		a.regState.mu.Unlock()
	}
	if a.sp != nil {
		info := a.sp.Certificate()
		b.Providers["smartpay"] = struct {
			Configured bool              `json:"configured"`
			Cert       smartpay.CertInfo `json:"certificate"`
		}{true, info}
	}
	b.Attention, _ = a.engine.NeedAttention()
	return b
}
