package sale

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kassa-agent/payments"
	"kassa-agent/queue"
)

// putPayments stores n payments as the engine keeps them, cycling through
// providers, states and receipt states.
func putPayments(tb testing.TB, st *queue.Store, n int, start time.Time) {
	tb.Helper()
	provs := []string{ProviderSmartPay, "alif", "alikassa"}
	states := payments.States()
	fiscal := []string{FiscalPending, "printed", "none"}
	for done := 0; done < n; {
		require.NoError(tb, st.Update(context.Background(), func(tx *queue.Tx) error {
			for i := 0; i < 1000 && done < n; i, done = i+1, done+1 {
				p := &Payment{ID: fmt.Sprintf("p%08d", done), Provider: provs[done%len(provs)], State: states[done%len(states)],
					Amount: 1000, Currency: "RUB", Created: start.Add(time.Duration(done) * time.Second)}
				p.Fiscal.State = fiscal[done%len(fiscal)]
				if err := putPayment(tx, p); err != nil {
					return err
				}
			}
			return nil
		}))
	}
}

// TestCountsAgreesWithList: the narrow decoding Counts uses finds what the
// engine's own full decoding finds, so a renamed field cannot silently zero
// a metric.
func TestCountsAgreesWithList(t *testing.T) {
	b := newBench(t, nil)
	start := time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC)
	putPayments(t, b.store, 300, start)
	all, err := b.e.List("", time.Time{}, 0)
	require.NoError(t, err)
	require.Len(t, all, 300)
	want := Counts{ByState: map[string]map[payments.State]int{}}
	for _, p := range all {
		if want.ByState[p.Provider] == nil {
			want.ByState[p.Provider] = map[payments.State]int{}
		}
		want.ByState[p.Provider][p.State]++
		if p.State.MoneyTaken() && p.Fiscal.State == FiscalPending {
			want.ReceiptsOwed++
			if want.OldestOwed.IsZero() || p.Created.Before(want.OldestOwed) {
				want.OldestOwed = p.Created
			}
		}
	}
	got, err := b.e.Counts()
	require.NoError(t, err)
	assert.Equal(t, want.ByState, got.ByState)
	assert.Equal(t, want.ReceiptsOwed, got.ReceiptsOwed)
	assert.True(t, want.OldestOwed.Equal(got.OldestOwed), "oldest owed %v, want %v", got.OldestOwed, want.OldestOwed)
	assert.NotZero(t, got.ReceiptsOwed, "the fixture has owed receipts")
}

// BenchmarkCounts is the cost of one scrape's payment counts on a store
// with 20 000 payments (a busy till's year).
func BenchmarkCounts(b *testing.B) {
	st, err := queue.Open(filepath.Join(b.TempDir(), "kassa.db"), queue.Options{})
	require.NoError(b, err)
	defer st.Close()
	putPayments(b, st, 20000, time.Now().Add(-24*time.Hour))
	e, err := New(Options{Store: st})
	require.NoError(b, err)
	b.ResetTimer()
	for b.Loop() {
		if _, err := e.Counts(); err != nil {
			b.Fatal(err)
		}
	}
}
