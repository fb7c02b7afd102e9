package main

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kassa-agent/fiscal/shtrihsim"
	"kassa-agent/payments"
)

// has reports which optional interfaces v implements, as the engine asks.
func has(v any) map[string]bool {
	_, f := v.(payments.Finder)
	_, c := v.(payments.Canceler)
	_, r := v.(payments.Refunder)
	_, ve := v.(payments.Verifier)
	_, p := v.(payments.Prober)
	return map[string]bool{"Finder": f, "Canceler": c, "Refunder": r, "Verifier": ve, "Prober": p}
}

// TestWrappedProvidersKeepTheirInterfaces: the metrics wrapper of the real
// Alif and AliKassa clients answers the engine's type assertions as the
// clients do, and still reaches them.
func TestWrappedProvidersKeepTheirInterfaces(t *testing.T) {
	r := newRig(t, rigOptions{})
	provs, err := newProviders(r.cfg, newLogger(r.cfg.Log, true, r.logs))
	require.NoError(t, err)
	require.Len(t, provs, 2, "the rig enables Alif and AliKassa")
	m := newMetrics()
	for _, p := range provs {
		defer p.Close()
		w := m.wrapProvider(p)
		assert.Equal(t, p.Name(), w.Name())
		assert.Equal(t, has(p), has(w), "%s", p.Name())
		// Probe goes through the wrapper to the provider's sandbox.
		require.NoError(t, w.(payments.Prober).Probe(t.Context()), "%s", p.Name())
		v, ok := parseRegistry(t, m).value("kassa_provider_call_duration_seconds", "provider="+p.Name(), "call=probe")
		assert.True(t, ok && v == 1, "%s probe observed: %v", p.Name(), v)
	}
}

// TestWithOptionalEveryCombination: for each of the 32 combinations of
// optional interfaces, a provider with exactly those, wrapped, has exactly
// those; the inner provider's set is checked first so the test cannot pass
// by building both sides wrong the same way.
func TestWithOptionalEveryCombination(t *testing.T) {
	full := &fullProvider{}
	names := []string{"Finder", "Canceler", "Refunder", "Verifier", "Prober"}
	m := newMetrics()
	for mask := 0; mask < 32; mask++ {
		var o optional
		want := map[string]bool{}
		for i, n := range names {
			on := mask&(1<<i) != 0
			want[n] = on
			if !on {
				continue
			}
			switch n {
			case "Finder":
				o.finder = full
			case "Canceler":
				o.canceler = full
			case "Refunder":
				o.refunder = full
			case "Verifier":
				o.verifier = full
			case "Prober":
				o.prober = full
			}
		}
		inner := withOptional(full, o)
		require.Equal(t, want, has(inner), "mask %05b: the inner provider", mask)
		w := m.wrapProvider(inner)
		assert.Equal(t, want, has(w), "mask %05b: the wrapped provider", mask)
		assert.NotEqual(t, reflect.TypeOf(inner), reflect.TypeOf(full))
	}
	// Calls through the wrapper reach the provider's optional methods.
	w := m.wrapProvider(withOptional(full, optional{finder: full, canceler: full, refunder: full, verifier: full, prober: full}))
	_, _, _ = w.(payments.Finder).Find(t.Context(), "o")
	_ = w.(payments.Canceler).Cancel(t.Context(), payments.Ref{})
	_, _ = w.(payments.Refunder).Refund(t.Context(), payments.Ref{}, payments.Amount{})
	_, _ = w.(payments.Verifier).VerifyNotice(nil, nil, nil)
	assert.Equal(t, []string{"find", "cancel", "refund", "verify"}, full.calls)
	v, _ := parseRegistry(t, m).value("kassa_provider_call_errors_total", "provider=full", "call=cancel", "class=unavailable")
	assert.Equal(t, 1.0, v)
}

// fullProvider has every optional interface; withOptional narrows it.
type fullProvider struct{ calls []string }

func (*fullProvider) Name() string                { return "full" }
func (*fullProvider) Check(payments.Order) error  { return nil }
func (*fullProvider) FullRefundOnly() bool        { return true }
func (*fullProvider) Probe(context.Context) error { return nil }
func (*fullProvider) Create(context.Context, payments.Order) (payments.Ref, error) {
	return payments.Ref{}, nil
}
func (*fullProvider) Status(context.Context, payments.Ref) (payments.Status, error) {
	return payments.Status{}, nil
}
func (f *fullProvider) Find(context.Context, string) (payments.Ref, payments.Status, error) {
	f.calls = append(f.calls, "find")
	return payments.Ref{}, payments.Status{}, payments.ErrNotFound
}
func (f *fullProvider) Cancel(context.Context, payments.Ref) error {
	f.calls = append(f.calls, "cancel")
	return payments.ErrUnavailable
}
func (f *fullProvider) Refund(context.Context, payments.Ref, payments.Amount) (payments.Status, error) {
	f.calls = append(f.calls, "refund")
	return payments.Status{}, nil
}
func (f *fullProvider) VerifyNotice(http.Header, url.Values, []byte) (payments.Ref, error) {
	f.calls = append(f.calls, "verify")
	return payments.Ref{}, nil
}

func parseRegistry(t *testing.T, m *metrics) exposition {
	t.Helper()
	rec := httptest.NewRecorder()
	m.handler(slog.New(slog.DiscardHandler)).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	require.Equal(t, 200, rec.Code)
	return parseExposition(t, rec.Body.Bytes())
}

// TestMetricsReceiptOwed: with the paper out after the charge, the receipt
// is owed and the register's refusals are counted by class; with paper back
// the receipt prints and nothing is owed.
func TestMetricsReceiptOwed(t *testing.T) {
	r := newRig(t, rigOptions{})
	r.startInProcess()
	p := r.create("k", saleBody(20480, milkReceipt))
	r.till.Register.Inject(shtrihsim.Fault{Kind: shtrihsim.PaperOut, Command: 0x8D})
	r.showCode()
	require.Eventually(t, func() bool {
		e := r.scrape(t)
		owed, _ := e.value("kassa_receipts_owed")
		age, _ := e.value("kassa_receipt_owed_oldest_age_seconds")
		errs, _ := e.value("kassa_register_command_errors_total", "command=print_receipt", "class=paper_out")
		return owed == 1 && age > 0 && errs >= 1
	}, 10*time.Second, 50*time.Millisecond, "the owed receipt and the register's paper_out refusal should show")
	r.till.Register.SetPaper(true)
	r.waitState(p.ID, "completed", 15*time.Second)
	e := r.scrape(t)
	owed, _ := e.value("kassa_receipts_owed")
	age, _ := e.value("kassa_receipt_owed_oldest_age_seconds")
	assert.Zero(t, owed)
	assert.Zero(t, age)
}
