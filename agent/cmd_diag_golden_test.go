package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"flag"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kassa-agent/agent/internal/config"
	"kassa-agent/device"
	"kassa-agent/fiscal"
	"kassa-agent/fiscal/shtrih"
	"kassa-agent/fiscal/shtrihsim"
	"kassa-agent/queue"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// diagNormalisers turn what differs from run to run (ports, dates, free
// space, the machine's own serial ports) into fixed words.
var diagNormalisers = []struct {
	re  *regexp.Regexp
	out string
}{
	{regexp.MustCompile(`127\.0\.0\.1:\d+`), "127.0.0.1:PORT"},
	{regexp.MustCompile(`/dev/pts/\d+`), "/dev/pts/N"},
	{regexp.MustCompile(`\d{4}-\d\d-\d\d \d\d:\d\d(:\d\d)?`), "DATETIME"},
	{regexp.MustCompile(`\d{4}-\d\d-\d\d`), "DATE"},
	{regexp.MustCompile(`\(\d+ days?\)`), "(N days)"},
	{regexp.MustCompile(`in \d+ days`), "in N days"},
	{regexp.MustCompile(`[\d.]+ (GiB|MiB|KiB|bytes) free`), "SIZE free"},
	{regexp.MustCompile(`\(\d+ (KiB|bytes)\): integrity`), "(SIZE): integrity"},
	{regexp.MustCompile(`(?m)^(. serial ports +)[^;\n]*`), "${1}PORTS"},
}

func normDiag(out string, dirs ...string) string {
	for _, d := range dirs {
		out = strings.ReplaceAll(out, d, "$DIR")
	}
	for _, n := range diagNormalisers {
		out = n.re.ReplaceAllString(out, n.out)
	}
	return out
}

// golden compares got with testdata/diag/name, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	p := filepath.Join("testdata", "diag", name)
	if *update {
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(got), 0o644))
		return
	}
	want, err := os.ReadFile(p)
	require.NoError(t, err, "run go test -run %s -update to write it", t.Name())
	assert.Equal(t, string(want), got, "golden %s", p)
}

// diagText runs diag as a technician does and checks the exit code.
func diagText(t *testing.T, wantCode int, dirs []string, args ...string) string {
	t.Helper()
	out, errOut, code := runCmd(append([]string{"diag"}, args...)...)
	require.Equal(t, wantCode, code, "%s%s", out, errOut)
	return normDiag(out, dirs...)
}

func rigDirs(r *rig) []string { return []string{filepath.Dir(r.cfgPath)} }

// The simulated till, stopped agent: all good, then one fault at a time.
func TestDiagGoldenSimulatedTill(t *testing.T) {
	r := newRig(t, rigOptions{})
	require.NoError(t, os.MkdirAll(r.cfg.Store.Dir, 0o700))
	st, err := queue.Open(r.cfg.StorePath(), queue.Options{})
	require.NoError(t, err)
	require.NoError(t, st.Close())
	dirs := rigDirs(r)

	golden(t, "healthy.txt", diagText(t, exitOK, dirs, "--config", r.cfgPath))
	// A disk nearly full, by asking for more free space than any disk has.
	golden(t, "disk_nearly_full.txt", diagText(t, exitDiagWarn, dirs, "--config", r.cfgPath, "--min-free-mb", "1000000000"))

	r.till.Register.SetPaper(false)
	golden(t, "paper_out.txt", diagText(t, exitDiagFail, dirs, "--config", r.cfgPath))
	r.till.Register.SetPaper(true)

	require.NoError(t, os.WriteFile(r.cfg.Alif.TokenFile, []byte("not-the-token\n"), 0o600))
	golden(t, "alif_bad_token.txt", diagText(t, exitDiagFail, dirs, "--config", r.cfgPath))
}

// rewriteConfig replaces one key's line in the rig's config file.
func rewriteConfig(t *testing.T, r *rig, old, new string) {
	t.Helper()
	src, err := os.ReadFile(r.cfgPath)
	require.NoError(t, err)
	require.Contains(t, string(src), old)
	require.NoError(t, os.WriteFile(r.cfgPath, []byte(strings.Replace(string(src), old, new, 1)), 0o600))
}

// Each provider fails at another step on the way: TLS spoken to a plain HTTP
// server, a name that does not resolve, a port nobody listens on.
func TestDiagGoldenNetworkFaults(t *testing.T) {
	r := newRig(t, rigOptions{})
	plain := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(plain.Close)
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	deadAddr := closed.Addr().String()
	require.NoError(t, closed.Close())

	rewriteConfig(t, r, fmt.Sprintf("base_url = %q", r.till.Sandbox.URL()), fmt.Sprintf("base_url = %q", strings.Replace(plain.URL, "http:", "https:", 1)))
	rewriteConfig(t, r, fmt.Sprintf("api_url = %q", r.till.Alif.ClientConfig().APIURL), `api_url = "https://nonexistent.invalid/v2"`)
	rewriteConfig(t, r, fmt.Sprintf("api_url = %q", r.till.AliKassa.ClientConfig().BaseURL), fmt.Sprintf("api_url = %q", "http://"+deadAddr))

	out := diagText(t, exitDiagFail, rigDirs(r), "--config", r.cfgPath)
	golden(t, "network_faults.txt", out)
	assert.Equal(t, 0, r.till.Alif.Count("status"), "no authenticated call to a provider diag cannot reach")
}

// selfSigned makes a CA-signed-by-itself server certificate for 127.0.0.1
// that lapses after validity.
func selfSigned(t *testing.T, validity time.Duration) (tls.Certificate, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "smartpay test front"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(validity),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// Smart Pay's own certificate lapses in 10 days: a warning, while the
// authenticated call (relayed to the sandbox) still goes through.
func TestDiagGoldenProviderCertificateNearExpiry(t *testing.T) {
	r := newRig(t, rigOptions{})
	f := r.till.Sandbox.Files()
	client, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
	require.NoError(t, err)
	caPEM, err := os.ReadFile(f.CAFile)
	require.NoError(t, err)
	roots := x509.NewCertPool()
	require.True(t, roots.AppendCertsFromPEM(caPEM))
	target, err := url.Parse(r.till.Sandbox.URL())
	require.NoError(t, err)
	relay := httputil.NewSingleHostReverseProxy(target)
	relay.Transport = &http.Transport{TLSClientConfig: &tls.Config{Certificates: []tls.Certificate{client}, RootCAs: roots}}
	front := httptest.NewUnstartedServer(relay)
	cert, certPEM := selfSigned(t, 10*24*time.Hour)
	front.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	front.StartTLS()
	t.Cleanup(front.Close)
	frontCA := filepath.Join(t.TempDir(), "front-ca.pem")
	require.NoError(t, os.WriteFile(frontCA, certPEM, 0o600))

	rewriteConfig(t, r, fmt.Sprintf("base_url = %q", r.till.Sandbox.URL()), fmt.Sprintf("base_url = %q", front.URL))
	rewriteConfig(t, r, fmt.Sprintf("ca_file = %q", f.CAFile), fmt.Sprintf("ca_file = %q", frontCA))
	golden(t, "provider_cert_near_expiry.txt", diagText(t, exitDiagWarn, append(rigDirs(r), filepath.Dir(frontCA)), "--config", r.cfgPath))
}

// movingClock is a register's clock that a test sets back and forth.
type movingClock struct{ off atomic.Int64 }

func (c *movingClock) Now() time.Time        { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *movingClock) Set(off time.Duration) { c.off.Store(int64(off)) }

// A register that has lived long: its FN was registered 13 months less 10
// days ago (it expires in 10 days), the OFD has had nothing since, the shift
// was opened 25 hours ago, its clock runs 10 minutes ahead and table 6 holds
// 10 % in the row the agent sends 5 % in.
func TestDiagGoldenAgedRegister(t *testing.T) {
	if _, err := os.Stat("/dev/ptmx"); err != nil {
		t.Skip("the register simulator is served on a pseudo-terminal")
	}
	clock := &movingClock{}
	clock.Set(-(time.Until(time.Now().AddDate(1, 1, 0)) - 10*24*time.Hour))
	sim, err := shtrihsim.New(shtrihsim.Options{Now: clock.Now, FNNumber: "9999078902012345", RegNumber: "0000000001012345",
		INN: "7700000000", Serial: 12345678, TaxRows: map[int]int{7: 10}, Location: time.Local})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	path, err := sim.ServePTY(ctx)
	require.NoError(t, err)

	p, err := device.Open(device.PortConfig{Name: path, Baud: 115200})
	require.NoError(t, err)
	drv := shtrih.New(p, shtrih.Options{Now: clock.Now})
	clock.Set(-4 * 24 * time.Hour)
	require.NoError(t, drv.OpenShift(ctx))
	require.NoError(t, drv.CloseShift(ctx))
	clock.Set(-25 * time.Hour)
	require.NoError(t, drv.OpenShift(ctx))
	require.NoError(t, drv.Close())
	clock.Set(10 * time.Minute)

	cfgPath, _ := writeConfig(t, fmt.Sprintf("[register]\nenabled = true\ntransport = \"serial\"\nport = %q\nbaud = 115200\n", path))
	cfg, err := config.Load(cfgPath)
	require.NoError(t, err)
	require.NoError(t, os.MkdirAll(cfg.Store.Dir, 0o700))
	st, err := queue.Open(cfg.StorePath(), queue.Options{})
	require.NoError(t, err)
	require.NoError(t, st.Close())
	golden(t, "aged_register.txt", diagText(t, exitDiagWarn, []string{filepath.Dir(cfgPath)}, "--config", cfgPath))
}

// Parked outbox messages fail diag and point at the command that shows them.
func TestDiagGoldenParkedOutbox(t *testing.T) {
	cfgPath, _ := writeConfig(t, "")
	cfg, err := config.Load(cfgPath)
	require.NoError(t, err)
	fillOutbox(t, cfg, 2, 0)
	golden(t, "parked_outbox.txt", diagText(t, exitDiagFail, []string{filepath.Dir(cfgPath)}, "--config", cfgPath))
}

// The register's own faults that the simulator cannot show (FN warning
// flags, an expired FN, a closed shift), graded the same way and written as
// a technician reads them.
func TestDiagGoldenRegisterGrades(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	good := registerReport{Model: "ШТРИХ-М-01Ф", Serial: "0001", FNNumber: "9999078900001234", RegNumber: "0000000001012345",
		FNExpiry: now.AddDate(1, 0, 0), ShiftOpen: true, ShiftNumber: 7, Ready: true}
	rows := map[fiscal.VATRate]shtrih.TaxRow{fiscal.VAT5: {Row: 7, Rate: 500}, fiscal.VAT7: {Row: 8, Rate: 700},
		fiscal.VAT5105: {Row: 9, Rate: 500}, fiscal.VAT7107: {Row: 10, Rate: 700}}
	var b strings.Builder
	for _, tc := range []struct {
		name   string
		change func(*registerReport, *shtrih.Diag)
	}{
		{"FN expired, shift closed", func(r *registerReport, _ *shtrih.Diag) {
			r.FNExpiry, r.ShiftOpen, r.Ready, r.NotReady = now.Add(-time.Hour), false, false, "shift is closed"
		}},
		{"FN: replace urgently", func(_ *registerReport, g *shtrih.Diag) { g.FNWarnings = shtrih.FNWarnReplaceUrgent }},
		{"FN: 30 days left, archive 90 % full", func(_ *registerReport, g *shtrih.Diag) {
			g.FNWarnings = shtrih.FNWarnReplaceSoon | shtrih.FNWarnMemoryFull
		}},
		{"FN: the OFD does not answer; clock behind; T17П71 = 2", func(_ *registerReport, g *shtrih.Diag) {
			g.FNWarnings, g.Clock, g.VAT22Mode, g.VAT22ModeErr = shtrih.FNWarnOFDTimeout, now.Add(-7*time.Minute), 2, nil
		}},
	} {
		rep, g := good, shtrih.Diag{Clock: now, TaxRows: rows, VAT22Mode: 1}
		tc.change(&rep, &g)
		d := &diagnosis{now: func() time.Time { return now }}
		d.registerReport(&rep, "")
		d.registerDiag(g)
		fmt.Fprintf(&b, "## %s (exit %d)\n", tc.name, d.exitCode())
		d.writeText(&b)
		b.WriteString("\n")
	}
	golden(t, "register_grades.txt", b.String())
}

// Lines graded from what diag read, for the faults a simulated till does not
// produce by itself: two USB ports that match the scanner's VID:PID (the
// listing comes from an enumerator, as the ports command's tests do), and
// deliveries stuck for two hours.
func TestDiagGoldenPortsAndOutboxGrades(t *testing.T) {
	cfg := config.Config{Scanner: config.Scanner{Enabled: true, Port: config.Port{VID: "0C2E", PID: "0B61"}},
		Register: config.Register{Enabled: true, Port: config.Port{Port: "/dev/ttyACM0"}}}
	ports := []device.PortInfo{
		{Name: "/dev/ttyACM0", IsUSB: true, VID: "1FC9", PID: "0083", Manufacturer: "SHTRIH-M", Product: "FR"},
		{Name: "/dev/ttyACM1", IsUSB: true, VID: "0C2E", PID: "0B61", Product: "Honeywell 1450g"},
		{Name: "/dev/ttyACM2", IsUSB: true, VID: "0C2E", PID: "0B61", Product: "Honeywell 1450g"},
	}
	d := &diagnosis{now: time.Now, enum: device.EnumeratorFunc(func() ([]device.PortInfo, error) { return ports, nil })}
	d.serialPorts(cfg)
	d.outbox(&outboxStatus{Pending: 3, OldestPendingAge: 2 * 3600}, nil)
	var b strings.Builder
	d.writeText(&b)
	assert.Equal(t, exitDiagWarn, d.exitCode())
	golden(t, "ports_and_outbox_grades.txt", b.String())
}
