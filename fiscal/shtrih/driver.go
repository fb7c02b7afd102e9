package shtrih

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"kassa-agent/fiscal"
)

// Options configure a Driver.
type Options struct {
	Password uint32         // system administrator password; 0 = 30
	Timeouts Timeouts       // zero fields take DefaultTimeouts
	Journal  fiscal.Journal // required for PrintReceipt
	// AutoOpenShift opens a closed shift before a receipt or cash operation.
	AutoOpenShift bool
	// AutoCloseExpiredShift runs a Z report and opens a new shift when the shift is
	// over 24 hours.
	AutoCloseExpiredShift bool
	Limits                fiscal.Limits // zero = fiscal.DefaultLimits
	Logger                *slog.Logger
	Now                   func() time.Time
	// Location is the zone of the register's clock. The FN keeps zone-less local
	// times; every FN time the driver returns is read in this zone. nil = time.Local.
	Location *time.Location
	// OnShiftRenewed, when set, is called after an expired shift was closed by a
	// Z report and a new one opened (AutoCloseExpiredShift), with both numbers.
	OnShiftRenewed func(closed, opened int)
	// VATRows overrides the table-6 row sent for a rate (e.g. when a register's
	// table 6 holds 5 % in another row than DefaultVATRows says).
	VATRows map[fiscal.VATRate]byte
	// FFD is the FFD version the register is registered for, reported by Info
	// as configured ("" = "1.2"): the protocol commands checked for this driver
	// do not read it.
	FFD string
	// MarkingOffline is what AcceptMarking and PrintReceipt do with a code the
	// OISM did not answer for (FFD 1.2): sell it (the default) or refuse it.
	MarkingOffline fiscal.OfflinePolicy
}

// Driver is a fiscal.Register speaking the Shtrih-M protocol over a Port.
type Driver struct {
	mu    sync.Mutex
	l     *link
	opt   Options
	info  *deviceInfo
	ident *fiscal.Identity // set only when complete: a partial one is read again
	// rowRates caches table 6's rate (hundredths of a percent) per row checked.
	rowRates map[byte]int
	// lastCheck is the marking check awaiting AcceptMarking (FFD 1.2).
	lastCheck *fiscal.MarkingResult
	log       *slog.Logger
}

var _ fiscal.Register = (*Driver)(nil)

// deviceInfo is what the status report shows and no fiscal document carries.
type deviceInfo struct {
	model, serial, firmware, inn string
	expiry                       time.Time
}

// DefaultVATRows are the table-6 rows the driver sends for the УСН rates. The
// vendor's answer in fr_drv_ng issue #328 settles only rows 11 (22 %) and 12
// (22/122); 7..10 follow tag 1199's order and the DrvFR Tax1 numbering seen in host
// software, not a vendor document: an assumption, overridable per register by
// Options.VATRows (config register.vat_rows). The simulator refuses a line whose
// tax does not match the row's rate, so a wrong row shows as a refusal, not as a
// wrong rate on paper, on a register that checks likewise.
var DefaultVATRows = map[fiscal.VATRate]byte{fiscal.VAT5: 7, fiscal.VAT7: 8, fiscal.VAT5105: 9, fiscal.VAT7107: 10}

// New makes a driver over port. It does no I/O until the first call.
func New(port Port, opt Options) *Driver {
	if opt.Password == 0 {
		opt.Password = 30
	}
	t, d := &opt.Timeouts, DefaultTimeouts
	if t.Byte <= 0 {
		t.Byte = d.Byte
	}
	if t.ENQ <= 0 {
		t.ENQ = d.ENQ
	}
	if t.Reply <= 0 {
		t.Reply = d.Reply
	}
	if t.Long <= 0 {
		t.Long = d.Long
	}
	if t.Tries <= 0 {
		t.Tries = d.Tries
	}
	if t.BusyWait <= 0 {
		t.BusyWait = d.BusyWait
	}
	if opt.Limits == (fiscal.Limits{}) {
		opt.Limits = fiscal.DefaultLimits
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.Location == nil {
		opt.Location = time.Local
	}
	return &Driver{l: &link{port: port, to: opt.Timeouts}, opt: opt, log: opt.Logger}
}

// Stats returns the link counters since New.
func (d *Driver) Stats() Stats {
	return Stats{RoundTrips: d.l.roundTrips.Load(), BytesOut: d.l.bytesOut.Load(), BytesIn: d.l.bytesIn.Load()}
}

// Close closes the port.
func (d *Driver) Close() error { return d.l.port.Close() }

// mutating commands change device or FN state; a lost reply to one of them is an
// unknown outcome rather than a plain link failure.
var mutating = map[uint16]bool{
	CmdPrintLine: true, CmdCut: true, CmdXReport: true, CmdZReport: true, CmdCashIn: true, CmdCashOut: true,
	CmdCancelReceipt: true, CmdOpenReceipt: true, CmdContinuePrint: true, CmdOpenShift: true,
	CmdFNSendTLV: true, CmdFNCloseReceipt: true, CmdFNOperation: true, CmdFNOperationTLV: true,
	CmdFNBeginOpen: true, CmdFNBeginClose: true, CmdFNBeginCorrection: true, CmdFNCorrection: true,
	CmdPrintCopy: true, CmdLoadData: true, CmdPrint2D: true, CmdFNVoidDocument: true,
	CmdFNBindMarking: true, CmdFNAcceptMarking: true,
}

func linkError(cmd uint16, err error) error {
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		if mutating[cmd] {
			return &fiscal.Error{Code: fiscal.CodeOutcomeUnknown, Command: cmd, Text: "cancelled while waiting for the register", Err: err}
		}
		return err
	case errors.Is(err, errLostReply) && mutating[cmd]:
		return &fiscal.Error{Code: fiscal.CodeOutcomeUnknown, Command: cmd, Text: "reply lost", Err: err}
	}
	return &fiscal.Error{Code: fiscal.CodeUnavailable, Command: cmd, Err: err}
}

// do runs one command and returns the reply data after ERR. It retries while the
// device is still printing (0x50) and continues printing after paper out (0x58).
func (d *Driver) do(ctx context.Context, cmd uint16, params []byte, wait time.Duration) ([]byte, error) {
	busyUntil := time.Now().Add(d.opt.Timeouts.BusyWait)
	continued := false
	for {
		body, err := d.l.exchange(ctx, cmd, params, wait)
		if err != nil {
			return nil, linkError(cmd, err)
		}
		_, code, data, err := SplitReply(body)
		if err != nil {
			return nil, &fiscal.Error{Code: fiscal.CodeProtocol, Command: cmd, Err: err}
		}
		switch {
		case code == 0:
			return data, nil
		case code == ErrCodeStillPrinting && time.Now().Before(busyUntil):
			if err := sleep(ctx, d.pollInterval()); err != nil {
				return nil, err
			}
			continue
		case code == ErrCodeWaitContinue && cmd != CmdContinuePrint && !continued:
			continued = true
			if _, err := d.do(ctx, CmdContinuePrint, password(d.opt.Password), d.opt.Timeouts.Long); err != nil {
				return nil, err
			}
			continue
		}
		return nil, DeviceError(cmd, code)
	}
}

func (d *Driver) pollInterval() time.Duration {
	return min(25*time.Millisecond, max(d.opt.Timeouts.Byte/4, time.Millisecond))
}

func sleep(ctx context.Context, dur time.Duration) error {
	t := time.NewTimer(dur)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func (d *Driver) pw() []byte { return password(d.opt.Password) }

// query sends a read command and decodes its reply; a reply the decoder cannot
// read is a protocol error naming the command.
func query[T any](ctx context.Context, d *Driver, cmd uint16, params []byte, decode func([]byte) (T, error)) (T, error) {
	data, err := d.do(ctx, cmd, params, d.opt.Timeouts.Reply)
	if err != nil {
		var zero T
		return zero, err
	}
	v, err := decode(data)
	if err != nil {
		return v, &fiscal.Error{Code: fiscal.CodeProtocol, Command: cmd, Err: err}
	}
	return v, nil
}

func (d *Driver) shortStatus(ctx context.Context) (ShortStatus, error) {
	return query(ctx, d, CmdShortStatus, d.pw(), DecodeShortStatus)
}

func (d *Driver) fnStatus(ctx context.Context) (FNStatus, error) {
	return query(ctx, d, CmdFNStatus, d.pw(), DecodeFNStatus)
}

func (d *Driver) shiftParams(ctx context.Context) (ShiftParams, error) {
	return query(ctx, d, CmdFNShiftParams, d.pw(), DecodeShiftParams)
}

// deviceInfo reads (once) what does not change while the agent runs and no
// fiscal document carries; see identity for what documents carry.
func (d *Driver) deviceInfo(ctx context.Context) (*deviceInfo, error) {
	if d.info != nil {
		return d.info, nil
	}
	in := &deviceInfo{}
	data, err := d.do(ctx, CmdDeviceType, nil, d.opt.Timeouts.Reply)
	if err != nil {
		return nil, err
	}
	if t, err := DecodeDeviceType(data); err == nil {
		in.model = t.Name
	}
	if data, err = d.do(ctx, CmdStatus, d.pw(), d.opt.Timeouts.Reply); err != nil {
		return nil, err
	}
	if s, err := DecodeFullStatus(data); err == nil {
		in.firmware, in.serial, in.inn = s.Firmware, s.Serial, s.INN
	}
	if data, err = d.do(ctx, CmdFNExpiry, d.pw(), d.opt.Timeouts.Reply); err == nil {
		if t, err := DecodeFNExpiry(data); err == nil {
			in.expiry = InZone(t, d.opt.Location)
		}
	}
	d.info = in
	return in, nil
}

// fnPhaseFiscal is the FN phase "fiscal mode" (FF01h): registered, issuing documents.
const fnPhaseFiscal = 3

// identity returns the registration number, FN number and INN, read from the
// device until all were read once; only a complete identity is kept. A device
// error on the way is register_identity_unknown (retryable); an FN that is not in
// fiscal mode (not registered, or closed) is register_not_registered.
func (d *Driver) identity(ctx context.Context) (fiscal.Identity, error) {
	if d.ident != nil {
		return *d.ident, nil
	}
	unknown := func(what string, err error) error {
		if c := fiscal.CodeOf(err); c == fiscal.CodeUnavailable || c == fiscal.CodeProtocol || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return err
		}
		return &fiscal.Error{Code: fiscal.CodeIdentity, Text: what + " could not be read; nothing was printed", Err: err}
	}
	var id fiscal.Identity
	data, err := d.do(ctx, CmdFNNumber, d.pw(), d.opt.Timeouts.Reply)
	if err != nil {
		return id, unknown("the FN number", err)
	}
	if id.FNNumber, err = DecodeFNNumber(data); err != nil || id.FNNumber == "" {
		return fiscal.Identity{}, unknown("the FN number", err)
	}
	data, rerr := d.do(ctx, CmdFNFiscalResult, d.pw(), d.opt.Timeouts.Reply)
	if rerr == nil {
		if r, err := DecodeFiscalResult(data); err == nil {
			id.RegNumber, id.INN = r.RegNumber, r.INN
		}
	} else if c := fiscal.CodeOf(rerr); c == fiscal.CodeUnavailable {
		return fiscal.Identity{}, rerr
	}
	if id.RegNumber == "" {
		// An unregistered FN answers FF09h with an error too: its phase tells a
		// register that has no РН from one whose answer failed this time.
		fn, err := d.fnStatus(ctx)
		if err != nil {
			return fiscal.Identity{}, unknown("the registration number", err)
		}
		if fn.Phase != fnPhaseFiscal {
			return fiscal.Identity{}, &fiscal.Error{Code: fiscal.CodeNotRegistered,
				Text: fmt.Sprintf("the FN is in phase %d, not in fiscal mode: the register is not registered, fiscal receipts cannot be printed", fn.Phase)}
		}
		if rerr == nil {
			rerr = errors.New("empty registration number in FF09h")
		}
		return fiscal.Identity{}, unknown("the registration number", rerr)
	}
	if id.INN == "" {
		if in, err := d.deviceInfo(ctx); err == nil {
			id.INN = in.inn
		}
	}
	d.ident = &id
	return id, nil
}

// Identity reads the registration number, the FN number and the INN (see
// fiscal.Register). The agent asks it when a stored document lacks them.
func (d *Driver) Identity(ctx context.Context) (fiscal.Identity, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.identity(ctx)
}

// now is the register's clock in its zone (for rate dates and fallbacks).
func (d *Driver) now() time.Time { return d.opt.Now().In(d.opt.Location) }

// Status reads the register's state.
func (d *Driver) Status(ctx context.Context) (fiscal.Status, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var st fiscal.Status
	in, err := d.deviceInfo(ctx)
	if err != nil {
		return st, err
	}
	st.Model, st.Serial, st.Firmware, st.INN, st.FNExpiry = in.model, in.serial, in.firmware, in.inn, in.expiry
	// An identity that cannot be read now makes the register not ready (no
	// receipt may print without it), not the status unreadable.
	id, idErr := d.identity(ctx)
	if fiscal.CodeOf(idErr) == fiscal.CodeUnavailable {
		return st, idErr
	}
	st.FNNumber, st.RegNumber = id.FNNumber, id.RegNumber
	if id.INN != "" {
		st.INN = id.INN
	}
	ss, err := d.shortStatus(ctx)
	if err != nil {
		return st, err
	}
	st.Mode, st.Submode = ss.ModeNumber(), int(ss.Submode)
	st.ShiftOpen = st.Mode == ModeShiftOpen || st.Mode == ModeShiftExpired || st.Mode == ModeDocumentOpen
	st.ShiftExpired = st.Mode == ModeShiftExpired
	st.ReceiptOpen = st.Mode == ModeDocumentOpen
	st.PaperOut = ss.Submode == SubmodePassivePaperOut || ss.Submode == SubmodeActivePaperOut
	fn, err := d.fnStatus(ctx)
	if err != nil {
		return st, err
	}
	st.FNPhase, st.LastFD, st.FNWarnings = int(fn.Phase), fn.LastFD, DecodeFNWarnings(fn.Warnings)
	if fn.Number != "" {
		st.FNNumber = fn.Number
	}
	sp, err := d.shiftParams(ctx)
	if err != nil {
		return st, err
	}
	st.ShiftNumber = sp.Number
	st.ShiftOpen = st.ShiftOpen || sp.Open
	if data, err := d.do(ctx, CmdFNOFDStatus, d.pw(), d.opt.Timeouts.Reply); err == nil {
		if o, err := DecodeOFDStatus(data); err == nil {
			st.OFDBacklog = o.Waiting
			if o.Waiting > 0 {
				st.OFDOldest = InZone(o.FirstTime, d.opt.Location)
			}
		}
	} else if fiscal.CodeOf(err) == fiscal.CodeUnavailable {
		return st, err
	}
	st.Ready = d.readiness(ss)
	if st.Ready == nil && idErr != nil {
		st.Ready = idErr
	}
	return st, nil
}

// Ready says whether a receipt could be printed now: Status's Ready for one
// short-status round trip (the identity and device facts are cached after the
// first read). The engine asks it before every document, so it reads no more
// than the answer needs.
func (d *Driver) Ready(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	in, err := d.deviceInfo(ctx)
	if err != nil {
		return err
	}
	if !in.expiry.IsZero() && d.now().After(in.expiry) {
		return &fiscal.Error{Code: fiscal.CodeFNExhausted, Text: fmt.Sprintf("the FN expired on %s", in.expiry.Format(time.DateOnly))}
	}
	_, idErr := d.identity(ctx)
	if fiscal.CodeOf(idErr) == fiscal.CodeUnavailable {
		return idErr
	}
	ss, err := d.shortStatus(ctx)
	if err != nil {
		return err
	}
	if err := d.readiness(ss); err != nil {
		return err
	}
	return idErr
}

// readiness says whether a receipt could be printed now, given the auto options.
func (d *Driver) readiness(ss ShortStatus) error {
	switch ss.Submode {
	case SubmodePassivePaperOut, SubmodeActivePaperOut:
		return &fiscal.Error{Code: fiscal.CodePaperOut, Text: "no receipt paper"}
	}
	switch ss.ModeNumber() {
	case ModeShiftClosed:
		if !d.opt.AutoOpenShift {
			return &fiscal.Error{Code: fiscal.CodeShiftClosed, Text: "shift is closed"}
		}
	case ModeShiftExpired:
		if !d.opt.AutoCloseExpiredShift {
			return &fiscal.Error{Code: fiscal.CodeShiftExpired, Text: "shift is over 24 hours, a Z report is needed"}
		}
	case ModeShiftOpen, ModeDocumentOpen:
	default:
		return &fiscal.Error{Code: fiscal.CodeRejected, Text: fmt.Sprintf("register is in mode %d", ss.ModeNumber())}
	}
	return nil
}

// prepare brings the device to "shift open, idle, paper present": it waits while
// printing, continues after paper out, cancels a receipt left open (callers resolve
// their own pending receipts first) and opens / renews the shift when configured.
func (d *Driver) prepare(ctx context.Context) (ShortStatus, error) {
	busyUntil := time.Now().Add(d.opt.Timeouts.BusyWait)
	for range 8 {
		ss, err := d.shortStatus(ctx)
		if err != nil {
			return ss, err
		}
		switch ss.Submode {
		case SubmodePrinting, SubmodePrintingReport:
			if time.Now().After(busyUntil) {
				return ss, &fiscal.Error{Code: fiscal.CodeBusy, Text: "register is still printing"}
			}
			if err := sleep(ctx, d.pollInterval()); err != nil {
				return ss, err
			}
			continue
		case SubmodeAfterPaperOut:
			if _, err := d.do(ctx, CmdContinuePrint, d.pw(), d.opt.Timeouts.Long); err != nil {
				return ss, err
			}
			continue
		case SubmodePassivePaperOut, SubmodeActivePaperOut:
			return ss, &fiscal.Error{Code: fiscal.CodePaperOut, Text: "no receipt paper"}
		}
		switch ss.ModeNumber() {
		case ModeShiftOpen:
			return ss, nil
		case ModeDocumentOpen:
			d.log.Warn("cancelling a receipt left open on the register")
			if _, err := d.do(ctx, CmdCancelReceipt, d.pw(), d.opt.Timeouts.Reply); err != nil {
				return ss, err
			}
		case ModeShiftClosed:
			if !d.opt.AutoOpenShift {
				return ss, &fiscal.Error{Code: fiscal.CodeShiftClosed, Text: "shift is closed"}
			}
			d.log.Info("opening the shift")
			if err := d.openShift(ctx); err != nil {
				return ss, err
			}
		case ModeShiftExpired:
			if !d.opt.AutoCloseExpiredShift {
				return ss, &fiscal.Error{Code: fiscal.CodeShiftExpired, Text: "shift is over 24 hours, a Z report is needed"}
			}
			closed := 0
			if sp, err := d.shiftParams(ctx); err == nil {
				closed = sp.Number
			}
			d.log.Info("shift over 24 h: Z report", "shift", closed)
			if err := d.closeShift(ctx); err != nil {
				return ss, err
			}
			if !d.opt.AutoOpenShift {
				continue // reported as shift closed on the next pass
			}
			if err := d.openShift(ctx); err != nil {
				return ss, err
			}
			opened := 0
			if sp, err := d.shiftParams(ctx); err == nil {
				opened = sp.Number
			}
			d.log.Info("expired shift closed with a Z report and a new shift opened", "closed", closed, "opened", opened)
			if d.opt.OnShiftRenewed != nil {
				d.opt.OnShiftRenewed(closed, opened)
			}
		default:
			return ss, &fiscal.Error{Code: fiscal.CodeRejected, Text: fmt.Sprintf("register is in mode %d", ss.ModeNumber())}
		}
	}
	return ShortStatus{}, &fiscal.Error{Code: fiscal.CodeBusy, Text: "register did not become ready"}
}

// OpenShift opens a shift; an open shift is not an error.
func (d *Driver) OpenShift(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.openShift(ctx)
}

func (d *Driver) openShift(ctx context.Context) error {
	ss, err := d.shortStatus(ctx)
	if err != nil {
		return err
	}
	switch ss.ModeNumber() {
	case ModeShiftOpen, ModeDocumentOpen:
		return nil
	case ModeShiftExpired:
		return &fiscal.Error{Code: fiscal.CodeShiftExpired, Text: "close the expired shift first"}
	}
	return d.doToMode(ctx, CmdOpenShift, ModeShiftOpen)
}

// doToMode sends a long command whose effect shows in the device's mode. When
// its reply is lost, the mode says whether it happened, so it is never sent twice.
func (d *Driver) doToMode(ctx context.Context, cmd uint16, mode int) error {
	_, err := d.do(ctx, cmd, d.pw(), d.opt.Timeouts.Long)
	if fiscal.CodeOf(err) == fiscal.CodeOutcomeUnknown {
		if ss, serr := d.shortStatus(ctx); serr == nil && ss.ModeNumber() == mode {
			return nil
		}
	}
	return err
}

// CloseShift prints the Z report, closing the shift. A receipt left open is cancelled
// first (the shift cannot close with it); a closed shift is not an error.
func (d *Driver) CloseShift(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.resolvePending(ctx, nil); err != nil {
		return err
	}
	if err := d.cancelOpen(ctx); err != nil {
		return err
	}
	return d.closeShift(ctx)
}

func (d *Driver) closeShift(ctx context.Context) error {
	ss, err := d.shortStatus(ctx)
	if err != nil {
		return err
	}
	if ss.ModeNumber() == ModeShiftClosed {
		return nil
	}
	return d.doToMode(ctx, CmdZReport, ModeShiftClosed)
}

// XReport prints the X report. It is no FN document and has no fiscal effect,
// so it is not journaled; a lost reply is settled like a cash slip's, by the
// device's through document number (11h), so the caller learns whether it
// printed; only a crash between can leave that unknown, and a second X report
// is harmless.
func (d *Driver) XReport(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, err := d.readyToPrint(ctx); err != nil {
		return err
	}
	before, err := d.fullStatus(ctx)
	if err != nil {
		return err
	}
	_, err = d.do(ctx, CmdXReport, d.pw(), d.opt.Timeouts.Long)
	return d.settleByCounter(ctx, CmdXReport, before.DocNumber, err)
}

// settleByCounter turns an unknown outcome of a device-document command (cash
// slip, X report) into a known one from the through document number: advanced
// ⇒ done (nil), not ⇒ a retryable error saying it did not print.
func (d *Driver) settleByCounter(ctx context.Context, cmd uint16, before int, err error) error {
	if fiscal.CodeOf(err) != fiscal.CodeOutcomeUnknown {
		return err
	}
	if _, serr := d.settleDevice(ctx); serr != nil {
		return err
	}
	now, serr := d.fullStatus(ctx)
	switch {
	case serr != nil:
		return err
	case docAdvanced(before, now.DocNumber):
		d.log.Info("document printed though its reply was lost", "command", fmt.Sprintf("%#x", cmd), "doc_number", now.DocNumber)
		return nil
	}
	return &fiscal.Error{Code: fiscal.CodeUnavailable, Command: cmd, Text: "the reply was lost and the document did not print; retry", Err: err}
}

// CancelOpenReceipt cancels a receipt open on the device, if any. Pending journal
// entries are resolved first so a receipt of ours that did close is recorded.
func (d *Driver) CancelOpenReceipt(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.resolvePending(ctx, nil); err != nil {
		return err
	}
	return d.cancelOpen(ctx)
}

// cancelOpen cancels the receipt open on the device, if there is one.
func (d *Driver) cancelOpen(ctx context.Context) error {
	ss, err := d.shortStatus(ctx)
	if err != nil {
		return err
	}
	if ss.ModeNumber() != ModeDocumentOpen {
		return nil
	}
	_, err = d.do(ctx, CmdCancelReceipt, d.pw(), d.opt.Timeouts.Reply)
	return err
}

// CashIn and CashOut put cash into / take it out of the drawer (kopecks). They
// are device documents, not FN ones; a lost reply is settled from the device's
// through document number (11h) read before and after. Without an id they are
// not safe across a crash of the agent: CashInOnce / CashOutOnce are.
func (d *Driver) CashIn(ctx context.Context, amount int64) error {
	return d.cash(ctx, CmdCashIn, amount)
}

func (d *Driver) CashOut(ctx context.Context, amount int64) error {
	return d.cash(ctx, CmdCashOut, amount)
}

func (d *Driver) cash(ctx context.Context, cmd uint16, amount int64) error {
	if err := fiscal.CheckCash(amount, d.opt.Limits); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.resolvePending(ctx, nil); err != nil {
		return err
	}
	if _, err := d.prepare(ctx); err != nil {
		return err
	}
	before, err := d.fullStatus(ctx)
	if err != nil {
		return err
	}
	_, err = d.do(ctx, cmd, append(d.pw(), Money5(amount)...), d.opt.Timeouts.Long)
	return d.settleByCounter(ctx, cmd, before.DocNumber, err)
}

// FindDocument reads a document from the FN archive by its number.
func (d *Driver) FindDocument(ctx context.Context, fd uint32) (fiscal.FoundDocument, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	f, err := d.findDocument(ctx, fd)
	if err != nil {
		return fiscal.FoundDocument{}, err
	}
	return d.found(f), nil
}

func (d *Driver) found(f FoundDocument) fiscal.FoundDocument {
	return fiscal.FoundDocument{FD: f.FD, FP: f.FP, Kind: int(f.Type), Time: InZone(f.Time, d.opt.Location), Operation: fiscal.ReceiptType(f.Operation),
		Total: f.Total, Shift: f.Shift, SentToOFD: f.SentToOFD}
}

// LastDocument reads the FN's last document (FF01h's last FD, then FF0Ah).
func (d *Driver) LastDocument(ctx context.Context) (fiscal.FoundDocument, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	fn, err := d.fnStatus(ctx)
	if err != nil {
		return fiscal.FoundDocument{}, err
	}
	f, err := d.findDocument(ctx, fn.LastFD)
	if err != nil {
		return fiscal.FoundDocument{}, err
	}
	return d.found(f), nil
}

// PrintLastCopy prints a copy of the last document (8Ch). It is not a fiscal
// document: a lost reply may at worst leave a second copy, so it is not
// journaled. PrintCopy prints any document.
func (d *Driver) PrintLastCopy(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, err := d.readyToPrint(ctx); err != nil {
		return err
	}
	_, err := d.do(ctx, CmdPrintCopy, d.pw(), d.opt.Timeouts.Long)
	return err
}

func (d *Driver) findDocument(ctx context.Context, fd uint32) (FoundDocument, error) {
	f, err := query(ctx, d, CmdFNFindDocument, binary.LittleEndian.AppendUint32(d.pw(), fd), DecodeFoundDocument)
	if err != nil {
		return f, err
	}
	if f.FD == 0 {
		f.FD = fd
	}
	return f, nil
}

// LineWidth is the characters per printed line of 17h.
const LineWidth = 40

// PrintText prints non-fiscal lines (e.g. a payment link), wrapping long lines.
func (d *Driver) PrintText(ctx context.Context, lines []string) error {
	// Control characters would reach the tape raw (or drive the printer): refuse
	// the whole text before any of it prints.
	for i, line := range lines {
		if err := fiscal.CheckText(fmt.Sprintf("lines[%d]", i), line); err != nil {
			return err
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.printLines(ctx, lines)
}

// printLines prints lines on the receipt tape (17h), wrapped at LineWidth.
func (d *Driver) printLines(ctx context.Context, lines []string) error {
	for _, line := range lines {
		b := Win1251(line)
		for {
			chunk := b[:min(len(b), LineWidth)]
			params := append(d.pw(), 0x02) // bit1: receipt tape
			params = append(params, chunk...)
			for i := len(chunk); i < LineWidth; i++ {
				params = append(params, ' ')
			}
			if _, err := d.do(ctx, CmdPrintLine, params, d.opt.Timeouts.Reply); err != nil {
				return err
			}
			b = b[len(chunk):]
			if len(b) == 0 {
				break
			}
		}
	}
	return nil
}

// Cut cuts the receipt tape (full cut).
func (d *Driver) Cut(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	_, err := d.do(ctx, CmdCut, append(d.pw(), 0), d.opt.Timeouts.Reply)
	return err
}
