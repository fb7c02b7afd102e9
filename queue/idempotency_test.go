package queue

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestIdempotencyReplayMismatchExpiry(t *testing.T) {
	clock := NewTestClock(time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC))
	advance := clock.Advance
	s := openTemp(t, Options{Clock: clock})
	ctx := context.Background()
	hashA, hashB := []byte("sha256-of-body-A"), []byte("sha256-of-body-B")

	// First call: unknown key -> create the resource and the record together.
	create := func(key string, hash []byte, resource string) (*IdempotencyRecord, error) {
		var rec *IdempotencyRecord
		err := s.Update(ctx, func(tx *Tx) error {
			r, err := tx.CheckIdempotency(key, hash)
			if err != nil || r != nil {
				rec = r
				return err
			}
			if err := tx.Put("payments", resource, []byte("{}")); err != nil {
				return err
			}
			return tx.PutIdempotency(key, IdempotencyRecord{RequestHash: hash, ResourceID: resource, Status: 201, Body: []byte(`{"id":"` + resource + `"}`)})
		})
		return rec, err
	}
	if rec, err := create("key-1", hashA, "pay-1"); err != nil || rec != nil {
		t.Fatalf("first use: %v %v", rec, err)
	}
	// Replay: same body -> stored response, nothing new created.
	rec, err := create("key-1", hashA, "pay-2")
	if err != nil || rec == nil || rec.ResourceID != "pay-1" || rec.Status != 201 || string(rec.Body) != `{"id":"pay-1"}` || !rec.Created.Equal(clock.Now()) {
		t.Fatalf("replay: %+v %v", rec, err)
	}
	// Mismatch: same key, other body.
	if rec, err := create("key-1", hashB, "pay-3"); !errors.Is(err, ErrIdempotencyMismatch) || rec == nil || rec.ResourceID != "pay-1" {
		t.Fatalf("mismatch: %+v %v", rec, err)
	}
	_ = s.View(func(rt *ReadTx) error {
		if n, _ := rt.Count("payments"); n != 1 {
			t.Errorf("%d payments created, want 1", n)
		}
		return nil
	})
	// Bad keys.
	for _, k := range []string{"", strings.Repeat("k", MaxIdempotencyKeyLen+1)} {
		if _, err := create(k, hashA, "x"); !errors.Is(err, ErrInvalidIdempotencyKey) {
			t.Errorf("key of %d bytes: %v", len(k), err)
		}
	}

	// Expiry: kept for 72h, pruned after.
	if _, err := s.PruneIdempotency(ctx, time.Hour); err == nil {
		t.Fatal("prune below 72h accepted")
	}
	advance(48 * time.Hour)
	if _, err := create("key-2", hashA, "pay-2"); err != nil {
		t.Fatal(err)
	}
	advance(25 * time.Hour) // key-1 is 73h old, key-2 25h
	n, err := s.PruneIdempotency(ctx, MinIdempotencyRetention)
	if err != nil || n != 1 {
		t.Fatalf("prune: %d %v", n, err)
	}
	_ = s.View(func(rt *ReadTx) error {
		if _, err := rt.GetIdempotency("key-1"); !errors.Is(err, ErrNotFound) {
			t.Errorf("key-1 after expiry: %v", err)
		}
		if r, err := rt.GetIdempotency("key-2"); err != nil || r.ResourceID != "pay-2" {
			t.Errorf("key-2 pruned too early: %+v %v", r, err)
		}
		return nil
	})
	// After expiry the key is free again.
	if rec, err := create("key-1", hashB, "pay-9"); err != nil || rec != nil {
		t.Fatalf("reuse after expiry: %v %v", rec, err)
	}
	// Re-putting a key replaces its time index entry (no stale prune).
	advance(80 * time.Hour)
	n, _ = s.PruneIdempotency(ctx, MinIdempotencyRetention)
	if n != 2 {
		t.Fatalf("second prune removed %d, want 2", n)
	}
	_ = s.View(func(rt *ReadTx) error {
		if c := rt.btx.Bucket(bIdemTime).Stats().KeyN; c != 0 {
			t.Errorf("%d stale time index entries", c)
		}
		return nil
	})
}

func TestPruneManyInChunks(t *testing.T) {
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	s := openTemp(t, Options{Now: func() time.Time { return now }})
	ctx := context.Background()
	err := s.Update(ctx, func(tx *Tx) error {
		for i := range 2500 {
			if err := tx.PutIdempotency(fmt.Sprintf("k%05d", i), IdempotencyRecord{RequestHash: []byte("h"), Created: now.Add(-100 * time.Hour)}); err != nil {
				return err
			}
		}
		return tx.PutIdempotency("fresh", IdempotencyRecord{RequestHash: []byte("h")})
	})
	if err != nil {
		t.Fatal(err)
	}
	n, err := s.PruneIdempotency(ctx, 72*time.Hour)
	if err != nil || n != 2500 {
		t.Fatalf("pruned %d, %v", n, err)
	}
}

func TestSequenceIncreasesAcrossReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kassa.db")
	ctx := context.Background()
	var last uint64
	for round := range 3 {
		s, err := Open(path, Options{})
		if err != nil {
			t.Fatal(err)
		}
		q, err := s.Sequence("kassa_purchase_id", 10)
		if err != nil {
			t.Fatal(err)
		}
		if q2, _ := s.Sequence("kassa_purchase_id", 99); q2 != q {
			t.Fatal("second Sequence call returned a different instance")
		}
		// Concurrent takers get unique ids; many blocks are crossed.
		var mu sync.Mutex
		got := map[uint64]bool{}
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				prev := uint64(0)
				for range 50 {
					v, err := q.Next(ctx)
					if err != nil {
						t.Error(err)
						return
					}
					if v <= prev {
						t.Errorf("not increasing within a goroutine: %d after %d", v, prev)
					}
					prev = v
					mu.Lock()
					if got[v] {
						t.Errorf("id %d handed out twice", v)
					}
					got[v] = true
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		for v := range got {
			if v <= last {
				t.Fatalf("round %d: id %d not above previous round's %d", round, v, last)
			}
		}
		for v := range got {
			last = max(last, v)
		}
		s.Close()
	}
	s, _ := Open(path, Options{})
	defer s.Close()
	q, err := s.SequenceFrom("by_time", 100, 1_700_000_000_000)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := q.Next(ctx); v != 1_700_000_000_000 {
		t.Fatalf("floor ignored: %d", v)
	}
	if _, err := s.Sequence("", 1); !errors.Is(err, ErrInvalidName) {
		t.Fatalf("empty name: %v", err)
	}
}

func TestSequenceAfterClose(t *testing.T) {
	s := openTemp(t, Options{})
	q, err := s.Sequence("x", 2)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var lastErr error
	for range 5 {
		if _, err := q.Next(ctx); err != nil {
			lastErr = err
			break
		}
	}
	if !errors.Is(lastErr, ErrClosed) {
		t.Fatalf("Next past the reserved block on a closed store: %v", lastErr)
	}
}
