package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kassa-agent/agent/internal/config"
	"kassa-agent/payments/smartpay"
	"kassa-agent/payments/smartpay/sandbox"
	"kassa-agent/queue"
)

func levels(rs map[string]diagResult) map[string]string {
	m := map[string]string{}
	for k, r := range rs {
		m[k] = r.Level
	}
	return m
}

func TestDiagStoppedAgentOnTheSimulatedTill(t *testing.T) {
	r := newRig(t, rigOptions{})
	// A till where the agent ran before and is stopped now.
	require.NoError(t, os.MkdirAll(r.cfg.Store.Dir, 0o700))
	st, err := queue.Open(r.cfg.StorePath(), queue.Options{})
	require.NoError(t, err)
	require.NoError(t, st.Close())

	out, errOut, code := runCmd("diag", "--json", "--config", r.cfgPath)
	require.Equal(t, exitOK, code, "%s%s", out, errOut)
	res := diagByCheck(t, out)
	want := map[string]string{}
	for _, c := range []string{"config", "data_dir", "agent", "store", "outbox", "serial_ports", "scanner", "register",
		"fiscal_drive", "ofd", "fn_warnings", "register_clock", "vat", "smartpay_cert", "smartpay_key", "smartpay_net", "smartpay_auth",
		"alif_net", "alif_auth", "alikassa_net", "alikassa_auth"} {
		want[c] = levelOK
	}
	assert.Equal(t, want, levels(res), "%s", out)
	assert.Contains(t, res["agent"].Detail, "not running")
	assert.Contains(t, res["store"].Detail, "integrity ok")
	assert.Equal(t, "pending 0, parked 0", res["outbox"].Detail)
	assert.Contains(t, res["scanner"].Detail, "present at "+r.till.ScannerPath())
	assert.Contains(t, res["register"].Detail, "paper ok")
	assert.Regexp(t, `^FN \d{16}, valid until \d{4}-\d\d-\d\d \(\d+ days\)$`, res["fiscal_drive"].Detail)
	assert.Equal(t, 1, r.till.Sandbox.Count(smartpay.OpAuth), "diag authenticates live")
	for _, r := range res {
		assert.True(t, r.OK)
		assert.Empty(t, r.Hint)
	}

	// The same as text: ✓ lines and a summary.
	out, _, code = runCmd("diag", "--config", r.cfgPath)
	require.Equal(t, exitOK, code, out)
	assert.Contains(t, out, "✓ smartpay auth   authenticated at "+r.cfg.SmartPay.BaseURL)
	assert.NotContains(t, out, "✗")
	assert.Contains(t, out, "21 checks: 0 failed, 0 warnings")

	// Out of paper: the register line fails with what to do.
	r.till.Register.SetPaper(false)
	out, _, code = runCmd("diag", "--config", r.cfgPath)
	assert.Equal(t, exitDiagFail, code)
	assert.Regexp(t, `(?m)^✗ register .*paper OUT.*\n +→ load receipt paper$`, out)
	assert.Contains(t, out, "21 checks: 1 failed, 0 warnings")

	// A wrong Alif token: the authenticated call is refused, and diag says
	// what to check.
	r.till.Register.SetPaper(true)
	require.NoError(t, os.WriteFile(r.cfg.Alif.TokenFile, []byte("not-the-token\n"), 0o600))
	out, _, code = runCmd("diag", "--config", r.cfgPath)
	assert.Equal(t, exitDiagFail, code)
	assert.Regexp(t, `(?m)^✗ alif auth .*\n +→ the provider refused our credentials`, out)
}

func TestDiagWhileTheAgentRuns(t *testing.T) {
	r := newRig(t, rigOptions{})
	r.startInProcess()
	// The agent checks the register in the background; diag shows what it saw.
	require.Eventually(t, func() bool {
		var st struct {
			Devices struct {
				Scanner  struct{ Connected bool }
				Register struct{ Status *registerReport }
			}
		}
		r.call("GET", "/v1/status", "", "", &st)
		// The agent's own first authentication too: counted after diag, it
		// would look like diag's.
		return st.Devices.Scanner.Connected && st.Devices.Register.Status != nil && r.till.Sandbox.Count(smartpay.OpAuth) >= 1
	}, 10*time.Second, 20*time.Millisecond)
	auths := r.till.Sandbox.Count(smartpay.OpAuth)

	out, errOut, code := runCmd("diag", "--json", "--config", r.cfgPath)
	require.Equal(t, exitOK, code, "%s%s", out, errOut)
	res := diagByCheck(t, out)
	want := map[string]string{}
	for _, c := range []string{"config", "data_dir", "agent", "store", "outbox", "serial_ports", "scanner", "register",
		"fiscal_drive", "ofd", "smartpay_cert", "smartpay_key", "smartpay_net", "payments", "alif_net", "alif", "alikassa_net", "alikassa"} {
		want[c] = levelOK
	}
	assert.Equal(t, want, levels(res), "%s", out)
	assert.Contains(t, res["agent"].Detail, "agent running")
	assert.Contains(t, res["store"].Detail, "held by the agent")
	assert.Contains(t, res["scanner"].Detail, "the agent holds it")
	assert.Contains(t, res["register"].Detail, "as the agent saw it")
	assert.Equal(t, "none need attention", res["payments"].Detail)
	assert.Equal(t, auths, r.till.Sandbox.Count(smartpay.OpAuth), "no live auth while the agent runs")
}

func TestDiagBrokenTill(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "client.key")
	require.NoError(t, os.WriteFile(key, []byte("not really a key"), 0o644))
	require.NoError(t, os.Chmod(key, 0o644)) // past the umask
	cfgPath, _ := writeConfig(t, `
[scanner]
enabled = true
port = "/dev/kassa-diag-no-such-scanner"
[register]
enabled = true
transport = "serial"
port = "/dev/kassa-diag-no-such-register"
[smartpay]
enabled = true
base_url = "https://127.0.0.1:1"
cert_file = "`+filepath.Join(dir, "missing.pem")+`"
key_file = "`+key+`"
`)
	start := time.Now()
	out, _, code := runCmd("diag", "--json", "--config", cfgPath)
	assert.Equal(t, exitDiagFail, code)
	assert.Less(t, time.Since(start), 5*time.Second, "nothing here needs a timeout")
	res := diagByCheck(t, out)
	assert.Equal(t, map[string]string{
		"config": levelOK, "data_dir": levelWarn, "agent": levelOK, "store": levelWarn, "serial_ports": levelOK,
		"scanner": levelFail, "register": levelFail, "smartpay_cert": levelFail, "smartpay_key": levelFail, "smartpay_net": levelFail,
	}, levels(res), "%s", out)
	assert.Contains(t, res["register"].Detail, "/dev/kassa-diag-no-such-register")
	assert.Contains(t, res["register"].Hint, "kassa-agent ports")
	assert.Contains(t, res["smartpay_cert"].Detail, "missing.pem")
	assert.Equal(t, "chmod 600 "+key, res["smartpay_key"].Hint)
	for _, r := range res {
		if r.Level != levelOK {
			assert.NotEmpty(t, r.Hint, r.Check)
		}
		assert.Equal(t, r.Level != levelFail, r.OK, r.Check)
	}

	out, _, code = runCmd("diag", "--config", cfgPath)
	assert.Equal(t, exitDiagFail, code)
	assert.Regexp(t, `(?m)^✗ register +open /dev/kassa-diag-no-such-register`, out)
	assert.Regexp(t, `(?m)^ +→ chmod 600 `, out)
	assert.Regexp(t, `(?m)^⚠ store +no store at `, out)
	assert.Contains(t, out, "10 checks: 5 failed, 2 warnings")

	// A config that does not load stops the list there.
	bad := filepath.Join(dir, "bad.toml")
	require.NoError(t, os.WriteFile(bad, []byte("[api]\nlisen = 1\n"), 0o600))
	out, _, code = runCmd("diag", "--json", "--config", bad)
	assert.Equal(t, exitDiagFail, code)
	res = diagByCheck(t, out)
	require.Len(t, res, 1)
	assert.Contains(t, res["config"].Detail, "api.lisen")
	assert.False(t, res["config"].OK)
}

// The register's own state is graded the same whether diag read it or the
// agent did.
func TestDiagRegisterGrades(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	good := registerReport{Model: "ШТРИХ-М-01Ф", Serial: "0001", FNNumber: "9999078900001234", RegNumber: "0000000001012345",
		FNExpiry: now.AddDate(1, 0, 0), ShiftOpen: true, ShiftNumber: 7, Ready: true}
	cases := []struct {
		name   string
		change func(*registerReport)
		want   map[string]string
		hint   string
	}{
		{"all good", func(*registerReport) {}, map[string]string{"register": levelOK, "fiscal_drive": levelOK, "ofd": levelOK}, ""},
		{"paper out", func(r *registerReport) { r.PaperOut, r.Ready, r.NotReady = true, false, "no receipt paper" },
			map[string]string{"register": levelFail, "fiscal_drive": levelOK, "ofd": levelOK}, "load receipt paper"},
		{"shift closed", func(r *registerReport) { r.ShiftOpen, r.Ready, r.NotReady = false, false, "shift is closed" },
			map[string]string{"register": levelFail, "fiscal_drive": levelOK, "ofd": levelOK}, "register.auto_open_shift"},
		{"shift over 24h", func(r *registerReport) { r.ShiftExpired, r.Ready, r.NotReady = true, false, "Z report needed" },
			map[string]string{"register": levelFail, "fiscal_drive": levelOK, "ofd": levelOK}, "Z report"},
		{"FN in 20 days", func(r *registerReport) { r.FNExpiry = now.AddDate(0, 0, 20) },
			map[string]string{"register": levelOK, "fiscal_drive": levelWarn, "ofd": levelOK}, "order a new fiscal drive"},
		{"FN expired", func(r *registerReport) { r.FNExpiry = now.Add(-time.Hour) },
			map[string]string{"register": levelOK, "fiscal_drive": levelFail, "ofd": levelOK}, "replace the fiscal drive"},
		{"OFD 2 days behind", func(r *registerReport) { r.OFDBacklog, r.OFDOldest = 4, now.AddDate(0, 0, -2) },
			map[string]string{"register": levelOK, "fiscal_drive": levelOK, "ofd": levelOK}, ""},
		{"OFD 4 days behind", func(r *registerReport) { r.OFDBacklog, r.OFDOldest = 40, now.AddDate(0, 0, -4) },
			map[string]string{"register": levelOK, "fiscal_drive": levelOK, "ofd": levelWarn}, "internet connection"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rep := good
			tc.change(&rep)
			d := &diagnosis{now: func() time.Time { return now }}
			d.registerReport(&rep, "")
			got := map[string]string{}
			hints := ""
			for _, r := range d.results {
				got[r.Check] = r.Level
				hints += r.Hint
			}
			assert.Equal(t, tc.want, got)
			if tc.hint == "" {
				assert.Empty(t, hints)
			} else {
				assert.Contains(t, hints, tc.hint)
			}
		})
	}
}

func TestDiagSmartPayCertificateExpiry(t *testing.T) {
	cases := []struct {
		validity time.Duration
		level    string
		detail   string
	}{
		{400 * 24 * time.Hour, levelOK, "valid until"},
		{20 * 24 * time.Hour, levelWarn, "in 19 days"},
		{2 * 24 * time.Hour, levelFail, "expires on"},
		{-time.Hour, levelFail, "expired on"},
	}
	for _, tc := range cases {
		sb, err := sandbox.Start(sandbox.Options{Dir: t.TempDir(), ClientCertValidity: tc.validity})
		require.NoError(t, err)
		f := sb.Files()
		cfg := config.Config{SmartPay: config.SmartPay{Enabled: true, BaseURL: sb.URL(), CertFile: f.CertFile, KeyFile: f.KeyFile, CAFile: f.CAFile}}
		d := &diagnosis{now: time.Now}
		d.smartPay(context.Background(), cfg, false)
		require.NoError(t, sb.Close())
		require.Len(t, d.results, 3, "%+v", d.results)
		assert.Equal(t, "smartpay_cert", d.results[0].Check)
		assert.Equal(t, tc.level, d.results[0].Level, "%v: %+v", tc.validity, d.results[0])
		assert.Contains(t, d.results[0].Detail, tc.detail)
		assert.Equal(t, levelOK, d.results[1].Level, "the sandbox writes its key owner-only")
		assert.Equal(t, "smartpay_net", d.results[2].Check)
		assert.Equal(t, levelOK, d.results[2].Level, "the sandbox's own server certificate is long-lived: %+v", d.results[2])
	}
}

func TestDiagJSONShape(t *testing.T) {
	d := &diagnosis{now: time.Now}
	d.ok("config", "/etc/kassa-agent/config.toml")
	d.warn("ofd", "3 documents waiting", "check the internet")
	d.fail("scanner", "not present", "check the cable")
	raw, err := json.Marshal(d.results)
	require.NoError(t, err)
	assert.JSONEq(t, `[
	{"check":"config","ok":true,"level":"ok","detail":"/etc/kassa-agent/config.toml","hint":""},
	{"check":"ofd","ok":true,"level":"warn","detail":"3 documents waiting","hint":"check the internet"},
	{"check":"scanner","ok":false,"level":"fail","detail":"not present","hint":"check the cable"}]`, string(raw))
	var b strings.Builder
	d.writeText(&b)
	assert.Equal(t, "✓ config          /etc/kassa-agent/config.toml\n"+
		"⚠ ofd             3 documents waiting\n"+
		"                  → check the internet\n"+
		"✗ scanner         not present\n"+
		"                  → check the cable\n"+
		"\n3 checks: 1 failed, 1 warning\n", b.String())
}
