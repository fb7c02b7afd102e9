package sale

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"kassa-agent/fiscal"
	"kassa-agent/queue"
)

// storeOps writes n settled receipt operations of ten lines each, as a till
// accumulates over weeks, then one queued operation.
func storeOps(tb testing.TB, st *queue.Store, n int) string {
	tb.Helper()
	r := fiscal.Receipt{Type: fiscal.Sale}
	for i := range 10 {
		r.Items = append(r.Items, fiscal.Item{Name: fmt.Sprintf("Товар %d", i), Quantity: fiscal.QuantityOne, Price: 1000, VAT: fiscal.VAT22})
	}
	now := time.Now()
	for from := 0; from < n; from += 500 {
		require.NoError(tb, st.Update(context.Background(), func(tx *queue.Tx) error {
			for i := from; i < min(from+500, n); i++ {
				op := &Operation{ID: fmt.Sprintf("op_%012d", i+1), Kind: "receipt", State: OpDone, Created: now, Updated: now, request: &r,
					Receipt: &ReceiptResult{Document: fiscal.Document{FD: uint32(i + 1), FP: 1}}}
				if err := putOp(tx, op); err != nil {
					return err
				}
			}
			return nil
		}))
	}
	id := fmt.Sprintf("op_%012d", n+1)
	require.NoError(tb, st.Update(context.Background(), func(tx *queue.Tx) error {
		return putOp(tx, &Operation{ID: id, Kind: "receipt", State: OpQueued, Created: now, Updated: now, request: &r})
	}))
	return id
}

// BenchmarkNextOp: finding the register worker's next operation in a store
// holding weeks of settled ones. Before the open-operations index it decoded
// every settled operation on every turn of the worker.
func BenchmarkNextOp(b *testing.B) {
	for _, n := range []int{100, 5000} {
		b.Run(fmt.Sprintf("settled=%d", n), func(b *testing.B) {
			st, err := queue.Open(filepath.Join(b.TempDir(), "kassa.db"), queue.Options{})
			require.NoError(b, err)
			b.Cleanup(func() { st.Close() })
			want := storeOps(b, st, n)
			e := &Engine{store: st, log: slog.New(slog.DiscardHandler)}
			for b.Loop() {
				op, err := e.nextOp()
				if err != nil || op == nil || op.ID != want {
					b.Fatalf("next op %v, %v; want %s", op, err, want)
				}
			}
		})
	}
}

// TestOpenOpsIndexRebuilt: a store written before the index existed (its
// queued operation is not in the index, a settled one is left in it) gets
// its index rebuilt when the worker starts, so the queued one is printed.
func TestOpenOpsIndexRebuilt(t *testing.T) {
	st, err := queue.Open(filepath.Join(t.TempDir(), "kassa.db"), queue.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	e := &Engine{store: st, log: slog.New(slog.DiscardHandler)}
	now := time.Now()
	old := func(op *Operation) []byte {
		b, err := json.Marshal(storedOp{Operation: *op})
		require.NoError(t, err)
		return b
	}
	require.NoError(t, st.Update(context.Background(), func(tx *queue.Tx) error {
		if err := tx.Put(collOps, "op_000000000001", old(&Operation{ID: "op_000000000001", Kind: "x_report", State: OpDone, Created: now})); err != nil {
			return err
		}
		if err := tx.Put(collOpsOpen, "op_000000000001", nil); err != nil {
			return err
		}
		return tx.Put(collOps, "op_000000000002", old(&Operation{ID: "op_000000000002", Kind: "x_report", State: OpQueued, Created: now}))
	}))
	op, err := e.nextOp()
	require.NoError(t, err)
	require.Nil(t, op, "without the index entry the queued operation is not seen yet")

	require.NoError(t, e.indexOpenOps(context.Background()))
	op, err = e.nextOp()
	require.NoError(t, err)
	require.NotNil(t, op)
	require.Equal(t, "op_000000000002", op.ID)
	require.NoError(t, st.View(func(r *queue.ReadTx) error {
		_, err := r.Get(collOpsOpen, "op_000000000001")
		require.ErrorIs(t, err, queue.ErrNotFound, "a settled operation left in the index is removed")
		return nil
	}))
}

// BenchmarkJournalPending: the register asks for the journal's unfinished
// entries before every document. Before the pending index it decoded every
// entry the till had ever written.
func BenchmarkJournalPending(b *testing.B) {
	for _, n := range []int{100, 5000} {
		b.Run(fmt.Sprintf("finished=%d", n), func(b *testing.B) {
			st, err := queue.Open(filepath.Join(b.TempDir(), "kassa.db"), queue.Options{})
			require.NoError(b, err)
			b.Cleanup(func() { st.Close() })
			j := NewJournal(st)
			ctx := context.Background()
			r := fiscal.Receipt{Type: fiscal.Sale}
			for i := range 10 {
				r.Items = append(r.Items, fiscal.Item{Name: fmt.Sprintf("Товар %d", i), Quantity: fiscal.QuantityOne, Price: 1000, VAT: fiscal.VAT22})
			}
			for from := 0; from < n; from += 500 {
				require.NoError(b, st.Update(ctx, func(tx *queue.Tx) error {
					for i := from; i < min(from+500, n); i++ {
						if err := putEntry(tx, fiscal.Entry{Op: fiscal.Pending{ID: fmt.Sprintf("op_%012d", i), Receipt: r}, Done: true, Doc: fiscal.Document{FD: uint32(i + 1)}}); err != nil {
							return err
						}
					}
					return nil
				}))
			}
			require.NoError(b, j.Begin(ctx, fiscal.Pending{ID: "open", Receipt: r}))
			_, err = j.Pending(ctx) // a process's first call checks the index
			require.NoError(b, err)
			for b.Loop() {
				ps, err := j.Pending(ctx)
				if err != nil || len(ps) != 1 {
					b.Fatalf("pending %v, %v", ps, err)
				}
			}
		})
	}
}

// TestJournalPendingIndexRebuilt: an unfinished entry written before the
// pending index existed is still found (and resolved by the register before
// its next document); a finished one left in the index is not.
func TestJournalPendingIndexRebuilt(t *testing.T) {
	st, err := queue.Open(filepath.Join(t.TempDir(), "kassa.db"), queue.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	ctx := context.Background()
	require.NoError(t, st.Update(ctx, func(tx *queue.Tx) error {
		if err := putEntry(tx, fiscal.Entry{Op: fiscal.Pending{ID: "pay_old", LastFD: 7}}); err != nil {
			return err
		}
		if err := putEntry(tx, fiscal.Entry{Op: fiscal.Pending{ID: "pay_done"}, Done: true}); err != nil {
			return err
		}
		return tx.Put(collFiscalOpsPending, "pay_done", nil)
	}))
	ps, err := NewJournal(st).Pending(ctx)
	require.NoError(t, err)
	require.Len(t, ps, 1)
	require.Equal(t, "pay_old", ps[0].ID)
	require.Equal(t, uint32(7), ps[0].LastFD)
	require.NoError(t, st.View(func(r *queue.ReadTx) error {
		_, err := r.Get(collFiscalOpsPending, "pay_done")
		require.ErrorIs(t, err, queue.ErrNotFound)
		return nil
	}))
}
