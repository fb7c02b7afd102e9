package main

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"kassa-agent/agent/internal/sale"
	"kassa-agent/fiscal"
	"kassa-agent/payments"
	"kassa-agent/payments/smartpay"
)

// metrics is the agent's Prometheus registry: latency and errors of the calls
// the agent makes (counted as they happen, by the wrappers below) and the
// state it already keeps (read at scrape time by appCollector).
type metrics struct {
	reg         *prometheus.Registry
	providerDur *prometheus.HistogramVec
	providerErr *prometheus.CounterVec
	registerDur *prometheus.HistogramVec
	registerErr *prometheus.CounterVec
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		providerDur: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "kassa_provider_call_duration_seconds",
			Help: "Time of the agent's calls to payment providers, by provider and call.",
			// A call answers in tens of milliseconds; timeouts are seconds.
			Buckets: []float64{.025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"provider", "call"}),
		providerErr: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kassa_provider_call_errors_total",
			Help: "Failed calls to payment providers, by provider, call and error class.",
		}, []string{"provider", "call", "class"}),
		registerDur: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "kassa_register_command_duration_seconds",
			Help: "Time of the agent's commands to the fiscal register, by command.",
			// Printing a receipt takes seconds; a status question milliseconds.
			Buckets: []float64{.01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"command"}),
		registerErr: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kassa_register_command_errors_total",
			Help: "Failed commands to the fiscal register, by command and error class (the register error code without register_).",
		}, []string{"command", "class"}),
	}
	m.reg.MustRegister(m.providerDur, m.providerErr, m.registerDur, m.registerErr,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// handler serves the registry in the Prometheus text format. A collector
// that fails leaves its metrics out rather than the whole answer.
func (m *metrics) handler(log *slog.Logger) http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorHandling: promhttp.ContinueOnError,
		ErrorLog:      slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	})
}

// observeProvider records one provider call.
func (m *metrics) observeProvider(provider, call string, start time.Time, err error) {
	m.providerDur.WithLabelValues(provider, call).Observe(time.Since(start).Seconds())
	if err != nil {
		m.providerErr.WithLabelValues(provider, call, providerClass(err)).Inc()
	}
}

// observeRegister records one register command.
func (m *metrics) observeRegister(command string, start time.Time, err error) {
	m.registerDur.WithLabelValues(command).Observe(time.Since(start).Seconds())
	if err != nil {
		m.registerErr.WithLabelValues(command, registerClass(err)).Inc()
	}
}

// providerClass names an error by the provider contract's kinds: a few
// fixed words, never the message, so the label stays low-cardinality.
func providerClass(err error) string {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, payments.ErrAmbiguous):
		return "ambiguous"
	case errors.Is(err, payments.ErrUnavailable):
		return "unavailable"
	case errors.Is(err, payments.ErrUnauthorized):
		return "unauthorized"
	case errors.Is(err, payments.ErrNotFound):
		return "not_found"
	case errors.Is(err, payments.ErrRejected):
		return "rejected"
	}
	return "other"
}

// registerClass is the register's stable error code (fiscal.Codes) without
// its register_ prefix.
func registerClass(err error) string {
	var fe *fiscal.Error
	if errors.As(err, &fe) && fe.Code != "" {
		return strings.TrimPrefix(fe.Code, "register_")
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	}
	return "other"
}

// meteredRegister times the engine's commands to the register.
type meteredRegister struct {
	r sale.Register
	m *metrics
}

func (w meteredRegister) Status(ctx context.Context) (st fiscal.Status, err error) {
	start := time.Now()
	defer func() { w.m.observeRegister("status", start, err) }()
	return w.r.Status(ctx)
}

func (w meteredRegister) Ready(ctx context.Context) (err error) {
	start := time.Now()
	defer func() { w.m.observeRegister("ready", start, err) }()
	return w.r.Ready(ctx)
}

func (w meteredRegister) CheckReceipt(r fiscal.Receipt) error {
	// Checked locally, nothing is sent: its refusals are the POS's mistakes,
	// not the register's, so they are not counted.
	return w.r.CheckReceipt(r)
}

func (w meteredRegister) PrintReceipt(ctx context.Context, id string, r fiscal.Receipt) (doc fiscal.Document, err error) {
	start := time.Now()
	defer func() { w.m.observeRegister("print_receipt", start, err) }()
	return w.r.PrintReceipt(ctx, id, r)
}

func (w meteredRegister) Identity(ctx context.Context) (id fiscal.Identity, err error) {
	start := time.Now()
	defer func() { w.m.observeRegister("identity", start, err) }()
	return w.r.Identity(ctx)
}

func (w meteredRegister) OpenShiftAs(ctx context.Context, id string, c fiscal.Cashier) (doc fiscal.Document, err error) {
	start := time.Now()
	defer func() { w.m.observeRegister("shift_open", start, err) }()
	return w.r.OpenShiftAs(ctx, id, c)
}

func (w meteredRegister) CloseShiftAs(ctx context.Context, id string, c fiscal.Cashier) (doc fiscal.Document, err error) {
	start := time.Now()
	defer func() { w.m.observeRegister("shift_close", start, err) }()
	return w.r.CloseShiftAs(ctx, id, c)
}

func (w meteredRegister) XReport(ctx context.Context) (err error) {
	start := time.Now()
	defer func() { w.m.observeRegister("x_report", start, err) }()
	return w.r.XReport(ctx)
}

func (w meteredRegister) CashInOnce(ctx context.Context, id string, amount int64) (doc fiscal.Document, err error) {
	start := time.Now()
	defer func() { w.m.observeRegister("cash_in", start, err) }()
	return w.r.CashInOnce(ctx, id, amount)
}

func (w meteredRegister) CashOutOnce(ctx context.Context, id string, amount int64) (doc fiscal.Document, err error) {
	start := time.Now()
	defer func() { w.m.observeRegister("cash_out", start, err) }()
	return w.r.CashOutOnce(ctx, id, amount)
}

func (w meteredRegister) PrintCorrection(ctx context.Context, id string, c fiscal.Correction) (doc fiscal.Document, err error) {
	start := time.Now()
	defer func() { w.m.observeRegister("print_correction", start, err) }()
	return w.r.PrintCorrection(ctx, id, c)
}

func (w meteredRegister) PrintQR(ctx context.Context, text string) (err error) {
	start := time.Now()
	defer func() { w.m.observeRegister("print_qr", start, err) }()
	return w.r.PrintQR(ctx, text)
}

func (w meteredRegister) PrintCopy(ctx context.Context, fd uint32) (err error) {
	start := time.Now()
	defer func() { w.m.observeRegister("print_copy", start, err) }()
	return w.r.PrintCopy(ctx, fd)
}

func (w meteredRegister) LastDocument(ctx context.Context) (d fiscal.FoundDocument, err error) {
	start := time.Now()
	defer func() { w.m.observeRegister("last_document", start, err) }()
	return w.r.LastDocument(ctx)
}

func (w meteredRegister) FindDocument(ctx context.Context, fd uint32) (d fiscal.FoundDocument, err error) {
	start := time.Now()
	defer func() { w.m.observeRegister("find_document", start, err) }()
	return w.r.FindDocument(ctx, fd)
}

func (w meteredRegister) Info(ctx context.Context) (i fiscal.Info, err error) {
	start := time.Now()
	defer func() { w.m.observeRegister("info", start, err) }()
	return w.r.Info(ctx)
}

func (w meteredRegister) RecoverRegister(ctx context.Context) (rep fiscal.RecoveryReport, err error) {
	start := time.Now()
	defer func() { w.m.observeRegister("recover", start, err) }()
	return w.r.RecoverRegister(ctx)
}

func (w meteredRegister) PrintText(ctx context.Context, lines []string) (err error) {
	start := time.Now()
	defer func() { w.m.observeRegister("print_text", start, err) }()
	return w.r.PrintText(ctx, lines)
}

// meteredSmartPay times the engine's calls to Smart Pay.
type meteredSmartPay struct {
	s sale.SmartPay
	m *metrics
}

func (w meteredSmartPay) obs(call string, start time.Time, err error) {
	w.m.observeProvider(sale.ProviderSmartPay, call, start, err)
}

func (w meteredSmartPay) Commit(ctx context.Context, code, kassaPurchaseID string) (id string, err error) {
	start := time.Now()
	defer func() { w.obs("commit", start, err) }()
	return w.s.Commit(ctx, code, kassaPurchaseID)
}

func (w meteredSmartPay) Release(ctx context.Context, purchaseID string, amount int64) (st smartpay.Status, err error) {
	start := time.Now()
	defer func() { w.obs("release", start, err) }()
	return w.s.Release(ctx, purchaseID, amount)
}

func (w meteredSmartPay) Status(ctx context.Context, purchaseID string) (st smartpay.Status, err error) {
	start := time.Now()
	defer func() { w.obs("status", start, err) }()
	return w.s.Status(ctx, purchaseID)
}

func (w meteredSmartPay) Confirm(ctx context.Context, purchaseID string) (err error) {
	start := time.Now()
	defer func() { w.obs("confirm", start, err) }()
	return w.s.Confirm(ctx, purchaseID)
}

func (w meteredSmartPay) Fiscal(ctx context.Context, d smartpay.FiscalData) (err error) {
	start := time.Now()
	defer func() { w.obs("fiscal", start, err) }()
	return w.s.Fiscal(ctx, d)
}

func (w meteredSmartPay) Cancel(ctx context.Context, purchaseID string) (err error) {
	start := time.Now()
	defer func() { w.obs("cancel", start, err) }()
	return w.s.Cancel(ctx, purchaseID)
}

// meteredProvider times a hosted-page provider's calls. It has every
// optional method; wrapProvider shows only those the provider has, because
// the engine finds what a provider can do by type assertion.
type meteredProvider struct {
	p payments.Provider
	m *metrics
}

// wrapProvider meters p and keeps exactly p's optional interfaces.
func (m *metrics) wrapProvider(p payments.Provider) payments.Provider {
	w := &meteredProvider{p: p, m: m}
	var o optional
	if _, ok := p.(payments.Finder); ok {
		o.finder = w
	}
	if _, ok := p.(payments.Canceler); ok {
		o.canceler = w
	}
	if _, ok := p.(payments.Refunder); ok {
		o.refunder = w
	}
	if _, ok := p.(payments.Verifier); ok {
		o.verifier = w
	}
	if _, ok := p.(payments.Prober); ok {
		o.prober = w
	}
	return withOptional(w, o)
}

func (w *meteredProvider) obs(call string, start time.Time, err error) {
	w.m.observeProvider(w.p.Name(), call, start, err)
}

func (w *meteredProvider) Name() string { return w.p.Name() }

// Check is local validation of the POS's request: not a provider call.
func (w *meteredProvider) Check(o payments.Order) error { return w.p.Check(o) }

func (w *meteredProvider) Create(ctx context.Context, o payments.Order) (ref payments.Ref, err error) {
	start := time.Now()
	defer func() { w.obs("create", start, err) }()
	return w.p.Create(ctx, o)
}

func (w *meteredProvider) Status(ctx context.Context, r payments.Ref) (st payments.Status, err error) {
	start := time.Now()
	defer func() { w.obs("status", start, err) }()
	return w.p.Status(ctx, r)
}

func (w *meteredProvider) Find(ctx context.Context, orderID string) (ref payments.Ref, st payments.Status, err error) {
	start := time.Now()
	defer func() { w.obs("find", start, err) }()
	return w.p.(payments.Finder).Find(ctx, orderID)
}

func (w *meteredProvider) Cancel(ctx context.Context, r payments.Ref) (err error) {
	start := time.Now()
	defer func() { w.obs("cancel", start, err) }()
	return w.p.(payments.Canceler).Cancel(ctx, r)
}

func (w *meteredProvider) Refund(ctx context.Context, r payments.Ref, amount payments.Amount) (st payments.Status, err error) {
	start := time.Now()
	defer func() { w.obs("refund", start, err) }()
	return w.p.(payments.Refunder).Refund(ctx, r, amount)
}

func (w *meteredProvider) FullRefundOnly() bool { return w.p.(payments.Refunder).FullRefundOnly() }

func (w *meteredProvider) VerifyNotice(h http.Header, query url.Values, body []byte) (ref payments.Ref, err error) {
	// Local signature check of a notification: its refusals are counted
	// (forged or misconfigured notices), its time is not a provider call's.
	ref, err = w.p.(payments.Verifier).VerifyNotice(h, query, body)
	if err != nil {
		w.m.providerErr.WithLabelValues(w.p.Name(), "verify_notice", providerClass(err)).Inc()
	}
	return ref, err
}

func (w *meteredProvider) Probe(ctx context.Context) (err error) {
	start := time.Now()
	defer func() { w.obs("probe", start, err) }()
	return w.p.(payments.Prober).Probe(ctx)
}

// appCollector reads, at scrape time, what the agent already keeps: the
// payments and the outbox in the store, the devices' last state, the Smart Pay
// certificate. Nothing here sends a device or a provider anything.
type appCollector struct{ a *app }

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

var (
	descPayments      = desc("kassa_payments", "Payments in the store, by provider and state.", "provider", "state")
	descOwed          = desc("kassa_receipts_owed", "Payments whose money is taken and whose receipt has not printed yet.")
	descOwedAge       = desc("kassa_receipt_owed_oldest_age_seconds", "Age of the oldest payment whose receipt is owed; 0 when none.")
	descOutPending    = desc("kassa_outbox_pending_messages", "Outbox messages (provider confirmations, fiscal data) not yet delivered and not parked.")
	descOutOldest     = desc("kassa_outbox_oldest_pending_age_seconds", "Age of the oldest pending outbox message; 0 when none.")
	descOutParked     = desc("kassa_outbox_parked_messages", "Outbox messages parked for a technician (kassa-agent outbox).")
	descConnected     = desc("kassa_device_connected", "1 when the device answered its last check, 0 when not.", "device")
	descRegChecked    = desc("kassa_register_last_check_timestamp_seconds", "When the agent last asked the register its status (Unix time).")
	descRegReady      = desc("kassa_register_ready", "1 when the register's last status said a receipt can be printed.")
	descPaperOut      = desc("kassa_register_paper_out", "1 when the register's last status said the paper is out.")
	descFNExpiry      = desc("kassa_fn_expiry_timestamp_seconds", "When the fiscal drive (FN) expires (Unix time), from the register's last status; days left = (this - time()) / 86400.")
	descOFDUnsent     = desc("kassa_ofd_unsent_documents", "Fiscal documents the FN has not sent to the OFD yet.")
	descOFDOldest     = desc("kassa_ofd_oldest_unsent_age_seconds", "Age of the oldest document not sent to the OFD; 0 when none.")
	descShiftOpen     = desc("kassa_shift_open", "1 when a shift is open on the register.")
	descFNWarning     = desc("kassa_fn_warning", "1 when the FN raises the warning (FF01h): replace_urgently, replace_soon, memory_full, ofd_timeout, critical.", "warning")
	descShiftOver24h  = desc("kassa_shift_over_24h", "1 when the open shift is older than 24 hours (a Z report is due).")
	descShiftNumber   = desc("kassa_shift_number", "Number of the register's current (or last) shift.")
	descCertExpiry    = desc("kassa_smartpay_certificate_expiry_timestamp_seconds", "When the Smart Pay client certificate expires (Unix time); days left = (this - time()) / 86400.")
	descStoreSize     = desc("kassa_store_size_bytes", "Size of the store file (kassa.db).")
	descBuild         = desc("kassa_build_info", "The agent's build; always 1.", "version", "commit", "goversion")
	descScrapeFailure = desc("kassa_metrics_read_errors", "1 when this scrape could not read part of the agent's state (see the agent log).", "part")
)

func (c appCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descPayments, descOwed, descOwedAge, descOutPending, descOutOldest, descOutParked,
		descConnected, descRegChecked, descRegReady, descPaperOut, descFNExpiry, descOFDUnsent, descOFDOldest,
		descShiftOpen, descFNWarning, descShiftOver24h, descShiftNumber, descCertExpiry, descStoreSize, descBuild, descScrapeFailure} {
		ch <- d
	}
}

func gauge(ch chan<- prometheus.Metric, d *prometheus.Desc, v float64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// unixSeconds is t as Prometheus keeps times: seconds since the epoch.
// Expiries are given as times, not days left, because Prometheus's base unit
// is the second and time() does the subtraction in a rule.
func unixSeconds(t time.Time) float64 { return float64(t.UnixMilli()) / 1000 }

// ageSeconds is now - t, 0 for the zero time (nothing waiting).
func ageSeconds(now, t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return max(now.Sub(t).Seconds(), 0)
}

func (c appCollector) Collect(ch chan<- prometheus.Metric) {
	a := c.a
	now := time.Now()
	failed := func(part string, err error) {
		a.log.Warn("metrics: reading the agent's state failed", "part", part, "err", err)
		gauge(ch, descScrapeFailure, 1, part)
	}
	gauge(ch, descBuild, 1, version, commit, runtime.Version())

	if counts, err := a.engine.Counts(); err != nil {
		failed("payments", err)
	} else {
		// Every state of every enabled provider, zeros too, so a rule
		// compares against a series that exists.
		for _, p := range c.enabledProviders() {
			if counts.ByState[p] == nil {
				counts.ByState[p] = map[payments.State]int{}
			}
		}
		for p, byState := range counts.ByState {
			for _, s := range payments.States() {
				gauge(ch, descPayments, float64(byState[s]), p, string(s))
			}
		}
		gauge(ch, descOwed, float64(counts.ReceiptsOwed))
		gauge(ch, descOwedAge, ageSeconds(now, counts.OldestOwed))
	}

	if st, err := a.store.OutboxStats(); err != nil {
		failed("outbox", err)
	} else {
		gauge(ch, descOutPending, float64(st.Pending))
		gauge(ch, descOutOldest, ageSeconds(now, st.OldestPending))
		gauge(ch, descOutParked, float64(st.Parked))
	}

	if a.scanner != nil {
		gauge(ch, descConnected, boolGauge(a.scanner.State().Connected), "scanner")
	}
	if a.register != nil {
		a.regState.mu.Lock()
		checked, last, lastErr := a.regState.checked, a.regState.status, a.regState.lastError
		a.regState.mu.Unlock()
		gauge(ch, descConnected, boolGauge(!checked.IsZero() && lastErr == "" && last != nil), "register")
		if !checked.IsZero() {
			gauge(ch, descRegChecked, unixSeconds(checked))
		}
		// The register's figures are from its last good answer; while it is
		// unreachable they stay as they were, and kassa_device_connected
		// says so.
		if last != nil {
			gauge(ch, descRegReady, boolGauge(last.Ready == nil))
			gauge(ch, descPaperOut, boolGauge(last.PaperOut))
			if !last.FNExpiry.IsZero() {
				gauge(ch, descFNExpiry, unixSeconds(last.FNExpiry))
			}
			gauge(ch, descOFDUnsent, float64(last.OFDBacklog))
			gauge(ch, descOFDOldest, ageSeconds(now, last.OFDOldest))
			gauge(ch, descShiftOpen, boolGauge(last.ShiftOpen))
			w := last.FNWarnings
			for name, on := range map[string]bool{"replace_urgently": w.ReplaceUrgently, "replace_soon": w.ReplaceSoon,
				"memory_full": w.MemoryFull, "ofd_timeout": w.OFDTimeout, "critical": w.Critical} {
				gauge(ch, descFNWarning, boolGauge(on), name)
			}
			gauge(ch, descShiftOver24h, boolGauge(last.ShiftExpired))
			gauge(ch, descShiftNumber, float64(last.ShiftNumber))
		}
	}
	if a.sp != nil {
		gauge(ch, descCertExpiry, unixSeconds(a.sp.Certificate().NotAfter))
	}
	if size, err := a.store.Size(); err != nil {
		failed("store", err)
	} else {
		gauge(ch, descStoreSize, float64(size))
	}
}

func (c appCollector) enabledProviders() []string {
	var out []string
	if c.a.sp != nil {
		out = append(out, sale.ProviderSmartPay)
	}
	for _, p := range c.a.providers {
		out = append(out, p.Name())
	}
	return out
}

// metricsServer is the second address of metrics.listen: /metrics and
// nothing else, so the payment API stays on loopback.
type metricsServer struct {
	ln    net.Listener
	srv   *http.Server
	token string
}

// openMetricsListener opens metrics.listen, reading its token file when one
// is configured; a configured but empty or missing file stops the start.
func openMetricsListener(listen, tokenFile string, h http.Handler, log *slog.Logger) (*metricsServer, error) {
	ms := &metricsServer{}
	if tokenFile != "" {
		b, err := os.ReadFile(tokenFile)
		if err != nil {
			return nil, fmt.Errorf("metrics.token_file: %w", err)
		}
		if ms.token = strings.TrimSpace(string(b)); ms.token == "" {
			return nil, fmt.Errorf("metrics.token_file %s is empty: write the token Prometheus sends, or set token_file = \"\"", tokenFile)
		}
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("metrics address cannot listen on %s (is another program using the port?): %w", listen, err)
	}
	ms.ln = ln
	if host, _, _ := net.SplitHostPort(listen); !isLoopbackHost(host) {
		log.Warn("metrics are served on a non-loopback address as configured (metrics.listen); it serves /metrics only, the payment API stays on loopback",
			"listen", ln.Addr().String(), "token", ms.token != "")
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", ms.guard(h))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "not found: this address serves GET /metrics only", http.StatusNotFound)
	})
	ms.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: time.Minute, MaxHeaderBytes: 16 << 10,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	return ms, nil
}

func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (ms *metricsServer) guard(h http.Handler) http.Handler {
	if ms.token == "" {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") ||
			subtle.ConstantTimeCompare([]byte(strings.TrimLeft(tok, " ")), []byte(ms.token)) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="kassa-agent metrics"`)
			http.Error(w, "unauthorized: send Authorization: Bearer <token from metrics.token_file>", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// serve answers until ctx ends; a scrape in flight gets a few seconds.
func (ms *metricsServer) serve(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- ms.srv.Serve(ms.ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("metrics address: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := ms.srv.Shutdown(sctx); err != nil {
		_ = ms.srv.Close()
	}
	return nil
}

// openMetrics serves /metrics on the API port (behind the API token, like
// every call) and, when metrics.listen is set, on its own address.
func (a *app) openMetrics() error {
	a.metrics.reg.MustRegister(appCollector{a})
	h := a.metrics.handler(a.log)
	a.api.Handle("GET /metrics", h.ServeHTTP)
	if a.cfg.Metrics.Listen == "" {
		return nil
	}
	ms, err := openMetricsListener(a.cfg.Metrics.Listen, a.cfg.Metrics.TokenFile, h, a.log)
	if err != nil {
		return err
	}
	a.metricsSrv = ms
	return nil
}

func (w meteredRegister) CheckMarking(ctx context.Context, q fiscal.MarkingRequest) (r fiscal.MarkingResult, err error) {
	start := time.Now()
	defer func() { w.m.observeRegister("check_marking", start, err) }()
	return w.r.CheckMarking(ctx, q)
}

func (w meteredRegister) AcceptMarking(ctx context.Context, r fiscal.MarkingResult) (err error) {
	start := time.Now()
	defer func() { w.m.observeRegister("accept_marking", start, err) }()
	return w.r.AcceptMarking(ctx, r)
}

func (w meteredRegister) DeclineMarking(ctx context.Context) (err error) {
	start := time.Now()
	defer func() { w.m.observeRegister("decline_marking", start, err) }()
	return w.r.DeclineMarking(ctx)
}

func (w meteredRegister) ClearMarking(ctx context.Context) (err error) {
	start := time.Now()
	defer func() { w.m.observeRegister("clear_marking", start, err) }()
	return w.r.ClearMarking(ctx)
}
