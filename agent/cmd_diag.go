package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"

	"kassa-agent/agent/internal/config"
	"kassa-agent/device"
	"kassa-agent/fiscal/shtrih"
	"kassa-agent/payments"
	"kassa-agent/payments/smartpay"
	"kassa-agent/queue"
)

// Diagnostic levels. A warning does not fail diag: the till works today.
const (
	levelOK   = "ok"
	levelWarn = "warn"
	levelFail = "fail"
)

// How long diag waits for a device or provider before calling it a failure.
const (
	diagRegisterTimeout = 10 * time.Second
	diagAuthTimeout     = 10 * time.Second
)

// Thresholds for warnings, chosen so a technician has time to act.
const (
	fnWarnBefore     = 30 * 24 * time.Hour // order a new fiscal drive
	ofdWarnAfter     = 3 * 24 * time.Hour  // the FN blocks after 30 days unsent
	pendingWarnAfter = time.Hour           // deliveries are not getting through
)

// Exit codes of diag: a script or a monitoring agent tells "works, but look"
// from "broken" without parsing the list.
const (
	exitDiagWarn = 1 // at least one ⚠, no ✗
	exitDiagFail = 2 // at least one ✗
)

// Free space under the data directory: below diagMinFreeMiB (the --min-free-mb
// default) it is time to clean up; below diagFailFree the store may not grow
// by the next payment's records.
const (
	diagMinFreeMiB = 1024
	diagFailFree   = 64 << 20
)

// diagSlowAfter is when diag says which check it waits for, so a technician
// does not take a DNS timeout for a hang.
const diagSlowAfter = time.Second

// diagLabelWidth aligns the details of the human check list.
const diagLabelWidth = 15

// diagResult is one line of the check list; --json prints a list of them.
type diagResult struct {
	Check  string `json:"check"`
	OK     bool   `json:"ok"`
	Level  string `json:"level"`
	Detail string `json:"detail"`
	Hint   string `json:"hint"`
}

func cmdDiag(args []string, out, errOut io.Writer) int {
	if len(args) > 0 && args[0] == "scanner" {
		return cmdDiagScanner(args[1:], out, errOut)
	}
	fs := flags("diag", errOut)
	path := configFlag(fs)
	asJSON := fs.Bool("json", false, "print the results as a JSON list")
	minFree := fs.Uint64("min-free-mb", diagMinFreeMiB, "warn when the data directory's disk has less free space (MiB)")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	if !noArgs(fs, errOut) {
		return exitUsage
	}
	d := &diagnosis{now: time.Now, log: slog.New(slog.DiscardHandler), minFree: *minFree << 20, progress: errOut}
	d.run(context.Background(), *path)
	if *asJSON {
		if err := writeJSON(out, d.results); err != nil {
			return fail(errOut, err)
		}
	} else {
		d.writeText(out)
	}
	return d.exitCode()
}

// diagnosis collects the results of one diag run.
type diagnosis struct {
	now      func() time.Time
	log      *slog.Logger
	minFree  uint64            // bytes; 0 = diagMinFreeMiB
	progress io.Writer         // where "still checking" notes go; nil = nowhere
	enum     device.Enumerator // the serial ports present; nil = the system's
	mu       sync.Mutex
	results  []diagResult
}

// slow runs one check and, if it takes over diagSlowAfter, says what diag is
// waiting for (on the progress writer, so --json stays clean).
func (d *diagnosis) slow(what string, check func()) {
	if d.progress == nil {
		check()
		return
	}
	start := time.Now()
	t := time.AfterFunc(diagSlowAfter, func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		fmt.Fprintf(d.progress, "… %s: still checking\n", what)
	})
	check()
	if !t.Stop() {
		d.mu.Lock()
		fmt.Fprintf(d.progress, "… %s: done in %s\n", what, time.Since(start).Round(100*time.Millisecond))
		d.mu.Unlock()
	}
}

func (d *diagnosis) add(level, check, detail, hint string) {
	if level == levelOK {
		hint = ""
	}
	d.results = append(d.results, diagResult{Check: check, OK: level != levelFail, Level: level, Detail: detail, Hint: hint})
}

func (d *diagnosis) ok(check, detail string)         { d.add(levelOK, check, detail, "") }
func (d *diagnosis) warn(check, detail, hint string) { d.add(levelWarn, check, detail, hint) }
func (d *diagnosis) fail(check, detail, hint string) { d.add(levelFail, check, detail, hint) }

// exitCode is 0 when every check passed, 1 with warnings, 2 with a failure.
func (d *diagnosis) exitCode() int {
	code := exitOK
	for _, r := range d.results {
		switch r.Level {
		case levelFail:
			return exitDiagFail
		case levelWarn:
			code = exitDiagWarn
		}
	}
	return code
}

func (d *diagnosis) writeText(w io.Writer) {
	marks := map[string]string{levelOK: "✓", levelWarn: "⚠", levelFail: "✗"}
	indent := strings.Repeat(" ", diagLabelWidth+3)
	var failed, warned int
	for _, r := range d.results {
		label := strings.ReplaceAll(r.Check, "_", " ")
		detail := strings.ReplaceAll(strings.TrimSpace(r.Detail), "\n", "\n"+indent)
		fmt.Fprintf(w, "%s %-*s %s\n", marks[r.Level], diagLabelWidth, label, detail)
		if r.Hint != "" {
			fmt.Fprintf(w, "%s→ %s\n", indent, r.Hint)
		}
		switch r.Level {
		case levelFail:
			failed++
		case levelWarn:
			warned++
		}
	}
	fmt.Fprintf(w, "\n%d %s: %d failed, %d %s\n", len(d.results), plural(len(d.results), "check", "checks"),
		failed, warned, plural(warned, "warning", "warnings"))
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// run goes through the checks in the order a technician fixes things: the
// config first (nothing else can be checked without it), then the store, the
// devices and the providers.
func (d *diagnosis) run(ctx context.Context, path string) {
	cfg, err := config.Load(path)
	if err != nil {
		hint := "fix what the message names; kassa-agent config example prints every key with its default"
		if errors.Is(err, os.ErrNotExist) {
			hint = "pass --config FILE if the configuration is elsewhere"
		}
		d.fail("config", err.Error(), hint)
		return
	}
	d.ok("config", path)
	d.dataDir(cfg)
	var remote *agentView
	d.slow("the store (or the running agent)", func() { remote = d.store(ctx, cfg) })
	d.serialPorts(cfg)
	switch {
	case remote != nil:
		d.remoteScanner(cfg, remote)
		d.remoteRegister(cfg, remote)
	case !d.agentUnreachable():
		d.scanner(cfg)
		d.slow("the register", func() { d.register(ctx, cfg) })
	}
	d.smartPay(ctx, cfg, remote == nil && !d.agentUnreachable())
	d.hostedProviders(ctx, cfg, remote == nil && !d.agentUnreachable())
	if remote != nil {
		d.attention(remote)
	}
}

func (d *diagnosis) agentUnreachable() bool {
	for _, r := range d.results {
		if r.Check == "agent" {
			return r.Level == levelFail
		}
	}
	return false
}

func (d *diagnosis) dataDir(cfg config.Config) {
	dir := cfg.Store.Dir
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		d.warn("data_dir", dir+" does not exist yet", "the agent creates it at its first start; if it has run before, check store.dir in the config")
		return
	case err != nil:
		d.fail("data_dir", err.Error(), "the agent's user must be able to reach "+dir)
		return
	case !fi.IsDir():
		d.fail("data_dir", dir+" is not a directory", "point store.dir at a directory")
		return
	}
	f, err := os.CreateTemp(dir, ".diag-*")
	if err != nil {
		d.fail("data_dir", dir+" is not writable: "+err.Error(), "the agent's user must own it (chown it on Linux, give it Modify rights on Windows)")
		return
	}
	name := f.Name()
	_ = f.Close()
	_ = os.Remove(name)
	free, err := freeBytes(dir)
	if err != nil {
		d.warn("data_dir", dir+": writable; free space unknown: "+err.Error(), "check the disk's free space by hand")
		return
	}
	minFree := d.minFree
	if minFree == 0 {
		minFree = diagMinFreeMiB << 20
	}
	detail := fmt.Sprintf("%s: writable, %s free", dir, sizeText(int64(min(free, 1<<62))))
	switch {
	case free < diagFailFree:
		d.fail("data_dir", detail, "the disk is full: the store cannot record the next payment; free space (old logs, downloads) now")
	case free < minFree:
		d.warn("data_dir", detail+fmt.Sprintf(" (under %s)", sizeText(int64(min(minFree, 1<<62)))),
			"the disk is filling up: free space (old logs, downloads) before the store cannot grow")
	default:
		d.ok("data_dir", detail)
	}
}

// agentView is what a running agent told diag about itself.
type agentView struct {
	status remoteStatus
	outbox outboxList
}

// remoteStatus is the part of GET /v1/status diag reads.
type remoteStatus struct {
	Version   string        `json:"version"`
	UptimeSec int64         `json:"uptime_seconds"`
	Store     storeStatus   `json:"store"`
	Outbox    *outboxStatus `json:"outbox"`
	Devices   struct {
		Scanner struct {
			Configured bool `json:"configured"`
			device.State
		} `json:"scanner"`
		Register struct {
			Configured bool            `json:"configured"`
			CheckedAt  time.Time       `json:"checked_at"`
			Status     *registerReport `json:"status"`
			LastError  string          `json:"last_error"`
		} `json:"register"`
	} `json:"devices"`
	Attention []struct {
		ID     string `json:"id"`
		State  string `json:"state"`
		Amount int64  `json:"amount"`
		Fiscal struct {
			State string `json:"state"`
			Error *struct {
				Message string `json:"message"`
			} `json:"error"`
		} `json:"fiscal"`
		Error *struct {
			Message string `json:"message"`
		} `json:"error"`
	} `json:"attention"`
}

// store checks the store and the outbox. When the agent holds the store it
// asks the agent and returns what it said; otherwise it opens the file.
func (d *diagnosis) store(ctx context.Context, cfg config.Config) *agentView {
	p := cfg.StorePath()
	if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
		d.ok("agent", "not running")
		d.warn("store", "no store at "+p+" yet", "the agent creates it at its first start; if it has run before, check store.dir in the config")
		return nil
	}
	st, err := queue.Open(p, queue.Options{OpenTimeout: storeProbeTimeout, OnCorrupt: queue.CorruptRefuse})
	if errors.Is(err, queue.ErrLocked) {
		return d.runningAgent(ctx, cfg)
	}
	d.ok("agent", "not running: the store and the devices are checked directly")
	var ce *queue.CorruptError
	switch {
	case errors.As(err, &ce):
		d.fail("store", p+" is damaged: "+ce.Reason,
			"keep a copy of the file for support; store.on_corrupt = \"move_aside\" lets the agent start on a new store")
		return nil
	case errors.Is(err, queue.ErrSchemaTooNew):
		d.fail("store", err.Error(), "a newer kassa-agent wrote this store: install that version again")
		return nil
	case err != nil:
		d.fail("store", err.Error(), "check the data directory's permissions and free disk space")
		return nil
	}
	defer st.Close()
	if err := st.Check(); err != nil {
		d.fail("store", p+" failed the integrity check: "+err.Error(),
			"keep a copy of the file for support; store.on_corrupt = \"move_aside\" lets the agent start on a new store")
		return nil
	}
	size, _ := st.Size()
	d.ok("store", fmt.Sprintf("%s (%s): integrity ok", p, sizeText(size)))
	ob, err := storeOutboxStatus(st, 20)
	if err != nil {
		d.fail("outbox", err.Error(), "the store cannot be read; see the store line")
		return nil
	}
	d.outbox(ob, ob.ParkedMessages)
	return nil
}

func (d *diagnosis) runningAgent(ctx context.Context, cfg config.Config) *agentView {
	const newToken = "restart the agent: it reads the token file at start and makes a new token if there is none; then give the token in the file to the POS"
	c, err := newLocalClient(cfg)
	if errors.Is(err, os.ErrNotExist) {
		d.fail("agent", "running (it holds the store), but its API token file "+cfg.API.TokenFile+" is missing (deleted while the agent runs?)", newToken)
		return nil
	}
	if err != nil {
		d.fail("agent", "running (it holds the store), but "+err.Error(), "run diag as root or as the agent's user")
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	var v agentView
	if err := c.call(ctx, "GET", "/v1/status", &v.status); remoteCode(err) == "unauthorized" {
		d.fail("agent", "running, but it refused the token in "+cfg.API.TokenFile+": the file does not match the token the agent started with (it was changed or replaced while the agent runs)", newToken)
		return nil
	} else if err != nil {
		d.fail("agent", "the store is locked, so the agent runs, but it does not answer: "+err.Error(),
			"it may be starting or stuck: see its log (journalctl -u kassa-agent, or the Windows event log)")
		return nil
	}
	d.ok("agent", fmt.Sprintf("agent running: version %s, up %s, API %s", v.status.Version,
		ago(time.Duration(v.status.UptimeSec)*time.Second), c.base))
	if dm := v.status.Store.Damaged; dm != nil {
		d.fail("store", fmt.Sprintf("the store was damaged (%s) and moved to %s on %s; the agent runs on a new one",
			dm.Reason, dm.MovedTo, dm.Found.Local().Format("2006-01-02 15:04")),
			"payments recorded only in the damaged file need a technician: keep it for support")
	} else {
		d.ok("store", fmt.Sprintf("%s (%s): held by the agent", v.status.Store.Path, sizeText(v.status.Store.SizeBytes)))
	}
	if err := c.call(ctx, "GET", "/v1/outbox?filter=parked", &v.outbox); err != nil {
		d.fail("outbox", "the agent did not list its outbox: "+err.Error(), "see the agent's log")
	} else {
		d.outbox(&v.outbox.outboxStatus, v.outbox.Messages)
	}
	return &v
}

func (d *diagnosis) outbox(st *outboxStatus, parked []outboxMessage) {
	age := time.Duration(st.OldestPendingAge * float64(time.Second))
	detail := fmt.Sprintf("pending %d", st.Pending)
	if st.Pending > 0 {
		detail += fmt.Sprintf(" (oldest %s)", ago(age))
	}
	detail += fmt.Sprintf(", parked %d", st.Parked)
	switch {
	case st.Parked > 0:
		if len(parked) > 0 {
			m := parked[0]
			detail += fmt.Sprintf("; first parked: #%d %s: %s", m.ID, m.Kind, clip(oneLine(parkedWhy(m)), 120))
		}
		d.fail("outbox", detail, "kassa-agent outbox list")
	case st.Pending > 0 && age > pendingWarnAfter:
		d.warn("outbox", detail, "deliveries are not getting through: check the internet connection (kassa-agent outbox list --pending)")
	default:
		d.ok("outbox", detail)
	}
}

// serialPorts lists the ports present with their USB IDs and which
// configured device matches each; the scanner and register lines below say
// whether their port opens.
func (d *diagnosis) serialPorts(cfg config.Config) {
	l, err := device.ListPorts(d.enum, configuredDevices(cfg))
	if err != nil {
		d.warn("serial_ports", err.Error(), "the scanner and register checks below still try their ports")
		return
	}
	names := make([]string, 0, len(l.Ports))
	for _, p := range l.Ports {
		s := p.Name
		if p.USB {
			s += " (" + p.VID + ":" + p.PID
			if prod := strings.TrimSpace(p.Manufacturer + " " + p.Product); prod != "" {
				s += " " + prod
			}
			s += ")"
		}
		if len(p.Devices) > 0 {
			s += " = " + strings.Join(p.Devices, ", ")
		}
		names = append(names, s)
	}
	detail := "none found"
	if len(names) > 0 {
		detail = strings.Join(names, ", ")
	}
	var problems []string
	for _, dev := range l.Devices {
		switch {
		case len(dev.Ports) > 1, strings.HasPrefix(dev.Problem, "bad config"):
			problems = append(problems, dev.Role+" ("+dev.Want+"): "+dev.Problem)
		case len(dev.Ports) == 0:
			// A port the system does not list (a PTY, a driver without USB
			// data) can still open: the device's own line says.
			detail += "; " + dev.Role + " " + dev.Want + " not listed"
		}
	}
	if len(problems) > 0 {
		d.warn("serial_ports", detail+"; "+strings.Join(problems, "; "),
			"set the device's serial (or its port) in the config so it matches one port; kassa-agent ports shows them all")
		return
	}
	d.ok("serial_ports", detail)
}

// portHint says what to do about a serial port that does not open.
func portHint(err error) string {
	switch {
	case errors.Is(err, device.ErrPermission):
		if runtime.GOOS == "linux" {
			return "add the agent's user to the dialout group (usermod -aG dialout USER), then log in again or restart the service"
		}
		return "the agent's user may not open the port; run the service as a user that can"
	case errors.Is(err, device.ErrBusy):
		return "another program holds the port: close it (a vendor utility, a terminal, another kassa-agent)"
	default:
		return "check the cable and power; kassa-agent ports shows what is plugged in and which port the config names"
	}
}

func (d *diagnosis) scanner(cfg config.Config) {
	if !cfg.Scanner.Enabled {
		d.ok("scanner", "disabled in the config")
		return
	}
	pc := portConfig(cfg.Scanner.Port)
	name, err := device.Resolve(pc)
	if err != nil {
		d.fail("scanner", err.Error(), portHint(err))
		return
	}
	p, err := device.Open(pc)
	if err != nil {
		d.fail("scanner", err.Error(), portHint(err))
		return
	}
	_ = p.Close()
	d.ok("scanner", "present at "+name+" and opens")
}

func (d *diagnosis) remoteScanner(cfg config.Config, v *agentView) {
	s := v.status.Devices.Scanner
	switch {
	case !cfg.Scanner.Enabled || !s.Configured:
		d.ok("scanner", "disabled in the config")
	case s.Connected:
		d.ok("scanner", fmt.Sprintf("connected at %s since %s (the agent holds it)", s.Port, s.Since.Local().Format("2006-01-02 15:04")))
	default:
		detail := "the agent cannot open " + s.Want
		if s.LastError != "" {
			detail += ": " + s.LastError
		}
		d.fail("scanner", detail, portHint(errors.New(s.LastError)))
	}
}

func (d *diagnosis) register(ctx context.Context, cfg config.Config) {
	rc := cfg.Register
	if !rc.Enabled {
		d.ok("register", "disabled in the config")
		return
	}
	var port shtrih.Port
	if rc.Transport == "tcp" {
		c, err := shtrih.DialTCP(rc.Address, 5*time.Second)
		if err != nil {
			d.fail("register", err.Error(), "check the register is on and reachable at "+rc.Address+" (network cable, the IP address in its settings)")
			return
		}
		port = c
	} else {
		p, err := device.Open(portConfig(rc.Port))
		if err != nil {
			d.fail("register", err.Error(), portHint(err))
			return
		}
		if err := p.SetReadTimeout(100 * time.Millisecond); err != nil {
			_ = p.Close()
			d.fail("register", err.Error(), portHint(err))
			return
		}
		port = p
	}
	drv := shtrih.New(port, registerOptions(rc, nil, d.log))
	defer drv.Close()
	ctx, cancel := context.WithTimeout(ctx, diagRegisterTimeout)
	defer cancel()
	st, err := drv.Status(ctx)
	if err != nil {
		d.fail("register", "does not answer: "+err.Error(),
			"check that it is switched on, the cable, and register.baud against the register's own setting")
		return
	}
	d.registerReport(reportOf(&st), "")
	g, err := drv.Diagnose(ctx)
	if err != nil {
		d.fail("register_clock", "the register did not answer the diagnostic reads: "+err.Error(),
			"see the register line; run diag again once it answers")
		return
	}
	d.registerDiag(g)
	if st.ShiftOpen {
		d.shiftAge(ctx, drv, rc.AutoCloseExpiredShift)
	}
}

// shiftAge says how long the open shift has run. The FN keeps no open time in
// its status: Info finds the shift's opening report in the archive, which
// costs a few dozen reads, fine for a technician, too much for every minute.
func (d *diagnosis) shiftAge(ctx context.Context, drv *shtrih.Driver, autoClose bool) {
	info, err := drv.Info(ctx)
	switch {
	case err != nil:
		d.warn("shift", "its age could not be read: "+err.Error(), "run diag again; the register line above says whether it answers")
	case info.ShiftOpened.IsZero():
		d.warn("shift", fmt.Sprintf("%d open; its opening report was not found in the FN's recent documents", info.ShiftNumber),
			"close the shift (Z report) at the end of the day")
	case info.ShiftAge > 24*time.Hour && autoClose:
		d.warn("shift", fmt.Sprintf("%d open for %s, since %s", info.ShiftNumber, roundAge(info.ShiftAge), info.ShiftOpened.Local().Format("2006-01-02 15:04")),
			"the agent prints the Z report before the next receipt (register.auto_close_expired_shift); close the shift at the end of each day")
	case info.ShiftAge > 24*time.Hour:
		d.fail("shift", fmt.Sprintf("%d open for %s, since %s", info.ShiftNumber, roundAge(info.ShiftAge), info.ShiftOpened.Local().Format("2006-01-02 15:04")),
			"print a Z report (POST /v1/shift/close), or set register.auto_close_expired_shift = true")
	case info.ShiftAge > 20*time.Hour:
		d.warn("shift", fmt.Sprintf("%d open for %s, since %s", info.ShiftNumber, roundAge(info.ShiftAge), info.ShiftOpened.Local().Format("2006-01-02 15:04")),
			"close the shift (Z report) before it passes 24 hours")
	default:
		d.ok("shift", fmt.Sprintf("%d open for %s, since %s", info.ShiftNumber, roundAge(info.ShiftAge), info.ShiftOpened.Local().Format("15:04")))
	}
}

// roundAge is a shift's age as a person says it: minutes under two hours,
// whole hours after.
func roundAge(d time.Duration) string {
	if d < 2*time.Hour {
		return fmt.Sprintf("%d min", int(d/time.Minute))
	}
	return fmt.Sprintf("%d h", int(d/time.Hour))
}

func (d *diagnosis) remoteRegister(cfg config.Config, v *agentView) {
	r := v.status.Devices.Register
	switch {
	case !cfg.Register.Enabled || !r.Configured:
		d.ok("register", "disabled in the config")
	case r.Status != nil && r.LastError == "":
		d.registerReport(r.Status, " (as the agent saw it at "+r.CheckedAt.Local().Format("15:04:05")+")")
	case r.LastError != "":
		d.fail("register", "the agent cannot reach it: "+r.LastError,
			"check that it is switched on, the cable, and register.baud against the register's own setting")
	default:
		d.warn("register", "the agent has not checked it yet", "run diag again in a minute")
	}
}

// registerReport grades what the register said about itself.
func (d *diagnosis) registerReport(r *registerReport, seen string) {
	now := d.now()
	shift := "closed"
	switch {
	case r.ShiftExpired:
		shift = fmt.Sprintf("%d open for over 24 h", r.ShiftNumber)
	case r.ShiftOpen:
		shift = fmt.Sprintf("%d open", r.ShiftNumber)
	}
	paper := "paper ok"
	if r.PaperOut {
		paper = "paper OUT"
	}
	detail := fmt.Sprintf("%s, serial %s, reg. no %s, shift %s, %s%s", r.Model, r.Serial, dash(r.RegNumber), shift, paper, seen)
	switch {
	case r.PaperOut:
		d.fail("register", detail, "load receipt paper")
	case !r.Ready:
		hint := "see the register's display and manual"
		switch {
		case r.ShiftExpired:
			hint = "print a Z report on the register, or set register.auto_close_expired_shift = true"
		case !r.ShiftOpen:
			hint = "open a shift on the register, or set register.auto_open_shift = true"
		}
		d.fail("register", detail+": cannot print: "+r.NotReady, hint)
	case r.ShiftExpired:
		d.warn("register", detail, "the agent prints the Z report before the next sale (register.auto_close_expired_shift); close the shift at the end of each day")
	default:
		d.ok("register", detail)
	}

	switch left := r.FNExpiry.Sub(now); {
	case r.FNExpiry.IsZero():
		d.ok("fiscal_drive", "FN "+r.FNNumber+" (no expiry date reported)")
	case left <= 0:
		d.fail("fiscal_drive", fmt.Sprintf("FN %s expired on %s", r.FNNumber, r.FNExpiry.Format("2006-01-02")),
			"replace the fiscal drive and re-register the register with the tax service")
	case left <= fnWarnBefore:
		d.warn("fiscal_drive", fmt.Sprintf("FN %s expires on %s, in %d days", r.FNNumber, r.FNExpiry.Format("2006-01-02"), int(left.Hours()/24)),
			"order a new fiscal drive now: replacing it needs re-registration")
	default:
		d.ok("fiscal_drive", fmt.Sprintf("FN %s, valid until %s (%d days)", r.FNNumber, r.FNExpiry.Format("2006-01-02"), int(left.Hours()/24)))
	}

	switch {
	case r.OFDBacklog == 0:
		d.ok("ofd", "every document sent to the OFD")
	case !r.OFDOldest.IsZero() && now.Sub(r.OFDOldest) > ofdWarnAfter:
		d.warn("ofd", fmt.Sprintf("%d %s not sent to the OFD, the oldest since %s", r.OFDBacklog, plural(r.OFDBacklog, "document", "documents"), r.OFDOldest.Format("2006-01-02 15:04")),
			"check the register's internet connection and OFD settings: the FN blocks after 30 days of unsent documents")
	default:
		detail := fmt.Sprintf("%d %s waiting for the OFD", r.OFDBacklog, plural(r.OFDBacklog, "document", "documents"))
		if !r.OFDOldest.IsZero() {
			detail += ", the oldest for " + ago(now.Sub(r.OFDOldest))
		}
		d.ok("ofd", detail)
	}
}

// smartPay checks the certificate and key files, and, when live is set (the
// agent is not running), that the service accepts them.
func (d *diagnosis) smartPay(ctx context.Context, cfg config.Config, live bool) {
	sp := cfg.SmartPay
	if !sp.Enabled {
		d.ok("smartpay", "disabled in the config")
		return
	}
	good := true
	info, err := smartpay.LoadCertInfo(sp.CertFile)
	if err != nil {
		good = false
		d.fail("smartpay_cert", err.Error(), "smartpay.cert_file must name the PEM certificate Smart Pay issued for this till")
	} else {
		now := d.now()
		days := int(info.Left(now).Hours() / 24)
		until := info.NotAfter.Local().Format("2006-01-02")
		renew := "ask Smart Pay for a new client certificate and put it in " + sp.CertFile
		switch info.Expiry(now) {
		case smartpay.ExpiryOK:
			d.ok("smartpay_cert", fmt.Sprintf("%s, valid until %s (%d days)", info.Subject, until, days))
		case smartpay.ExpiryWarn:
			d.warn("smartpay_cert", fmt.Sprintf("%s expires on %s, in %d days", info.Subject, until, days), renew)
		case smartpay.ExpiryCritical:
			d.fail("smartpay_cert", fmt.Sprintf("%s expires on %s, in %s", info.Subject, until, ago(info.Left(now))), renew+" today")
		case smartpay.ExpiryExpired:
			good = false
			d.fail("smartpay_cert", fmt.Sprintf("%s expired on %s", info.Subject, until), renew)
		default:
			good = false
			d.fail("smartpay_cert", fmt.Sprintf("%s is not valid before %s", info.Subject, info.NotBefore.Local().Format("2006-01-02 15:04")),
				"check the system clock and time zone")
		}
	}
	if !d.keyFile(sp.KeyFile) {
		good = false
	}
	reached := true
	d.slow("smartpay: DNS, TCP, TLS to "+sp.BaseURL, func() { reached = d.reach(ctx, "smartpay_net", sp.BaseURL, sp.CAFile) })
	if !live || !good || !reached {
		return
	}
	c, err := newSmartPay(sp, d.log)
	if err != nil {
		d.fail("smartpay_auth", err.Error(), "the certificate and key do not load together: check they are a pair")
		return
	}
	defer c.Close()
	actx, cancel := context.WithTimeout(ctx, diagAuthTimeout)
	defer cancel()
	d.slow("smartpay: authenticating", func() { err = c.Authenticate(actx) })
	if err != nil {
		hint := "check the internet connection, DNS and firewall towards " + sp.BaseURL
		switch smartpay.ClassOf(err) {
		case smartpay.ClassUnauthorized:
			hint = "Smart Pay refused the certificate: check it is the one issued for this till and not revoked"
		case smartpay.ClassRejected:
			hint = "check smartpay.base_url"
		}
		d.fail("smartpay_auth", err.Error(), hint)
		return
	}
	d.ok("smartpay_auth", "authenticated at "+sp.BaseURL)
}

// hostedProviders checks each enabled hosted-page provider: its files load
// (token, keys, password), and, when live is set (the agent is not running),
// a harmless authenticated call goes through (Alif: a status question with
// the token; AliKassa: the signed account/info call).
func (d *diagnosis) hostedProviders(ctx context.Context, cfg config.Config, live bool) {
	ps, err := newProviders(cfg, d.log)
	if err != nil {
		name, _, _ := strings.Cut(err.Error(), ":")
		d.fail(name, err.Error(), "check the files named in ["+name+"]: they must exist, be readable by the agent's user and hold what the provider issued")
		return
	}
	for _, p := range ps {
		defer p.Close()
		apiURL := map[string]string{"alif": cfg.Alif.APIURL, "alikassa": cfg.AliKassa.APIURL}[p.Name()]
		reached := true
		d.slow(p.Name()+": DNS, TCP, TLS to "+apiURL, func() { reached = d.reach(ctx, p.Name()+"_net", apiURL, "") })
		if !live {
			d.ok(p.Name(), "files load; the running agent owns the connection")
			continue
		}
		if !reached {
			continue
		}
		actx, cancel := context.WithTimeout(ctx, diagAuthTimeout)
		var err error
		d.slow(p.Name()+": an authenticated call", func() { err = p.Probe(actx) })
		cancel()
		switch {
		case err == nil:
			d.ok(p.Name()+"_auth", "an authenticated call went through")
		case errors.Is(err, payments.ErrUnauthorized):
			d.fail(p.Name()+"_auth", err.Error(), "the provider refused our credentials: check the token or key pair and the account in ["+p.Name()+"]")
		case errors.Is(err, payments.ErrRejected):
			d.fail(p.Name()+"_auth", err.Error(), "check "+p.Name()+".api_url")
		default:
			d.fail(p.Name()+"_auth", err.Error(), "check the internet connection, DNS and firewall towards the provider ("+p.Name()+".api_url)")
		}
	}
}

// keyFile checks the private key is readable by us and by no one else.
func (d *diagnosis) keyFile(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		d.fail("smartpay_key", err.Error(), "smartpay.key_file must name the certificate's private key, readable by the agent's user")
		return false
	}
	fi, err := f.Stat()
	_ = f.Close()
	if err != nil {
		d.fail("smartpay_key", err.Error(), "smartpay.key_file must name the certificate's private key")
		return false
	}
	// Windows has no mode bits to check; the data directory's ACL protects it.
	if runtime.GOOS != "windows" {
		if perm := fi.Mode().Perm(); perm&0o077 != 0 {
			d.fail("smartpay_key", fmt.Sprintf("%s can be read by other users (mode %04o)", path, perm), "chmod 600 "+path)
			return false
		}
	}
	d.ok("smartpay_key", path+": readable by its owner only")
	return true
}

func (d *diagnosis) attention(v *agentView) {
	ps := v.status.Attention
	if len(ps) == 0 {
		d.ok("payments", "none need attention")
		return
	}
	var items []string
	for i, p := range ps {
		if i == 5 {
			items = append(items, fmt.Sprintf("and %d more", len(ps)-5))
			break
		}
		why := p.State
		if p.Fiscal.Error != nil {
			why += ", receipt not printed: " + p.Fiscal.Error.Message
		} else if p.Error != nil {
			why += ": " + p.Error.Message
		}
		items = append(items, p.ID+" ("+clip(oneLine(why), 100)+")")
	}
	d.fail("payments", fmt.Sprintf("%d need attention: %s", len(ps), strings.Join(items, "; ")),
		"look at each with GET /v1/payments/{id}; a receipt owed is printed as soon as the register can")
}

func sizeText(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%d KiB", n>>10)
	default:
		return fmt.Sprintf("%d bytes", n)
	}
}
