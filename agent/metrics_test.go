package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// These tests use the agent only through HTTP, as Prometheus does.

// get sends GET url with the bearer token (none when ""), returning the
// status and the body.
func get(t *testing.T, url, token string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, b
}

// exposition is one parsed scrape.
type exposition map[string]*dto.MetricFamily

func parseExposition(t *testing.T, body []byte) exposition {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	require.NoError(t, err, "%s", body)
	return fams
}

// value is the sample of name whose labels include want ("k=v" pairs); for
// a histogram, its count. ok is false when there is none.
func (e exposition) value(name string, want ...string) (v float64, ok bool) {
	f := e[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		for _, kv := range want {
			k, v, _ := strings.Cut(kv, "=")
			if labels[k] != v {
				continue next
			}
		}
		switch {
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

func (r *rig) scrape(t *testing.T) exposition {
	t.Helper()
	code, body := get(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", r.port), r.token)
	require.Equal(t, 200, code, "%s", body)
	return parseExposition(t, body)
}

// TestMetricsSeeAPayment: /metrics on the API port needs the token; its
// numbers move with a Smart Pay sale and an Alif sale.
func TestMetricsSeeAPayment(t *testing.T) {
	r := newRig(t, rigOptions{})
	r.startInProcess()
	url := fmt.Sprintf("http://127.0.0.1:%d/metrics", r.port)
	code, body := get(t, url, "")
	assert.Equal(t, 401, code, "without the token: %s", body)
	code, _ = get(t, url, "not-the-token")
	assert.Equal(t, 401, code, "with a wrong token")

	// The register watcher asks the register once at start.
	var before exposition
	require.Eventually(t, func() bool {
		before = r.scrape(t)
		v, _ := before.value("kassa_device_connected", "device=register")
		return v == 1
	}, 10*time.Second, 50*time.Millisecond, "the register never showed as connected")
	v, ok := before.value("kassa_payments", "provider=smartpay", "state=completed")
	require.True(t, ok, "kassa_payments has no smartpay/completed series before any sale")
	assert.Zero(t, v)
	v, _ = before.value("kassa_build_info", "version="+version, "commit="+commit)
	assert.Equal(t, 1.0, v)
	in30d := float64(time.Now().Add(30 * 24 * time.Hour).Unix())
	v, ok = before.value("kassa_fn_expiry_timestamp_seconds")
	assert.True(t, ok && v > in30d, "FN expiry %v %v", v, ok)
	v, _ = before.value("kassa_smartpay_certificate_expiry_timestamp_seconds")
	assert.Greater(t, v, float64(time.Now().Add(14*24*time.Hour).Unix()))
	v, _ = before.value("kassa_store_size_bytes")
	assert.Greater(t, v, 0.0)
	_, ok = before.value("kassa_shift_open")
	assert.True(t, ok, "kassa_shift_open missing")
	for _, name := range []string{"kassa_receipts_owed", "kassa_outbox_pending_messages", "kassa_outbox_parked_messages",
		"kassa_outbox_oldest_pending_age_seconds", "kassa_ofd_unsent_documents", "kassa_receipt_owed_oldest_age_seconds"} {
		_, ok := before.value(name)
		assert.True(t, ok, "%s missing", name)
	}
	prints, _ := before.value("kassa_register_command_duration_seconds", "command=print_receipt")

	p := r.create("k1", saleBody(20480, milkReceipt))
	r.showCode()
	r.waitState(p.ID, "completed", 10*time.Second)
	h := hostedProviders[0] // alif
	q := r.create("k2", h.body)
	q = r.waitState(q.ID, "processing", 10*time.Second)
	require.NoError(t, h.pay(r, q))
	r.waitState(q.ID, "completed", 10*time.Second)

	after := r.scrape(t)
	v, _ = after.value("kassa_payments", "provider=smartpay", "state=completed")
	assert.Equal(t, 1.0, v, "smartpay completed")
	v, _ = after.value("kassa_payments", "provider=alif", "state=completed")
	assert.Equal(t, 1.0, v, "alif completed")
	for _, call := range []string{"commit", "release", "status"} {
		v, _ = after.value("kassa_provider_call_duration_seconds", "provider=smartpay", "call="+call)
		assert.GreaterOrEqual(t, v, 1.0, "smartpay %s calls", call)
	}
	for _, call := range []string{"create", "status"} {
		v, _ = after.value("kassa_provider_call_duration_seconds", "provider=alif", "call="+call)
		assert.GreaterOrEqual(t, v, 1.0, "alif %s calls", call)
	}
	v, _ = after.value("kassa_register_command_duration_seconds", "command=print_receipt")
	assert.Equal(t, prints+1, v, "print_receipt commands (the Alif payment prints a slip, not a receipt)")
	v, _ = after.value("kassa_register_command_duration_seconds", "command=print_text")
	assert.GreaterOrEqual(t, v, 1.0, "the Alif slip")
	v, _ = after.value("kassa_receipts_owed")
	assert.Zero(t, v)
	// Never a payment id in a label.
	_, text := get(t, url, r.token)
	assert.NotContains(t, string(text), p.ID)
	assert.NotContains(t, string(text), q.ID)
}

// TestMetricsListenerServesOnlyMetrics: metrics.listen is a second address
// with /metrics alone, behind its own token; a payment route there is 404.
// Bound to every interface, it is logged as a warning.
func TestMetricsListenerServesOnlyMetrics(t *testing.T) {
	mport := freePort(t)
	dir := t.TempDir()
	tokFile := filepath.Join(dir, "metrics-token")
	require.NoError(t, os.WriteFile(tokFile, []byte("scrape-secret\n"), 0o600))
	r := newRig(t, rigOptions{extra: fmt.Sprintf("[metrics]\nlisten = \"0.0.0.0:%d\"\ntoken_file = %q\n", mport, tokFile)})
	r.startInProcess()
	base := fmt.Sprintf("http://127.0.0.1:%d", mport)

	code, body := get(t, base+"/metrics", "")
	assert.Equal(t, 401, code, "no token: %s", body)
	code, _ = get(t, base+"/metrics", r.token)
	assert.Equal(t, 401, code, "the API token is not the metrics token")
	code, body = get(t, base+"/metrics", "scrape-secret")
	require.Equal(t, 200, code, "%s", body)
	_, ok := parseExposition(t, body).value("kassa_build_info")
	assert.True(t, ok)
	for _, path := range []string{"/v1/payments", "/v1/status", "/v1/health", "/v1/outbox", "/"} {
		for _, tok := range []string{"scrape-secret", r.token} {
			code, _ = get(t, base+path, tok)
			assert.Equal(t, 404, code, "%s on the metrics address", path)
		}
	}
	assert.Contains(t, r.logs.String(), "metrics are served on a non-loopback address")
	// The API port still serves /metrics behind the API token.
	r.scrape(t)
}

// TestMetricsListenerWithoutToken: with no token file the second address
// answers anyone (a loopback one here: no warning).
func TestMetricsListenerWithoutToken(t *testing.T) {
	mport := freePort(t)
	r := newRig(t, rigOptions{extra: fmt.Sprintf("[metrics]\nlisten = \"127.0.0.1:%d\"\n", mport)})
	r.startInProcess()
	code, body := get(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", mport), "")
	require.Equal(t, 200, code, "%s", body)
	_, ok := parseExposition(t, body).value("kassa_payments", "provider=smartpay", "state=completed")
	assert.True(t, ok)
	code, _ = get(t, fmt.Sprintf("http://127.0.0.1:%d/v1/payments", mport), "")
	assert.Equal(t, 404, code)
	assert.NotContains(t, r.logs.String(), "metrics are served on a non-loopback address")
}

// TestPromtool checks the exposition after a sale with promtool check
// metrics, and the shipped alert rules with promtool check rules and their
// unit tests (promtool test rules).
func TestPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool is not installed (Debian: apt-get install prometheus): the exposition and scripts/prometheus rules are not checked")
	}
	r := newRig(t, rigOptions{})
	r.startInProcess()
	p := r.create("k1", saleBody(20480, milkReceipt))
	r.showCode()
	r.waitState(p.ID, "completed", 10*time.Second)
	code, body := get(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", r.port), r.token)
	require.Equal(t, 200, code)

	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(body)
	out, err := cmd.CombinedOutput()
	assert.NoError(t, err, "promtool check metrics:\n%s", out)

	rules, err := filepath.Glob("../scripts/prometheus/*.rules.yml")
	require.NoError(t, err)
	require.NotEmpty(t, rules, "no alert rules in scripts/prometheus")
	out, err = exec.Command(promtool, append([]string{"check", "rules"}, rules...)...).CombinedOutput()
	assert.NoError(t, err, "promtool check rules:\n%s", out)
	tests, err := filepath.Glob("../scripts/prometheus/*_test.yml")
	require.NoError(t, err)
	require.NotEmpty(t, tests, "no rule unit tests in scripts/prometheus")
	out, err = exec.Command(promtool, append([]string{"test", "rules"}, tests...)...).CombinedOutput()
	assert.NoError(t, err, "promtool test rules:\n%s", out)
}

// TestMetricsListenerRefusesToStart: a busy metrics port or a configured
// token file that is missing or empty stops the start with a message naming
// it, and the API port is released again.
func TestMetricsListenerRefusesToStart(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer busy.Close()
	empty := filepath.Join(t.TempDir(), "empty-token")
	require.NoError(t, os.WriteFile(empty, []byte("\n"), 0o600))
	for _, tc := range []struct{ extra, msg string }{
		{fmt.Sprintf("[metrics]\nlisten = %q\n", busy.Addr().String()), "metrics address cannot listen"},
		{fmt.Sprintf("[metrics]\nlisten = \"127.0.0.1:%d\"\ntoken_file = %q\n", freePort(t), filepath.Join(t.TempDir(), "absent")), "metrics.token_file"},
		{fmt.Sprintf("[metrics]\nlisten = \"127.0.0.1:%d\"\ntoken_file = %q\n", freePort(t), empty), "is empty"},
	} {
		r := newRig(t, rigOptions{extra: tc.extra})
		_, err := openApp(t.Context(), r.cfg, newLogger(r.cfg.Log, true, r.logs))
		require.Error(t, err, tc.extra)
		assert.Contains(t, err.Error(), tc.msg)
		ln, err := net.Listen("tcp", r.cfg.API.Listen)
		require.NoError(t, err, "the API port was not released")
		ln.Close()
	}
}
