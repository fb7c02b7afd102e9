// Package config reads and checks kassa-agent's configuration file: one TOML file
// a technician edits by hand. Every mistake is reported with the key, the line and
// how to fix it, because the person reading the message is standing at a till.
package config

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"kassa-agent/fiscal"
)

// Config is the whole configuration file.
type Config struct {
	API      API      `toml:"api"`
	Store    Store    `toml:"store"`
	Outbox   Outbox   `toml:"outbox"`
	Log      Log      `toml:"log"`
	Scanner  Scanner  `toml:"scanner"`
	Register Register `toml:"register"`
	SmartPay SmartPay `toml:"smartpay"`
	Alif     Alif     `toml:"alif"`
	AliKassa AliKassa `toml:"alikassa"`
	Metrics  Metrics  `toml:"metrics"`
	Marking  Marking  `toml:"marking"`

	// Path is the file the configuration was read from ("" for defaults).
	Path string `toml:"-"`
}

// API configures the local HTTP API the POS calls.
type API struct {
	Listen      string `toml:"listen"`
	AllowRemote bool   `toml:"allow_remote"`
	TokenFile   string `toml:"token_file"`
	// MaxConnections bounds the connections the API holds open; a quarter is
	// kept for clients that show the token.
	MaxConnections int `toml:"max_connections"`
}

// Metrics configures the second address that serves /metrics alone, for a
// Prometheus on another host. The API port serves /metrics too, with the API
// token.
type Metrics struct {
	// Listen is host:port; "" (the default) opens no second address.
	Listen string `toml:"listen"`
	// TokenFile, when set, holds the bearer token the second address asks
	// for; "" serves it without one.
	TokenFile string `toml:"token_file"`
}

// Store configures the data directory and the bbolt file in it.
type Store struct {
	Dir         string   `toml:"dir"`
	OnCorrupt   string   `toml:"on_corrupt"`
	OpenTimeout Duration `toml:"open_timeout"`
}

// Outbox configures delivery of confirmations and fiscal submissions.
type Outbox struct {
	BaseDelay   Duration `toml:"base_delay"`
	MaxDelay    Duration `toml:"max_delay"`
	MaxAttempts int      `toml:"max_attempts"`
	MaxAge      Duration `toml:"max_age"`
}

// Log configures logging.
type Log struct {
	Level  string `toml:"level"`
	Format string `toml:"format"`
}

// Port names a serial device: by name, or by USB identity when the name can change.
type Port struct {
	Driver string `toml:"driver"`
	Port   string `toml:"port"`
	VID    string `toml:"vid"`
	PID    string `toml:"pid"`
	Serial string `toml:"serial"`
	Baud   int    `toml:"baud"`
}

// Scanner configures the QR/barcode scanner.
type Scanner struct {
	Enabled bool `toml:"enabled"`
	Port
	Suffix           string   `toml:"suffix"`
	IdleGap          Duration `toml:"idle_gap"`
	Prefix           string   `toml:"prefix"`
	MaxLength        int      `toml:"max_length"`
	DoubleReadWindow Duration `toml:"double_read_window"`
}

// Register configures the fiscal register.
type Register struct {
	Enabled   bool   `toml:"enabled"`
	Protocol  string `toml:"protocol"`
	Transport string `toml:"transport"`
	Port
	Address               string   `toml:"address"`
	Password              int      `toml:"password"`
	Cashier               string   `toml:"cashier"`
	TaxSystem             string   `toml:"tax_system"`
	AutoOpenShift         bool     `toml:"auto_open_shift"`
	AutoCloseExpiredShift bool     `toml:"auto_close_expired_shift"`
	ByteTimeout           Duration `toml:"byte_timeout"`
	// Timezone is the IANA zone of the register's clock ("" = the host's): the FN
	// keeps zone-less local times.
	Timezone string `toml:"timezone"`
	// VATRows maps vat5, vat7, vat5_105, vat7_107 to the register's table-6 rows.
	VATRows map[string]int `toml:"vat_rows"`
	// FFD is the format version the register is registered for: "1.2" (the
	// default, and the only one marked goods may be sold under) or "1.05",
	// which forms correction receipts without lines (FF4Ah).
	FFD string `toml:"ffd"`
}

// Location is the register's time zone: Timezone, or the host's when empty.
func (r Register) Location() (*time.Location, error) {
	if r.Timezone == "" {
		return time.Local, nil
	}
	loc, err := time.LoadLocation(r.Timezone)
	if err != nil {
		return nil, fmt.Errorf("register.timezone %q: %w", r.Timezone, err)
	}
	return loc, nil
}

// VATRowKeys are the rates whose table-6 row register.vat_rows may set.
var VATRowKeys = []string{"vat5", "vat7", "vat5_105", "vat7_107"}

// Marking is the policy for marked goods (FFD 1.2, Честный ЗНАК). An
// invalid code is never sold, whatever is set here: a negative answer of the FN
// or the OISM means the sale is prohibited.
type Marking struct {
	// Unchecked is what a code the OISM did not answer for gets: "sell" (the
	// FN checked its crypto tail and reports it later; the receipt's tag 2106
	// says it was not checked online) or "refuse".
	Unchecked string `toml:"unchecked"`
	// Groups override Unchecked per product group (an item's marking_group).
	Groups map[string]MarkingGroup `toml:"groups"`
	// Industry is tag 1260 (e.g. the permissive mode's FOIV 030 requisite)
	// for a receipt with marked lines that gives none.
	Industry []Industry `toml:"industry"`
}

// MarkingGroup is one product group's policy.
type MarkingGroup struct {
	Unchecked string `toml:"unchecked"`
}

// Industry is one industry requisite (tag 1260).
type Industry struct {
	FOIV   string `toml:"foiv"`   // 1262, 3 digits
	Date   string `toml:"date"`   // 1263, YYYY-MM-DD
	Number string `toml:"number"` // 1264
	Value  string `toml:"value"`  // 1265
}

// SmartPay configures the Smart Pay (SBP QR) kassa API.
type SmartPay struct {
	Enabled        bool     `toml:"enabled"`
	BaseURL        string   `toml:"base_url"`
	CertFile       string   `toml:"cert_file"`
	KeyFile        string   `toml:"key_file"`
	CAFile         string   `toml:"ca_file"`
	CodePattern    string   `toml:"code_pattern"`
	RequestTimeout Duration `toml:"request_timeout"`
	PollDeadline   Duration `toml:"poll_deadline"`
	AbandonAfter   Duration `toml:"abandon_after"`
}

// Alif configures the Alif hosted checkout.
type Alif struct {
	Enabled     bool     `toml:"enabled"`
	APIURL      string   `toml:"api_url"`
	CheckoutURL string   `toml:"checkout_url"`
	TokenFile   string   `toml:"token_file"`
	WebhookKey  string   `toml:"webhook_secret_file"`
	EPOS        string   `toml:"epos"`
	RedirectURL string   `toml:"redirect_url"`
	CancelURL   string   `toml:"cancel_url"`
	PollEvery   Duration `toml:"poll_every"`
}

// AliKassa configures the AliKassa signed payment API.
type AliKassa struct {
	Enabled          bool     `toml:"enabled"`
	APIURL           string   `toml:"api_url"`
	Account          string   `toml:"account"`
	PrivateKeyFile   string   `toml:"private_key_file"`
	PasswordFile     string   `toml:"password_file"`
	NotifyPublicKey  string   `toml:"notify_public_key_file"`
	Service          string   `toml:"service"`
	CustomerCode     string   `toml:"customer_code"`
	SignatureHash    string   `toml:"signature_hash"`
	PaymentLifetime  Duration `toml:"payment_lifetime"`
	PollEvery        Duration `toml:"poll_every"`
	SuccessRedirect  string   `toml:"success_redirect_url"`
	FailRedirect     string   `toml:"fail_redirect_url"`
	NotificationURL  string   `toml:"notification_url"`
	CustomerIPForPOS string   `toml:"customer_ip"`
}

// Duration is a time.Duration written as "50ms", "3s", "10m" in the file.
type Duration time.Duration

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("%q is not a duration (write it like \"50ms\", \"3s\" or \"10m\")", b)
	}
	*d = Duration(v)
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// DefaultPath is where the service looks for its configuration on this OS.
func DefaultPath() string {
	if runtime.GOOS == "windows" {
		return filepath.Join(programData(), "kassa-agent", "config.toml")
	}
	return "/etc/kassa-agent/config.toml"
}

// DefaultDataDir is the data directory (store, API token) on this OS.
func DefaultDataDir() string {
	if runtime.GOOS == "windows" {
		return filepath.Join(programData(), "kassa-agent")
	}
	return "/var/lib/kassa-agent"
}

func programData() string {
	if p := os.Getenv("ProgramData"); p != "" {
		return p
	}
	return `C:\ProgramData`
}

// Default returns the configuration used for every key the file leaves out.
func Default() Config {
	return Config{
		API:   API{Listen: "127.0.0.1:8717", MaxConnections: 256},
		Store: Store{Dir: DefaultDataDir(), OnCorrupt: "refuse", OpenTimeout: Duration(time.Second)},
		Outbox: Outbox{
			BaseDelay: Duration(time.Second), MaxDelay: Duration(5 * time.Minute),
			MaxAttempts: 0, MaxAge: Duration(72 * time.Hour),
		},
		Log: Log{Level: "info", Format: "auto"},
		Scanner: Scanner{
			Port:   Port{Driver: "bugst", Baud: 9600},
			Suffix: "cr", IdleGap: Duration(50 * time.Millisecond), MaxLength: 4096,
			DoubleReadWindow: Duration(time.Second),
		},
		Register: Register{
			Protocol: "shtrih", Transport: "serial",
			Port:     Port{Driver: "bugst", Baud: 115200},
			Password: 30, Cashier: "", TaxSystem: "osn",
			AutoOpenShift: true, AutoCloseExpiredShift: true,
			ByteTimeout: Duration(100 * time.Millisecond),
			VATRows:     map[string]int{"vat5": 7, "vat7": 8, "vat5_105": 9, "vat7_107": 10},
			FFD:         "1.2",
		},
		Marking: Marking{Unchecked: "sell"},
		SmartPay: SmartPay{
			RequestTimeout: Duration(15 * time.Second), PollDeadline: Duration(3 * time.Minute),
			AbandonAfter: Duration(10 * time.Minute),
		},
		Alif: Alif{
			APIURL: "https://api.alifpay.uz", CheckoutURL: "https://checkout.alifpay.uz",
			PollEvery: Duration(800 * time.Millisecond),
		},
		AliKassa: AliKassa{
			APIURL: "https://api-merchant.alikassa.com", SignatureHash: "sha1",
			PaymentLifetime: Duration(15 * time.Minute), PollEvery: Duration(800 * time.Millisecond),
		},
	}
}

// Problem is one mistake in the file: where it is and how to fix it.
type Problem struct {
	Key  string // dotted key, e.g. "scanner.idle_gap"
	Line int    // 1-based line in the file, 0 when the key is absent
	Msg  string // what is wrong and how to fix it
}

func (p Problem) String() string {
	if p.Line > 0 {
		return fmt.Sprintf("line %d: %s: %s", p.Line, p.Key, p.Msg)
	}
	return fmt.Sprintf("%s: %s", p.Key, p.Msg)
}

// Error lists every problem found in one file, so a technician fixes them in one go.
type Error struct {
	Path     string
	Problems []Problem
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "config %s: %d problem(s):", e.Path, len(e.Problems))
	for _, p := range e.Problems {
		b.WriteString("\n  ")
		b.WriteString(p.String())
	}
	return b.String()
}

// Load reads and checks the file at path. A missing file is an error: the service
// must not run on guesses.
func Load(path string) (Config, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return Config{}, fmt.Errorf("config file %s does not exist: create it (kassa-agent config example > %s) or pass --config: %w", path, path, err)
		}
		return Config{}, fmt.Errorf("read config: %w", err)
	}
	c, err := Parse(path, src)
	if err != nil {
		return Config{}, err
	}
	return c, nil
}

// Parse decodes and checks src; path only labels the messages and anchors
// relative paths (relative paths in the file are relative to the file's directory).
func Parse(path string, src []byte) (Config, error) {
	c := Default()
	c.Path = path
	md, err := toml.Decode(string(src), &c)
	if err != nil {
		return Config{}, &Error{Path: path, Problems: []Problem{decodeProblem(src, err)}}
	}
	var probs []Problem
	for _, k := range md.Undecoded() {
		key := k.String()
		probs = append(probs, Problem{Key: key, Line: lineOf(src, k), Msg: "unknown key; check the spelling against `kassa-agent config example`"})
	}
	at := func(key string) int { return lineOf(src, strings.Split(key, ".")) }
	for _, p := range c.check() {
		p.Line = at(p.Key)
		probs = append(probs, p)
	}
	if len(probs) > 0 {
		return Config{}, &Error{Path: path, Problems: probs}
	}
	c.resolvePaths(filepath.Dir(path))
	return c, nil
}

func decodeProblem(src []byte, err error) Problem {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		msg := pe.Message
		if strings.Contains(msg, "incompatible types") {
			msg = "wrong type: " + strings.TrimPrefix(msg, "incompatible types: ") + " (strings need quotes, numbers and true/false do not)"
		}
		key := pe.LastKey
		line := pe.Position.Line
		if line == 0 && key != "" {
			line = lineOf(src, strings.Split(key, "."))
		}
		if key == "" {
			key = "(file)"
		}
		return Problem{Key: key, Line: line, Msg: msg}
	}
	// Type mismatches come back as plain errors: "toml: line N (last key "k"): msg".
	if m := typeErr.FindStringSubmatch(err.Error()); m != nil {
		line, _ := strconv.Atoi(m[1])
		msg := m[3]
		if strings.Contains(msg, "incompatible types") {
			msg = "wrong type: " + strings.TrimPrefix(msg, "incompatible types: ") + " (strings need quotes, numbers and true/false do not)"
		}
		return Problem{Key: m[2], Line: line, Msg: msg}
	}
	return Problem{Key: "(file)", Msg: err.Error()}
}

var typeErr = regexp.MustCompile(`^toml: (?:line (\d+) )?\(last key "([^"]*)"\): (.*)$`)

// lineOf finds the line where a dotted key is set, by reading the file the way a
// person would: section headers, then "key =" lines. Inline tables are rare in
// hand-written configs; when the key is not found it answers 0.
func lineOf(src []byte, key []string) int {
	if len(key) == 0 {
		return 0
	}
	section := ""
	want := strings.Join(key[:len(key)-1], ".")
	last := key[len(key)-1]
	for i, raw := range strings.Split(string(src), "\n") {
		l := strings.TrimSpace(raw)
		if strings.HasPrefix(l, "[") {
			section = strings.Trim(strings.TrimSpace(strings.SplitN(l, "#", 2)[0]), "[] ")
			if section == strings.Join(key, ".") {
				return i + 1
			}
			continue
		}
		name, _, ok := strings.Cut(l, "=")
		if !ok || strings.HasPrefix(l, "#") {
			continue
		}
		name = strings.Trim(strings.TrimSpace(name), `"`)
		full := name
		if section != "" {
			full = section + "." + name
		}
		if full == want+"."+last || (want == "" && full == last) {
			return i + 1
		}
	}
	return 0
}

var hexID = regexp.MustCompile(`^(0x)?[0-9a-fA-F]{4}$`)

// check returns every impossible value or combination. Keys are dotted paths.
func (c *Config) check() []Problem {
	var ps []Problem
	add := func(key, format string, a ...any) { ps = append(ps, Problem{Key: key, Msg: fmt.Sprintf(format, a...)}) }
	positive := func(key string, d Duration, example string) {
		if d <= 0 {
			add(key, "must be positive, e.g. %q", example)
		}
	}

	// api
	host, port, err := net.SplitHostPort(c.API.Listen)
	if err != nil {
		add("api.listen", "%q is not host:port; write e.g. \"127.0.0.1:8717\"", c.API.Listen)
	} else {
		if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
			add("api.listen", "port %q must be a number from 1 to 65535", port)
		}
		if !isLoopback(host) && !c.API.AllowRemote {
			add("api.listen", "%q is not a loopback address; the till's API must not be reachable from the network. Use 127.0.0.1, or set api.allow_remote = true if you really mean it", host)
		}
	}

	if c.Metrics.Listen != "" {
		// Any host is allowed: reaching the chain's Prometheus is the point.
		if mh, mp, err := net.SplitHostPort(c.Metrics.Listen); err != nil {
			add("metrics.listen", "%q is not host:port; write e.g. \"0.0.0.0:9717\", or \"\" for no metrics address", c.Metrics.Listen)
		} else if p, err := strconv.Atoi(mp); err != nil || p < 1 || p > 65535 {
			add("metrics.listen", "port %q must be a number from 1 to 65535", mp)
		} else if c.API.Listen == c.Metrics.Listen || (mh == host && mp == port) {
			add("metrics.listen", "must differ from api.listen: the payment API and the metrics address are separate listeners")
		}
	} else if c.Metrics.TokenFile != "" {
		add("metrics.token_file", "set metrics.listen too: the token guards the metrics address, and the API port uses the API token")
	}

	if c.API.MaxConnections < 16 || c.API.MaxConnections > 4096 {
		add("api.max_connections", "must be from 16 to 4096 (default 256); each connection holds a file descriptor")
	}

	// store
	if c.Store.Dir == "" {
		add("store.dir", "must name the data directory, e.g. %q", DefaultDataDir())
	}
	switch c.Store.OnCorrupt {
	case "refuse", "move_aside":
	default:
		add("store.on_corrupt", "%q is not allowed; use \"refuse\" (stop and wait for a technician) or \"move_aside\" (keep the damaged file and start empty)", c.Store.OnCorrupt)
	}
	positive("store.open_timeout", c.Store.OpenTimeout, "1s")

	// outbox
	positive("outbox.base_delay", c.Outbox.BaseDelay, "1s")
	if c.Outbox.MaxDelay < c.Outbox.BaseDelay {
		add("outbox.max_delay", "must be at least outbox.base_delay (%s)", c.Outbox.BaseDelay.D())
	}
	if c.Outbox.MaxAttempts < 0 {
		add("outbox.max_attempts", "must be 0 (no limit) or more")
	}
	if c.Outbox.MaxAge < 0 {
		add("outbox.max_age", "must be 0 (no limit) or a positive duration such as \"72h\"")
	}

	// log
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		add("log.level", "%q is not a level; use debug, info, warn or error", c.Log.Level)
	}
	switch c.Log.Format {
	case "auto", "text", "json":
	default:
		add("log.format", "%q is not a format; use auto (text on a terminal, JSON under a service manager), text or json", c.Log.Format)
	}

	// scanner
	if c.Scanner.Enabled {
		ps = append(ps, c.Scanner.Port.check("scanner")...)
		switch c.Scanner.Suffix {
		case "cr", "lf", "crlf", "none":
		default:
			add("scanner.suffix", "%q is not a suffix; use cr, lf, crlf or none", c.Scanner.Suffix)
		}
		positive("scanner.idle_gap", c.Scanner.IdleGap, "50ms")
		if c.Scanner.Suffix == "none" && c.Scanner.IdleGap <= 0 {
			add("scanner.suffix", "with suffix = \"none\" only the idle gap ends a code; set scanner.idle_gap")
		}
		if c.Scanner.MaxLength < 1 || c.Scanner.MaxLength > 1<<20 {
			add("scanner.max_length", "must be from 1 to 1048576 bytes (default 4096)")
		}
		if c.Scanner.DoubleReadWindow < 0 {
			add("scanner.double_read_window", "must be 0 (off) or positive")
		}
	}

	// marking
	unchecked := func(key, v string) {
		if v != "sell" && v != "refuse" {
			add(key, "%q is not a policy; use \"sell\" (the default: sold, tag 2106 says it was not checked online) or \"refuse\"", v)
		}
	}
	unchecked("marking.unchecked", c.Marking.Unchecked)
	for name, g := range c.Marking.Groups {
		unchecked("marking.groups."+name+".unchecked", g.Unchecked)
	}
	for k, q := range c.Marking.Industry {
		key := fmt.Sprintf("marking.industry[%d]", k)
		date, err := time.Parse(time.DateOnly, q.Date)
		if err != nil {
			add(key+".date", "%q is not the founding document's date YYYY-MM-DD", q.Date)
			continue
		}
		// The register's own rules, so a config that loads is one it takes.
		var fe *fiscal.Error
		if err := (fiscal.IndustryRequisite{FOIV: q.FOIV, Date: date, Number: q.Number, Value: q.Value}).Validate(key); errors.As(err, &fe) {
			add(fe.Field, "%s", strings.TrimPrefix(fe.Text, fe.Field+": "))
		}
	}

	// register
	if c.Register.Enabled {
		if c.Register.Protocol != "shtrih" {
			add("register.protocol", "%q is not supported; only \"shtrih\" (Shtrih-M) is", c.Register.Protocol)
		}
		switch c.Register.Transport {
		case "serial":
			ps = append(ps, c.Register.Port.check("register")...)
		case "tcp":
			if _, _, err := net.SplitHostPort(c.Register.Address); err != nil {
				add("register.address", "transport = \"tcp\" needs the register's host:port, e.g. \"192.168.137.111:7778\"")
			}
		default:
			add("register.transport", "%q is not a transport; use \"serial\" or \"tcp\"", c.Register.Transport)
		}
		if c.Register.Password < 0 || c.Register.Password > 99999999 {
			add("register.password", "must be the register's numeric operator password (30 is the administrator's default)")
		}
		switch c.Register.TaxSystem {
		case "osn", "usn_income", "usn_income_outcome", "envd", "esn", "patent":
		default:
			add("register.tax_system", "%q is not a tax system; use osn, usn_income, usn_income_outcome, envd, esn or patent", c.Register.TaxSystem)
		}
		positive("register.byte_timeout", c.Register.ByteTimeout, "100ms")
		if _, err := c.Register.Location(); err != nil {
			add("register.timezone", "%q is not an IANA time zone name; use e.g. \"Europe/Moscow\" or \"Asia/Vladivostok\", or \"\" for this computer's zone", c.Register.Timezone)
		}
		if c.Register.FFD != "1.2" && c.Register.FFD != "1.05" {
			add("register.ffd", "%q is not a format version this agent speaks; use \"1.2\" (the default) or \"1.05\"", c.Register.FFD)
		}
		for k, v := range c.Register.VATRows {
			known := false
			for _, name := range VATRowKeys {
				known = known || k == name
			}
			if !known {
				add("register.vat_rows", "%q is not a rate set here; use vat5, vat7, vat5_105 or vat7_107", k)
			} else if v < 1 || v > 16 {
				add("register.vat_rows", "%s = %d is not a row of the register's table 6 (1..16)", k, v)
			}
		}
	}

	// smartpay
	if c.SmartPay.Enabled {
		requireURL(&ps, "smartpay.base_url", c.SmartPay.BaseURL)
		if c.SmartPay.CertFile == "" {
			add("smartpay.cert_file", "Smart Pay authenticates the till by its client certificate: name the PEM file")
		}
		if c.SmartPay.KeyFile == "" {
			add("smartpay.key_file", "name the PEM file with the client certificate's private key")
		}
		if c.SmartPay.CodePattern != "" {
			if _, err := regexp.Compile(c.SmartPay.CodePattern); err != nil {
				add("smartpay.code_pattern", "not a valid regular expression: %v", err)
			}
		}
		positive("smartpay.request_timeout", c.SmartPay.RequestTimeout, "15s")
		positive("smartpay.poll_deadline", c.SmartPay.PollDeadline, "3m")
		positive("smartpay.abandon_after", c.SmartPay.AbandonAfter, "10m")
	}

	// alif
	if c.Alif.Enabled {
		requireURL(&ps, "alif.api_url", c.Alif.APIURL)
		requireURL(&ps, "alif.checkout_url", c.Alif.CheckoutURL)
		if c.Alif.TokenFile == "" {
			add("alif.token_file", "name the file holding the Alif API token")
		}
		if c.Alif.EPOS == "" {
			add("alif.epos", "name the Alif terminal (epos) to charge through")
		}
		positive("alif.poll_every", c.Alif.PollEvery, "800ms")
	}

	// alikassa
	if c.AliKassa.Enabled {
		requireURL(&ps, "alikassa.api_url", c.AliKassa.APIURL)
		if c.AliKassa.Account == "" {
			add("alikassa.account", "name the merchant account UUID from the AliKassa cabinet")
		}
		if c.AliKassa.PrivateKeyFile == "" {
			add("alikassa.private_key_file", "name the payments private.pem from the AliKassa cabinet")
		}
		if c.AliKassa.Service == "" {
			add("alikassa.service", "name the AliKassa service, e.g. \"payment_card_bdt_hpp\"")
		}
		switch c.AliKassa.SignatureHash {
		case "sha1", "sha256":
		default:
			add("alikassa.signature_hash", "%q is not supported; use sha1 (AliKassa's reference) or sha256", c.AliKassa.SignatureHash)
		}
		if l := c.AliKassa.PaymentLifetime.D(); l < 15*time.Minute || l > time.Hour {
			add("alikassa.payment_lifetime", "must be from 15m to 1h (AliKassa accepts 900–3600 s)")
		}
		positive("alikassa.poll_every", c.AliKassa.PollEvery, "800ms")
	}
	return ps
}

func (p Port) check(section string) []Problem {
	var ps []Problem
	add := func(key, format string, a ...any) {
		ps = append(ps, Problem{Key: section + "." + key, Msg: fmt.Sprintf(format, a...)})
	}
	switch p.Driver {
	case "bugst", "tarm":
	default:
		add("driver", "%q is not a serial driver; use \"bugst\" (default) or \"tarm\"", p.Driver)
	}
	if p.Port == "" && p.VID == "" {
		add("port", "name the port (e.g. \"/dev/ttyACM0\" or \"COM3\") or set vid and pid to find it by USB identity (see `kassa-agent ports`)")
	}
	if p.Port != "" && p.VID != "" {
		add("vid", "set either port or vid/pid, not both")
	}
	if p.VID != "" && !hexID.MatchString(p.VID) {
		add("vid", "%q is not a USB vendor id; write four hex digits, e.g. \"0c2e\"", p.VID)
	}
	if (p.VID == "") != (p.PID == "") {
		add("pid", "vid and pid go together: set both or neither")
	} else if p.PID != "" && !hexID.MatchString(p.PID) {
		add("pid", "%q is not a USB product id; write four hex digits, e.g. \"0b61\"", p.PID)
	}
	if p.Serial != "" && p.VID == "" {
		add("serial", "a USB serial number only narrows a vid/pid match; set vid and pid too")
	}
	switch p.Baud {
	case 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600:
	default:
		add("baud", "%d is not a supported speed; use 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400, 460800 or 921600", p.Baud)
	}
	return ps
}

func requireURL(ps *[]Problem, key, v string) {
	if !strings.HasPrefix(v, "https://") && !strings.HasPrefix(v, "http://") {
		*ps = append(*ps, Problem{Key: key, Msg: fmt.Sprintf("%q is not a URL; write it with its scheme, e.g. \"https://…\"", v)})
	}
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// resolvePaths makes file names relative to the config file's directory absolute,
// so the service finds them whatever its working directory is.
func (c *Config) resolvePaths(dir string) {
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	abs(&c.Store.Dir)
	abs(&c.API.TokenFile)
	abs(&c.SmartPay.CertFile)
	abs(&c.SmartPay.KeyFile)
	abs(&c.SmartPay.CAFile)
	abs(&c.Alif.TokenFile)
	abs(&c.Alif.WebhookKey)
	abs(&c.AliKassa.PrivateKeyFile)
	abs(&c.AliKassa.PasswordFile)
	abs(&c.AliKassa.NotifyPublicKey)
	abs(&c.Metrics.TokenFile)
	if c.API.TokenFile == "" {
		c.API.TokenFile = filepath.Join(c.Store.Dir, "api-token")
	}
}

// StorePath is the bbolt file inside the data directory.
func (c *Config) StorePath() string { return filepath.Join(c.Store.Dir, "kassa.db") }
